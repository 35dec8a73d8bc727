package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
)

// forward converts a service stream into gqlgen's channel. An item carrying
// an error ends the stream with that error as the subscription's last
// message (graphql-transport-ws "error", SSE "next" with errors).
func forward[In, Out any](ctx context.Context, present graphql.ErrorPresenterFunc, in <-chan In, conv func(In) (*Out, error)) <-chan *Out {
	out := make(chan *Out)
	ended := streamStarted(ctx)
	go func() {
		defer close(out)
		defer ended()
		for it := range in {
			v, err := conv(it)
			if err != nil {
				gqlErr := present(ctx, err)
				streamFailed(ctx, gqlErr)
				endStream(ctx, gqlErr) // streamend.go
				return
			}
			select {
			case out <- v:
				streamDelivered(ctx, it)
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
