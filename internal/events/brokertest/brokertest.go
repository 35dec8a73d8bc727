// Package brokertest is the conformance suite every events.Broker must
// pass, so the in-process and Redis brokers keep one contract.
package brokertest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/events"
)

// Pair returns two brokers that are replicas of one deployment: what one
// publishes, the other's subscribers receive (for an in-process broker,
// the same broker twice). ready is called after subscribing and must
// return once the subscription is live.
type Pair func(t *testing.T) (a, b events.Broker, ready func(t *testing.T))

type recorder struct {
	mu  sync.Mutex
	got []events.Event
	ch  chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 1<<16)} }

func (r *recorder) deliver(e events.Event) {
	r.mu.Lock()
	r.got = append(r.got, e)
	r.mu.Unlock()
	r.ch <- struct{}{}
}

func (r *recorder) wait(t *testing.T, n int) []events.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		if len(r.got) >= n {
			got := append([]events.Event(nil), r.got...)
			r.mu.Unlock()
			return got
		}
		have := len(r.got)
		r.mu.Unlock()
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("received %d events, want %d", have, n)
		}
	}
}

// Run runs the suite.
func Run(t *testing.T, pair Pair) {
	t.Run("DeliversToBothReplicasInPublishOrderOnce", func(t *testing.T) {
		a, b, ready := pair(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		onA, onB := newRecorder(), newRecorder()
		if err := a.Subscribe(ctx, onA.deliver); err != nil {
			t.Fatal(err)
		}
		if err := b.Subscribe(ctx, onB.deliver); err != nil {
			t.Fatal(err)
		}
		ready(t)
		const n = 200
		for i := 1; i <= n; i++ {
			e := events.Event{Kind: events.KindMessage, ConversationID: "c", Type: "CREATED",
				Seq: int64(i), MessageID: fmt.Sprintf("m%d", i), UserID: "u", Notify: []string{"x"},
				PublishedAt: time.Unix(1700000000, int64(i)).UTC()}
			if err := a.Publish(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		for name, r := range map[string]*recorder{"publisher": onA, "other replica": onB} {
			got := r.wait(t, n)
			time.Sleep(50 * time.Millisecond)
			r.mu.Lock()
			if len(r.got) != n {
				t.Errorf("%s received %d events, want %d (duplicates?)", name, len(r.got), n)
			}
			r.mu.Unlock()
			for i, e := range got[:n] {
				want := int64(i + 1)
				if e.Seq != want || e.MessageID != fmt.Sprintf("m%d", want) || e.Kind != events.KindMessage ||
					len(e.Notify) != 1 || !e.PublishedAt.Equal(time.Unix(1700000000, want)) {
					t.Fatalf("%s: event %d = %+v", name, i, e)
				}
			}
		}
	})
	t.Run("StopsDeliveringWhenTheSubscriptionEnds", func(t *testing.T) {
		a, b, ready := pair(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		subCtx, unsubscribe := context.WithCancel(ctx)
		gone, stays := newRecorder(), newRecorder()
		if err := a.Subscribe(ctx, func(events.Event) {}); err != nil {
			t.Fatal(err)
		}
		if err := b.Subscribe(ctx, stays.deliver); err != nil {
			t.Fatal(err)
		}
		if err := b.Subscribe(subCtx, gone.deliver); err != nil {
			t.Fatal(err)
		}
		ready(t)
		_ = a.Publish(ctx, events.Event{Kind: events.KindTyping, ConversationID: "c", UserID: "u", Typing: true})
		gone.wait(t, 1)
		stays.wait(t, 1)
		unsubscribe()
		time.Sleep(50 * time.Millisecond)
		_ = a.Publish(ctx, events.Event{Kind: events.KindTyping, ConversationID: "c", UserID: "u"})
		stays.wait(t, 2)
		time.Sleep(50 * time.Millisecond)
		gone.mu.Lock()
		defer gone.mu.Unlock()
		if len(gone.got) != 1 {
			t.Fatalf("an ended subscription received %d events, want 1", len(gone.got))
		}
	})
}
