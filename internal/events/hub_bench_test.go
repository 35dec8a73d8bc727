package events

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkHubDispatch measures subscription dispatch: one event offered to
// every subscription of a conversation and popped by each (what a
// subscriber's writer does), per delivery.
//
//	go test -run '^$' -bench HubDispatch -benchmem ./internal/events/
func BenchmarkHubDispatch(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			h := NewHub(HubConfig{Buffer: 64})
			subs := make([]*Subscription, n)
			for i := range subs {
				subs[i] = h.SubscribeConversation("c", KindMessage)
			}
			e := Event{Kind: KindMessage, ConversationID: "c", Type: "CREATED", MessageID: "m", PublishedAt: time.Now()}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				e.Seq = int64(i + 1)
				h.dispatch(ctx, e)
				for _, s := range subs {
					if _, ok := s.Pop(); !ok {
						b.Fatal("nothing queued")
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}

// BenchmarkMemoryBrokerPublish measures the in-process broker's publish
// into a started hub's inbound queue.
func BenchmarkMemoryBrokerPublish(b *testing.B) {
	broker := NewMemoryBroker()
	h := NewHub(HubConfig{Queue: 1 << 16})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := h.Start(ctx, broker); err != nil {
		b.Fatal(err)
	}
	e := Event{Kind: KindMessage, ConversationID: "c", Type: "CREATED", MessageID: "m", Seq: 1, PublishedAt: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		_ = broker.Publish(ctx, e)
	}
}
