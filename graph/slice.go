package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
)

// inMemory is implemented by a list's parent object when only it knows
// whether the list's elements will find everything they read in memory
// (model.ConversationConnection: its resolver prefetched what the selection
// reads, or could not).
type inMemory interface{ ElementsInMemory() bool }

// marshalSliceInline marshals a list's elements one after the other on the
// calling goroutine. The generator (internal/gqlgen) makes the marshalers of
// lists whose elements need not wait for a batch call it instead of
// graphql.MarshalSliceConcurrently, which starts a goroutine per element so
// that the elements' loads can meet in one batch. Where the list's parent
// says its elements are not all in memory (inMemory), that is what it does.
// Parameters, field contexts and panic handling are those of
// graphql.MarshalSliceConcurrently (a list of one element is marshaled
// exactly like this there); workerLimit does not matter without goroutines.
func marshalSliceInline(ctx context.Context, length int, workerLimit int64, omitPanicHandler bool, marshalElement func(ctx context.Context, i int) graphql.Marshaler) graphql.Array {
	if fc := graphql.GetFieldContext(ctx); fc != nil && fc.Parent != nil {
		if p, ok := fc.Parent.Result.(inMemory); ok && !p.ElementsInMemory() {
			return graphql.MarshalSliceConcurrently(ctx, length, workerLimit, omitPanicHandler, marshalElement)
		}
	}
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
