// Package refusal writes Gatehouse's refusals: RFC 9457 problem+json bodies
// with Gatehouse's error code, and the signature of the HTML error page shown
// to browsers. The guard and the HTTP API both answer through it; it imports
// nothing of Gatehouse, so anything may import it.
package refusal

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
)

// Problem is an RFC 9457 problem detail with Gatehouse's error code. It is
// also an error, so operations can return it and one place writes it.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
	// Challenge, when set, is sent as WWW-Authenticate (RFC 9470's step-up).
	Challenge string `json:"-"`
	// StepUp names the step-up rule a browser is sent to sign in for.
	StepUp string `json:"-"`
}

func (p *Problem) Error() string { return fmt.Sprintf("%d %s: %s", p.Status, p.Code, p.Detail) }

// New returns a problem whose type is urn:gatehouse:problem:<code>.
func New(status int, code, title, detail string) *Problem {
	return &Problem{Type: "urn:gatehouse:problem:" + code, Title: title, Status: status, Detail: detail, Code: code}
}

// Write answers with p as application/problem+json.
func Write(w http.ResponseWriter, p *Problem) {
	if p.Challenge != "" {
		w.Header().Set("WWW-Authenticate", p.Challenge)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// WriteProblem is Write(w, New(status, code, title, detail)).
func WriteProblem(w http.ResponseWriter, status int, code, title, detail string) {
	Write(w, New(status, code, title, detail))
}

// ErrorPage answers a browser with an HTML error page. The pages provide the
// real one; PlainErrorPage stands in where none was given.
type ErrorPage func(w http.ResponseWriter, status int, title, message string)

var plain = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title></head>
<body><h1>{{.Title}}</h1><p>{{.Message}}</p></body></html>
`))

// PlainErrorPage is a minimal error page.
func PlainErrorPage(w http.ResponseWriter, status int, title, message string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = plain.Execute(w, struct{ Title, Message string }{title, message})
}

// The problems every part of Gatehouse answers alike.

// BadRequest is 400 invalid_request.
func BadRequest(detail string) *Problem {
	return New(http.StatusBadRequest, "invalid_request", "Invalid request", detail)
}

// Validation is 400 validation_failed: the request was read, a value is wrong.
func Validation(detail string) *Problem {
	return New(http.StatusBadRequest, "validation_failed", "Validation failed", detail)
}

// NotFound is 404 not_found for what ("user", "token", …).
func NotFound(what string) *Problem {
	return New(http.StatusNotFound, "not_found", "Not found", what+" not found")
}

// Conflict is 409 with code: the request clashes with the current state.
func Conflict(code, detail string) *Problem {
	return New(http.StatusConflict, code, "Conflict", detail)
}

// Forbidden is 403 with code.
func Forbidden(code, detail string) *Problem {
	return New(http.StatusForbidden, code, "Forbidden", detail)
}

// Unavailable is 503 unavailable: a dependency failed; the cause is logged, not shown.
func Unavailable(detail string) *Problem {
	return New(http.StatusServiceUnavailable, "unavailable", "Service unavailable", detail)
}

// ErrUnavailable is what a caller is shown when an error is not a Problem.
var ErrUnavailable = Unavailable("Gatehouse could not complete the request; try again shortly")

// As returns err as a Problem, or nil when it is none (a dependency failed).
func As(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	return nil
}

// Dialect is the error shape a client's SDK reads. Every dialect keeps the
// problem fields; OpenAI and Ollama add the "error" member their official
// clients show (spec §6a).
type Dialect int

// The dialects.
const (
	// Plain is the problem alone, as application/problem+json.
	Plain Dialect = iota
	// OpenAI adds "error": {"message", "type", "code", "param"}, which the
	// OpenAI SDKs turn into their error's message, type and code.
	OpenAI
	// Ollama adds "error": "<message>" and answers as application/json: the
	// ollama clients read the message from there, and show any other
	// content type's whole body.
	Ollama
)

// The codes of quota refusals (429): a per-minute limit is rate_limited
// (OpenAI's rate_limit_exceeded), a per-day or per-month one quota_exceeded
// (OpenAI's insufficient_quota).
const (
	CodeRateLimited   = "rate_limited"
	CodeQuotaExceeded = "quota_exceeded"
)

// openAIError is OpenAI's error object.
type openAIError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Code    string  `json:"code"`
	Param   *string `json:"param"`
}

// modelCodes are the refusals about the request's model: OpenAI names the
// parameter at fault.
var modelCodes = map[string]bool{"model_not_allowed": true, "model_required": true, "ambiguous_model": true, "model_not_found": true}

// openAIType is OpenAI's error type for a status.
func openAIType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_exceeded"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

// WriteAs answers with p in dialect d.
func WriteAs(w http.ResponseWriter, d Dialect, p *Problem) {
	if d == Plain {
		Write(w, p)
		return
	}
	body := struct {
		*Problem
		Error any `json:"error"`
	}{Problem: p}
	contentType := "application/problem+json"
	switch d {
	case OpenAI:
		e := openAIError{Message: p.Detail, Type: openAIType(p.Status), Code: p.Code}
		if p.Code == CodeQuotaExceeded {
			e.Type = "insufficient_quota" // a day's or month's tokens: waiting a minute does not help
		}
		if modelCodes[p.Code] {
			param := "model"
			e.Param = &param
		}
		body.Error = e
	case Ollama:
		body.Error = p.Detail
		contentType = "application/json"
	}
	if p.Challenge != "" {
		w.Header().Set("WWW-Authenticate", p.Challenge)
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(body)
}

// InsufficientAuthentication is RFC 9470's 401 for a sign-in that does not
// meet a step-up rule: error="insufficient_user_authentication", with the
// acr_values and max_age (seconds) the caller's next sign-in must meet.
func InsufficientAuthentication(rule, detail string, acr []string, maxAgeS int64) *Problem {
	p := New(http.StatusUnauthorized, "insufficient_user_authentication", "Stronger sign-in required", detail)
	c := `Bearer realm="gatehouse", error="insufficient_user_authentication", error_description="` + strings.ReplaceAll(detail, `"`, `'`) + `"`
	if len(acr) > 0 {
		c += `, acr_values="` + strings.Join(acr, " ") + `"`
	}
	if maxAgeS > 0 {
		c += `, max_age=` + strconv.FormatInt(maxAgeS, 10)
	}
	p.Challenge, p.StepUp = c, rule
	return p
}
