package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
)

// marshalSliceInline marshals a list's elements one after the other on the
// calling goroutine. The generator (internal/gqlgen) makes the marshalers of
// lists whose elements never wait for a batch call it instead of
// graphql.MarshalSliceConcurrently, which starts a goroutine per element so
// that the elements' loads can meet in one batch. Parameters, field contexts
// and panic handling are those of graphql.MarshalSliceConcurrently (a list
// of one element is marshaled exactly like this there); workerLimit does not
// matter without goroutines.
func marshalSliceInline(ctx context.Context, length int, _ int64, omitPanicHandler bool, marshalElement func(ctx context.Context, i int) graphql.Marshaler) graphql.Array {
	ret := make(graphql.Array, length)
	for i := range length {
		childCtx := graphql.WithFieldContext(ctx, &graphql.FieldContext{Index: &i})
		if omitPanicHandler {
			ret[i] = marshalElement(childCtx, i)
			continue
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					graphql.AddError(childCtx, graphql.Recover(childCtx, r))
					ret[i] = graphql.Null
				}
			}()
			ret[i] = marshalElement(childCtx, i)
		}()
	}
	return ret
}
