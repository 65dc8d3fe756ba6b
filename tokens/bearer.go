package tokens

import "strings"

// ParseBearer extracts the token of an `Authorization: Bearer <token>` header
// value (RFC 6750 §2.1): the scheme in any case, one or more spaces, then one
// token68 (letters, digits, "-._~+/", then optional trailing "="). Anything
// else — another scheme, no token, a second token, other characters — is
// not a bearer credential.
func ParseBearer(header string) (token string, ok bool) {
	const scheme = "Bearer"
	if len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) || header[len(scheme)] != ' ' {
		return "", false
	}
	token = strings.TrimLeft(header[len(scheme):], " ")
	if !isToken68(token) {
		return "", false
	}
	return token, true
}

// token68Chars is 1 for the characters of a token68 other than its
// trailing "=". Every request's header goes through isToken68, so it tests
// eight bytes per branch.
var token68Chars = func() (t [256]uint8) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/") {
		t[c] = 1
	}
	return t
}()

func isToken68(s string) bool {
	t := &token68Chars
	i := 0
	for ; i+8 <= len(s); i += 8 {
		if t[s[i]]&t[s[i+1]]&t[s[i+2]]&t[s[i+3]]&t[s[i+4]]&t[s[i+5]]&t[s[i+6]]&t[s[i+7]] == 0 {
			break
		}
	}
	for i < len(s) && t[s[i]] == 1 {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}
