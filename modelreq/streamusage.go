package modelreq

import (
	"net/http"
	"strconv"
)

// IncludeStreamUsage has a streaming OpenAI chat or completions request ask
// for its token usage, which the API sends only when asked, in one last chunk
// (choices empty, usage set). When the JSON body r carries — put back by
// Extract or ReadBody — has "stream": true and no stream_options.include_usage,
// it adds "include_usage": true (and stream_options itself when missing) and
// reports true: the answer then carries a chunk the client did not ask for.
// r.ContentLength, r.GetBody and a Content-Length header follow the new body.
//
// Keys are compared exactly, as the backends that accept stream_options
// (OpenAI, vLLM, Ollama, llama.cpp) read them, and the last of a repeated key
// counts. A body it cannot read again, or one whose stream_options is not an
// object (null included), is left as it is.
func IncludeStreamUsage(r *http.Request) bool {
	read, ok := Body(r)
	if !ok {
		return false
	}
	body, added := addStreamUsage(read)
	if !added {
		return false
	}
	restoreBody(r, body)
	if r.Header.Get("Content-Length") != "" {
		r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	return true
}

// Body is the body Extract or ReadBody read and put back on r, while none of
// it has been read again: the guard looks at it once more without a copy.
func Body(r *http.Request) ([]byte, bool) {
	br, ok := r.Body.(*bodyReader)
	if !ok || br.Len() != len(br.body) {
		return nil, false
	}
	return br.body, true
}

// MaxCompletion is the answer a JSON body asks for at most: its top-level
// max_tokens, max_completion_tokens or max_output_tokens, or Ollama's
// options.num_predict, when positive. It reads the members the way
// IncludeStreamUsage does, without decoding the body.
func MaxCompletion(body []byte) (int64, bool) {
	var n int64
	positive := func(v []byte) {
		if x, err := strconv.ParseInt(string(v), 10, 64); err == nil && x > 0 && n == 0 {
			n = x
		}
	}
	eachMember(body, func(key []byte, escaped bool, value, end int) {
		switch {
		case keyIs(key, escaped, "max_tokens"), keyIs(key, escaped, "max_completion_tokens"), keyIs(key, escaped, "max_output_tokens"):
			positive(body[value:end])
		case keyIs(key, escaped, "options") && body[value] == '{':
			options := body[value:end]
			eachMember(options, func(key []byte, escaped bool, value, end int) {
				if keyIs(key, escaped, "num_predict") {
					positive(options[value:end])
				}
			})
		}
	})
	return n, n > 0
}

// addStreamUsage returns body with stream_options.include_usage set to true,
// and whether it changed anything (see IncludeStreamUsage).
func addStreamUsage(body []byte) ([]byte, bool) {
	var stream bool
	options := -1 // where the last stream_options value starts
	open, ok := eachMember(body, func(key []byte, escaped bool, value, end int) {
		switch {
		case keyIs(key, escaped, "stream"):
			stream = string(body[value:end]) == "true"
		case keyIs(key, escaped, "stream_options"):
			options = value
		}
	})
	if !ok || !stream {
		return nil, false
	}
	if options < 0 {
		return insertAt(body, open+1, `"stream_options":{"include_usage":true},`), true
	}
	if body[options] != '{' {
		return nil, false
	}
	asked, empty := false, true
	if _, ok := eachMember(body[options:], func(key []byte, escaped bool, _, _ int) {
		asked = asked || keyIs(key, escaped, "include_usage")
		empty = false
	}); !ok || asked {
		return nil, false // asked: the client decided
	}
	insert := `"include_usage":true`
	if !empty {
		insert += ","
	}
	return insertAt(body, options+1, insert), true
}

// keyIs reports whether a key, as written between its quotes, unescapes to name.
func keyIs(raw []byte, escaped bool, name string) bool {
	if !escaped {
		return string(raw) == name
	}
	var buf [64]byte
	if len(raw) > len(buf) {
		return false
	}
	decoded, ok := unescape(buf[:0], raw)
	return ok && string(decoded) == name
}

// eachMember reads the JSON object b starts with (after whitespace), calls fn
// with each member's key as written between its quotes (escaped: it holds
// escapes) and where its value starts and ends, and returns the index of the
// object's opening brace.
func eachMember(b []byte, fn func(key []byte, escaped bool, value, end int)) (open int, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return 0, false
	}
	open = i
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return open, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, false
		}
		end, escaped, ok := scanString(b, i)
		if !ok {
			return 0, false
		}
		key := b[i+1 : end-1]
		i = skipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return 0, false
		}
		i = skipSpace(b, i+1)
		valueEnd, ok := skipValue(b, i)
		if !ok {
			return 0, false
		}
		fn(key, escaped, i, valueEnd)
		i = skipSpace(b, valueEnd)
		switch {
		case i >= len(b):
			return 0, false
		case b[i] == '}':
			return open, true
		case b[i] != ',':
			return 0, false
		}
		i = skipSpace(b, i+1)
	}
}

func insertAt(b []byte, at int, s string) []byte {
	out := make([]byte, 0, len(b)+len(s))
	out = append(out, b[:at]...)
	out = append(out, s...)
	return append(out, b[at:]...)
}
