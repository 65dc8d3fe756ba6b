package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/gatehouse/gatehouse/actions"
	"github.com/gatehouse/gatehouse/refusal"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decodeJSON reads one JSON object into dst. An empty body leaves dst as is
// when allowEmpty; unknown fields, trailing data, a wrong content type and an
// oversized body are refused with a problem.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any, allowEmpty bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, actions.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return refusal.New(http.StatusRequestEntityTooLarge, "body_too_large", "Request body too large",
				fmt.Sprintf("the body must be at most %d bytes", actions.MaxBodyBytes))
		}
		return refusal.BadRequest("could not read the request body")
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		if allowEmpty {
			return nil
		}
		return refusal.New(http.StatusBadRequest, "invalid_json", "Invalid JSON", "a JSON object body is required")
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return refusal.New(http.StatusUnsupportedMediaType, "unsupported_media_type", "Unsupported media type",
				"send the body as application/json")
		}
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return refusal.New(http.StatusBadRequest, "invalid_json", "Invalid JSON", "the body is not valid JSON for this route: "+err.Error())
	}
	if dec.More() {
		return refusal.New(http.StatusBadRequest, "invalid_json", "Invalid JSON", "unexpected data after the JSON object")
	}
	return nil
}
