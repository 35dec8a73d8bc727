package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/parley-chat/parley/ent"
	"github.com/parley-chat/parley/internal/loader"
	"github.com/parley-chat/parley/internal/metrics"
)

// EventScope is what every subscriber of one event (or of one batch read
// from the database) shares: the loaders that read the rows once, and the
// payloads encoded once per distinct selection. It lives as long as the
// subscribers hold the event, so nothing in it can go stale.
type EventScope struct {
	loaders *loader.Loaders

	mu       sync.Mutex
	payloads map[payloadKey]*payload
	messages map[string]chan struct{} // closed once the message was read
}

// NewEventScope returns a scope reading through loaders (shared loaders:
// loader.Factory.NewShared).
func NewEventScope(loaders *loader.Loaders) *EventScope {
	return &EventScope{loaders: loaders}
}

// scopeLoaders returns the shared loaders of a stream item's scope, for
// loader.Adopt.
func scopeLoaders(scope any) *loader.Loaders {
	if s, ok := scope.(*EventScope); ok {
		return s.loaders
	}
	return nil
}

// prefetchMessage reads an event's message (and sender) into the shared
// loaders once, straight away. Through the loader the first subscriber to
// execute would wait out its batch window (twice: message, then sender)
// while every other subscriber of the event waits for it; an event has
// one message, so there is nothing to batch.
func (s *EventScope) prefetchMessage(ctx context.Context, id string) {
	s.mu.Lock()
	if s.messages == nil {
		s.messages = map[string]chan struct{}{}
	}
	done, found := s.messages[id]
	if !found {
		done = make(chan struct{})
		s.messages[id] = done
	}
	s.mu.Unlock()
	if found {
		select {
		case <-done:
		case <-ctx.Done():
		}
		return
	}
	defer close(done)
	// On failure (the first subscriber left, say) the loader reads it for
	// whoever asks next.
	_ = s.loaders.PrefetchMessages(ctx, []string{id})
}

// eventMessage is the message of a subscription event (messageEvents,
// inbox): read once per event scope, with what its selection reads of it
// queued together.
func eventMessage(ctx context.Context, scope any, id string) (*ent.Message, error) {
	loader.Adopt(ctx, scopeLoaders(scope))
	if s, ok := scope.(*EventScope); ok {
		s.prefetchMessage(ctx, id)
	}
	m, err := loadMessage(ctx, id)
	warmMessage(ctx, m)
	return m, err
}

// payloadKey identifies one event's payload for one selection: the
// operation's document, name and variables, and the event's sequence within
// the scope (a replay batch shares a scope across many events).
type payloadKey struct {
	selection string
	seq       int64
}

type payload struct {
	done chan struct{}     // closed once resp is set (or the encoding failed)
	resp *graphql.Response // shared, read-only; nil: encode it yourself
}

// respond returns the response of one event for one subscriber. The first
// subscriber with a given selection executes it; the others wait for that
// and reuse its bytes. A response with errors is not shared (errors can be
// about the subscriber), and neither is one cut short by a cancellation:
// then each subscriber executes for itself.
func (s *EventScope) respond(m *metrics.Metrics, key payloadKey, execute func() *graphql.Response) *graphql.Response {
	s.mu.Lock()
	if s.payloads == nil {
		s.payloads = map[payloadKey]*payload{}
	}
	p, found := s.payloads[key]
	if !found {
		p = &payload{done: make(chan struct{})}
		s.payloads[key] = p
	}
	s.mu.Unlock()
	if found {
		<-p.done
		if p.resp != nil {
			m.PayloadEncoded(true)
			return p.resp
		}
		m.PayloadEncoded(false)
		return execute()
	}
	defer close(p.done)
	r := execute()
	m.PayloadEncoded(false)
	if r != nil && len(r.Errors) == 0 && len(r.Extensions) == 0 && r.Data != nil {
		// gqlgen reuses the buffer behind Data for the subscriber's next event.
		p.resp = &graphql.Response{Data: bytes.Clone(r.Data)}
	}
	return r
}

// viewerDependent reports whether a field's value depends on who asks,
// beyond access (which every subscriber of an event already has). A
// subscription selecting one of them is executed per subscriber. Keep it in
// step with the resolvers that read the viewer below the root fields.
func viewerDependent(typ, field string) bool {
	return typ == "Conversation" && field == "unreadCount"
}

// sharedSelectionKey returns the key under which subscribers share encoded
// payloads of oc's operation, or "" if its result depends on the viewer.
func sharedSelectionKey(oc *graphql.OperationContext) string {
	if oc == nil || oc.Operation == nil || dependsOnViewer(oc.Operation.SelectionSet, 0) {
		return ""
	}
	key, _ := OperationKey(oc)
	return key
}

// OperationKey identifies what oc asks for: its document, operation name
// and variables. Two operations with the same key get the same answer for
// the same viewer and data. ok is false if the variables cannot be encoded.
func OperationKey(oc *graphql.OperationContext) (key string, ok bool) {
	vars, err := json.Marshal(oc.Variables) // map keys sorted: a canonical form
	if err != nil {
		return "", false
	}
	return oc.RawQuery + "\x00" + oc.OperationName + "\x00" + string(vars), true
}

// maxSelectionDepth stops the walk on pathological documents; validation
// and MAX_DEPTH normally stop them long before.
const maxSelectionDepth = 64

func dependsOnViewer(set ast.SelectionSet, depth int) bool {
	if depth > maxSelectionDepth {
		return true
	}
	for _, sel := range set {
		switch s := sel.(type) {
		case *ast.Field:
			if s.ObjectDefinition != nil && viewerDependent(s.ObjectDefinition.Name, s.Name) {
				return true
			}
			if dependsOnViewer(s.SelectionSet, depth+1) {
				return true
			}
		case *ast.InlineFragment:
			if dependsOnViewer(s.SelectionSet, depth+1) {
				return true
			}
		case *ast.FragmentSpread:
			if s.Definition == nil || dependsOnViewer(s.Definition.SelectionSet, depth+1) {
				return true
			}
		}
	}
	return false
}
