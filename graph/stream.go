package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
)

// forward converts a service stream into gqlgen's channel. An item carrying
// an error ends the stream with that error as the subscription's last
// message (graphql-transport-ws "error", SSE "next" with errors).
func forward[In, Out any](ctx context.Context, present graphql.ErrorPresenterFunc, in <-chan In, conv func(In) (*Out, error)) <-chan *Out {
	out := make(chan *Out)
	go func() {
		defer close(out)
		for it := range in {
			v, err := conv(it)
			if err != nil {
				transport.AddSubscriptionError(ctx, present(ctx, err))
				return
			}
			select {
			case out <- v:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
