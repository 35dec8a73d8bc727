package tracing_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/parley-chat/parley/internal/apptest"
	"github.com/parley-chat/parley/internal/testinfra"
	"github.com/parley-chat/parley/internal/tracing"
)

func TestMain(m *testing.M) { os.Exit(testinfra.Run(m)) }

// otelVars are cleared for every test, so that the environment the tests
// run in does not decide for them.
var otelVars = []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
	"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER", "OTEL_EXPORTER_OTLP_HEADERS"}

func clearEnv(t *testing.T) {
	for _, k := range otelVars {
		t.Setenv(k, "")
	}
}

func TestOffUnlessAskedFor(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		on   bool
		err  bool
	}{
		{"nothing set", nil, false, false},
		{"sdk disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, false, false},
		{"exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, false, false},
		{"unsupported exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, false, true},
		{"grpc protocol", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, false, true},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"}, true, false},
		{"exporter otlp", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			shutdown, err := tracing.Setup(context.Background())
			if (err != nil) != c.err {
				t.Fatalf("err = %v", err)
			}
			if shutdown == nil {
				t.Fatal("nil shutdown")
			}
			defer func() { _ = shutdown(context.Background()) }()
			if tracing.Enabled() != c.on {
				t.Fatalf("Enabled() = %v, want %v", tracing.Enabled(), c.on)
			}
			if (tracing.Tracer() != nil) != c.on {
				t.Fatalf("Tracer() = %v", tracing.Tracer())
			}
			// Off, the HTTP layer is left as it is: no wrapper, no overhead.
			h := &struct{ http.Handler }{http.NotFoundHandler()}
			if unwrapped := tracing.Middleware(h) == http.Handler(h); unwrapped == c.on {
				t.Fatalf("Middleware wrapped: %v, want %v", !unwrapped, c.on)
			}
		})
	}
	if tracing.Enabled() {
		t.Fatal("still enabled after shutdown")
	}
}

// collector is an OTLP/HTTP trace receiver.
type collector struct {
	mu       sync.Mutex
	requests int
	spans    []*tracepb.Span
	service  []string
	errs     []string
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests++
	body, _ := io.ReadAll(r.Body)
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || len(body) == 0 {
		c.errs = append(c.errs, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		c.errs = append(c.errs, err.Error())
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	for _, rs := range req.ResourceSpans {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.name" {
				c.service = append(c.service, a.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.ScopeSpans {
			c.spans = append(c.spans, ss.Spans...)
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	b, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	_, _ = w.Write(b)
}

func attr(s *tracepb.Span, key string) string {
	for _, a := range s.Attributes {
		if a.Key == key {
			return a.GetValue().GetStringValue()
		}
	}
	return ""
}

func TestSpansReachAnOTLPCollector(t *testing.T) {
	clearEnv(t)
	col := &collector{}
	cs := httptest.NewServer(col)
	defer cs.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", cs.URL)
	shutdown, err := tracing.Setup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	flushed := false
	defer func() {
		if !flushed {
			_ = shutdown(context.Background())
		}
	}()
	if !tracing.Enabled() {
		t.Fatal("tracing off with OTEL_EXPORTER_OTLP_ENDPOINT set")
	}

	s := apptest.Start(t)
	u := s.Register("trace")
	if r := s.Post(u.Token, `query WhoAmI { me { id } }`, nil); len(r.Errors) > 0 {
		t.Fatal(r.Errors)
	}
	// WebSockets still upgrade through the HTTP instrumentation.
	c := s.ConnectAs(u)
	c.Subscribe("1", `query OverWS { me { id } }`, nil)
	c.NextOp("1", 5*time.Second, nil)
	c.Close()
	s.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The upgrade request's span ends when its handler returns, a moment
	// after the socket closed: flush until it has arrived, then shut down.
	tp, ok := otel.GetTracerProvider().(interface{ ForceFlush(context.Context) error })
	if !ok {
		t.Fatal("tracing is set up but the global provider cannot flush")
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		_ = tp.ForceFlush(ctx)
		col.mu.Lock()
		got := false
		for _, sp := range col.spans {
			got = got || (sp.Kind == tracepb.Span_SPAN_KIND_SERVER && sp.Name == "GET /graphql")
		}
		col.mu.Unlock()
		if got {
			break
		}
	}
	if err := shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	flushed = true

	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.errs) > 0 {
		t.Fatalf("collector refused: %v", col.errs)
	}
	if col.requests == 0 {
		t.Fatal("no export reached the collector")
	}
	for _, name := range col.service {
		if name != tracing.ServiceName {
			t.Errorf("service.name = %q", name)
		}
	}
	var op, ws *tracepb.Span
	https := map[string]*tracepb.Span{}
	for _, sp := range col.spans {
		switch {
		case sp.Name == "query WhoAmI":
			op = sp
		case sp.Name == "query OverWS":
			ws = sp
		case sp.Kind == tracepb.Span_SPAN_KIND_SERVER:
			https[string(sp.SpanId)] = sp
		}
	}
	if op == nil || ws == nil {
		var names []string
		for _, sp := range col.spans {
			names = append(names, sp.Name)
		}
		t.Fatalf("no operation spans among %v", names)
	}
	if attr(op, "graphql.operation.name") != "WhoAmI" || attr(op, "graphql.operation.type") != "query" {
		t.Errorf("operation span attributes: %v", op.Attributes)
	}
	parent := https[string(op.ParentSpanId)]
	if parent == nil || parent.Name != "POST /graphql" || string(parent.TraceId) != string(op.TraceId) {
		t.Errorf("the operation span's parent is not the request's span: %v", parent)
	}
	if p := https[string(ws.ParentSpanId)]; p == nil || p.Name != "GET /graphql" {
		t.Errorf("the WebSocket operation's parent is not the upgrade request's span: %v", p)
	}
}
