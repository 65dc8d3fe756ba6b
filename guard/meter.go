package guard

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/modelreq"
	"github.com/gatehouse/gatehouse/policy"
)

// Metering (spec §8): every request the guard lets through goes to the
// backend with its response writer wrapped in a tap, which passes the answer
// on write by write — Flush and Hijack included — and keeps a copy of its
// last bytes only. When the request ends, the tap reads the backend's token
// count from that tail (OpenAI's usage, Ollama's prompt_eval_count and
// eval_count), or estimates it from the body sizes, and hands the meter one
// record; the meter writes to the store in batches, never per request. A
// stream that reports its input tokens at its start and only its output
// tokens at its end (Anthropic's message_start and message_delta) has its
// start read too, once, before the tail lets it go.

// tailSize bounds the copy of an answer's end the tap keeps (at least half
// of it is the newest bytes): the usage is in the last object or chunk.
const tailSize = 64 << 10

// headSize bounds the start of an answer where the tap looks for the input
// tokens of a stream whose last usage lacks them: Anthropic's message_start
// is its first event.
const headSize = 4 << 10

// maxHeldEvent bounds the incomplete SSE event the tap holds back while it
// drops the usage chunk the guard asked for; a longer event passes through
// and dropping stops.
const maxHeldEvent = 64 << 10

// streamUsageRoutes are the OpenAI routes that send usage in a last stream
// chunk when asked with stream_options.include_usage.
var streamUsageRoutes = map[string]bool{"/v1/chat/completions": true, "/v1/completions": true}

var tailPool = sync.Pool{New: func() any {
	b := make([]byte, 0, tailSize)
	return &b
}}

// usageOf is the record of a request by sub, before it has an answer.
func usageOf(sub *core.Subject, model *string, route *policy.Route, start time.Time) core.Usage {
	u := core.Usage{Time: start, UserID: sub.User.ID, Role: sub.User.Role, RouteKind: policy.KindOther}
	if sub.Token != nil {
		u.TokenID, u.TokenKind = sub.Token.ID, sub.Token.Kind
	}
	if model != nil {
		u.Model = *model
	}
	if route != nil {
		u.RouteKind = route.Kind
	}
	return u
}

// meterRefusal counts a refusal the guard made for a known subject.
func (g *Guard) meterRefusal(sub *core.Subject, model *string, route *policy.Route, start time.Time, status int) {
	u := usageOf(sub, model, route, start)
	u.Denied, u.Status, u.Latency = true, status, time.Since(start)
	g.rt.Meter(u)
}

// meter wraps w for an allowed request. On model routes it asks for an
// uncompressed answer (so the tap can read its usage) and, on streaming
// OpenAI chat and completions, for the usage chunk (unless the site turned
// that off), which the tap then drops unless the client asked for it too.
func (g *Guard) meter(w http.ResponseWriter, r *http.Request, dr core.DecisionRequest, route *policy.Route, start time.Time) *tap {
	t := &tap{w: w, meter: g.rt, usage: usageOf(dr.Subject, dr.Model, route, start)}
	if route == nil || route.Kind != policy.KindModel {
		return t
	}
	t.count = true
	t.requestBytes = max(r.ContentLength, 0)
	r.Header.Del("Accept-Encoding")
	if g.streamUsage && dr.Method == http.MethodPost && streamUsageRoutes[dr.PathFolded] {
		t.dropUsageChunk = modelreq.IncludeStreamUsage(r)
	}
	return t
}

// usageMeter takes the records (the runtime).
type usageMeter interface{ Meter(core.Usage) }

// tap is the response writer of a metered request.
type tap struct {
	w     http.ResponseWriter
	meter usageMeter
	usage core.Usage

	status       int
	wrote        int64 // bytes of the backend's answer
	requestBytes int64
	hijacked     bool

	count          bool    // read or estimate the tokens (model routes)
	tail           *[]byte // the answer's last bytes, from tailPool; nil until a 2xx body arrives
	dropUsageChunk bool    // the guard asked for a usage chunk the client did not
	filtering      bool    // dropping it from this answer (a 200 event stream)
	held           []byte  // while filtering: the start of an event not yet complete
	dropped        tokenCount
	droppedOK      bool // dropped holds the usage chunk's count

	headRead     bool  // the answer's start has been read for its input tokens
	headPrompt   int64 // the input tokens of the first usage in it
	headPromptOK bool
}

func (t *tap) Header() http.Header { return t.w.Header() }

func (t *tap) WriteHeader(status int) {
	if t.status == 0 && (status >= 200 || status == http.StatusSwitchingProtocols) {
		t.status = status
		t.begin()
	}
	t.w.WriteHeader(status)
}

// begin decides, once the status is known, whether to drop the usage chunk.
func (t *tap) begin() {
	h := t.w.Header()
	if t.dropUsageChunk && t.status == http.StatusOK && h.Get("Content-Encoding") == "" &&
		strings.HasPrefix(strings.ToLower(h.Get("Content-Type")), "text/event-stream") {
		t.filtering = true
		h.Del("Content-Length") // the client gets fewer bytes than the backend sent
	}
}

func (t *tap) Write(b []byte) (int, error) {
	if t.status == 0 {
		t.status = http.StatusOK
		t.begin()
	}
	t.wrote += int64(len(b))
	if t.count && t.status/100 == 2 {
		t.keepTail(b)
	}
	if t.filtering {
		return t.writeEvents(b)
	}
	return t.w.Write(b)
}

// ReadFrom keeps the underlying writer's sendfile for answers the tap needs
// no copy of (a file_server behind the guard).
func (t *tap) ReadFrom(src io.Reader) (int64, error) {
	if t.status == 0 {
		t.status = http.StatusOK
		t.begin()
	}
	if rf, ok := t.w.(io.ReaderFrom); ok && !t.count && !t.filtering {
		n, err := rf.ReadFrom(src)
		t.wrote += n
		return n, err
	}
	return io.Copy(writerOnly{t}, src)
}

// writerOnly hides ReadFrom, so io.Copy uses Write.
type writerOnly struct{ io.Writer }

func (t *tap) Flush() { _ = t.FlushError() }

// FlushError is what http.ResponseController calls.
func (t *tap) FlushError() error {
	switch f := t.w.(type) {
	case interface{ FlushError() error }:
		return f.FlushError()
	case http.Flusher:
		f.Flush()
		return nil
	}
	return http.NewResponseController(t.w).Flush()
}

func (t *tap) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(t.w).Hijack()
	if err == nil {
		t.hijacked = true
		if t.status == 0 {
			t.status = http.StatusSwitchingProtocols
		}
	}
	return conn, rw, err
}

// Unwrap lets http.ResponseController reach the connection's other controls.
func (t *tap) Unwrap() http.ResponseWriter { return t.w }

// keepTail appends b to the tail, keeping at most tailSize bytes and at
// least the newest half of that. Before the answer's start first leaves the
// tail, it reads the input tokens there.
func (t *tap) keepTail(b []byte) {
	if t.tail == nil {
		t.tail = tailPool.Get().(*[]byte)
	}
	tail := *t.tail
	if !t.headRead && len(tail)+len(b) > tailSize {
		n := min(max(headSize-len(tail), 0), len(b))
		tail = append(tail, b[:n]...)
		b = b[n:]
		t.readHead(tail)
	}
	switch {
	case len(b) >= tailSize:
		tail = append(tail[:0], b[len(b)-tailSize:]...)
	case len(tail)+len(b) > tailSize:
		drop := min(len(tail)+len(b)-tailSize/2, len(tail))
		tail = tail[:copy(tail, tail[drop:])]
		fallthrough
	default:
		tail = append(tail, b...)
	}
	*t.tail = tail
}

// readHead reads the input tokens of the first usage in the answer's start,
// which b begins with.
func (t *tap) readHead(b []byte) {
	t.headRead = true
	t.headPrompt, t.headPromptOK = firstPrompt(b[:min(len(b), headSize)])
}

// writeEvents passes complete SSE events on, except the usage chunk, and
// holds back the start of an event not yet complete: an SSE client acts on
// an event only once its blank line arrives, so nothing reaches it later
// than it could be used.
func (t *tap) writeEvents(b []byte) (int, error) {
	// Most writes are whole events (reverse_proxy flushes each one) and no
	// usage chunk: one scan of the write passes it.
	if len(t.held) == 0 && endsAtEvent(b) && !isUsageChunk(b) {
		if err := t.pass(b); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	data := b
	if len(t.held) > 0 {
		t.held = append(t.held, b...)
		data = t.held
	}
	run, i := 0, 0 // data[run:i] is complete events not yet written
	for {
		n := eventEnd(data[i:])
		if n < 0 {
			break
		}
		if ev := data[i : i+n]; isUsageChunk(ev) {
			t.dropped, t.droppedOK = readUsage(ev)
			if err := t.pass(data[run:i]); err != nil {
				return 0, err
			}
			run = i + n
		}
		i += n
	}
	if err := t.pass(data[run:i]); err != nil {
		return 0, err
	}
	rest := data[i:]
	if len(rest) > maxHeldEvent {
		t.filtering = false
		t.held = nil
		if err := t.pass(rest); err != nil {
			return 0, err
		}
		return len(b), nil
	}
	t.held = append(t.held[:0], rest...)
	return len(b), nil
}

func (t *tap) pass(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	_, err := t.w.Write(p)
	return err
}

// endsAtEvent reports whether b is whole events: eventEnd, from b's start
// on, ends its last one at b's end. That holds when b ends with a blank line
// (LF LF, or CRLF CRLF) after a byte that is neither CR nor LF; other ends
// are left to eventEnd.
func endsAtEvent(b []byte) bool {
	n := len(b)
	switch {
	case n >= 3 && b[n-1] == '\n' && b[n-2] == '\n':
		return b[n-3] != '\n' && b[n-3] != '\r'
	case n >= 5 && b[n-1] == '\n' && b[n-2] == '\r' && b[n-3] == '\n' && b[n-4] == '\r':
		return b[n-5] != '\n' && b[n-5] != '\r'
	}
	return false
}

// eventEnd is the length of the first SSE event in b, its blank line
// included, or -1 when b holds no complete event. Lines end in LF or CRLF
// (sse-starlette, behind llama-cpp-python and others, sends CRLF).
func eventEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		j += i
		switch {
		case j+1 < len(b) && b[j+1] == '\n':
			return j + 2
		case j+2 < len(b) && b[j+1] == '\r' && b[j+2] == '\n':
			return j + 3
		}
		i = j + 1
	}
}

// isUsageChunk reports whether an SSE event is the chunk include_usage adds:
// empty choices and a usage object. It runs on every write of the stream,
// so it looks for the two members by hand instead of decoding the event,
// starting from the rare byte: an empty array's '['. On several events it
// is true when one of them is the usage chunk (and may be otherwise: the
// members may be in different events).
func isUsageChunk(event []byte) bool {
	for i := 0; i < len(event); {
		j := bytes.IndexByte(event[i:], '[')
		if j < 0 {
			return false
		}
		j += i
		i = j + 1
		if k := skipSpace(event, j+1); k >= len(event) || event[k] != ']' {
			continue
		}
		colon := skipSpaceBack(event, j-1)
		if colon < 0 || event[colon] != ':' {
			continue
		}
		keyEnd := skipSpaceBack(event, colon-1) + 1
		if start := keyEnd - len(choicesKey); start >= 0 && bytes.Equal(event[start:keyEnd], choicesKey) && !escapedAt(event, start) {
			return keyValue(event, 0, usageKey, isObjectStart) >= 0
		}
	}
	return false
}

// skipSpaceBack returns the index of the last non-whitespace byte at or
// before i, or -1.
func skipSpaceBack(b []byte, i int) int {
	for i >= 0 && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i--
	}
	return i
}

// finish meters the request once next has returned with err, and returns
// the record.
func (t *tap) finish(err error) core.Usage {
	if t.filtering && len(t.held) > 0 {
		_ = t.pass(t.held) // the stream ended inside an event
	}
	u := t.usage
	u.Status = t.status
	if u.Status == 0 {
		u.Status = http.StatusOK
		if err != nil {
			u.Status = http.StatusInternalServerError
			var he caddyhttp.HandlerError
			if errors.As(err, &he) && he.StatusCode != 0 {
				u.Status = he.StatusCode
			}
		}
	}
	u.Latency = time.Since(u.Time)
	if t.count && u.Status/100 == 2 && !t.hijacked {
		var tail []byte
		if t.tail != nil {
			tail = *t.tail
		}
		n, ok := t.dropped, t.droppedOK
		if !ok {
			n, ok = readTailUsage(tail)
		}
		if ok && !n.hasPrompt {
			if !t.headRead { // the tail still starts where the answer did
				t.readHead(tail)
			}
			if t.headPromptOK {
				n.prompt, n.hasPrompt = t.headPrompt, true
				n.total = n.prompt + n.completion
			}
		}
		if ok {
			u.PromptTokens, u.CompletionTokens, u.TotalTokens = n.prompt, n.completion, n.total
		} else {
			// About four bytes a token, for English text and JSON alike.
			u.PromptTokens, u.CompletionTokens = (t.requestBytes+3)/4, (t.wrote+3)/4
			u.TotalTokens, u.Estimated = u.PromptTokens+u.CompletionTokens, true
		}
	}
	if t.tail != nil {
		*t.tail = (*t.tail)[:0]
		tailPool.Put(t.tail)
		t.tail = nil
	}
	t.meter.Meter(u)
	return u
}

// tokenCount is what a backend reported.
type tokenCount struct {
	prompt, completion, total int64
	hasPrompt                 bool // the prompt count was reported
}

// usageWindow is how much of the tail's end readTailUsage reads first: the
// last object or chunk, which carries the usage.
const usageWindow = 4 << 10

// readTailUsage is readUsage on the newest usageWindow bytes of the tail,
// then on all of it.
func readTailUsage(tail []byte) (tokenCount, bool) {
	if len(tail) > usageWindow {
		if n, ok := readUsage(tail[len(tail)-usageWindow:]); ok {
			return n, true
		}
	}
	return readUsage(tail)
}

// readUsage finds the token count at the end of an answer: the last "usage"
// object (a JSON answer, the last SSE chunk that has one), else the last
// Ollama counts (the final object of a JSON or NDJSON answer). The tail may
// start anywhere, even inside a string, so only a key whose quote is not
// escaped counts: an unescaped quote never sits inside a JSON string.
func readUsage(tail []byte) (tokenCount, bool) {
	var last tokenCount
	found := false
	for v := keyValue(tail, 0, usageKey, isObjectStart); v >= 0; v = keyValue(tail, v, usageKey, isObjectStart) {
		if n, ok := usageCounts(tail[v:]); ok {
			last, found = n, true
		}
	}
	if found {
		return last, true
	}
	prompt, okPrompt := lastCount(tail, promptEvalKey)
	completion, okCompletion := lastCount(tail, evalKey)
	if !okPrompt && !okCompletion {
		return tokenCount{}, false
	}
	return tokenCount{prompt, completion, prompt + completion, okPrompt}, true
}

// firstPrompt is the input tokens of the first usage member in head, when
// it is an object that reports them (Anthropic's message_start). Only the
// first counts: an OpenAI stream has a usage null in each chunk, and none of
// them is worth reading.
func firstPrompt(head []byte) (int64, bool) {
	v := keyValue(head, 0, usageKey, isValueStart)
	if v < 0 || head[v] != '{' {
		return 0, false
	}
	n, ok := usageCounts(head[v:])
	return n.prompt, ok && n.hasPrompt
}

// usageCounts reads the usage object b starts with: OpenAI's prompt_tokens,
// completion_tokens and total_tokens (chat, completions, embeddings), or the
// input_tokens and output_tokens of the Responses and Anthropic APIs, where
// Anthropic's cache_creation_input_tokens and cache_read_input_tokens add to
// the prompt (OpenAI's prompt_tokens count cached tokens too). Other members
// (prompt_tokens_details …) are skipped. It is read by hand: this runs once per model request, and
// encoding/json would allocate.
func usageCounts(b []byte) (tokenCount, bool) {
	var n tokenCount
	var found, haveTotal bool
	var cached int64 // Anthropic's cache writes and reads, not in its input_tokens
	i := skipSpace(b, 1)
	if i < len(b) && b[i] == '}' {
		return n, false
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return n, false
		}
		end := stringEnd(b, i)
		if end < 0 {
			return n, false
		}
		key := b[i+1 : end-1]
		if i = skipSpace(b, end); i >= len(b) || b[i] != ':' {
			return n, false
		}
		i = skipSpace(b, i+1)
		j := skipJSONValue(b, i)
		if j < 0 {
			return n, false
		}
		if v, ok := parseCount(b[i:j]); ok {
			switch string(key) {
			case "prompt_tokens", "input_tokens":
				n.prompt, n.hasPrompt, found = v, true, true
			case "completion_tokens", "output_tokens":
				n.completion, found = v, true
			case "total_tokens":
				n.total, found, haveTotal = v, true, true
			case "cache_creation_input_tokens", "cache_read_input_tokens":
				cached += v
			}
		}
		switch i = skipSpace(b, j); {
		case i >= len(b):
			return n, false
		case b[i] == '}':
			if n.hasPrompt {
				// The prompt the model read, as OpenAI's prompt_tokens
				// counts it: cached tokens included.
				n.prompt += cached
			}
			if !haveTotal {
				n.total = n.prompt + n.completion
			}
			return n, found
		case b[i] != ',':
			return n, false
		}
		i = skipSpace(b, i+1)
	}
}

// parseCount reads a token count: decimal digits, at most 18 of them (no
// overflow). Unlike strconv.ParseInt it allocates nothing when b is no
// number, as a null or an object member is.
func parseCount(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// stringEnd is the index just past the JSON string whose quote is at b[i],
// or -1 when b ends first.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipJSONValue is the index just past the JSON value at b[i] (checked
// loosely: the backend wrote it), or -1 when b ends inside it.
func skipJSONValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				if i = stringEnd(b, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	}
	for ; i < len(b); i++ { // a number, true, false or null
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
	}
	return -1
}

// The members the tap looks for, with their quotes.
var (
	usageKey      = []byte(`"usage"`)
	choicesKey    = []byte(`"choices"`)
	promptEvalKey = []byte(`"prompt_eval_count"`)
	evalKey       = []byte(`"eval_count"`)
)

func isObjectStart(c byte) bool { return c == '{' }
func isDigit(c byte) bool       { return c >= '0' && c <= '9' }
func isValueStart(byte) bool    { return true }

// keyValue returns where the value of the first member named key after
// b[from] starts, when its first byte passes accept; -1 when there is none.
// It searches forward (bytes.Index is vectorised; LastIndex is not).
func keyValue(b []byte, from int, key []byte, accept func(byte) bool) int {
	for from < len(b) {
		i := bytes.Index(b[from:], key)
		if i < 0 {
			return -1
		}
		i += from
		from = i + len(key)
		if escapedAt(b, i) {
			continue
		}
		j := skipSpace(b, from)
		if j >= len(b) || b[j] != ':' {
			continue
		}
		if j = skipSpace(b, j+1); j < len(b) && accept(b[j]) {
			return j
		}
	}
	return -1
}

// lastCount is the non-negative integer value of the last member named key.
func lastCount(b []byte, key []byte) (n int64, ok bool) {
	for v := keyValue(b, 0, key, isDigit); v >= 0; v = keyValue(b, v, key, isDigit) {
		end := v
		for end < len(b) && isDigit(b[end]) {
			end++
		}
		if c, okCount := parseCount(b[v:end]); okCount {
			n, ok = c, true
		}
	}
	return n, ok
}

// escapedAt reports whether the quote at b[i] is escaped: an odd number of
// backslashes precedes it.
func escapedAt(b []byte, i int) bool {
	n := 0
	for i-n-1 >= 0 && b[i-n-1] == '\\' {
		n++
	}
	return n%2 == 1
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// Interface guards
var (
	_ http.Flusher  = (*tap)(nil)
	_ http.Hijacker = (*tap)(nil)
	_ io.ReaderFrom = (*tap)(nil)
)
