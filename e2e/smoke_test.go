package e2e

import (
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/apptest"
)

func TestTransportWSExchange(t *testing.T) {
	s := apptest.Start(t)
	alice, bob := s.Register("alice"), s.Register("bob")
	conv := s.CreateConversation(alice, nil, bob)

	ws := s.Dial(apptest.TransportWS)
	ws.Init(map[string]any{"Authorization": "Bearer " + bob.Token})
	ws.Subscribe("1", `subscription($c: ID!) { messageEvents(conversationId: $c) { type cursor message { body sender { username } } } }`,
		map[string]any{"c": conv})
	time.Sleep(100 * time.Millisecond) // let the subscription register before sending
	s.Send(alice, conv, "hello bob")
	var ev struct {
		MessageEvents struct {
			Type, Cursor string
			Message      struct {
				Body   string
				Sender struct{ Username string }
			}
		}
	}
	ws.Next(5*time.Second, &ev)
	if ev.MessageEvents.Type != "CREATED" || ev.MessageEvents.Message.Body != "hello bob" || ev.MessageEvents.Message.Sender.Username != alice.Username {
		t.Fatalf("unexpected event %+v", ev)
	}
	ws.Send(map[string]any{"id": "1", "type": "complete"})
}
