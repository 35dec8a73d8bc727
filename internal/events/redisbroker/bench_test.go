package redisbroker_test

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/events"
	"github.com/parley-chat/parley/internal/testinfra"
)

// BenchmarkPublish measures one publish through a real redis-server on
// loopback, one at a time (the round trip dominates), until the replica's
// own subscription has received it: what sendMessage adds for Redis.
//
//	go test -run '^$' -bench Publish ./internal/events/redisbroker/
func BenchmarkPublish(b *testing.B) {
	r := testinfra.StartRedis(b)
	opt := r.URL()
	pub := newBrokerTB(b, opt, "bench")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan struct{}, 1)
	if err := pub.Subscribe(ctx, func(events.Event) {
		select {
		case got <- struct{}{}:
		default:
		}
	}); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !pub.Connected() {
		if time.Now().After(deadline) {
			b.Fatal("broker never connected")
		}
		time.Sleep(5 * time.Millisecond)
	}
	e := events.Event{Kind: events.KindMessage, ConversationID: "cnv_bench", Type: "CREATED", MessageID: "msg_bench", Seq: 1, PublishedAt: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		if err := pub.Publish(ctx, e); err != nil {
			b.Fatal(err)
		}
		<-got // the local delivery
	}
}
