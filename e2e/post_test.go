package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"github.com/parley-chat/parley/internal/apptest"
)

// rawPost sends body to /graphql with an Accept header and returns the
// status, content type and body as they came, and the headers.
func rawPost(t *testing.T, s *apptest.Server, token, accept string, body []byte) (int, string, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	r := htDoT(t, req, token)
	return r.Status, r.Header.Get("Content-Type"), r.Raw, r.Header
}

// TestPOSTAnswersAsGqlgen: plain application/json answers are written by
// our POST transport (post.go), application/graphql-response+json ones by
// gqlgen's; bodies must be the same bytes, and failures must keep gqlgen's
// statuses and bodies whichever way the client asked.
func TestPOSTAnswersAsGqlgen(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := s.Register("posta"), s.Register("postb")
	conv := s.CreateConversation(alice, nil, bob)
	s.Send(bob, conv, `quotes " and \ and <tags> and ünïcode`)

	page := []byte(`{"query":"query($n: Int) { conversations(first: $n) { edges { node { id title unreadCount participants { username } lastMessage { body sender { username } } } } } }","variables":{"n":5}}`)
	status, ctype, plain, header := rawPost(t, s, alice.Token, "", page)
	if status != http.StatusOK || ctype != "application/json" {
		t.Fatalf("plain: status %d, content type %q: %s", status, ctype, plain)
	}
	if header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("plain answer without nosniff: %v", header)
	}
	var got struct {
		Data struct {
			Conversations struct {
				Edges []struct {
					Node struct {
						LastMessage struct{ Body string }
					}
				}
			}
		}
		Errors []any
	}
	if err := json.Unmarshal(plain, &got); err != nil || len(got.Errors) > 0 || len(got.Data.Conversations.Edges) != 1 {
		t.Fatalf("plain answer %s (err %v)", plain, err)
	}
	if b := got.Data.Conversations.Edges[0].Node.LastMessage.Body; b != `quotes " and \ and <tags> and ünïcode` {
		t.Fatalf("last message %q", b)
	}
	for _, accept := range []string{"*/*", "application/json", "text/html, application/json;q=0.9"} {
		if st, ct, b, _ := rawPost(t, s, alice.Token, accept, page); st != status || ct != ctype || !bytes.Equal(b, plain) {
			t.Errorf("Accept %q: status %d, %q, %s; want the plain answer", accept, st, ct, b)
		}
	}
	st, ct, viaGqlgen, _ := rawPost(t, s, alice.Token, "application/graphql-response+json", page)
	if st != http.StatusOK || ct != "application/graphql-response+json" {
		t.Fatalf("graphql-response+json: status %d, content type %q", st, ct)
	}
	// The same document; json.Marshal only escapes <, > and & as \u003c…,
	// which a client served application/json with nosniff never needs.
	var ours, theirs any
	if json.Unmarshal(plain, &ours) != nil || json.Unmarshal(viaGqlgen, &theirs) != nil || !reflect.DeepEqual(ours, theirs) {
		t.Fatalf("answers differ:\nours:   %s\ngqlgen: %s", plain, viaGqlgen)
	}

	// Failures are answered by gqlgen's transport either way.
	for _, tc := range []struct {
		name   string
		body   string
		status int
	}{
		{"not JSON", `{"query": `, http.StatusBadRequest},
		{"syntax error", `{"query":"query {"}`, http.StatusUnprocessableEntity},
		{"unknown field", `{"query":"{ nope }"}`, http.StatusUnprocessableEntity},
		{"bad variable", `{"query":"query($n: Int) { conversations(first: $n) { totalCount } }","variables":{"n":"x"}}`, http.StatusUnprocessableEntity},
	} {
		st, ct, b, _ := rawPost(t, s, alice.Token, "application/json", []byte(tc.body))
		var r struct{ Errors []struct{ Message string } }
		if st != tc.status || ct != "application/json" || json.Unmarshal(b, &r) != nil || len(r.Errors) == 0 {
			t.Errorf("%s: status %d (want %d), %q, %s", tc.name, st, tc.status, ct, b)
		}
	}
	// A response with errors still goes through json.Marshal.
	_, _, b, _ := rawPost(t, s, "", "application/json", page)
	var r struct {
		Errors []struct{ Extensions map[string]any }
	}
	if json.Unmarshal(b, &r) != nil || len(r.Errors) == 0 || r.Errors[0].Extensions["code"] != "UNAUTHENTICATED" {
		t.Errorf("unauthenticated page: %s", b)
	}
}
