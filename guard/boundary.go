package guard

import (
	"net/http"
	"net/textproto"
	"strings"

	"github.com/gatehouse/gatehouse/refusal"
)

// The guard's boundary with the backend (spec §6a): whatever the backend's
// parser does with a request, it must not act on more than the policy
// allowed. Headers that could make the backend read another request are
// removed, and requests that different servers read differently are refused
// before anything is decided.

// overrideHeaders make some frameworks route or dispatch on another path or
// method than the one the guard decided on (lower case, as compared).
var overrideHeaders = []string{
	"x-original-url", "x-rewrite-url", "x-forwarded-uri",
	"x-http-method-override", "x-method-override", "x-http-method",
}

// sanitizeHeaders removes what no client may send the backend: identity
// headers (the guard sets its own), override headers, HTTP2-Settings, and
// Connection tokens that would make the proxy drop a header the guard sets or
// removes (Caddy deletes every header the Connection header names). Names
// compare case-insensitively with "_" as "-": CGI and WSGI servers read
// X_Gatehouse_Role as X-Gatehouse-Role.
func sanitizeHeaders(h http.Header) {
	for name := range h {
		if isGatehouseHeader(name) || isOverrideHeader(name) || sameHeaderName(name, "http2-settings") {
			delete(h, name)
		}
	}
	conn := h["Connection"]
	if len(conn) == 0 {
		return
	}
	var kept []string
	for _, line := range conn {
		for token := range strings.SplitSeq(line, ",") {
			token = textproto.TrimString(token)
			if token != "" && !protectedHeader(token) {
				kept = append(kept, token)
			}
		}
	}
	if len(kept) == 0 {
		h.Del("Connection")
		return
	}
	h["Connection"] = []string{strings.Join(kept, ", ")}
}

// sameHeaderName compares a header name with a lower-case one, folding case
// and reading "_" as "-".
func sameHeaderName(name, lower string) bool {
	if len(name) != len(lower) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == '_' {
			c = '-'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func isGatehouseHeader(name string) bool {
	return len(name) >= len(HeaderPrefix) && sameHeaderName(name[:len(HeaderPrefix)], "x-gatehouse-")
}

func isOverrideHeader(name string) bool {
	for _, o := range overrideHeaders {
		if sameHeaderName(name, o) {
			return true
		}
	}
	return false
}

// protectedHeader is a header the guard sets or removes.
func protectedHeader(name string) bool {
	return isGatehouseHeader(name) || isOverrideHeader(name) || sameHeaderName(name, "authorization") ||
		sameHeaderName(name, "cookie") || sameHeaderName(name, "http2-settings")
}

// The requests the guard answers 400 before deciding on them.
var (
	errUpgrade = refusal.New(http.StatusBadRequest, "upgrade_not_allowed", "Upgrade not allowed",
		"only a websocket upgrade of a GET request is passed to the backend")
	errAmbiguousMethod = refusal.New(http.StatusBadRequest, "ambiguous_request", "Ambiguous request",
		"the method must be a standard HTTP method in upper case")
	errAmbiguousPath = refusal.New(http.StatusBadRequest, "ambiguous_request", "Ambiguous request",
		`the path holds something backends read differently (";", "\", an encoded "/" or "\", a control character, `+
			`a double encoding, or a segment ending in "." or a space)`)
)

// requestMethod is the method the backend will see: an HTTP/2 or HTTP/3
// websocket (extended CONNECT, RFC 8441/9220) reaches it as a GET upgrade.
func requestMethod(r *http.Request) string {
	if isExtendedConnectWebsocket(r) {
		return http.MethodGet
	}
	return r.Method
}

// isExtendedConnectWebsocket matches what Caddy's reverse proxy turns into an
// HTTP/1.1 websocket upgrade.
func isExtendedConnectWebsocket(r *http.Request) bool {
	return r.Method == http.MethodConnect &&
		(r.ProtoMajor == 2 && r.Header.Get(":protocol") == "websocket" || r.ProtoMajor == 3 && r.Proto == "websocket")
}

// checkUpgrade lets through only a websocket upgrade of a GET: any other
// upgrade (h2c, TLS/1.x) would let the backend speak another protocol on the
// connection, past the guard. CONNECT opens a tunnel and is refused too.
func checkUpgrade(r *http.Request) *refusal.Problem {
	if r.Method == http.MethodConnect {
		if isExtendedConnectWebsocket(r) {
			return nil
		}
		return errUpgrade
	}
	upgrade := r.Header.Values("Upgrade")
	if len(upgrade) == 0 {
		return nil
	}
	if r.Method != http.MethodGet || len(upgrade) != 1 || !strings.EqualFold(textproto.TrimString(upgrade[0]), "websocket") {
		return errUpgrade
	}
	return nil
}

// knownMethods are the methods of RFC 9110 and PATCH, spelt in upper case.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true, http.MethodTrace: true,
	http.MethodConnect: true,
}

// checkAmbiguous refuses a method or path that backends could read
// differently from the guard: a lower-case or unknown method; a path with a
// ";" parameter, a backslash, an encoded "/" or "\", a control character
// (NUL), a percent sign that still decodes (a double encoding), or a segment
// ending in "." or a space ("..", "x." and "x " included).
func checkAmbiguous(r *http.Request) *refusal.Problem {
	if !knownMethods[r.Method] {
		return errAmbiguousMethod
	}
	p := r.URL.Path
	// RawPath is the path as sent whenever its escaping is not the default
	// one, which an encoded "/" or "\" never is.
	if strings.ContainsAny(p, ";\\") || ambiguousEscape(r.URL.RawPath) {
		return errAmbiguousPath
	}
	start := 0
	for i := 0; i <= len(p); i++ {
		if i < len(p) {
			c := p[i]
			if c < 0x20 || c == 0x7f {
				return errAmbiguousPath
			}
			if c == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
				return errAmbiguousPath
			}
			if c != '/' {
				continue
			}
		}
		if seg := p[start:i]; seg != "" && (seg[len(seg)-1] == '.' || seg[len(seg)-1] == ' ') {
			return errAmbiguousPath
		}
		start = i + 1
	}
	return nil
}

// ambiguousEscape reports an encoded "/" or "\" in a path as sent.
func ambiguousEscape(escaped string) bool {
	for i := 0; i+2 < len(escaped); i++ {
		if escaped[i] != '%' {
			continue
		}
		switch strings.ToLower(escaped[i+1 : i+3]) {
		case "2f", "5c":
			return true
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
