package graph

import (
	"context"
	"sync"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/parley-chat/parley/internal/metrics"
)

// The error that ends a subscription stream (SLOW_CONSUMER, NOT_FOUND after
// leaving…) is produced by forward's goroutine but must reach the transport
// in the goroutine that reads the stream: gqlgen's WebSocket transport reads
// its subscription errors there without a lock (so adding one from another
// goroutine races with a connection closing at the same moment), and its
// SSE transport has no such list at all (adding to it panics). StreamEnds
// hands the error over under a lock, once the stream has ended.

type streamEndKey struct{}

type streamEnd struct {
	mu     sync.Mutex
	err    *gqlerror.Error
	source func(ctx context.Context) (pulledItem, bool)
	// ready and onReady are set when the stream can tell whether its next
	// item is there (chat.ReadyStream).
	ready   func() bool
	onReady func(func())
	// selection is the key under which the stream shares encoded payloads
	// with other subscribers ("" when its result depends on the viewer).
	selection string
	// metrics, looked up once: the context chain is long and respond runs
	// for every delivery.
	metrics *metrics.Metrics
}

// pulledItem is a stream item read by the transport's goroutine: push hands
// it to gqlgen's channel for execution.
type pulledItem struct {
	scope any
	seq   int64
	push  func()
}

func (st *streamEnd) setSource(src func(ctx context.Context) (pulledItem, bool), ready func() bool, onReady func(func())) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.source, st.ready, st.onReady = src, ready, onReady
}

// StreamReadiness lets a transport drive a subscription without a
// goroutine waiting for its events. ctx is the one DispatchOperation
// returned. ok is false for a subscription that cannot tell (its responses
// must be read by a goroutine that may wait). Otherwise ready reports
// whether the next call of the response handler would not wait for an
// event, and onReady registers a callback (which must not block) for when
// it may have become true.
func StreamReadiness(ctx context.Context) (ready func() bool, onReady func(func()), ok bool) {
	st, _ := ctx.Value(streamEndKey{}).(*streamEnd)
	if st == nil {
		return nil, nil, false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ready == nil {
		return nil, nil, false
	}
	return st.ready, st.onReady, true
}

type streamErrorSinkKey struct{}

// WithStreamErrorSink makes a stream's final error (SLOW_CONSUMER,
// NOT_FOUND after leaving…) go to sink, for a transport that sends it in
// a message of its own, instead of a last response with errors.
func WithStreamErrorSink(ctx context.Context, sink func(*gqlerror.Error)) context.Context {
	return context.WithValue(ctx, streamErrorSinkKey{}, sink)
}

// respond produces the stream's next response: it pulls the next item and
// reuses the payload another subscriber of the same event encoded for the
// same selection, or executes it (which reads the item from the channel).
func (st *streamEnd) respond(ctx context.Context, responses graphql.ResponseHandler) *graphql.Response {
	st.mu.Lock()
	src := st.source
	st.mu.Unlock()
	if src == nil {
		return responses(ctx)
	}
	it, ok := src(ctx)
	if !ok {
		return responses(ctx) // the channel is closed or ctx is done: nil
	}
	execute := func() *graphql.Response {
		it.push()
		return responses(ctx)
	}
	return respondShared(st.metrics, st.selection, it, execute)
}

// respondShared returns a pulled item's response: the payload another
// subscriber with the same selection encoded for the same event, or what
// execute returns (shared with them when it can be).
func respondShared(m *metrics.Metrics, selection string, it pulledItem, execute func() *graphql.Response) *graphql.Response {
	scope, _ := it.scope.(*EventScope)
	if scope == nil || selection == "" {
		m.PayloadEncoded(false)
		return execute()
	}
	return scope.respond(m, payloadKey{selection: selection, seq: it.seq}, execute)
}

// endStream records err as the stream's last message; forward then closes
// the stream.
func endStream(ctx context.Context, err *gqlerror.Error) {
	if st, ok := ctx.Value(streamEndKey{}).(*streamEnd); ok {
		st.mu.Lock()
		st.err = err
		st.mu.Unlock()
		return
	}
	// Without StreamEnds (a server built elsewhere): the WebSocket way, which
	// panics on other transports.
	defer func() { _ = recover() }()
	transport.AddSubscriptionError(ctx, err)
}

// StreamEnds is an operation middleware (handler.Server.AroundOperations)
// that delivers the error ending a subscription from the reading goroutine:
// as the "error" message on WebSockets, as a last "next" with errors on SSE.
func StreamEnds(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	oc := graphql.GetOperationContext(ctx)
	if oc == nil || oc.Operation == nil || oc.Operation.Operation != ast.Subscription || Reexecuting(ctx) {
		return next(ctx)
	}
	st := &streamEnd{selection: sharedSelectionKey(oc), metrics: metrics.FromContext(ctx)}
	responses := next(context.WithValue(ctx, streamEndKey{}, st))
	websocket := oc.Headers.Get("Upgrade") != ""
	ended := false
	return func(ctx context.Context) *graphql.Response {
		if ended {
			return nil
		}
		if r := st.respond(ctx, responses); r != nil {
			return r
		}
		ended = true
		st.mu.Lock()
		err := st.err
		st.mu.Unlock()
		sink, _ := ctx.Value(streamErrorSinkKey{}).(func(*gqlerror.Error))
		switch {
		case err == nil:
			return nil
		case sink != nil:
			sink(err)
			return nil
		case websocket:
			transport.AddSubscriptionError(ctx, err) // read by this goroutine next
			return nil
		default:
			return &graphql.Response{Errors: gqlerror.List{err}}
		}
	}
}
