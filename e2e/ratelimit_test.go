package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/apptest"
)

const sendQ = `mutation($in: SendMessageInput!) { sendMessage(input: $in) { id } }`

func sendVars(conv, body string) map[string]any {
	return map[string]any{"in": map[string]any{"conversationId": conv, "body": body}}
}

func wantRateLimited(t *testing.T, r *apptest.Response) {
	t.Helper()
	if len(r.Errors) != 1 || r.Errors[0].Code() != "RATE_LIMITED" {
		t.Fatalf("want one RATE_LIMITED error, got %+v", r.Errors)
	}
	if retry, _ := r.Errors[0].Extensions["retryAfter"].(float64); retry <= 0 {
		t.Fatalf("no retry hint: %+v", r.Errors[0])
	}
}

func messageCount(t *testing.T, s *apptest.Server, u apptest.User, conv string) int {
	t.Helper()
	var out struct {
		Conversation struct{ Messages struct{ TotalCount int } }
	}
	s.Post(u.Token, `query($c: ID!) { conversation(id: $c) { messages { totalCount } } }`, map[string]any{"c": conv}).Decode(t, &out)
	return out.Conversation.Messages.TotalCount
}

// Limits of one user are counted in Redis, so a user cannot escape them by
// spreading requests over replicas.
func TestMutationRateLimitSharedAcrossReplicas(t *testing.T) {
	t.Parallel()
	a, b, _ := replicaPair(t, "RATE_LIMIT_MUTATIONS=1/m", "RATE_LIMIT_MUTATIONS_BURST=4")
	alice, bob := a.RegisterFor(t, "alice"), a.RegisterFor(t, "bob")
	conv := a.CreateConversation(alice, nil, bob) // 1
	a.Send(alice, conv, "one")                    // 2
	b.Send(alice, conv, "two")                    // 3
	a.Send(alice, conv, "three")                  // 4
	wantRateLimited(t, b.Post(alice.Token, sendQ, sendVars(conv, "four")))
	wantRateLimited(t, a.Post(alice.Token, sendQ, sendVars(conv, "four")))
	if n := messageCount(t, a, bob, conv); n != 3 {
		t.Fatalf("%d messages stored, want 3: a limited mutation must write nothing", n)
	}
	// Another user has a budget of their own.
	b.Send(bob, conv, "bob's")
}

func TestMutationRateLimitInProcess(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "RATE_LIMIT_MUTATIONS=1/m", "RATE_LIMIT_MUTATIONS_BURST=2")
	alice, bob := s.RegisterFor(t, "alice"), s.RegisterFor(t, "bob")
	conv := s.CreateConversation(alice, nil, bob)
	s.Send(alice, conv, "one")
	wantRateLimited(t, s.Post(alice.Token, sendQ, sendVars(conv, "two")))
	// Several mutations in one request count one each.
	r := s.Post(bob.Token, `mutation($c: ID!) { a: setTyping(conversationId: $c, typing: true) b: setTyping(conversationId: $c, typing: true) c: setTyping(conversationId: $c, typing: false) }`,
		map[string]any{"c": conv})
	if len(r.Errors) != 1 || r.Errors[0].Code() != "RATE_LIMITED" || r.Errors[0].Path[0] != "c" {
		t.Fatalf("third mutation of a request: %+v", r.Errors)
	}
}

func TestSignInRateLimitPerIP(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "RATE_LIMIT_AUTH=1/m", "RATE_LIMIT_AUTH_BURST=2")
	u := s.RegisterFor(t, "carol") // 1
	login := `mutation($u: String!) { login(username: $u, password: "wrong-password") { token } }`
	r := s.Post("", login, map[string]any{"u": u.Username}) // 2
	if len(r.Errors) != 1 || r.Errors[0].Code() != "UNAUTHENTICATED" {
		t.Fatalf("second attempt: %+v", r.Errors)
	}
	wantRateLimited(t, s.Post("", login, map[string]any{"u": u.Username}))
}

// Over the new-connection rate a WebSocket is closed with 4429 after
// connection_init, with a retry hint in the close reason.
func TestWebSocketConnectionRateLimit(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "RATE_LIMIT_CONNECTIONS=1/m", "RATE_LIMIT_CONNECTIONS_BURST=2")
	u := s.RegisterFor(t, "dave")
	s.ConnectAs(u)
	s.ConnectAs(u)
	ws := s.Dial(apptest.TransportWS)
	ws.Send(map[string]any{"type": "connection_init", "payload": map[string]any{"token": u.Token}})
	var err error
	for err == nil {
		_, err = ws.TryRead(5 * time.Second)
	}
	if code := apptest.CloseStatus(err); code != 4429 {
		t.Fatalf("third connection closed with %d (%v), want 4429", code, err)
	}
	// Another user is not affected.
	s.ConnectAs(s.RegisterFor(t, "erin"))
	resp, err := http.Get(s.URL + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("server unhealthy after rejections: %v", err)
	}
	resp.Body.Close()
}
