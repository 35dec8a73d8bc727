package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/apptest"
)

// A graphql-transport-ws subscription whose payload is shared keeps none of
// gqlgen's execution state between events: it runs the operation again for
// an event it must execute (graph/detach.go). Legacy graphql-ws goes through
// gqlgen's own handler. Both must answer the same, event for event, and end
// with the same error. The operations have different names so that neither
// reuses the other's encoded payload.
func TestDetachedSubscriptionAnswersAsGqlgen(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob, carol := subRegister(t, s, "alice"), subRegister(t, s, "bob"), subRegister(t, s, "carol")
	g := s.CreateConversation(alice, apptest.Ptr("detached"), bob, carol)
	cur := subCursor(t, s, bob, alice, g)
	const selection = `(conversationId: $c, after: $after) { type cursor message { id body createdAt editedAt deletedAt
		clientMessageId sender { id username displayName } attachments { id url }
		conversation { id kind title participants { id } } } } }`
	vars := subVars(g, &cur)

	detached := s.ConnectAs(bob)
	detached.Subscribe("m", `subscription Detached($c: ID!, $after: String) { messageEvents`+selection, vars)
	legacy := s.Connect(apptest.LegacyWS, map[string]any{"Authorization": "Bearer " + bob.Token})
	legacy.Start("m", `subscription Gqlgen($c: ID!, $after: String) { messageEvents`+selection, vars)

	// An event's payload is the message as it is when the event is run, so
	// each change waits for both subscribers to have the previous one.
	same := func(step string) {
		t.Helper()
		d, l := detached.MustOp("m", 5*time.Second), legacy.MustOp("m", 5*time.Second)
		if d.Type != "next" || l.Type != "data" {
			t.Fatalf("%s: %s / %s", step, d.Type, l.Type)
		}
		var dp, lp struct {
			Data   json.RawMessage
			Errors json.RawMessage
		}
		if err := json.Unmarshal(d.Payload, &dp); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(l.Payload, &lp); err != nil {
			t.Fatal(err)
		}
		if string(dp.Data) != string(lp.Data) || len(dp.Errors) > 0 || len(lp.Errors) > 0 {
			t.Fatalf("%s differs:\ndetached %s\ngqlgen   %s", step, d.Payload, l.Payload)
		}
	}
	first := s.Send(alice, g, "one")
	same("created")
	second := s.Send(carol, g, "two")
	same("created by another")
	subMutate(t, s, alice, `mutation($id: ID!) { editMessage(id: $id, body: "one, edited") { id } }`, map[string]any{"id": first})
	same("edited")
	subMutate(t, s, carol, `mutation($id: ID!) { deleteMessage(id: $id) { id } }`, map[string]any{"id": second})
	same("deleted")

	subMutate(t, s, bob, `mutation($c: ID!) { leaveConversation(conversationId: $c) }`, map[string]any{"c": g})
	last := func(c *apptest.Client) string {
		for {
			m := c.MustOp("m", 5*time.Second)
			if errs := m.Errors(); len(errs) > 0 {
				e := errs[0]
				return fmt.Sprintf("%s %v %v", e.Message, e.Path, e.Code())
			}
			if m.Type == "complete" {
				t.Fatal("ended without an error")
			}
		}
	}
	if d, l := last(detached), last(legacy); d != l || !slices.Contains([]string{"NOT_FOUND"}, lastWord(d)) {
		t.Fatalf("after leaving:\ndetached %s\ngqlgen   %s", d, l)
	}
}

func lastWord(s string) string {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ' ' {
			return s[i+1:]
		}
	}
	return s
}
