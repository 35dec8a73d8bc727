package metrics

import (
	"context"
	"fmt"
	dto "github.com/prometheus/client_model/go"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/parley-chat/parley/internal/events"
)

func TestOperationNamesAreBounded(t *testing.T) {
	m := New(prometheus.NewRegistry())
	for _, c := range []struct{ in, want string }{
		{"", Anonymous},
		{"Conversations", "Conversations"},
		{"_x9", "_x9"},
		{"9lives", Other},
		{"has space", Other},
		{"dash-ed", Other},
		{strings.Repeat("a", 64), strings.Repeat("a", 64)},
		{strings.Repeat("a", 65), Other},
		{"naïve", Other},
	} {
		if got := m.OperationName(c.in); got != c.want {
			t.Errorf("OperationName(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for i := 0; len(m.names.seen) < MaxOperationNames; i++ {
		m.OperationName(fmt.Sprintf("Op%d", i))
	}
	if got := m.OperationName("OneTooMany"); got != Other {
		t.Errorf("name past the cap = %q, want %q", got, Other)
	}
	if got := m.OperationName("Conversations"); got != "Conversations" {
		t.Errorf("a name seen before the cap = %q", got)
	}
	if got := (*Metrics)(nil).OperationName("Anything"); got != Other {
		t.Errorf("nil Metrics: %q", got)
	}
}

func TestLabelsAreBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.OperationError("Q", "query", "NOT_FOUND")
	m.OperationError("Q", "query", "lower case code")
	m.OperationError("Q", "", "")
	m.RateLimited("auth")
	m.RateLimited("bogus")
	end := m.SubscriptionStarted("messageEvents")
	m.SubscriptionStarted("__typename")
	m.Delivered(events.KindMessage, time.Now().Add(time.Hour)) // a replica's clock ahead
	m.Delivered("weird", time.Time{})

	for _, c := range []struct {
		c    prometheus.Collector
		want float64
		lv   []string
	}{
		{m.opErrors, 1, []string{"Q", "query", "NOT_FOUND"}},
		{m.opErrors, 1, []string{"Q", "query", "OTHER"}},
		{m.opErrors, 1, []string{"Q", Unknown, "UNKNOWN"}},
		{m.rateLimited, 1, []string{"auth"}},
		{m.rateLimited, 1, []string{Other}},
		{m.subscriptions, 1, []string{"messageEvents"}},
		{m.subscriptions, 1, []string{Other}},
		{m.delivered, 1, []string{"message"}},
		{m.delivered, 1, []string{Other}},
	} {
		var got float64
		switch v := c.c.(type) {
		case *prometheus.CounterVec:
			got = testutil.ToFloat64(v.WithLabelValues(c.lv...))
		case *prometheus.GaugeVec:
			got = testutil.ToFloat64(v.WithLabelValues(c.lv...))
		}
		if got != c.want {
			t.Errorf("%v = %v, want %v", c.lv, got, c.want)
		}
	}
	end()
	end() // idempotent
	if got := testutil.ToFloat64(m.subscriptions.WithLabelValues("messageEvents")); got != 0 {
		t.Errorf("after end: %v", got)
	}
	// The series of known kinds exist from the start (resolved once, for
	// speed); only the event with a publication time was observed.
	if n := histogramSamples(t, m.deliveryLatency); n != 1 {
		t.Errorf("latency samples: %d, want 1 (an event without a publication time is not observed)", n)
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.Operation("Q", "query", time.Second)
	m.OperationError("Q", "query", "X")
	m.SQL(time.Second)
	m.RateLimited("auth")
	m.RateLimiterError()
	m.Delivered(events.KindMessage, time.Now())
	m.SubscriptionStarted("inbox")()
	m.WatchHub(nil)
	if b := events.NewMemoryBroker(); m.Broker(b) != events.Broker(b) {
		t.Error("nil Metrics wrapped the broker")
	}
	if FromContext(context.Background()) != nil {
		t.Error("FromContext of an empty context")
	}
}

func TestBrokerCountsPublishes(t *testing.T) {
	m := New(prometheus.NewRegistry())
	b := m.Broker(events.NewMemoryBroker())
	got := 0
	if err := b.Subscribe(t.Context(), func(events.Event) { got++ }); err != nil {
		t.Fatal(err)
	}
	for _, k := range []events.Kind{events.KindMessage, events.KindMessage, events.KindTyping} {
		if err := b.Publish(t.Context(), events.Event{Kind: k}); err != nil {
			t.Fatal(err)
		}
	}
	if got != 3 {
		t.Fatalf("delivered %d", got)
	}
	if v := testutil.ToFloat64(m.published.WithLabelValues("message")); v != 2 {
		t.Errorf("published message = %v", v)
	}
	if v := testutil.ToFloat64(m.published.WithLabelValues("typing")); v != 1 {
		t.Errorf("published typing = %v", v)
	}
}

func histogramSamples(t *testing.T, h *prometheus.HistogramVec) uint64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 16)
	go func() { h.Collect(ch); close(ch) }()
	var n uint64
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		n += pb.GetHistogram().GetSampleCount()
	}
	return n
}
