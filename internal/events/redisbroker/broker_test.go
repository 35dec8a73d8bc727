package redisbroker_test

import (
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/internal/events"
	"github.com/parley-chat/parley/internal/events/brokertest"
	"github.com/parley-chat/parley/internal/events/redisbroker"
	"github.com/parley-chat/parley/internal/testinfra"
)

func TestMain(m *testing.M) { os.Exit(testinfra.Run(m)) }

func newBroker(t *testing.T, url, prefix string) *redisbroker.Broker {
	t.Helper()
	return newBrokerTB(t, url, prefix)
}

func newBrokerTB(t testing.TB, url, prefix string) *redisbroker.Broker {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return redisbroker.New(redisbroker.Config{Client: c, Prefix: prefix, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
}

func waitConnected(t *testing.T, bs ...*redisbroker.Broker) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, b := range bs {
		for !b.Connected() {
			if time.Now().After(deadline) {
				t.Fatal("broker never connected")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func TestRedisBrokerConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) (events.Broker, events.Broker, func(*testing.T)) {
		srv := testinfra.StartRedis(t)
		a, b := newBroker(t, srv.URL(), "conf"), newBroker(t, srv.URL(), "conf")
		return a, b, func(t *testing.T) { waitConnected(t, a, b) }
	})
}

// Deployments sharing a Redis are kept apart by the prefix, whatever the
// database number (pub/sub ignores it).
func TestPrefixSeparatesDeployments(t *testing.T) {
	srv := testinfra.StartRedis(t)
	a, other := newBroker(t, srv.URL(), "one"), newBroker(t, srv.URL()[:len(srv.URL())-1]+"5", "two")
	got := make(chan events.Event, 1)
	if err := other.Subscribe(t.Context(), func(e events.Event) { got <- e }); err != nil {
		t.Fatal(err)
	}
	if err := a.Subscribe(t.Context(), func(events.Event) {}); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, a, other)
	_ = a.Publish(t.Context(), events.Event{Kind: events.KindTyping, ConversationID: "c"})
	select {
	case e := <-got:
		t.Fatalf("another deployment received %+v", e)
	case <-time.After(200 * time.Millisecond):
	}
}

// While Redis is down the broker keeps delivering locally and Publish does
// not wait; it reconnects by itself and calls OnConnect each time.
func TestOutageAndReconnect(t *testing.T) {
	srv := testinfra.StartRedis(t)
	opt, _ := redis.ParseURL(srv.URL())
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	connects := make(chan struct{}, 10)
	b := redisbroker.New(redisbroker.Config{Client: c, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		PingInterval: 200 * time.Millisecond, OnConnect: func() { connects <- struct{}{} }})
	local := make(chan events.Event, 10)
	if err := b.Subscribe(t.Context(), func(e events.Event) { local <- e }); err != nil {
		t.Fatal(err)
	}
	<-connects
	if err := b.Check(t.Context()); err != nil {
		t.Fatalf("check while up: %v", err)
	}
	srv.Stop(t)
	deadline := time.Now().Add(5 * time.Second)
	for b.Connected() {
		if time.Now().After(deadline) {
			t.Fatal("outage not noticed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := b.Check(t.Context()); err == nil {
		t.Fatal("check passes while Redis is down")
	}
	start := time.Now()
	if err := b.Publish(t.Context(), events.Event{Kind: events.KindTyping, ConversationID: "c"}); err != nil {
		t.Fatalf("publish while down: %v", err)
	}
	if time.Since(start) > 100*time.Millisecond {
		t.Fatalf("publish waited %v for a dead Redis", time.Since(start))
	}
	select {
	case <-local:
	case <-time.After(time.Second):
		t.Fatal("no local delivery while Redis is down")
	}
	srv.Start(t)
	select {
	case <-connects:
	case <-time.After(10 * time.Second):
		t.Fatal("no reconnect")
	}
	if b.Stats().Reconnects != 1 || b.Stats().PublishSkipped != 1 {
		t.Fatalf("stats %+v", b.Stats())
	}
}
