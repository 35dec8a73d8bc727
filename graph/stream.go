package graph

import (
	"context"
	"sync"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/metrics"
)

// streamItem is what forward needs of a service stream's items.
type streamItem interface {
	// LiveEvent describes the broker event the item came from (zero for
	// items read from the database), for delivery metrics.
	LiveEvent() chat.Live
	// Failure is the error that ends the stream, or nil.
	Failure() error
}

// forward turns a service stream into gqlgen's channel. An item carrying
// an error ends the stream with that error as the subscription's last
// message (graphql-transport-ws "error", SSE "next" with errors).
//
// Under StreamEnds (every server built by httpapi) there is no goroutine in
// between: the transport's goroutine pulls each item itself (see
// streamEnd.respond), which is what lets it skip executing an event whose
// payload another subscriber with the same selection already encoded; conv
// then runs only for subscribers that execute. ident names the item for
// that cache: the event scope it came with and its sequence within it.
func forward[In streamItem, Out any](ctx context.Context, present graphql.ErrorPresenterFunc, in chat.Stream[In], conv func(In) *Out, ident func(In) (scope any, seq int64)) <-chan *Out {
	p := &puller[In, Out]{ctx: ctx, present: present, in: in, conv: conv, ident: ident, out: make(chan *Out, 1),
		metrics: metrics.FromContext(ctx)}
	started := streamStarted(ctx)
	p.ended = sync.OnceFunc(func() {
		in.Close()
		started()
	})
	st, pulled := ctx.Value(streamEndKey{}).(*streamEnd)
	var ready func() bool
	var onReady func(func())
	if r, ok := in.(chat.ReadyStream[In]); ok {
		ready, onReady = r.Ready, r.OnReady
	}
	if pulled && p.detach(ctx, st, ready, onReady) {
		return p.out // the transport releases it (DetachedStream.Release)
	}
	// However the transport stops reading, the stream is released.
	context.AfterFunc(ctx, p.ended)
	if !pulled {
		go p.run()
		return p.out
	}
	p.push = p.pushCurrent
	st.setSource(p.next, ready, onReady)
	return p.out
}

// puller hands a stream's items to gqlgen one at a time. Only one
// goroutine pulls at a time (the transport's), so cur needs no lock; its
// methods are bound once, so a delivery allocates nothing here.
type puller[In streamItem, Out any] struct {
	ctx     context.Context
	present graphql.ErrorPresenterFunc
	in      chat.Stream[In]
	conv    func(In) *Out
	ident   func(In) (any, int64)
	out     chan *Out
	ended   func()
	push    func()
	// fail, if set, takes the error that ends the stream (a detached one:
	// detach.go) instead of StreamEnds.
	fail    func(*gqlerror.Error)
	metrics *metrics.Metrics
	cur     In
}

// take reads the next item; false once the stream is over (after an item
// carrying an error, recorded for StreamEnds).
func (p *puller[In, Out]) take(readCtx context.Context) bool {
	it, ok := p.in.Next(readCtx)
	if !ok {
		return false
	}
	if err := it.Failure(); err != nil {
		gqlErr := p.present(p.ctx, err)
		if p.fail != nil {
			p.fail(gqlErr)
			return false
		}
		streamFailed(p.ctx, gqlErr)
		endStream(p.ctx, gqlErr)
		return false
	}
	if l := it.LiveEvent(); l.Kind != "" {
		p.metrics.Delivered(l.Kind, l.PublishedAt)
	}
	p.cur = it
	return true
}

func (p *puller[In, Out]) next(readCtx context.Context) (pulledItem, bool) {
	if !p.take(readCtx) {
		close(p.out)
		p.ended()
		return pulledItem{}, false
	}
	scope, seq := p.ident(p.cur)
	return pulledItem{scope: scope, seq: seq, push: p.push}, true
}

func (p *puller[In, Out]) pushCurrent() { p.out <- p.conv(p.cur) }

// run feeds gqlgen's channel from a goroutine of its own, for a server
// built without StreamEnds.
func (p *puller[In, Out]) run() {
	defer close(p.out)
	defer p.ended()
	for p.take(p.ctx) {
		select {
		case p.out <- p.conv(p.cur):
		case <-p.ctx.Done():
			return
		}
	}
}
