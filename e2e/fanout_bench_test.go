package e2e

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/apptest"
)

// BenchmarkFanout sends one message per iteration to a group conversation
// whose 200 graphql-transport-ws subscriptions (20 users × 10 sockets) each
// receive it before the next is sent. It reports µs per delivery, the whole
// path (sendMessage over HTTP, broker, hub, event execution, WebSocket
// write, client read) on one machine, for profiling the fan-out:
//
//	go test -run '^$' -bench Fanout -benchtime 2000x -cpuprofile /tmp/fanout.pprof ./e2e/
func BenchmarkFanout(b *testing.B) {
	const users, socketsPerUser = 20, 10
	srv := apptest.Start(b, "RATE_LIMIT_MUTATIONS=off", "RATE_LIMIT_CONNECTIONS=off")
	members := make([]apptest.User, users)
	for i := range members {
		members[i] = srv.RegisterFor(b, "fan")
	}
	conv := srv.CreateConversation(members[0], apptest.Ptr("fanout"), members[1:]...)

	var received atomic.Int64
	var wg sync.WaitGroup
	subscribers := users * socketsPerUser
	for i := range subscribers {
		c := srv.ConnectAs(members[i%users])
		c.Subscribe("s", `subscription($c: ID!) { messageEvents(conversationId: $c) { type cursor message { id body createdAt sender { id displayName } } } }`,
			map[string]any{"c": conv})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := c.Recv(time.Minute)
				if err != nil {
					return
				}
				if m.Type == "next" {
					received.Add(1)
				}
			}
		}()
		b.Cleanup(func() { _ = c.Conn.Close(websocket.StatusNormalClosure, "") })
	}
	// Every subscription must be live before measuring.
	time.Sleep(200 * time.Millisecond)
	srv.Send(members[0], conv, "warm-up")
	waitFor(b, &received, int64(subscribers))

	b.ResetTimer()
	for i := range b.N {
		srv.Send(members[i%users], conv, fmt.Sprintf("message %d", i))
		waitFor(b, &received, int64(subscribers*(i+2)))
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*subscribers), "µs/delivery")
}

func waitFor(b *testing.B, n *atomic.Int64, want int64) {
	deadline := time.Now().Add(10 * time.Second)
	for n.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("deliveries: %d, want %d", n.Load(), want)
		}
		time.Sleep(50 * time.Microsecond)
	}
}
