package e2e

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/app"
	"github.com/parley-chat/parley/internal/apptest"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/events"
)

// lossyBroker loses every message event whose sequence number is a
// multiple of three, as a Redis pub/sub does while it reconnects.
type lossyBroker struct {
	*events.MemoryBroker
	dropped atomic.Int64
}

func (b *lossyBroker) Publish(ctx context.Context, e events.Event) error {
	if e.Kind == events.KindMessage && e.Seq%3 == 0 {
		b.dropped.Add(1)
		return nil
	}
	return b.MemoryBroker.Publish(ctx, e)
}

// A subscriber that sees a jump in the sequence fills it from the database,
// so events the broker lost still arrive, in order, once each.
func TestLostEventsAreFilledFromTheDatabase(t *testing.T) {
	broker := &lossyBroker{MemoryBroker: events.NewMemoryBroker()}
	s := apptest.StartWith(t, []app.Option{app.WithBroker(broker)})
	alice, bob := s.Register("alice"), s.Register("bob")
	conv := s.CreateConversation(alice, nil, bob)
	s.Send(alice, conv, "m0")

	ws := s.Dial(apptest.TransportWS)
	ws.Init(map[string]any{"token": bob.Token})
	// Resume after nothing: the replay starts at the first event, so the
	// subscription is registered before the sends below.
	ws.Subscribe("1", `subscription($c: ID!, $a: String) { messageEvents(conversationId: $c, after: $a) { type cursor message { body } } }`,
		map[string]any{"c": conv, "a": chat.EventCursor(conv, 0)})
	type event struct {
		MessageEvents struct {
			Type, Cursor string
			Message      struct{ Body string }
		}
	}
	var ev event
	ws.Next(5*time.Second, &ev)
	if ev.MessageEvents.Message.Body != "m0" {
		t.Fatalf("replay: got %q", ev.MessageEvents.Message.Body)
	}
	const n = 10 // seq 2..11; 3, 6 and 9 are lost by the broker
	for i := 1; i <= n; i++ {
		s.Send(alice, conv, fmt.Sprintf("m%d", i))
	}
	for i := 1; i <= n; i++ {
		ws.Next(5*time.Second, &ev)
		if want := fmt.Sprintf("m%d", i); ev.MessageEvents.Message.Body != want || ev.MessageEvents.Type != "CREATED" {
			t.Fatalf("event %d: got %s %q, want CREATED %q", i, ev.MessageEvents.Type, ev.MessageEvents.Message.Body, want)
		}
	}
	if broker.dropped.Load() < 3 {
		t.Fatalf("the broker dropped %d events; the test proves nothing", broker.dropped.Load())
	}
}
