// Package metrics holds the service's Prometheus collectors: GraphQL
// operations, subscriptions, events, SQL timing and rate limiting. Every
// label value is bounded: values chosen by clients (operation names) are
// capped, anything else is mapped onto a fixed set.
//
// A nil *Metrics is valid and records nothing, so packages can take one
// without the tests that build them having to.
package metrics

import (
	"context"
	"regexp"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/internal/events"
	"github.com/parley-chat/parley/internal/viewcache"
)

// MaxOperationNames is how many distinct operation names one process labels
// metrics with; later names are labelled "other".
const MaxOperationNames = 200

// Label values that are not a client's operation name.
const (
	Anonymous = "anonymous" // an operation without a name
	Other     = "other"     // a name past the cap, or not a plain GraphQL name
	Unknown   = "unknown"   // an operation type not known (the document did not parse)
)

var (
	operationName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
	errorCode     = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)

	subscriptionFields = []string{"messageEvents", "inbox", "typing"}
	eventKinds         = []string{string(events.KindMessage), string(events.KindConversation), string(events.KindTyping)}
	operationTypes     = []string{"query", "mutation", "subscription"}
	rateLimits         = []string{"mutations", "auth", "connections"}
)

// Metrics are the service's own collectors.
type Metrics struct {
	reg prometheus.Registerer

	subscriptions   *prometheus.GaugeVec
	published       *prometheus.CounterVec
	delivered       *prometheus.CounterVec
	deliveryLatency *prometheus.HistogramVec
	opDuration      *prometheus.HistogramVec
	opErrors        *prometheus.CounterVec
	sqlDuration     prometheus.Histogram
	rateLimited     *prometheus.CounterVec
	rateLimitErrors prometheus.Counter
	wsOpen          prometheus.Gauge
	wsClosed        *prometheus.CounterVec
	payloads        *prometheus.CounterVec
	payloadsEncoded prometheus.Counter
	payloadsShared  prometheus.Counter
	// byKind holds the per-delivery children, resolved once: deliveries
	// are the hottest thing counted.
	byKind map[events.Kind]kindCollectors

	names *capped // operation names
	codes *capped // extensions.code values
}

// New registers the collectors with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		subscriptions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "parley_subscriptions_active",
			Help: "GraphQL subscriptions running on this replica, by root field.",
		}, []string{"field"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_events_published_total",
			Help: "Events this replica published to the broker after a committed change, by kind.",
		}, []string{"kind"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_events_delivered_total",
			Help: "Live events handed to a subscription's transport, by kind (one per subscriber; replayed and gap-filled events are not counted).",
		}, []string{"kind"}),
		deliveryLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "parley_event_delivery_latency_seconds",
			Help:    "Time from an event's publication (on any replica: includes clock skew between replicas) to its hand-off to a subscriber's transport, by kind.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"kind"}),
		opDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "parley_graphql_operation_duration_seconds",
			Help:    "GraphQL operations, from reading the request to the response (subscriptions: until the subscription is established), by operation name and type.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"operation", "type"}),
		opErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_graphql_errors_total",
			Help: "GraphQL errors returned to clients, by operation name and type and extensions.code.",
		}, []string{"operation", "type", "code"}),
		sqlDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "parley_sql_statement_duration_seconds",
			Help:    "Time the database took to answer a query or exec (for queries, until the first row is available).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parley_ratelimit_rejections_total",
			Help: "Requests refused by a rate limit, by limit (mutations, auth, connections).",
		}, []string{"limit"}),
		rateLimitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parley_ratelimit_errors_total",
			Help: "Rate limiter failures (Redis unavailable); the request was let through.",
		}),
		names: newCapped(operationName, MaxOperationNames),
		codes: newCapped(errorCode, 50),
	}
	m.wsOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "parley_ws_connections",
		Help: "Open WebSocket connections on this replica.",
	})
	m.wsClosed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_ws_closes_total",
		Help: "WebSocket connections closed by this replica, by close code (peer: the client closed or vanished; dead: no pong).",
	}, []string{"code"})
	reg.MustRegister(m.wsOpen, m.wsClosed)
	m.payloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "parley_subscription_payloads_total",
		Help: "Subscription event payloads handed to transports: encoded (executed for this subscriber) or shared (bytes reused from a subscriber with the same selection).",
	}, []string{"result"})
	reg.MustRegister(m.payloads)
	reg.MustRegister(m.subscriptions, m.published, m.delivered, m.deliveryLatency, m.opDuration, m.opErrors,
		m.sqlDuration, m.rateLimited, m.rateLimitErrors)
	// Series that exist from the start, so that rates and alerts see zeros
	// rather than nothing.
	for _, f := range subscriptionFields {
		m.subscriptions.WithLabelValues(f)
	}
	m.byKind = map[events.Kind]kindCollectors{}
	for _, k := range eventKinds {
		m.published.WithLabelValues(k)
		m.byKind[events.Kind(k)] = kindCollectors{delivered: m.delivered.WithLabelValues(k), latency: m.deliveryLatency.WithLabelValues(k)}
	}
	m.payloadsEncoded = m.payloads.WithLabelValues("encoded")
	m.payloadsShared = m.payloads.WithLabelValues("shared")
	for _, l := range rateLimits {
		m.rateLimited.WithLabelValues(l)
	}
	return m
}

// WatchHub exports the hub's count of events lost to lagging subscribers.
func (m *Metrics) WatchHub(h interface{ LaggingDrops() int64 }) {
	if m == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "parley_subscriber_dropped_events_total",
		Help: "Events not delivered to a subscription whose queue was full; it ends with SLOW_CONSUMER and resumes with `after`.",
	}, func() float64 { return float64(h.LaggingDrops()) }))
}

// WatchResponseCache exports the counters of the per-viewer response cache.
func (m *Metrics) WatchResponseCache(c interface{ Stats() viewcache.Stats }) {
	if m == nil {
		return
	}
	results := []struct {
		name string
		get  func(viewcache.Stats) int64
	}{
		{"hit", func(s viewcache.Stats) int64 { return s.Hits }},
		{"miss", func(s viewcache.Stats) int64 { return s.Misses }},
		{"stored", func(s viewcache.Stats) int64 { return s.Stores }},
		{"not_stored", func(s viewcache.Stats) int64 { return s.Discards }},
		{"invalidated", func(s viewcache.Stats) int64 { return s.Invalidations }},
		{"evicted", func(s viewcache.Stats) int64 { return s.Evictions }},
	}
	for _, r := range results {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "parley_response_cache_total",
			Help:        "Per-viewer response cache (RESPONSE_CACHE): lookups that hit or missed, answers stored or not stored (a change overlapped the execution, or too big), and answers dropped by a change.",
			ConstLabels: prometheus.Labels{"result": r.name},
		}, func() float64 { return float64(r.get(c.Stats())) }))
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "parley_response_cache_bytes",
		Help: "Bytes the per-viewer response cache holds (answers and their indexes, approximately).",
	}, func() float64 { return float64(c.Stats().Bytes) }))
}

// SubscriptionStarted counts a running subscription of a root field; call
// the returned func when it ends.
func (m *Metrics) SubscriptionStarted(field string) (ended func()) {
	if m == nil {
		return func() {}
	}
	g := m.subscriptions.WithLabelValues(oneOf(field, subscriptionFields))
	g.Inc()
	var once sync.Once
	return func() { once.Do(g.Dec) }
}

type kindCollectors struct {
	delivered prometheus.Counter
	latency   prometheus.Observer
}

// Delivered counts a live event handed to a subscriber's transport and how
// long after its publication that happened. publishedAt comes from the
// publishing replica's clock: a negative difference (skew) counts as 0.
func (m *Metrics) Delivered(kind events.Kind, publishedAt time.Time) {
	if m == nil {
		return
	}
	c, ok := m.byKind[kind]
	if !ok {
		c = kindCollectors{delivered: m.delivered.WithLabelValues(Other), latency: m.deliveryLatency.WithLabelValues(Other)}
	}
	c.delivered.Inc()
	if !publishedAt.IsZero() {
		c.latency.Observe(max(time.Since(publishedAt), 0).Seconds())
	}
}

// PayloadEncoded counts a subscription event executed and encoded for a
// subscriber; shared says it reused the bytes another subscriber with the
// same selection had encoded for the same event.
func (m *Metrics) PayloadEncoded(shared bool) {
	if m == nil {
		return
	}
	if shared {
		m.payloadsShared.Inc()
		return
	}
	m.payloadsEncoded.Inc()
}

// OperationName returns the label value of a client-chosen operation name.
func (m *Metrics) OperationName(name string) string {
	if name == "" {
		return Anonymous
	}
	if m == nil {
		return Other
	}
	return m.names.get(name, Other)
}

// OperationType returns the label value of an operation type.
func OperationType(t string) string {
	if t == "" {
		return Unknown
	}
	return oneOf(t, operationTypes)
}

// Operation records an operation's duration. name and typ are raw: they are
// bounded here.
func (m *Metrics) Operation(name, typ string, d time.Duration) {
	if m == nil {
		return
	}
	m.opDuration.WithLabelValues(m.OperationName(name), OperationType(typ)).Observe(d.Seconds())
}

// OperationError counts one error returned by an operation, by its
// extensions.code.
func (m *Metrics) OperationError(name, typ, code string) {
	if m == nil {
		return
	}
	if code == "" {
		code = "UNKNOWN"
	}
	m.opErrors.WithLabelValues(m.OperationName(name), OperationType(typ), m.codes.get(code, "OTHER")).Inc()
}

// SQL records one statement's duration.
func (m *Metrics) SQL(d time.Duration) {
	if m == nil {
		return
	}
	m.sqlDuration.Observe(d.Seconds())
}

// RateLimited counts a refusal by one of the limits (mutations, auth,
// connections).
func (m *Metrics) RateLimited(limit string) {
	if m == nil {
		return
	}
	m.rateLimited.WithLabelValues(oneOf(limit, rateLimits)).Inc()
}

// RateLimiterError counts a failure of the rate limiter's store.
func (m *Metrics) RateLimiterError() {
	if m == nil {
		return
	}
	m.rateLimitErrors.Inc()
}

// Broker wraps b so that every event published through it is counted.
func (m *Metrics) Broker(b events.Broker) events.Broker {
	if m == nil {
		return b
	}
	return countingBroker{Broker: b, m: m}
}

type countingBroker struct {
	events.Broker
	m *Metrics
}

func (c countingBroker) Publish(ctx context.Context, e events.Event) error {
	c.m.published.WithLabelValues(oneOf(string(e.Kind), eventKinds)).Inc()
	return c.Broker.Publish(ctx, e)
}

type ctxKey struct{}

// NewContext returns ctx carrying m, for code that is reached through
// gqlgen rather than constructed with dependencies (graph's streams).
func NewContext(ctx context.Context, m *Metrics) context.Context {
	return context.WithValue(ctx, ctxKey{}, m)
}

// FromContext returns the Metrics of ctx, or nil (which records nothing).
func FromContext(ctx context.Context) *Metrics {
	m, _ := ctx.Value(ctxKey{}).(*Metrics)
	return m
}

func oneOf(v string, known []string) string {
	for _, k := range known {
		if v == k {
			return v
		}
	}
	return Other
}

// capped admits label values matching re, up to max distinct ones.
type capped struct {
	re  *regexp.Regexp
	max int

	mu   sync.RWMutex
	seen map[string]struct{}
}

func newCapped(re *regexp.Regexp, max int) *capped {
	return &capped{re: re, max: max, seen: map[string]struct{}{}}
}

func (c *capped) get(v, fallback string) string {
	c.mu.RLock()
	_, ok := c.seen[v]
	c.mu.RUnlock()
	if ok {
		return v
	}
	if !c.re.MatchString(v) {
		return fallback
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[v]; ok {
		return v
	}
	if len(c.seen) >= c.max {
		return fallback
	}
	c.seen[v] = struct{}{}
	return v
}

// WSOpened counts a new WebSocket connection; call the returned func with
// how it ended ("peer", "dead", or the close code sent) when it closes.
func (m *Metrics) WSOpened() (closed func(how string)) {
	if m == nil {
		return func(string) {}
	}
	m.wsOpen.Inc()
	return func(how string) {
		m.wsOpen.Dec()
		m.wsClosed.WithLabelValues(how).Inc()
	}
}
