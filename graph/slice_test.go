package graph

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"

	"github.com/parley-chat/parley/graph/model"
)

// Edges are marshaled in order when their page prefetched what they read,
// and each in a goroutine of its own (so that their loads can meet in a
// batch) when it did not.
func TestMarshalSliceInlineAsksTheParent(t *testing.T) {
	listCtx := func(prefetched bool) context.Context {
		page := graphql.WithFieldContext(context.Background(), &graphql.FieldContext{
			Result: &model.ConversationConnection{Prefetched: prefetched},
		})
		return graphql.WithFieldContext(page, &graphql.FieldContext{}) // the edges field
	}
	const n = 3

	var order []int
	marshalSliceInline(listCtx(true), n, 0, false, func(ctx context.Context, i int) graphql.Marshaler {
		if idx := graphql.GetFieldContext(ctx).Index; idx == nil || *idx != i {
			t.Errorf("element %d: index %v", i, idx)
		}
		order = append(order, i) // no lock: one goroutine
		return graphql.Null
	})
	if len(order) != n || order[0] != 0 || order[2] != 2 {
		t.Fatalf("in-memory page: order %v", order)
	}

	// Every element waits for all of them to have started: only
	// concurrent marshaling gets past this.
	var started sync.WaitGroup
	started.Add(n)
	all := make(chan struct{})
	go func() { started.Wait(); close(all) }()
	marshalSliceInline(listCtx(false), n, 0, false, func(ctx context.Context, i int) graphql.Marshaler {
		started.Done()
		select {
		case <-all:
		case <-time.After(5 * time.Second):
			t.Errorf("element %d: the others never started", i)
		}
		return graphql.Null
	})
}
