package e2e

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/apptest"
)

// Subscribers of one event with the same selection share one execution and
// encoding of its payload, whatever their protocol; a selection with a field
// that depends on the viewer (unreadCount) is executed for each of them.
func TestSubscribersShareEncodedPayloads(t *testing.T) {
	s := apptest.Start(t)
	alice, bob, carol := s.Register("share_a"), s.Register("share_b"), s.Register("share_c")
	conv := s.CreateConversation(alice, apptest.Ptr("share"), bob, carol)

	const shared = `subscription($c: ID!) { messageEvents(conversationId: $c) { type cursor message { id body sender { username } } } }`
	const perViewer = `subscription($c: ID!) { messageEvents(conversationId: $c) { cursor message { id conversation { unreadCount } } } }`
	vars := map[string]any{"c": conv}

	var sharedSubs []*apptest.Client
	for _, u := range []apptest.User{alice, alice, bob, carol} {
		c := s.ConnectAs(u)
		c.Subscribe("a", shared, vars)
		sharedSubs = append(sharedSubs, c)
	}
	legacy := s.Connect(apptest.LegacyWS, map[string]any{"authToken": bob.Token})
	legacy.Start("a", shared, vars)
	sharedSubs = append(sharedSubs, legacy)
	aliceUnread, bobUnread := s.ConnectAs(alice), s.ConnectAs(bob)
	aliceUnread.Subscribe("b", perViewer, vars)
	bobUnread.Subscribe("b", perViewer, vars)
	waitMetric(t, s, `parley_subscriptions_active{field="messageEvents"} 7`)

	before := scrape(t, s)
	s.Send(alice, conv, "hello, everyone")

	var first json.RawMessage
	for i, c := range sharedSubs {
		m := c.NextOp("a", 5*time.Second, nil)
		if i == 0 {
			first = m.Payload
			continue
		}
		if !bytes.Equal(compactJSON(t, m.Payload), compactJSON(t, first)) {
			t.Errorf("subscriber %d got %s, subscriber 0 got %s", i, m.Payload, first)
		}
	}
	unread := func(c *apptest.Client) int {
		var out struct {
			MessageEvents struct {
				Message struct{ Conversation struct{ UnreadCount int } }
			}
		}
		c.NextOp("b", 5*time.Second, &out)
		return out.MessageEvents.Message.Conversation.UnreadCount
	}
	if a, b := unread(aliceUnread), unread(bobUnread); a != 0 || b != 1 {
		t.Errorf("unreadCount: sender sees %d (want 0), bob sees %d (want 1)", a, b)
	}

	after := scrape(t, s)
	encoded := metricValue(t, after, `parley_subscription_payloads_total{result="encoded"}`) - metricValue(t, before, `parley_subscription_payloads_total{result="encoded"}`)
	reused := metricValue(t, after, `parley_subscription_payloads_total{result="shared"}`) - metricValue(t, before, `parley_subscription_payloads_total{result="shared"}`)
	// One encoding for the five shared subscribers, one per viewer for the
	// two others.
	if encoded != 3 || reused != 4 {
		t.Errorf("payloads: %v encoded, %v shared; want 3 and 4", encoded, reused)
	}
}

func compactJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("payload %q: %v", b, err)
	}
	return buf.Bytes()
}

// metricValue returns the value of the sample named exactly series (name
// and labels) in a /metrics scrape, or 0 if it is absent.
func metricValue(t *testing.T, scrape, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(scrape, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", line, err)
			}
			return f
		}
	}
	return 0
}
