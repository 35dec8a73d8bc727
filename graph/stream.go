package graph

import (
	"context"
	"sync"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/parley-chat/parley/internal/chat"
)

// channelStream adapts a stream that a goroutine of its own feeds (typing,
// which also has timers to watch) to chat.Stream.
type channelStream[T any] struct{ ch <-chan T }

func (s channelStream[T]) Next(ctx context.Context) (T, bool) {
	select {
	case it, ok := <-s.ch:
		return it, ok
	case <-ctx.Done():
		var zero T
		return zero, false
	}
}

// Close does nothing: the feeding goroutine ends with the subscription's
// context.
func (channelStream[T]) Close() {}

// forward turns a service stream into gqlgen's channel. An item carrying
// an error ends the stream with that error as the subscription's last
// message (graphql-transport-ws "error", SSE "next" with errors).
//
// Under StreamEnds (every server built by httpapi) there is no goroutine in
// between: the transport's reading goroutine pulls each item itself (see
// streamEnd.respond), which is what lets it skip executing an event whose
// payload another subscriber with the same selection already encoded.
// ident names the item for that cache: the event scope it came with and
// its sequence within that scope.
func forward[In, Out any](ctx context.Context, present graphql.ErrorPresenterFunc, in chat.Stream[In], conv func(In) (*Out, error), ident func(In) (scope any, seq int64)) <-chan *Out {
	out := make(chan *Out, 1)
	started := streamStarted(ctx)
	ended := sync.OnceFunc(func() {
		in.Close()
		started()
	})
	// However the transport stops reading, the stream is released.
	context.AfterFunc(ctx, ended)
	st, pulled := ctx.Value(streamEndKey{}).(*streamEnd)
	if !pulled {
		go func() {
			defer close(out)
			defer ended()
			for {
				p, ok := nextItem(ctx, ctx, present, in, conv, ident)
				if !ok {
					if p.err != nil {
						endStream(ctx, p.err)
					}
					return
				}
				select {
				case out <- p.value:
				case <-ctx.Done():
					return
				}
			}
		}()
		return out
	}
	var ready func() bool
	var onReady func(func())
	if r, ok := in.(chat.ReadyStream[In]); ok {
		ready, onReady = r.Ready, r.OnReady
	}
	st.setSource(func(readCtx context.Context) (pulledItem, bool) {
		p, ok := nextItem(ctx, readCtx, present, in, conv, ident)
		if !ok {
			if p.err != nil {
				endStream(ctx, p.err)
			}
			close(out)
			ended()
			return pulledItem{}, false
		}
		v := p.value
		return pulledItem{scope: p.scope, seq: p.seq, push: func() { out <- v }}, true
	}, ready, onReady)
	return out
}

type nextResult[Out any] struct {
	value *Out
	scope any
	seq   int64
	err   *gqlerror.Error
}

// nextItem reads and converts the next item; ok is false when the stream
// is over (err says why, if it ended with an error).
func nextItem[In, Out any](ctx, readCtx context.Context, present graphql.ErrorPresenterFunc, in chat.Stream[In], conv func(In) (*Out, error), ident func(In) (any, int64)) (nextResult[Out], bool) {
	it, ok := in.Next(readCtx)
	if !ok {
		return nextResult[Out]{}, false
	}
	v, err := conv(it)
	if err != nil {
		gqlErr := present(ctx, err)
		streamFailed(ctx, gqlErr)
		return nextResult[Out]{err: gqlErr}, false
	}
	streamDelivered(ctx, it)
	scope, seq := ident(it)
	return nextResult[Out]{value: v, scope: scope, seq: seq}, true
}
