package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/parley-chat/parley/graph"
	"github.com/parley-chat/parley/internal/metrics"
	"github.com/parley-chat/parley/internal/tracing"
)

// requestInfo is what the layers below logRequests learn about a request
// that its log line reports: the GraphQL operation (the last one, on a
// WebSocket carrying several) and the trace ID.
type requestInfo struct {
	mu         sync.Mutex
	operation  string
	opType     string
	operations int
	traceID    string
}

type requestInfoKey struct{}

func withRequestInfo(ctx context.Context) (context.Context, *requestInfo) {
	info := &requestInfo{}
	return context.WithValue(ctx, requestInfoKey{}, info), info
}

func requestInfoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return info
}

func (i *requestInfo) recordOperation(name, typ string) {
	if i == nil {
		return
	}
	if len(name) > 100 {
		name = name[:100]
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.operation, i.opType = name, typ
	i.operations++
}

// attrs are the request log line's attributes from i.
func (i *requestInfo) attrs() []slog.Attr {
	i.mu.Lock()
	defer i.mu.Unlock()
	var out []slog.Attr
	if i.operations > 0 {
		out = append(out, slog.String("operation", i.operation), slog.String("operation_type", i.opType))
	}
	if i.operations > 1 {
		out = append(out, slog.Int("operations", i.operations))
	}
	if i.traceID != "" {
		out = append(out, slog.String("trace_id", i.traceID))
	}
	return out
}

// traceRequests starts a span per request when tracing is on, and notes its
// trace ID for the request's log line.
func traceRequests(next http.Handler) http.Handler {
	if !tracing.Enabled() {
		return next
	}
	return tracing.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sc := trace.SpanContextFromContext(r.Context()); sc.HasTraceID() {
			if info := requestInfoFrom(r.Context()); info != nil {
				info.mu.Lock()
				info.traceID = sc.TraceID().String()
				info.mu.Unlock()
			}
		}
		next.ServeHTTP(w, r)
	}))
}

// ContextLogger returns log with a handler that adds, to every record
// logged with a request's context, its request_id and (when tracing)
// trace_id. Records that carry a request_id already keep theirs.
func ContextLogger(log *slog.Logger) *slog.Logger {
	if _, ok := log.Handler().(contextHandler); ok {
		return log
	}
	return slog.New(contextHandler{log.Handler()})
}

type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		has := false
		r.Attrs(func(a slog.Attr) bool {
			has = a.Key == "request_id"
			return !has
		})
		if !has {
			r.AddAttrs(slog.String("request_id", id))
		}
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}

// observer is the gqlgen extension behind the operation metrics, the
// operation in request logs, and a span per operation when tracing.
type observer struct {
	m      *metrics.Metrics
	tracer trace.Tracer // nil: tracing off
}

func newObserver(m *metrics.Metrics) observer { return observer{m: m, tracer: tracing.Tracer()} }

var (
	_ graphql.HandlerExtension          = observer{}
	_ graphql.OperationParameterMutator = observer{}
	_ graphql.OperationInterceptor      = observer{}
	_ graphql.ResponseInterceptor       = observer{}
)

// dispatchedKey marks the context of an operation that ran: responses
// without it come from documents refused before running.
type dispatchedKey struct{}

func (observer) ExtensionName() string                          { return "Observer" }
func (observer) Validate(schema graphql.ExecutableSchema) error { return nil }

// MutateOperationParameters notes the operation name at once, so that a
// document refused before it is parsed (a persisted-query miss, a limit)
// is still reported under its name.
func (observer) MutateOperationParameters(ctx context.Context, p *graphql.RawParams) *gqlerror.Error {
	if graphql.HasOperationContext(ctx) {
		graphql.GetOperationContext(ctx).OperationName = p.OperationName
	}
	return nil
}

func (o observer) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	name, typ := graph.OperationInfo(ctx)
	if graph.Reexecuting(ctx) {
		// One event of a detached subscription, established long ago:
		// only its errors count, as for any subscription's responses.
		return o.countingErrors(name, typ, next(context.WithValue(metrics.NewContext(ctx, o.m), dispatchedKey{}, true)))
	}
	requestInfoFrom(ctx).recordOperation(name, typ)
	start := graphql.GetOperationContext(ctx).Stats.OperationStart
	if start.IsZero() {
		start = time.Now()
	}
	ctx = context.WithValue(metrics.NewContext(ctx, o.m), dispatchedKey{}, true)
	var span trace.Span
	if o.tracer != nil {
		spanName := typ
		if name != "" {
			spanName += " " + o.m.OperationName(name) // bounded: client-chosen
		}
		ctx, span = o.tracer.Start(ctx, spanName, trace.WithTimestamp(start), trace.WithAttributes(
			attribute.String("graphql.operation.name", name),
			attribute.String("graphql.operation.type", typ)))
	}
	responses := next(ctx)
	if typ == "subscription" {
		// A subscription's operation ends when it is established; its
		// events are counted as deliveries.
		o.m.Operation(name, typ, time.Since(start))
		if span != nil {
			span.End()
		}
		return o.countingErrors(name, typ, responses)
	}
	var once sync.Once
	return func(ctx context.Context) *graphql.Response {
		resp := responses(ctx)
		once.Do(func() {
			o.m.Operation(name, typ, time.Since(start))
			var errs gqlerror.List
			if resp != nil {
				errs = resp.Errors
			}
			codes := o.countErrors(name, typ, errs)
			if span != nil {
				endSpan(span, codes)
			}
		})
		return resp
	}
}

// InterceptResponse reports documents that never ran: they did not parse
// or validate, exceeded a limit, or were a persisted-query miss.
func (o observer) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	resp := next(ctx)
	if resp == nil || ctx.Value(dispatchedKey{}) != nil {
		return resp
	}
	name, typ := graph.OperationInfo(ctx)
	requestInfoFrom(ctx).recordOperation(name, typ)
	start := graphql.GetStartTime(ctx)
	if graphql.HasOperationContext(ctx) {
		start = graphql.GetOperationContext(ctx).Stats.OperationStart
	}
	if !start.IsZero() {
		o.m.Operation(name, typ, time.Since(start))
	}
	codes := o.countErrors(name, typ, resp.Errors)
	if o.tracer != nil {
		_, span := o.tracer.Start(ctx, "graphql refused", trace.WithTimestamp(start), trace.WithAttributes(
			attribute.String("graphql.operation.name", name),
			attribute.String("graphql.operation.type", typ)))
		endSpan(span, codes)
	}
	return resp
}

// countingErrors counts the errors of a subscription's responses.
func (o observer) countingErrors(name, typ string, responses graphql.ResponseHandler) graphql.ResponseHandler {
	return func(ctx context.Context) *graphql.Response {
		resp := responses(ctx)
		if resp != nil {
			o.countErrors(name, typ, resp.Errors)
		}
		return resp
	}
}

// countErrors counts errs by extensions.code and returns the codes.
func (o observer) countErrors(name, typ string, errs gqlerror.List) []string {
	var out []string
	for _, e := range errs {
		code, _ := e.Extensions["code"].(string)
		o.m.OperationError(name, typ, code)
		out = append(out, code)
	}
	return out
}

func endSpan(span trace.Span, errCodes []string) {
	if len(errCodes) > 0 {
		span.SetAttributes(attribute.StringSlice("graphql.error.codes", errCodes),
			attribute.Int("graphql.errors", len(errCodes)))
		for _, c := range errCodes {
			if c == graph.CodeInternal {
				span.SetStatus(codes.Error, c)
				break
			}
		}
	}
	span.End()
}
