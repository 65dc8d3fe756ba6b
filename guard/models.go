package guard

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/modelreq"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/refusal"
)

// readModel finds the model a request names where its route says, leaving
// the body intact for the upstream. It returns the problem to answer when the
// body is too large or malformed, when the model is named ambiguously (so the
// guard and the backend can never disagree on it), or when a route that
// needs a model names none.
func (g *Guard) readModel(r *http.Request, route *policy.Route, cleaned string) (model string, found bool, p *refusal.Problem) {
	var err error
	switch route.ModelFrom {
	case policy.ModelFromBody:
		model, found, err = modelreq.Extract(r, g.maxBody, route.ModelKeys)
	case policy.ModelFromMultipart:
		model, found, err = modelreq.ExtractMultipart(r, g.maxBody, route.ModelKeys)
	case policy.ModelFromQuery:
		model, found, err = modelreq.ModelFromQuery(r.URL.RawQuery, route.ModelKeys)
	case policy.ModelFromPath:
		model = route.ModelFromCleanPath(cleaned)
		found = model != ""
	}
	keys := `"` + strings.Join(route.ModelKeys, `" or "`) + `"`
	switch {
	case errors.Is(err, modelreq.ErrBodyTooLarge):
		return "", false, refusal.New(http.StatusRequestEntityTooLarge, "body_too_large", "Request body too large",
			fmt.Sprintf("model requests are limited to %d bytes", g.maxBody))
	case errors.Is(err, modelreq.ErrAmbiguousModel):
		return "", false, refusal.New(http.StatusBadRequest, "ambiguous_model", "Ambiguous model",
			fmt.Sprintf("the request must name the model once, as a string in %s (keys compared case-insensitively)", keys))
	case errors.Is(err, modelreq.ErrInvalidForm):
		return "", false, refusal.New(http.StatusBadRequest, "invalid_request", "Invalid request", err.Error())
	case err != nil:
		return "", false, refusal.New(http.StatusBadRequest, "invalid_json", "Invalid JSON", "a model request's body must be one JSON object")
	case (!found || model == "") && !route.ModelOptional:
		// An empty model is no model: some backends then serve their default.
		return "", false, refusal.New(http.StatusBadRequest, "model_required", "Model required",
			fmt.Sprintf("the request must name a model in %s", keys))
	case found && model == "":
		found = false
	}
	return model, found, nil
}

// filterListing passes a model listing through, keeping only the models the
// caller may use. A listing it cannot read is refused (502) rather than
// passed unfiltered.
func (g *Guard) filterListing(w http.ResponseWriter, r *http.Request, dr core.DecisionRequest, next func(http.ResponseWriter, *http.Request) error) error {
	// Ask for an uncompressed listing so it can be read.
	r.Header.Del("Accept-Encoding")
	rec := newRecorder()
	if err := next(rec, r); err != nil {
		return err
	}
	if rec.overflow {
		g.rt.Logger.Warn("model listing larger than the bound; refusing it", zap.String("path", r.URL.Path), zap.Int("bound", maxListingBytes))
		g.problem(w, r, http.StatusBadGateway, "bad_listing", "Unreadable model listing",
			fmt.Sprintf("the backend's model listing is larger than %d bytes", maxListingBytes))
		return nil
	}
	if rec.status/100 != 2 {
		rec.copyTo(w, rec.body.Bytes())
		return nil
	}
	allow := func(model string) (bool, error) {
		m := model
		d := dr
		d.Model = &m
		dec, err := g.rt.Decide(r, d)
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
		g.problem(w, r, http.StatusBadGateway, "bad_listing", "Unreadable model listing",
			"the backend's model listing could not be filtered")
		return nil
	}
	rec.copyTo(w, filtered)
	return nil
}

// maxListingBytes bounds a model listing the guard buffers to filter; a
// larger one is refused rather than held in memory or passed unfiltered.
const maxListingBytes = 16 << 20

// recorder buffers an upstream response, up to maxListingBytes.
type recorder struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	overflow bool
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
	if rec.overflow || rec.body.Len()+len(b) > maxListingBytes {
		rec.overflow = true
		rec.body.Reset()
		return 0, errListingTooLarge
	}
	return rec.body.Write(b)
}

var errListingTooLarge = errors.New("model listing too large")

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
