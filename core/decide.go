package core

import (
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// DecisionRequest is what the policy is asked about.
type DecisionRequest struct {
	Subject *Subject
	// Method is the method the backend will act on, when it is not r.Method
	// (an HTTP/2 websocket's CONNECT reaches it as a GET).
	Method string
	// Path and PathFolded are CleanPath(r.URL.Path) and its folding, when the
	// caller has worked them out already (the guard has).
	Path, PathFolded string
	APIRoute         string // "" for backend requests
	// Route is the backend route the caller matched in Routes (nil: none).
	// When Routes is the current engine's table the policy is handed the
	// route instead of matching it again; a decision made again under a
	// newer policy (the in-flight watcher's) matches afresh.
	Route  *policy.Route
	Routes *policy.RouteTable
	Target *policy.Target
	Change *policy.Change
	Model  *string
}

// Decide asks the policy. Any error is ErrUnavailable: the caller refuses.
// Backend decisions of a cacheable policy are remembered; with a split one
// (policy.Engine.Split) the default rules' part is, and the extension rules
// are asked on every request.
func (rt *Runtime) Decide(r *http.Request, d DecisionRequest) (policy.Decision, error) {
	defer rt.metrics.ObserveDecide(time.Now())
	engine := rt.Policy()
	reqPath, folded := d.Path, d.PathFolded
	if reqPath == "" {
		reqPath, folded = CleanPath(r.URL.Path), ""
	}
	method := d.Method
	if method == "" {
		method = strings.ToUpper(r.Method)
	}
	backend := d.APIRoute == "" && d.Target == nil && d.Change == nil
	split := backend && engine.Split()
	cacheable := backend && (engine.Cacheable() || split)
	var key decisionKey
	var in *policy.Input
	dec, cached := policy.Decision{}, false
	if cacheable {
		key = newDecisionKey(d.Subject, method, reqPath, d.Model)
		dec, cached = rt.decisions.get(engine, key)
	}
	if !cached {
		in = policyInput(r, d, engine, method, reqPath, folded)
		var err error
		if dec, err = engine.DecideBase(r.Context(), in); err != nil {
			return policy.Decision{}, fmt.Errorf("%w: policy: %v", ErrUnavailable, err)
		}
		if cacheable {
			rt.decisions.put(engine, key, dec)
		}
	}
	if split && dec.Allow {
		if in == nil {
			in = policyInput(r, d, engine, method, reqPath, folded)
		}
		var err error
		if dec, err = engine.WithExtensions(r.Context(), in, dec); err != nil {
			return policy.Decision{}, fmt.Errorf("%w: policy: %v", ErrUnavailable, err)
		}
	}
	return enforceStepUp(dec, d.Subject, time.Now()), nil
}

// policyInput is what the policy sees of a request.
func policyInput(r *http.Request, d DecisionRequest, engine *policy.Engine, method, reqPath, folded string) *policy.Input {
	if folded == "" {
		folded = policy.FoldPath(reqPath)
	}
	in := &policy.Input{
		Request: policy.Request{
			Method:     method,
			Path:       reqPath,
			PathFolded: folded,
			Host:       r.Host,
			Query:      r.URL.RawQuery,
			Headers:    lowerHeaders(r.Header),
		},
		Target: d.Target,
		Change: d.Change,
		Model:  d.Model,
		NowNS:  time.Now().UnixNano(),
	}
	if d.APIRoute != "" {
		route := d.APIRoute
		in.APIRoute = &route
	} else if d.Routes != nil && d.Routes == engine.Routes() {
		key := ""
		if d.Route != nil {
			key = d.Route.Key
		}
		in.Route = &key
	}
	if s := d.Subject; s != nil {
		in.Subject = &policy.Subject{
			ID:     s.User.ID,
			Email:  s.User.Email,
			Name:   s.User.Name,
			Role:   s.User.Role,
			Status: s.User.Status,
			Auth:   s.Auth,
			// AuthContext is for custom rules; a policy that reads it is
			// not cached (policy.decisionsCacheable).
			AuthContext: authContextOf(s),
		}
		if t := s.Token; t != nil {
			in.Subject.Token = &policy.Token{ID: t.ID, Kind: t.Kind, Scope: t.Scope, Models: t.Models}
		}
	}
	return in
}

// CleanPath is the path the policy and the guard's routes see: "//secret",
// "/secret/" and "/a/../secret" are all "/secret", so a rule or a model route
// cannot be stepped around by spelling the path differently. The request
// itself goes upstream unchanged.
func CleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	return path.Clean(p)
}

func lowerHeaders(h http.Header) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		if strings.EqualFold(k, "Cookie") || strings.EqualFold(k, "Authorization") {
			continue // credentials never reach the policy input
		}
		out[strings.ToLower(k)] = strings.Join(v, ", ")
	}
	return out
}
