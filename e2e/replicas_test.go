package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/app"
	"github.com/parley-chat/parley/internal/apptest"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/events"
	"github.com/parley-chat/parley/internal/events/redisbroker"
	"github.com/parley-chat/parley/internal/testinfra"

	"github.com/redis/go-redis/v9"
)

// fromStart is a messageEvents cursor before a conversation's first event:
// subscribing with it replays everything and then goes live, so a test knows
// the subscription is registered once the first replayed event arrives.
func fromStart(conv string) string { return chat.EventCursor(conv, 0) }

// replicaPair starts two replicas sharing one database and one Redis.
func replicaPair(t *testing.T, env ...string) (a, b *apptest.Server, rds *testinfra.Redis) {
	t.Helper()
	rds = testinfra.StartRedis(t)
	env = append([]string{"REDIS_URL=" + rds.URL()}, env...)
	a = apptest.Start(t, env...)
	b = apptest.StartReplica(t, a.DatabaseURL(), nil, env...)
	return a, b, rds
}

// expectBodies reads messageEvents of op id until it has seen want, in
// order, each once; it fails on anything else.
func expectBodies(t *testing.T, c *apptest.Client, id string, want []string, timeout time.Duration) string {
	t.Helper()
	cursor := ""
	for i, w := range want {
		ev := subNextMsgWithin(t, c, id, timeout)
		if ev.Message.Body != w {
			raw, _ := base64.RawURLEncoding.DecodeString(ev.Cursor)
			t.Fatalf("event %d: got %s %q (cursor %s), want %q", i, ev.Type, ev.Message.Body, raw, w)
		}
		cursor = ev.Cursor
	}
	return cursor
}

func subNextMsgWithin(t *testing.T, c *apptest.Client, id string, timeout time.Duration) subMsgEvent {
	t.Helper()
	var d struct{ MessageEvents subMsgEvent }
	c.NextOp(id, timeout, &d)
	return d.MessageEvents
}

func numbered(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

// Two replicas sharing the database and Redis are one service: subscribers
// on one get every messageEvents, inbox and typing event published through
// the other, in order, each once.
func TestReplicasFormOneService(t *testing.T) {
	t.Parallel()
	a, b, rds := replicaPair(t)
	alice, bob := a.RegisterFor(t, "alice"), a.RegisterFor(t, "bob")
	conv := b.CreateConversation(alice, nil, bob)
	b.Send(alice, conv, "m0")

	sub := a.ConnectAs(bob)
	sub.Subscribe("msgs", subMessageEventsQ, subVars(conv, apptest.Ptr(fromStart(conv))))
	expectBodies(t, sub, "msgs", []string{"m0"}, 10*time.Second)
	sub.Subscribe("inbox", subInboxQ, nil)
	sub.Subscribe("typing", subTypingQ, subVars(conv, nil))

	// Inbox and typing have no replay: ring until the first one arrives.
	var inboxFirst subInboxEvent
	warm := 0
	for {
		b.Send(alice, conv, fmt.Sprintf("warm%d", warm))
		warm++
		m, err := sub.RecvOp("inbox", 500*time.Millisecond)
		if err == nil {
			var d struct{ Inbox subInboxEvent }
			m.DecodeData(t, &d)
			inboxFirst = d.Inbox
			break
		}
		if warm > 20 {
			t.Fatal("inbox never delivered an event from the other replica")
		}
	}
	if inboxFirst.Type != "MESSAGE_CREATED" || inboxFirst.Conversation.ID != conv {
		t.Fatalf("inbox event %+v", inboxFirst)
	}
	expectBodies(t, sub, "msgs", numbered("warm", 0, warm), 10*time.Second)
	// The warm-ups sent after the first one the inbox saw follow it.
	var first int
	if _, err := fmt.Sscanf(inboxFirst.Message.Body, "warm%d", &first); err != nil {
		t.Fatalf("first inbox event is about %q", inboxFirst.Message.Body)
	}
	for _, want := range numbered("warm", first+1, warm) {
		var d struct{ Inbox subInboxEvent }
		sub.NextOp("inbox", 10*time.Second, &d)
		if d.Inbox.Message == nil || d.Inbox.Message.Body != want {
			t.Fatalf("inbox: %+v, want %s", d.Inbox, want)
		}
	}

	// Concurrent senders on replica B.
	const n = 60
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 3 {
				if _, err := subPost(b.URL, alice.Token, `mutation($in: SendMessageInput!) { sendMessage(input: $in) { id } }`,
					map[string]any{"in": map[string]any{"conversationId": conv, "body": fmt.Sprintf("c%d", i)}}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	var last string
	for range n {
		ev := subNextMsgWithin(t, sub, "msgs", 10*time.Second)
		if seen[ev.Message.Body] {
			t.Fatalf("duplicate %q", ev.Message.Body)
		}
		seen[ev.Message.Body] = true
		if last != "" && ev.Cursor <= last && len(ev.Cursor) == len(last) {
			t.Fatalf("cursor went backwards: %s after %s", ev.Cursor, last)
		}
		last = ev.Cursor
	}
	for range n {
		var d struct{ Inbox subInboxEvent }
		sub.NextOp("inbox", 10*time.Second, &d)
		if d.Inbox.Type != "MESSAGE_CREATED" {
			t.Fatalf("inbox: %+v", d.Inbox)
		}
	}

	// However many clients subscribe, each replica holds one Redis
	// subscription, and it carries every conversation.
	for range 5 {
		c := a.ConnectAs(bob)
		c.Subscribe("x", subInboxQ, nil)
		c = b.ConnectAs(alice)
		c.Subscribe("x", subInboxQ, nil)
	}
	rdb := redis.NewClient(mustParseRedis(t, rds.URL()))
	defer rdb.Close()
	numsub, err := rdb.PubSubNumSub(t.Context(), "parley:events").Result()
	if err != nil {
		t.Fatal(err)
	}
	if numsub["parley:events"] != 2 {
		t.Fatalf("%d Redis subscriptions on parley:events, want one per replica (2)", numsub["parley:events"])
	}
	if chans, _ := rdb.PubSubChannels(t.Context(), "*").Result(); len(chans) != 1 {
		t.Fatalf("Redis channels %v, want only parley:events", chans)
	}

	subMutate(t, b, alice, `mutation($c: ID!) { setTyping(conversationId: $c, typing: true) }`, map[string]any{"c": conv})
	var ty struct{ Typing subTypingEvent }
	sub.NextOp("typing", 10*time.Second, &ty)
	if !ty.Typing.Typing || ty.Typing.User.ID != alice.ID {
		t.Fatalf("typing: %+v", ty.Typing)
	}
}

// A client whose replica stops while messages keep flowing reconnects to
// another replica with `after` and gets everything it missed, once.
func TestReplicaStoppedWhileMessagesFlow(t *testing.T) {
	t.Parallel()
	rds := testinfra.StartRedis(t)
	env := []string{"REDIS_URL=" + rds.URL()}
	sender := apptest.Start(t, env...)
	doomed := apptest.StartReplica(t, sender.DatabaseURL(), nil, env...)
	alice, bob := sender.RegisterFor(t, "alice"), sender.RegisterFor(t, "bob")
	conv := sender.CreateConversation(alice, nil, bob)
	sender.Send(alice, conv, "m0")

	sub := doomed.ConnectAs(bob)
	sub.Subscribe("1", subMessageEventsQ, subVars(conv, apptest.Ptr(fromStart(conv))))
	cursor := expectBodies(t, sub, "1", []string{"m0"}, 10*time.Second)

	const total = 120
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for i := 1; i <= total; i++ {
			if _, err := subPost(sender.URL, alice.Token, `mutation($in: SendMessageInput!) { sendMessage(input: $in) { id } }`,
				map[string]any{"in": map[string]any{"conversationId": conv, "body": fmt.Sprintf("m%d", i)}}); err != nil {
				t.Error(err)
				return
			}
			if i == total/3 {
				close(stop)
			}
		}
	}()

	// Read until the replica dies under the client.
	got := []string{"m0"}
	<-stop
	doomed.Stop()
	for {
		m, err := sub.RecvOp("1", 10*time.Second)
		if err != nil {
			break
		}
		if m.Type != "next" || len(m.Errors()) > 0 {
			break
		}
		var d struct{ MessageEvents subMsgEvent }
		m.DecodeData(t, &d)
		got = append(got, d.MessageEvents.Message.Body)
		cursor = d.MessageEvents.Cursor
	}
	<-sent

	other := apptest.StartReplica(t, sender.DatabaseURL(), nil, env...)
	resumed := other.ConnectAs(bob)
	resumed.Subscribe("1", subMessageEventsQ, subVars(conv, &cursor))
	expectBodies(t, resumed, "1", numbered("m", len(got), total+1), 10*time.Second)
	for i, body := range got {
		if body != fmt.Sprintf("m%d", i) {
			t.Fatalf("before the stop, event %d was %q", i, body)
		}
	}
}

// lossyRedis drops, on the way into Redis, every message event whose
// sequence number is a multiple of three, and the last one it is told to.
type lossyRedis struct {
	*redisbroker.Broker
	mu       sync.Mutex
	dropNext bool
}

func (l *lossyRedis) Publish(ctx context.Context, e events.Event) error {
	l.mu.Lock()
	drop := e.Kind == events.KindMessage && (e.Seq%3 == 0 || l.dropNext)
	l.dropNext = false
	l.mu.Unlock()
	if drop {
		return nil
	}
	return l.Broker.Publish(ctx, e)
}

// Pub/sub messages dropped on purpose reach subscribers on the other replica
// all the same: a jump is filled from the database, and a lost last message
// is found by the periodic resync.
func TestDroppedPubSubMessagesAreRecovered(t *testing.T) {
	t.Parallel()
	rds := testinfra.StartRedis(t)
	env := []string{"REDIS_URL=" + rds.URL(), "RESYNC_INTERVAL=300ms"}
	a := apptest.Start(t, env...)
	client := redis.NewClient(mustParseRedis(t, rds.URL()))
	t.Cleanup(func() { client.Close() })
	lossy := &lossyRedis{Broker: redisbroker.New(redisbroker.Config{Client: client})}
	b := apptest.StartReplica(t, a.DatabaseURL(), []app.Option{app.WithBroker(lossy)}, env...)

	alice, bob := a.RegisterFor(t, "alice"), a.RegisterFor(t, "bob")
	conv := a.CreateConversation(alice, nil, bob)
	a.Send(alice, conv, "m0")
	sub := a.ConnectAs(bob)
	sub.Subscribe("1", subMessageEventsQ, subVars(conv, apptest.Ptr(fromStart(conv))))
	expectBodies(t, sub, "1", []string{"m0"}, 10*time.Second)

	for i := 1; i <= 9; i++ {
		b.Send(alice, conv, fmt.Sprintf("m%d", i))
	}
	expectBodies(t, sub, "1", numbered("m", 1, 10), 10*time.Second)

	// The last message of a burst is lost and nothing follows it.
	lossy.mu.Lock()
	lossy.dropNext = true
	lossy.mu.Unlock()
	b.Send(alice, conv, "last")
	expectBodies(t, sub, "1", []string{"last"}, 5*time.Second)
}

func mustParseRedis(t *testing.T, url string) *redis.Options {
	t.Helper()
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// While Redis is down each replica keeps serving its own subscribers and
// /readyz names Redis; when it returns, cross-replica delivery resumes by
// itself and what was published in between arrives.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	a, b, rds := replicaPair(t)
	alice, bob := a.RegisterFor(t, "alice"), a.RegisterFor(t, "bob")
	conv := a.CreateConversation(alice, nil, bob)
	a.Send(alice, conv, "m0")
	subA := a.ConnectAs(bob)
	subA.Subscribe("1", subMessageEventsQ, subVars(conv, apptest.Ptr(fromStart(conv))))
	subB := b.ConnectAs(bob)
	subB.Subscribe("1", subMessageEventsQ, subVars(conv, apptest.Ptr(fromStart(conv))))
	expectBodies(t, subA, "1", []string{"m0"}, 10*time.Second)
	expectBodies(t, subB, "1", []string{"m0"}, 10*time.Second)

	rds.Stop(t)
	waitReady(t, a, http.StatusServiceUnavailable, "redis")
	waitReady(t, b, http.StatusServiceUnavailable, "redis")

	// Each replica still serves its own subscribers. B's subscriber sees
	// the jump to B's message and fills A's from the database on the way.
	a.Send(alice, conv, "during-a")
	expectBodies(t, subA, "1", []string{"during-a"}, 5*time.Second)
	b.Send(alice, conv, "during-b")
	expectBodies(t, subB, "1", []string{"during-a", "during-b"}, 5*time.Second)

	rds.Start(t)
	waitReady(t, a, http.StatusOK, "")
	waitReady(t, b, http.StatusOK, "")
	// What the other replica published during the outage arrives by itself.
	expectBodies(t, subA, "1", []string{"during-b"}, 10*time.Second)
	// And cross-replica delivery is live again.
	b.Send(alice, conv, "after")
	expectBodies(t, subA, "1", []string{"after"}, 10*time.Second)
	expectBodies(t, subB, "1", []string{"after"}, 10*time.Second)
}

func waitReady(t *testing.T, s *apptest.Server, status int, failing string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Status string
			Checks map[string]string
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode == status && (failing == "" || strings.HasPrefix(body.Checks[failing], "failing")) {
			if failing == "" && body.Checks["redis"] != "ok" {
				t.Fatalf("/readyz ok without a redis check: %+v", body)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d %+v, want %d with %q failing", resp.StatusCode, body, status, failing)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
