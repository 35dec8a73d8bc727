package e2e

// Behaviour that depends on the database underneath, run against whichever
// PARLEY_TEST_DATABASE selects: strings PostgreSQL cannot store (NUL,
// invalid UTF-8), and races that SQLite's single writer hides but
// PostgreSQL's row locks expose. Helpers of this file are prefixed "db".

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/parley-chat/parley/internal/apptest"
	"github.com/parley-chat/parley/internal/database"
)

// dbNoInternal fails when r carries INTERNAL_SERVER_ERROR: input a client
// can send must be answered as such, not fail the database.
func dbNoInternal(t testing.TB, what string, r *htResp) {
	t.Helper()
	if slices.Contains(r.Codes(), "INTERNAL_SERVER_ERROR") {
		t.Errorf("%s: internal error: %s", what, r.Raw)
	}
}

// Arguments with NUL characters or invalid UTF-8 (which PostgreSQL rejects
// in text, while SQLite stores them) are answered like any other bad or
// unknown input.
func TestUnstorableStrings(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, apptest.Ptr("room"), bob)
	m := htSend(t, s, alice, conv, "hello")
	const nul = "\x00"
	cursor := func(parts ...string) string {
		return base64.RawURLEncoding.EncodeToString([]byte(strings.Join(parts, ":")))
	}
	cases := []struct {
		name, token, query string
		vars               map[string]any
	}{
		{"login", "", `mutation($u: String!) { login(username: $u, password: "password-123") { token } }`,
			map[string]any{"u": "alice" + nul}},
		{"register", "", `mutation($u: String!) { register(username: $u, password: "password-123") { token } }`,
			map[string]any{"u": "x" + nul + "yz"}},
		{"users", alice.Token, `query($s: String) { users(search: $s) { id } }`, map[string]any{"s": "al" + nul}},
		{"conversation", alice.Token, `query($id: ID!) { conversation(id: $id) { id } }`, map[string]any{"id": conv + nul}},
		{"node user", alice.Token, `query($id: ID!) { a: node(id: $id) { id } b: node(id: "` + bob.ID + `") { id } }`,
			map[string]any{"id": "usr_" + nul}},
		{"node conversation", alice.Token, `query($id: ID!) { node(id: $id) { id } }`, map[string]any{"id": "cnv_" + nul}},
		{"node message", alice.Token, `query($id: ID!) { node(id: $id) { id } }`, map[string]any{"id": "msg_" + nul}},
		{"node attachment", alice.Token, `query($id: ID!) { node(id: $id) { id } }`, map[string]any{"id": "att_" + nul}},
		{"conversations after", alice.Token, `query($a: String) { conversations(after: $a) { totalCount } }`,
			map[string]any{"a": cursor("c", "1", "cnv_"+nul)}},
		{"conversations after, invalid UTF-8", alice.Token, `query($a: String) { conversations(after: $a) { totalCount } }`,
			map[string]any{"a": cursor("c", "1", "cnv_\xff\xfe")}},
		{"createConversation", alice.Token, `mutation($p: [ID!]!) { createConversation(input: {participantIds: $p}) { id } }`,
			map[string]any{"p": []string{bob.ID + nul}}},
		{"addParticipants", alice.Token, `mutation($c: ID!, $u: [ID!]!) { addParticipants(conversationId: $c, userIds: $u) { id } }`,
			map[string]any{"c": conv, "u": []string{"usr_" + nul}}},
		{"leaveConversation", alice.Token, `mutation($c: ID!) { leaveConversation(conversationId: $c) }`,
			map[string]any{"c": conv + nul}},
		{"sendMessage conversation", alice.Token, `mutation($in: SendMessageInput!) { sendMessage(input: $in) { id } }`,
			map[string]any{"in": map[string]any{"conversationId": conv + nul, "body": "x"}}},
		{"sendMessage clientMessageId", alice.Token, `mutation($in: SendMessageInput!) { sendMessage(input: $in) { id } }`,
			map[string]any{"in": map[string]any{"conversationId": conv, "body": "x", "clientMessageId": "c" + nul}}},
		{"sendMessage attachmentIds", alice.Token, `mutation($in: SendMessageInput!) { sendMessage(input: $in) { id } }`,
			map[string]any{"in": map[string]any{"conversationId": conv, "body": "x", "attachmentIds": []string{"att_" + nul}}}},
		{"editMessage", alice.Token, `mutation($m: ID!) { editMessage(id: $m, body: "x") { id } }`, map[string]any{"m": m.ID + nul}},
		{"deleteMessage", alice.Token, `mutation($m: ID!) { deleteMessage(id: $m) { id } }`, map[string]any{"m": m.ID + nul}},
		{"markConversationRead", bob.Token, `mutation($c: ID!, $m: ID) { markConversationRead(conversationId: $c, upToMessageId: $m) { id } }`,
			map[string]any{"c": conv, "m": m.ID + nul}},
		{"setTyping", alice.Token, `mutation($c: ID!) { setTyping(conversationId: $c, typing: true) }`, map[string]any{"c": conv + nul}},
	}
	for _, c := range cases {
		r := htPost(t, s, c.token, c.query, c.vars)
		dbNoInternal(t, c.name, r)
		if len(r.Errors) == 0 && c.name != "users" && !strings.HasPrefix(c.name, "node") && c.name != "conversation" {
			t.Errorf("%s: accepted: %s", c.name, r.Raw)
		}
	}

	// Invalid UTF-8 in a GraphQL string literal, by GET.
	r := htGet(t, s, alice.Token, url.Values{"query": {`{ users(search: "a` + "\xff" + `") { id } conversation(id: "cnv_` + "\xff" + `") { id } }`}})
	dbNoInternal(t, "GET with invalid UTF-8", r)

	// Attachment downloads by an ID PostgreSQL cannot store.
	for _, id := range []string{"att_%00", "att_%FF"} {
		if code, _, body := htFetch(t, s, alice.Token, "/attachments/"+id); code != http.StatusNotFound {
			t.Errorf("GET /attachments/%s = %d %s, want 404", id, code, body)
		}
	}

	// A file name and a content type with invalid UTF-8 are cleaned, not
	// refused by the database.
	att := htUpload(t, s, alice.Token, conv, htFile{Name: "r\xe9sum\xe9.txt", ContentType: "text/plain; charset=\"\xff\"", Data: []byte("cv")})
	dbNoInternal(t, "upload", att)
	var up struct {
		UploadAttachment struct{ Filename, ContentType string }
	}
	htOK(t, att, &up)
	if a := up.UploadAttachment; a.Filename != "r\uFFFDsum\uFFFD.txt" || a.ContentType != "text/plain; charset=utf-8" {
		t.Errorf("stored as %q, %q", a.Filename, a.ContentType)
	}
}

// An edit racing a delete of the same message never brings the body of a
// deleted message back, and a message is deleted once.
func TestConcurrentEditAndDelete(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)
	for round := 0; round < 15; round++ {
		m := htSend(t, s, alice, conv, fmt.Sprintf("message %d", round))
		var wg sync.WaitGroup
		errs := make(chan error, 6)
		for i := 0; i < 6; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				q := `mutation($m: ID!) { deleteMessage(id: $m) { id } }`
				if i%2 == 0 {
					q = `mutation($m: ID!) { editMessage(id: $m, body: "edited") { id } }`
				}
				r, err := htPostE(s, alice.Token, q, map[string]any{"m": m.ID})
				if err == nil && slices.Contains(r.Codes(), "INTERNAL_SERVER_ERROR") {
					err = fmt.Errorf("internal error: %s", r.Raw)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		var out struct {
			Node struct {
				Body      string
				DeletedAt *string
			}
		}
		htOK(t, htPost(t, s, bob.Token, `query($m: ID!) { node(id: $m) { ... on Message { body deletedAt } } }`,
			map[string]any{"m": m.ID}), &out)
		if out.Node.DeletedAt == nil || out.Node.Body != "" {
			t.Fatalf("round %d: after concurrent edits and deletes the message is %+v", round, out.Node)
		}
	}
	// Count the events: one CREATED and one DELETED per message, and
	// however many edits won before the delete.
	var n struct {
		Conversation struct{ Messages struct{ TotalCount int } }
	}
	htOK(t, htPost(t, s, bob.Token, `query($c: ID!) { conversation(id: $c) { messages { totalCount } } }`,
		map[string]any{"c": conv}), &n)
	var deleted int
	err := s.App.DB.SQL.QueryRow(database.Rebind(s.App.DB.Dialect, `SELECT COUNT(*) FROM message_events WHERE conversation_id = ? AND type = 'DELETED'`), conv).Scan(&deleted)
	if err != nil {
		t.Fatal(err)
	}
	if deleted != n.Conversation.Messages.TotalCount {
		t.Errorf("%d DELETED events for %d deleted messages", deleted, n.Conversation.Messages.TotalCount)
	}
}

// Two sends racing for the same upload: one gets it, the other is refused,
// and the attachment stays with the message that got it.
func TestConcurrentSendsClaimAnUploadOnce(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)
	for round := 0; round < 10; round++ {
		att := htUploadOK(t, s, alice, conv, htFile{Name: "a.txt", ContentType: "text/plain", Data: []byte("x")})
		const n = 4
		var wg sync.WaitGroup
		results := make([]*htResp, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := htPostE(s, alice.Token, `mutation($in: SendMessageInput!) { sendMessage(input: $in) { id } }`,
					map[string]any{"in": map[string]any{"conversationId": conv, "body": fmt.Sprintf("m%d", i), "attachmentIds": []string{att.ID}}})
				if err != nil {
					t.Error(err)
				}
				results[i] = r
			}()
		}
		wg.Wait()
		var winners []string
		for _, r := range results {
			if r == nil {
				continue
			}
			dbNoInternal(t, "send", r)
			var out struct{ SendMessage *struct{ ID string } }
			if len(r.Errors) == 0 && json.Unmarshal(r.Data, &out) == nil && out.SendMessage != nil {
				winners = append(winners, out.SendMessage.ID)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d sends claimed the same upload: %v", round, len(winners), winners)
		}
		var got struct {
			Node struct{ Attachments []struct{ ID string } }
		}
		htOK(t, htPost(t, s, bob.Token, `query($m: ID!) { node(id: $m) { ... on Message { attachments { id } } } }`,
			map[string]any{"m": winners[0]}), &got)
		if len(got.Node.Attachments) != 1 || got.Node.Attachments[0].ID != att.ID {
			t.Fatalf("round %d: the winning message has attachments %+v", round, got.Node.Attachments)
		}
	}
}

// Adding the same people to a group from several requests at once adds
// each of them once, and no request fails.
func TestConcurrentAddParticipants(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice := htUser(t, s, "alice")
	for round := 0; round < 10; round++ {
		conv := htCreateConv(t, s, alice, apptest.Ptr("group"), htUser(t, s, "bob"))
		carol, dave := htUser(t, s, "carol"), htUser(t, s, "dave")
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := htPostE(s, alice.Token, `mutation($c: ID!, $u: [ID!]!) { addParticipants(conversationId: $c, userIds: $u) { id } }`,
					map[string]any{"c": conv, "u": []string{carol.ID, dave.ID}})
				if err != nil {
					t.Error(err)
					return
				}
				if len(r.Errors) > 0 {
					t.Errorf("round %d: addParticipants: %s", round, r.Raw)
				}
			}()
		}
		wg.Wait()
		if c := htConv(t, s, alice, conv); len(c.Participants) != 4 {
			t.Fatalf("round %d: %d participants, want 4", round, len(c.Participants))
		}
	}
}
