package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/gatehouse/gatehouse/refusal"
	"io"
	"mime"
	"net/http"
	"strings"
)

// Problem is the refusal package's problem detail: the error type the shared
// operations return, so API and pages answer alike.
type Problem = refusal.Problem

func problem(status int, code, title, detail string) *Problem {
	return refusal.New(status, code, title, detail)
}

func badRequest(detail string) *Problem {
	return problem(http.StatusBadRequest, "invalid_request", "Invalid request", detail)
}

func notFound(what string) *Problem {
	return problem(http.StatusNotFound, "not_found", "Not found", what+" not found")
}

func conflict(code, detail string) *Problem {
	return problem(http.StatusConflict, code, "Conflict", detail)
}

func unavailable(detail string) *Problem {
	return problem(http.StatusServiceUnavailable, "unavailable", "Service unavailable", detail)
}

func writeProblem(w http.ResponseWriter, p *Problem) { refusal.Write(w, p) }

// writeError answers err as a problem; anything that is not a *Problem is a 503
// because it means a dependency failed, and the details go to the log only.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var p *Problem
	if errors.As(err, &p) {
		writeProblem(w, p)
		return
	}
	a.logError(r, err)
	writeProblem(w, unavailable("Gatehouse could not complete the request; try again shortly"))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// maxBodyBytes bounds every JSON request body of the API.
const maxBodyBytes = 64 << 10

// decodeJSON reads one JSON object into dst. An empty body leaves dst as is
// when allowEmpty; unknown fields, trailing data, a wrong content type and an
// oversized body are refused with a problem.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any, allowEmpty bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return problem(http.StatusRequestEntityTooLarge, "body_too_large", "Request body too large",
				fmt.Sprintf("the body must be at most %d bytes", maxBodyBytes))
		}
		return badRequest("could not read the request body")
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		if allowEmpty {
			return nil
		}
		return problem(http.StatusBadRequest, "invalid_json", "Invalid JSON", "a JSON object body is required")
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return problem(http.StatusUnsupportedMediaType, "unsupported_media_type", "Unsupported media type",
				"send the body as application/json")
		}
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return problem(http.StatusBadRequest, "invalid_json", "Invalid JSON", "the body is not valid JSON for this route: "+err.Error())
	}
	if dec.More() {
		return problem(http.StatusBadRequest, "invalid_json", "Invalid JSON", "unexpected data after the JSON object")
	}
	return nil
}
