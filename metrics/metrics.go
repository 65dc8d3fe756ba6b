// Package metrics holds Gatehouse's Prometheus collectors (spec §9): one Set
// per runtime, registered in the registry of the Caddy configuration that
// runs it, so Caddy's /metrics (the admin endpoint's and the metrics
// handler's) serves them. Every name starts with gatehouse_ and every label
// is bounded: route kinds, codes, results, caches, limits and the first
// maxModels models; never a user, a session or a token. The hot path only
// increments counters resolved beforehand. Any package may import it; it
// imports only client_golang.
package metrics

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "gatehouse"

// Bounds of the labels whose values come from configuration or traffic
// rather than from this code: past them a value is counted as Other.
const (
	maxModels    = 50
	maxDecisions = 256 // (route kind, code) pairs
	maxLimits    = 32
	maxChannels  = 8
	maxLogins    = 32
)

// Other stands for every label value past a label's bound.
const Other = "other"

// Credentials that Identify reads, for ObserveIdentify.
const (
	Token Credential = iota
	Session
	credentials
)

// Credential is what a request was identified by.
type Credential int

var credentialNames = [credentials]string{Token: "token", Session: "session"}

// Latency buckets: a cached bearer decision takes microseconds, one OPA
// evaluation a few hundred, a store read milliseconds.
var latencyBuckets = []float64{10e-6, 100e-6, 250e-6, 1e-3, 10e-3, 100e-3, 1}

// Sources are the figures a Set reads when it is scraped.
type Sources struct {
	// Caches report the hits and misses of each named cache so far.
	Caches map[string]func() (hits, misses uint64)
	// RevocationAge is how old the revocation list is (what max_staleness bounds).
	RevocationAge func() time.Duration
	MaxStaleness  time.Duration
	// Fanout says whether Redis announcements are configured: only then is
	// gatehouse_fanout_healthy reported.
	Fanout bool
}

// Set is the collectors of one runtime. It is a prometheus.Collector; its
// methods are safe for concurrent use, and a nil *Set records nothing.
type Set struct {
	collectors []prometheus.Collector

	decisions       *bounded[decisionKey, prometheus.Counter]
	decideSeconds   prometheus.Histogram
	identifySeconds [credentials]prometheus.Observer
	fanoutHealthy   prometheus.Gauge
	outboxBacklog   prometheus.Gauge
	deliveries      *bounded[deliveryKey, prometheus.Counter]
	logins          *bounded[string, prometheus.Counter]
	quotaRefusals   *bounded[string, prometheus.Counter]
	tokensMetered   *bounded[string, [2]prometheus.Counter] // prompt, completion
	activeSessions  prometheus.Gauge

	cacheHits, cacheMisses *prometheus.Desc
	caches                 map[string]func() (hits, misses uint64)
}

type decisionKey struct{ route, code string }

type deliveryKey struct{ channel, result string }

// New returns the collectors, unregistered.
func New(src Sources) *Set {
	s := &Set{
		cacheHits: prometheus.NewDesc(namespace+"_cache_hits_total",
			"Lookups answered by a cache, by cache.", []string{"cache"}, nil),
		cacheMisses: prometheus.NewDesc(namespace+"_cache_misses_total",
			"Lookups a cache could not answer, by cache.", []string{"cache"}, nil),
		caches: src.Caches,
	}

	decisions := s.counterVec("decisions_total", "Requests the guard decided on, by route kind and code (allowed, or the refusal's code).", "route", "code")
	s.decisions = newBounded(maxDecisions, func(k decisionKey) prometheus.Counter {
		return decisions.WithLabelValues(k.route, k.code)
	}, func(k decisionKey) decisionKey { return decisionKey{k.route, Other} })

	s.decideSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "decision_duration_seconds",
		Help: "Time to ask the policy for one decision (cached or evaluated).", Buckets: latencyBuckets})
	identify := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "identify_duration_seconds",
		Help: "Time to identify a request's caller, by credential.", Buckets: latencyBuckets}, []string{"credential"})
	for c, name := range credentialNames {
		s.identifySeconds[c] = identify.WithLabelValues(name)
	}
	s.collectors = append(s.collectors, s.decideSeconds, identify)

	if src.RevocationAge != nil {
		s.collectors = append(s.collectors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "revocation_list_age_seconds",
			Help: "Age of the in-memory revocation list; bearer tokens are refused while it is older than max_staleness."},
			func() float64 { return src.RevocationAge().Seconds() }))
	}
	s.collectors = append(s.collectors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "revocation_max_staleness_seconds",
		Help: "The configured max_staleness."}, func() float64 { return src.MaxStaleness.Seconds() }))
	if src.Fanout {
		s.fanoutHealthy = s.gauge("fanout_healthy", "1 while this instance hears its own heartbeat over Redis, 0 while announcements may be lost.")
	}
	s.outboxBacklog = s.gauge("outbox_backlog", "Notifications not delivered yet (store count, refreshed every few seconds).")
	s.activeSessions = s.gauge("active_sessions", "Browser sessions neither expired nor idle (store count, refreshed every few seconds).")

	deliveries := s.counterVec("outbox_deliveries_total", "Notification delivery attempts, by channel and result (delivered, failed).", "channel", "result")
	s.deliveries = newBounded(maxChannels*2, func(k deliveryKey) prometheus.Counter {
		return deliveries.WithLabelValues(k.channel, k.result)
	}, func(k deliveryKey) deliveryKey { return deliveryKey{Other, k.result} })
	logins := s.counterVec("logins_total", "Sign-in callbacks, by result (ok, or the failure's code).", "result")
	s.logins = newBounded(maxLogins, func(r string) prometheus.Counter { return logins.WithLabelValues(r) }, otherString)
	quota := s.counterVec("quota_refusals_total", "Requests refused by a quota, by limit.", "limit")
	s.quotaRefusals = newBounded(maxLimits, func(l string) prometheus.Counter { return quota.WithLabelValues(l) }, otherString)
	// The values known in advance are resolved now, so that their series
	// show (at 0) before the first event.
	for _, channel := range []string{"webhook", "email"} {
		s.deliveries.get(deliveryKey{channel, "delivered"})
		s.deliveries.get(deliveryKey{channel, "failed"})
	}
	for _, limit := range []string{"requests_per_minute", "tokens_per_minute", "tokens_per_day", "tokens_per_month", "concurrent_requests"} {
		s.quotaRefusals.get(limit)
	}
	metered := s.counterVec("tokens_metered_total", "Tokens metered on allowed requests, by model (the first 50 seen, then other) and kind (prompt, completion).", "model", "kind")
	s.tokensMetered = newBounded(maxModels, func(m string) [2]prometheus.Counter {
		return [2]prometheus.Counter{metered.WithLabelValues(m, "prompt"), metered.WithLabelValues(m, "completion")}
	}, otherString)
	return s
}

func otherString(string) string { return Other }

func (s *Set) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	s.collectors = append(s.collectors, v)
	return v
}

func (s *Set) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help})
	s.collectors = append(s.collectors, g)
	return g
}

// Register adds the set to reg (a Caddy configuration's registry). A set
// registered there already is no error, as in Caddy's own modules: a
// registry is new with every configuration, and a set belongs to one.
func (s *Set) Register(reg prometheus.Registerer) error {
	err := reg.Register(s)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) && are.ExistingCollector == prometheus.Collector(s) {
		return nil
	}
	return err
}

// Describe implements prometheus.Collector.
func (s *Set) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range s.collectors {
		c.Describe(ch)
	}
	ch <- s.cacheHits
	ch <- s.cacheMisses
}

// Collect implements prometheus.Collector.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	for _, c := range s.collectors {
		c.Collect(ch)
	}
	for name, stats := range s.caches {
		hits, misses := stats()
		ch <- prometheus.MustNewConstMetric(s.cacheHits, prometheus.CounterValue, float64(hits), name)
		ch <- prometheus.MustNewConstMetric(s.cacheMisses, prometheus.CounterValue, float64(misses), name)
	}
}

// Decision counts one decision of the guard: route is the route kind, code
// "allowed" or the refusal's code.
func (s *Set) Decision(route, code string) {
	if s != nil {
		s.decisions.get(decisionKey{route, code}).Inc()
	}
}

// Allowed is the code of a decision that let the request through.
const Allowed = "allowed"

// ObserveDecide records the time since start as one policy decision:
// `defer m.ObserveDecide(time.Now())`.
func (s *Set) ObserveDecide(start time.Time) {
	if s != nil {
		s.decideSeconds.Observe(time.Since(start).Seconds())
	}
}

// ObserveIdentify records the time since start as one identification by c.
func (s *Set) ObserveIdentify(c Credential, start time.Time) {
	if s != nil {
		s.identifySeconds[c].Observe(time.Since(start).Seconds())
	}
}

// FanoutHealthy records whether Redis announcements reach this instance.
func (s *Set) FanoutHealthy(healthy bool) {
	if s != nil && s.fanoutHealthy != nil {
		s.fanoutHealthy.Set(boolValue(healthy))
	}
}

// StoreCounts records the figures counted in the store: undelivered
// notifications and active sessions.
func (s *Set) StoreCounts(outboxBacklog, activeSessions int) {
	if s != nil {
		s.outboxBacklog.Set(float64(outboxBacklog))
		s.activeSessions.Set(float64(activeSessions))
	}
}

// Delivery counts one notification delivery attempt on channel (webhook,
// email), delivered or failed.
func (s *Set) Delivery(channel string, delivered bool) {
	if s == nil {
		return
	}
	result := "failed"
	if delivered {
		result = "delivered"
	}
	s.deliveries.get(deliveryKey{channel, result}).Inc()
}

// LoginOK is the result of a sign-in that started a session.
const LoginOK = "ok"

// Login counts one sign-in callback: LoginOK or the failure's code.
func (s *Set) Login(result string) {
	if s != nil {
		s.logins.get(result).Inc()
	}
}

// QuotaRefused counts one request refused by a quota; limit names the limit
// that refused it (requests_per_minute, tokens_per_day, concurrent, …).
func (s *Set) QuotaRefused(limit string) {
	if s != nil {
		s.quotaRefusals.get(limit).Inc()
	}
}

// NoModel is the model label of tokens metered on a request that named none.
const NoModel = "none"

// TokensMetered counts the tokens of one metered answer. Models past the
// first maxModels seen are counted as Other.
func (s *Set) TokensMetered(model string, prompt, completion int64) {
	if s == nil || prompt <= 0 && completion <= 0 {
		return
	}
	if model == "" {
		model = NoModel
	}
	c := s.tokensMetered.get(model)
	if prompt > 0 {
		c[0].Add(float64(prompt))
	}
	if completion > 0 {
		c[1].Add(float64(completion))
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Interface guards
var _ prometheus.Collector = (*Set)(nil)
