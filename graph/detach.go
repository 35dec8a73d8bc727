package graph

import (
	"context"
	"sync"
	"unique"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/parley-chat/parley/internal/metrics"
)

// An idle subscription held through gqlgen keeps its whole operation alive
// between events: the operation context with its coerced variables and
// collected-fields cache, the root field's arguments and field context,
// and a dozen context layers — about 2.5 KB per subscription, most of what
// an idle connection costs (BENCHMARKS.md, "Where the memory goes"). Yet
// most events never run it: subscribers of one event with the same
// selection share one execution (EventScope).
//
// A transport that can re-run an operation asks for the subscription to
// be detached (WithDetach). A stream that can tell when it is ready and
// whose payload does not depend on the viewer is then handed to the
// transport as a DetachedStream, which holds only the service's stream;
// the transport drops gqlgen's response handler, and when an event must be
// executed for this subscriber, it runs the operation again with the event
// in the context (WithEvent): the root resolver returns that event instead
// of subscribing.

type detachKey struct{}

// DetachRequest is a transport's offer to drive a subscription detached.
type DetachRequest struct {
	base   context.Context
	stream *DetachedStream
}

// WithDetach offers to drive ctx's subscription detached; base is the
// context the stream keeps for presenting its final error (it must not
// hold the operation's gqlgen state). Stream reports whether it was taken.
func WithDetach(ctx, base context.Context) (context.Context, *DetachRequest) {
	req := &DetachRequest{base: base}
	return context.WithValue(ctx, detachKey{}, req), req
}

// Stream returns the detached stream, or nil if the subscription was not
// detached (it is then driven through gqlgen's response handler).
func (r *DetachRequest) Stream() *DetachedStream {
	if r == nil {
		return nil
	}
	return r.stream
}

// DetachedStream is a subscription's service stream, driven by the
// transport without gqlgen's state.
type DetachedStream struct {
	ready   func() bool
	onReady func(func())
	next    func(ctx context.Context) (pulledItem, bool)
	current func() any // the item last pulled, as the resolver returns it
	release func()
	key     string
	metrics *metrics.Metrics

	mu  sync.Mutex
	err *gqlerror.Error
}

// Ready reports whether Respond would not wait for an event.
func (d *DetachedStream) Ready() bool { return d.ready() }

// OnReady registers a callback (which must not block) for when Ready may
// have become true.
func (d *DetachedStream) OnReady(f func()) { d.onReady(f) }

// Release ends the service stream; it may be called more than once.
func (d *DetachedStream) Release() { d.release() }

// Err is the error that ended the stream (SLOW_CONSUMER, NOT_FOUND after
// leaving…), or nil.
func (d *DetachedStream) Err() *gqlerror.Error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

func (d *DetachedStream) setErr(err *gqlerror.Error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err = err
}

// Respond pulls the next event and returns its response: the bytes another
// subscriber with the same selection encoded for it, or what execute
// returns for it (execute runs the operation again with WithEvent(ev)).
// ok is false once the stream is over (Err says why).
func (d *DetachedStream) Respond(ctx context.Context, execute func(ev any) *graphql.Response) (r *graphql.Response, ok bool) {
	it, ok := d.next(ctx)
	if !ok {
		return nil, false
	}
	return respondShared(d.metrics, d.key, it, func() *graphql.Response { return execute(d.current()) }), true
}

type eventKey struct{}

// WithEvent marks ctx as the re-run of a detached subscription for one
// event: its root resolver returns ev, and the operation's middleware does
// only what every event needs (see Reexecuting).
func WithEvent(ctx context.Context, ev any) context.Context {
	return context.WithValue(ctx, eventKey{}, ev)
}

// Reexecuting reports whether ctx runs a detached subscription for one of
// its events: not a new operation (not logged, counted or checked again).
func Reexecuting(ctx context.Context) bool { return ctx.Value(eventKey{}) != nil }

// eventOf returns the event a re-run subscription resolver must return,
// as the channel gqlgen reads it from.
func eventOf[Out any](ctx context.Context) (<-chan *Out, bool) {
	ev, ok := ctx.Value(eventKey{}).(*Out)
	if !ok {
		return nil, false
	}
	ch := make(chan *Out, 1)
	ch <- ev
	close(ch)
	return ch, true
}

// detach hands p's stream to the transport if ctx's operation asked for it
// and the stream qualifies; false leaves it to gqlgen.
func (p *puller[In, Out]) detach(ctx context.Context, st *streamEnd, ready func() bool, onReady func(func())) bool {
	req, _ := ctx.Value(detachKey{}).(*DetachRequest)
	if req == nil || st == nil || st.selection == "" || ready == nil {
		return false
	}
	name, typ := OperationInfo(ctx)
	var path ast.Path
	if fc := graphql.GetFieldContext(ctx); fc != nil {
		path = fc.Path()
	}
	d := &DetachedStream{ready: ready, onReady: onReady, release: p.ended, metrics: st.metrics,
		key: unique.Make(st.selection).Value()} // one copy per distinct selection
	d.current = func() any { return p.conv(p.cur) }
	// The stream must not keep gqlgen's context: its failure is presented
	// in the transport's, with the path gqlgen would have given it.
	p.ctx = req.base
	p.fail = func(gqlErr *gqlerror.Error) {
		if len(gqlErr.Path) == 0 {
			gqlErr.Path = path
		}
		code, _ := gqlErr.Extensions["code"].(string)
		d.metrics.OperationError(name, typ, code)
		d.setErr(gqlErr)
	}
	d.next = p.next
	req.stream = d
	return true
}
