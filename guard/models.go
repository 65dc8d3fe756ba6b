package guard

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/admin"
	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/modelreq"
)

// readModel finds the model a request names, leaving the body intact for the
// upstream. It answers the request itself (and returns ok=false) when the body
// is too large, not JSON, or names the model ambiguously, so the guard and the
// backend can never disagree on the model.
func (g *Guard) readModel(w http.ResponseWriter, r *http.Request) (string, bool) {
	model, found, err := modelreq.Extract(r, g.maxBody)
	switch {
	case errors.Is(err, modelreq.ErrBodyTooLarge):
		admin.WriteProblem(w, http.StatusRequestEntityTooLarge, "body_too_large", "Request body too large",
			fmt.Sprintf("model requests are limited to %d bytes", g.maxBody))
		return "", false
	case errors.Is(err, modelreq.ErrAmbiguousModel):
		admin.WriteProblem(w, http.StatusBadRequest, "ambiguous_model", "Ambiguous model",
			`the body must name the model once, as a string in the top-level "model" field`)
		return "", false
	case err != nil:
		admin.WriteProblem(w, http.StatusBadRequest, "invalid_json", "Invalid JSON", "a model request's body must be one JSON object")
		return "", false
	case !found:
		admin.WriteProblem(w, http.StatusBadRequest, "model_required", "Model required", `the body must name a model in its top-level "model" field`)
		return "", false
	}
	return model, true
}

// filterListing passes a model listing through, keeping only the models the
// caller may use. A listing it cannot read is refused (502) rather than
// passed unfiltered.
func (g *Guard) filterListing(w http.ResponseWriter, r *http.Request, sub *core.Subject, next func(http.ResponseWriter, *http.Request) error) error {
	// Ask for an uncompressed listing so it can be read.
	r.Header.Del("Accept-Encoding")
	rec := newRecorder()
	if err := next(rec, r); err != nil {
		return err
	}
	if rec.status/100 != 2 {
		rec.copyTo(w, rec.body.Bytes())
		return nil
	}
	allow := func(model string) (bool, error) {
		m := model
		dec, err := g.rt.Decide(r, core.DecisionRequest{Subject: sub, Model: &m})
		if err != nil {
			return false, err
		}
		return dec.Allow, nil
	}
	filtered, err := modelreq.FilterListing(rec.body.Bytes(), allow)
	if errors.Is(err, core.ErrUnavailable) {
		g.unavailable(w, r, err)
		return nil
	}
	if err != nil {
		g.rt.Logger.Warn("model listing could not be filtered; refusing it", zap.String("path", r.URL.Path), zap.Error(err))
		admin.WriteProblem(w, http.StatusBadGateway, "bad_listing", "Unreadable model listing",
			"the backend's model listing could not be filtered")
		return nil
	}
	rec.copyTo(w, filtered)
	return nil
}

// recorder buffers an upstream response.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (rec *recorder) Header() http.Header { return rec.header }

func (rec *recorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.body.Write(b)
}

func (rec *recorder) copyTo(w http.ResponseWriter, body []byte) {
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Encoding")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	w.WriteHeader(rec.status)
	_, _ = w.Write(body)
}
