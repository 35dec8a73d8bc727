package events

import (
	"context"
	"slices"
	"testing"
	"time"
)

func startHub(t *testing.T, cfg HubConfig) (*Hub, *MemoryBroker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := NewMemoryBroker()
	h := NewHub(cfg)
	done, err := h.Start(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-done })
	return h, b
}

func recv(t *testing.T, s *Subscription) *Delivery {
	t.Helper()
	timeout := time.After(2 * time.Second)
	for {
		if d, ok := s.Pop(); ok {
			return d
		}
		select {
		case <-s.Wait():
		case <-timeout:
			t.Fatal("no delivery")
			return nil
		}
	}
}

func TestHubRoutesByConversationKindAndMembership(t *testing.T) {
	members := map[string][]string{"c1": {"u1", "u2"}, "c2": {"u3"}}
	h, b := startHub(t, HubConfig{
		Members:  func(_ context.Context, c string) ([]string, error) { return members[c], nil },
		NewScope: func() any { return new(int) },
	})
	msgs := h.SubscribeConversation("c1", KindMessage)
	typing := h.SubscribeConversation("c1", KindTyping)
	inboxU2 := h.SubscribeInbox("u2")
	inboxU3 := h.SubscribeInbox("u3")
	ctx := context.Background()

	_ = b.Publish(ctx, Event{Kind: KindTyping, ConversationID: "c1", UserID: "u1", Typing: true})
	_ = b.Publish(ctx, Event{Kind: KindMessage, ConversationID: "c1", Seq: 1, MessageID: "m1"})
	_ = b.Publish(ctx, Event{Kind: KindMessage, ConversationID: "c2", Seq: 1, MessageID: "m2"})
	_ = b.Publish(ctx, Event{Kind: KindConversation, ConversationID: "c1", Type: "PARTICIPANTS_CHANGED", UserID: "u3", Notify: []string{"u3"}})

	if d := recv(t, typing); d.Kind != KindTyping || !d.Typing {
		t.Fatalf("typing subscription got %+v", d.Event)
	}
	d1 := recv(t, msgs)
	if d1.MessageID != "m1" {
		t.Fatalf("message subscription got %+v", d1.Event)
	}
	d2 := recv(t, inboxU2)
	if d2.MessageID != "m1" {
		t.Fatalf("u2's inbox got %+v", d2.Event)
	}
	if d1.Scope() != d2.Scope() || d1.Scope() == nil {
		t.Fatal("subscribers of one event must share one scope")
	}
	if d := recv(t, inboxU3); d.MessageID != "m2" {
		t.Fatalf("u3's inbox got %+v first", d.Event)
	}
	if d := recv(t, inboxU3); d.Type != "PARTICIPANTS_CHANGED" {
		t.Fatalf("u3 (notified, not a member) got %+v", d.Event)
	}
	time.Sleep(50 * time.Millisecond)
	if d, ok := msgs.Pop(); ok {
		t.Fatalf("message subscription of c1 got an event of %s", d.ConversationID)
	}
	if d, ok := typing.Pop(); ok {
		t.Fatalf("typing subscription got %+v", d.Event)
	}
}

func TestSlowSubscriberIsCutOffWithoutBlockingOthers(t *testing.T) {
	h, b := startHub(t, HubConfig{Buffer: 4})
	slow := h.SubscribeConversation("c", KindMessage)
	fast := h.SubscribeConversation("c", KindMessage)
	var got []int64
	for i := int64(1); i <= 10; i++ {
		_ = b.Publish(context.Background(), Event{Kind: KindMessage, ConversationID: "c", Seq: i})
		got = append(got, recv(t, fast).Seq)
	}
	if !slices.Equal(got, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Fatalf("fast subscriber got %v", got)
	}
	select {
	case <-slow.Lagged():
	case <-time.After(2 * time.Second):
		t.Fatal("slow subscriber was not cut off")
	}
	// The cut-off subscription is removed from the hub.
	deadline := time.Now().Add(2 * time.Second)
	for {
		h.mu.RLock()
		n := len(h.convs["c"])
		h.mu.RUnlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscriptions left, want 1", n)
		}
		time.Sleep(time.Millisecond)
	}
	fast.Close()
	h.mu.RLock()
	defer h.mu.RUnlock()
	if len(h.convs) != 0 {
		t.Fatal("closing the last subscription must forget the conversation")
	}
}
