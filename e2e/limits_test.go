package e2e

import (
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/apptest"
)

func TestOperationLimits(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "MAX_DEPTH=7", "MAX_COMPLEXITY=2000")
	u := s.Register("limits")

	deep := `{ conversations { edges { node { lastMessage { conversation { lastMessage { sender { username } } } } } } } }`
	r := s.Post(u.Token, deep, nil)
	if len(r.Errors) != 1 || r.Errors[0].Code() != "GRAPHQL_VALIDATION_FAILED" || r.Errors[0].Extensions["reason"] != "DEPTH_LIMIT_EXCEEDED" {
		t.Fatalf("too deep: %+v", r.Errors)
	}
	if !strings.Contains(r.Errors[0].Message, "limit of 7") {
		t.Errorf("message does not name the limit: %q", r.Errors[0].Message)
	}
	// The same depth through a fragment is caught too.
	r = s.Post(u.Token, `query { conversations { edges { node { ...C } } } }
fragment C on Conversation { lastMessage { conversation { lastMessage { sender { username } } } } }`, nil)
	if len(r.Errors) != 1 || r.Errors[0].Extensions["reason"] != "DEPTH_LIMIT_EXCEEDED" {
		t.Fatalf("too deep through a fragment: %+v", r.Errors)
	}
	// Introspection nests deeply but is exempt.
	r = s.Post("", `{ __schema { types { name fields { type { ofType { ofType { ofType { name } } } } } } } }`, nil)
	if len(r.Errors) != 0 {
		t.Fatalf("introspection rejected: %+v", r.Errors)
	}

	// Pages multiply: 100 conversations × 100 messages × their fields.
	r = s.Post(u.Token, `{ conversations(first: 100) { edges { node { messages(first: 100) { edges { node { body } } } } } } }`, nil)
	if len(r.Errors) != 1 || r.Errors[0].Code() != "GRAPHQL_VALIDATION_FAILED" || r.Errors[0].Extensions["reason"] != "COMPLEXITY_LIMIT_EXCEEDED" {
		t.Fatalf("nested pages: %+v", r.Errors)
	}
	// A realistic list screen passes.
	r = s.Post(u.Token, `{ conversations(first: 20) { totalCount edges { cursor node { id title participants { username }
		lastMessage { body sender { username } } unreadCount readReceipts { user { username } readAt } } } } }`, nil)
	if len(r.Errors) != 0 {
		t.Fatalf("list screen rejected: %+v", r.Errors)
	}
}
