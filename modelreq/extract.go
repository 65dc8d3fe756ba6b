// Package modelreq reads the model a request asks for and filters model
// listings, so the guard can check models against a caller's token (spec §6,
// "Models"). The guard and the backend must never disagree on which model a
// body names, so anything a backend could read differently is refused. The
// guard and actions import it; it imports nothing of Gatehouse.
package modelreq

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"unicode/utf8"
)

var (
	// ErrBodyTooLarge means the body exceeds the limit; the caller answers 413.
	ErrBodyTooLarge = errors.New("request body too large")
	// ErrAmbiguousModel means the model keys (case-folded) name different
	// models, or one is not a string; the caller answers 400.
	ErrAmbiguousModel = errors.New("ambiguous model field")
	// ErrInvalidJSON means the body is not exactly one JSON object; the caller
	// answers 400.
	ErrInvalidJSON = errors.New("request body is not a JSON object")
)

// maxNestingDepth matches encoding/json's limit, so a body this package
// accepts is one encoding/json accepts too.
const maxNestingDepth = 10000

// chunkedBodyStart is the first buffer size for a body of unknown length; a
// typical chat request fits without growing.
const chunkedBodyStart = 4096

// Extract reads r.Body up to limit bytes, finds the model the JSON object's
// top-level model keys name (see ExtractBytes) and puts an identical body back on r (r.Body replaced by a
// reader over the exact same bytes, r.ContentLength and r.GetBody consistent)
// so the upstream receives the body byte for byte. found is false when the
// object has no "model" member. An empty body is ErrInvalidJSON. A body over
// limit is ErrBodyTooLarge, decided from Content-Length when it is known and
// otherwise by reading at most limit+1 bytes.
//
// The body is put back whenever it was read completely, also when it is
// ErrInvalidJSON or ErrAmbiguousModel; after ErrBodyTooLarge or a read error
// r.Body is partly consumed and the request must not be forwarded.
func Extract(r *http.Request, limit int64, keys []string) (model string, found bool, err error) {
	body, err := ReadBody(r, limit)
	if err != nil {
		return "", false, err
	}
	return ExtractBytes(body, keys)
}

// ReadBody reads r.Body up to limit bytes and puts an identical body back on
// r. A body over limit is ErrBodyTooLarge (decided from Content-Length when it
// is known); r.Body is then partly consumed and the request must not be
// forwarded.
func ReadBody(r *http.Request, limit int64) ([]byte, error) {
	limit = max(0, min(limit, math.MaxInt64-1))
	if r.ContentLength > limit {
		return nil, ErrBodyTooLarge
	}
	body, err := readBody(r.Body, r.ContentLength, limit)
	if err != nil {
		return nil, err
	}
	if r.Body != nil {
		// The original body is at EOF; closing it now instead of leaving it to
		// whoever closes the replacement.
		r.Body.Close()
	}
	restoreBody(r, body)
	return body, nil
}

// readBody reads rc to EOF, failing with ErrBodyTooLarge as soon as more than
// limit bytes arrive. A known contentLength sizes the buffer in one allocation.
func readBody(rc io.ReadCloser, contentLength, limit int64) ([]byte, error) {
	if rc == nil || rc == http.NoBody {
		return nil, nil
	}
	size := int64(chunkedBodyStart)
	if contentLength >= 0 {
		// One byte more than announced, so EOF is seen without growing.
		size = contentLength + 1
	}
	size = min(size, limit+1)
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		end := int(min(int64(cap(buf)), limit+1))
		n, err := rc.Read(buf[len(buf):end])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, ErrBodyTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read request body: %w", err)
		}
	}
}

// restoreBody gives r a body of exactly these bytes. The length is known now,
// so a chunked request goes upstream with a Content-Length instead.
func restoreBody(r *http.Request, body []byte) {
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	if len(body) == 0 {
		// http.NoBody tells the transport there is nothing to send; any other
		// empty reader with ContentLength 0 counts as "length unknown".
		r.Body = http.NoBody
		r.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
		return
	}
	r.Body = newBodyReader(body)
	r.GetBody = func() (io.ReadCloser, error) { return newBodyReader(body), nil }
}

// bodyReader is a ReadCloser over a byte slice in a single allocation
// (io.NopCloser around a *bytes.Reader takes two). It keeps the slice, so
// the guard can look at a body it read once more without copying it.
type bodyReader struct {
	bytes.Reader
	body []byte
}

func newBodyReader(b []byte) *bodyReader {
	br := &bodyReader{body: b}
	br.Reset(b)
	return br
}

func (*bodyReader) Close() error { return nil }

// ExtractBytes is Extract on a body already read: body must be exactly one
// JSON object (RFC 8259, strings valid UTF-8). A top-level member is a model
// key when its key, unescaped, equals one of keys under Unicode case folding,
// as Go's encoding/json matches struct fields ("Model", "MODEL" and
// "\u004dODEL" are all "model"); every model key must hold a string, and all
// the same one, or the body is ErrAmbiguousModel. keys default to ["model"].
func ExtractBytes(body []byte, keys []string) (model string, found bool, err error) {
	if len(keys) == 0 {
		keys = defaultKeys
	}
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return "", false, ErrInvalidJSON
	}
	i = skipSpace(body, i+1)
	var ambiguous bool
	if i < len(body) && body[i] == '}' {
		i++
	} else {
		for {
			if i >= len(body) || body[i] != '"' {
				return "", false, ErrInvalidJSON
			}
			end, escaped, ok := scanString(body, i)
			if !ok {
				return "", false, ErrInvalidJSON
			}
			isModel := keyIsModel(body[i+1:end-1], escaped, keys)
			i = skipSpace(body, end)
			if i >= len(body) || body[i] != ':' {
				return "", false, ErrInvalidJSON
			}
			i = skipSpace(body, i+1)
			switch {
			case isModel && i < len(body) && body[i] == '"':
				end, escaped, ok = scanString(body, i)
				if !ok {
					return "", false, ErrInvalidJSON
				}
				value, decoded := body[i+1:end-1], true
				if escaped {
					// A lone surrogate escape: encoding/json turns it into
					// U+FFFD, Python keeps it, so backends would not agree.
					value, decoded = unescape(make([]byte, 0, len(value)), value)
				}
				switch {
				case !decoded || found && string(value) != model:
					ambiguous = true
				case !found:
					model = string(value)
				}
				i = end
			default:
				// A non-string model is remembered rather than returned at
				// once, so a broken body is reported as ErrInvalidJSON
				// whatever its members are.
				ambiguous = ambiguous || isModel
				if i, ok = skipValue(body, i); !ok {
					return "", false, ErrInvalidJSON
				}
			}
			found = found || isModel
			i = skipSpace(body, i)
			if i >= len(body) {
				return "", false, ErrInvalidJSON
			}
			if body[i] == ',' {
				i = skipSpace(body, i+1)
				continue
			}
			if body[i] != '}' {
				return "", false, ErrInvalidJSON
			}
			i++
			break
		}
	}
	if skipSpace(body, i) != len(body) {
		return "", false, ErrInvalidJSON
	}
	if ambiguous {
		return "", false, ErrAmbiguousModel
	}
	return model, found, nil
}

var defaultKeys = []string{"model"}

// keyIsModel reports whether a key, given between its quotes, unescapes to
// one of keys under Unicode case folding.
func keyIsModel(raw []byte, escaped bool, keys []string) bool {
	// A character folding to an ASCII letter takes at most three bytes
	// (U+212A, the Kelvin sign), or twelve as a surrogate pair of escapes.
	var buf [64]byte
	if escaped && len(raw) <= len(buf) {
		decoded, ok := unescape(buf[:0], raw)
		if !ok {
			return false
		}
		raw = decoded
	}
	for _, k := range keys {
		if len(raw) <= 3*len(k) && strings.EqualFold(string(raw), k) {
			return true
		}
	}
	return false
}

// skipSpace returns the index of the first non-whitespace byte at or after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// plainStringByte marks the bytes a string may hold as they are: printable
// ASCII other than the quote and the backslash.
var plainStringByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString validates the string starting with the quote at b[i] and returns
// the index just past its closing quote and whether it holds escapes.
func scanString(b []byte, i int) (end int, escaped bool, ok bool) {
	j := i + 1
	for j < len(b) {
		for j < len(b) && plainStringByte[b[j]] {
			j++
		}
		if j >= len(b) {
			break
		}
		switch c := b[j]; {
		case c == '"':
			return j + 1, escaped, true
		case c == '\\':
			escaped = true
			if j+1 >= len(b) {
				return 0, false, false
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if _, hexOK := hex4(b, j+2); !hexOK {
					return 0, false, false
				}
				j += 6
			default:
				return 0, false, false
			}
		case c < 0x20:
			return 0, false, false
		default:
			r, size := utf8.DecodeRune(b[j:])
			if r == utf8.RuneError && size == 1 {
				return 0, false, false
			}
			j += size
		}
	}
	return 0, false, false
}

// hex4 decodes the four hex digits at b[i:i+4].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// unescape appends the string content raw (validated by scanString) to dst
// with its escapes decoded. It fails on a surrogate escape that is not part of
// a pair.
func unescape(dst, raw []byte) ([]byte, bool) {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(raw, i+2)
			i += 6
			if utf16IsSurrogate(r) {
				if r >= 0xDC00 || i+6 > len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
					return dst, false
				}
				low, _ := hex4(raw, i+2)
				if low < 0xDC00 || low > 0xDFFF {
					return dst, false
				}
				r = 0x10000 + (r-0xD800)<<10 + (low - 0xDC00)
				i += 6
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, raw[i+1])
		}
		i += 2
	}
	return dst, true
}

func utf16IsSurrogate(r rune) bool { return 0xD800 <= r && r <= 0xDFFF }

// skipValue validates the JSON value starting at b[i] and returns the index
// just past it. It walks nested containers with an explicit stack so a deeply
// nested body cannot exhaust the goroutine stack.
func skipValue(b []byte, i int) (int, bool) {
	var stackBuf [32]bool // true: inside an object, false: inside an array
	stack := stackBuf[:0]
	for {
		// A value starts at b[i].
		if i >= len(b) {
			return i, false
		}
		closed := true // whether the value ends here, or a container opened
		switch c := b[i]; {
		case c == '{' || c == '[':
			// The enclosing top-level object is one more level.
			if len(stack)+1 >= maxNestingDepth {
				return i, false
			}
			stack = append(stack, c == '{')
			i = skipSpace(b, i+1)
			if i < len(b) && (c == '{' && b[i] == '}' || c == '[' && b[i] == ']') {
				stack = stack[:len(stack)-1]
				i++
				break
			}
			closed = false
			if c == '{' {
				var ok bool
				if i, ok = skipKey(b, i); !ok {
					return i, false
				}
			}
		case c == '"':
			end, _, ok := scanString(b, i)
			if !ok {
				return i, false
			}
			i = end
		case c == 't':
			if !bytes.HasPrefix(b[i:], []byte("true")) {
				return i, false
			}
			i += 4
		case c == 'f':
			if !bytes.HasPrefix(b[i:], []byte("false")) {
				return i, false
			}
			i += 5
		case c == 'n':
			if !bytes.HasPrefix(b[i:], []byte("null")) {
				return i, false
			}
			i += 4
		default:
			var ok bool
			if i, ok = scanNumber(b, i); !ok {
				return i, false
			}
		}
		if !closed {
			continue
		}
		// A value ended: close every container that ends with it, then move
		// on to the next element or member.
		for {
			if len(stack) == 0 {
				return i, true
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return i, false
			}
			inObject := stack[len(stack)-1]
			if b[i] == ',' {
				i = skipSpace(b, i+1)
				if inObject {
					var ok bool
					if i, ok = skipKey(b, i); !ok {
						return i, false
					}
				}
				break
			}
			if inObject && b[i] == '}' || !inObject && b[i] == ']' {
				stack = stack[:len(stack)-1]
				i++
				continue
			}
			return i, false
		}
	}
}

// skipKey validates `"key" :` at b[i] and returns the index of the value.
func skipKey(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return i, false
	}
	end, _, ok := scanString(b, i)
	if !ok {
		return i, false
	}
	i = skipSpace(b, end)
	if i >= len(b) || b[i] != ':' {
		return i, false
	}
	return skipSpace(b, i+1), true
}

// scanNumber validates -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at b[i].
func scanNumber(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i+1)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		start := i + 1
		if i = skipDigits(b, start); i == start {
			return i, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		start := i
		if i = skipDigits(b, start); i == start {
			return i, false
		}
	}
	return i, true
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}
