package events

import (
	"context"
	"testing"
	"time"
)

func TestLaggingDropsAreCounted(t *testing.T) {
	h, b := startHub(t, HubConfig{Buffer: 2})
	slow := h.SubscribeConversation("c", KindMessage)
	for i := int64(1); i <= 3; i++ {
		_ = b.Publish(context.Background(), Event{Kind: KindMessage, ConversationID: "c", Seq: i})
	}
	select {
	case <-slow.Lagged():
	case <-time.After(2 * time.Second):
		t.Fatal("slow subscriber was not cut off")
	}
	if n := h.LaggingDrops(); n != 1 {
		t.Fatalf("LaggingDrops = %d, want 1 (the third event)", n)
	}
	if n := h.Dropped(); n != 0 {
		t.Fatalf("Dropped = %d: the inbound queue was not full", n)
	}
}
