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

// token68Chars marks the characters of a token68 other than its trailing
// "=": a table because every request's header goes through it.
var token68Chars = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/") {
		t[c] = true
	}
	return t
}()

func isToken68(s string) bool {
	i := 0
	for i < len(s) && token68Chars[s[i]] {
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
