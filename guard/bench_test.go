package guard_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/core"
	"github.com/gatehouse/gatehouse/guard"
	"github.com/gatehouse/gatehouse/quota"
	"github.com/gatehouse/gatehouse/store"
)

// discardWriter is a ResponseWriter that keeps nothing, so the benchmarks
// measure the guard rather than a recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

func noopNext(http.ResponseWriter, *http.Request) error { return nil }

// benchServe runs the guard on a fresh request per iteration and checks the
// status it answered (0: passed to the upstream).
func benchServe(b *testing.B, f *fixture, newReq func() *http.Request, want int) {
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		w.status = 0
		if err := f.g.Serve(w, newReq(), noopNext); err != nil || w.status != want {
			b.Fatalf("status %d (want %d), err %v", w.status, want, err)
		}
	}
}

// benchRequest builds what net/http hands a handler for a typical API call;
// the guard rewrites headers, so every iteration needs a fresh one.
func benchRequest(u *url.URL, cookie string) *http.Request {
	h := http.Header{
		"Accept":       {"application/json"},
		"Content-Type": {"application/json"},
		"User-Agent":   {"bench/1.0"},
	}
	if cookie != "" {
		h["Cookie"] = []string{"theme=dark; " + cookie}
	}
	return &http.Request{Method: http.MethodGet, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Host: u.Host, RemoteAddr: "127.0.0.1:40000", RequestURI: u.RequestURI()}
}

func BenchmarkGuardSession(b *testing.B) {
	f := newFixture(b)
	c := f.session(f.approve(f.login("bob@example.com", false), "user", nil))
	cookie := c.Name + "=" + c.Value
	u, _ := url.Parse(publicURL + "/api/version")
	benchServe(b, f, func() *http.Request { return benchRequest(u, cookie) }, 0)
}

func BenchmarkGuardAnonymous(b *testing.B) {
	f := newFixture(b)
	u, _ := url.Parse(publicURL + "/api/version")
	benchServe(b, f, func() *http.Request { return benchRequest(u, "") }, http.StatusUnauthorized)
}

// BenchmarkGuardBearer is the hot path: an API token seen before (verified
// claims, decision and assertion all cached).
func BenchmarkGuardBearer(b *testing.B) {
	f := newFixture(b)
	u := f.approve(f.login("bob@example.com", false), "user", nil)
	benchBearer(b, f, f.token(u), "/api/version")
}

// BenchmarkGuardBearerNoIdentityHeaders is BenchmarkGuardBearer on a site
// with identity_headers none: no assertion is made.
func BenchmarkGuardBearerNoIdentityHeaders(b *testing.B) {
	f := newFixture(b)
	g, err := guard.New(context.Background(), f.rt, guard.Options{IdentityHeaders: []string{}})
	if err != nil {
		b.Fatal(err)
	}
	f.g = g
	u := f.approve(f.login("bob@example.com", false), "user", nil)
	benchBearer(b, f, f.token(u), "/api/version")
}

// token mints a personal API token for u with the permissions of its role.
func (f *fixture) token(u store.User) string {
	f.t.Helper()
	perms, err := f.rt.Policy().Permissions(context.Background(), u.Role)
	if err != nil {
		f.t.Fatal(err)
	}
	raw, _, err := f.rt.CreateToken(context.Background(), nil, &core.Subject{User: u, Auth: "session"}, core.NewToken{
		Name: "bench", Kind: store.TokenPersonal, Subject: &u, Allowed: perms, Role: u.Role, ExpiresIn: time.Hour,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return raw
}

// BenchmarkGuardSessionPolicyEveryRequest keeps the policy in the loop: an
// extra rule reads a header, so decisions cannot be cached and every request
// is evaluated by OPA.
func BenchmarkGuardSessionPolicyEveryRequest(b *testing.B) {
	rule := filepath.Join(b.TempDir(), "ext.rego")
	if err := os.WriteFile(rule, []byte("package gatehouse.ext\n\ndeny contains \"no\" if input.request.headers[\"x-block\"] == \"1\"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	f := newFixture(b, rule)
	if f.rt.Policy().Cacheable() {
		b.Fatal("a policy that reads headers must not be cached")
	}
	c := f.session(f.approve(f.login("bob@example.com", false), "user", nil))
	cookie := c.Name + "=" + c.Value
	u, _ := url.Parse(publicURL + "/api/version")
	benchServe(b, f, func() *http.Request { return benchRequest(u, cookie) }, 0)
}

// limitedToken is f.token for a user whose role and token both have
// quotas too high to reach, so every request is reserved and settled in two
// buckets, as the load script's are.
func (f *fixture) limitedToken(u store.User) string {
	f.t.Helper()
	high := quota.Limits{TokensPerDay: 1e12, RequestsPerMinute: 1e9}
	admin := f.admin()
	if _, _, err := f.rt.PutRole(context.Background(), nil, &core.Subject{User: admin, Auth: "session"}, u.Role, core.RoleSetting{Limits: &high}); err != nil {
		f.t.Fatal(err)
	}
	perms, err := f.rt.Policy().Permissions(context.Background(), u.Role)
	if err != nil {
		f.t.Fatal(err)
	}
	raw, _, err := f.rt.CreateToken(context.Background(), nil, &core.Subject{User: u, Auth: "session"}, core.NewToken{
		Name: "bench", Kind: store.TokenPersonal, Subject: &u, Allowed: perms, Role: u.Role, ExpiresIn: time.Hour, Limits: &high,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return raw
}

// BenchmarkGuardBearerQuota is BenchmarkGuardBearer with the quota checks
// on: the role's and the token's limits reserved and settled.
func BenchmarkGuardBearerQuota(b *testing.B) {
	f := newFixture(b)
	benchBearer(b, f, f.limitedToken(f.approve(f.login("bob@example.com", false), "user", nil)), "/v1/ping")
}

// benchBearer runs benchServe on GET path with the bearer token raw.
func benchBearer(b *testing.B, f *fixture, raw, path string) {
	target, _ := url.Parse(publicURL + path)
	benchServe(b, f, func() *http.Request {
		r := benchRequest(target, "")
		r.Header["Authorization"] = []string{"Bearer " + raw}
		return r
	}, 0)
}
