package e2e

// An outsider must not be able to see or touch a conversation she is not
// in: for her it behaves as if it did not exist.

import (
	"bytes"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/apptest"
)

func TestOutsiderAccess(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob, mallory := htUser(t, s, "alice"), htUser(t, s, "bob"), htUser(t, s, "mallory")
	const (
		title    = "Alice-and-Bob-private-room"
		body1    = "private-body-one-7f3a"
		body2    = "private-body-two-91c2"
		filename = "private-plans-5d1e.txt"
		content  = "private-attachment-content-c0ffee"
	)
	conv := htCreateConv(t, s, alice, apptest.Ptr(title), bob)
	direct := htCreateConv(t, s, alice, nil, bob)
	m1 := htSend(t, s, alice, conv, body1)
	att := htUploadOK(t, s, bob, conv, htFile{Name: filename, ContentType: "text/plain", Data: []byte(content)})
	m2 := htSendWith(t, s, bob, conv, body2, att.ID)
	dm := htSend(t, s, alice, direct, body1+"-direct")
	htOK(t, htPost(t, s, bob.Token, `mutation($c: ID!) { markConversationRead(conversationId: $c) { id } }`, map[string]any{"c": conv}), nil)
	// Mallory has a conversation of her own with Alice, so she is not
	// merely empty-handed.
	own := htCreateConv(t, s, mallory, nil, alice)
	htSend(t, s, mallory, own, "hi alice")

	// A snapshot of everything Alice and Bob can see, to compare afterwards.
	const snapQ = `query($c: ID!) { conversation(id: $c) { ` + htConvFields + `
		messages(first: 100) { totalCount edges { node { ` + htMessageFields + ` } } } } }`
	snapshot := func(u apptest.User, c string) string {
		t.Helper()
		r := htPost(t, s, u.Token, snapQ, map[string]any{"c": c})
		htOK(t, r, nil)
		return string(r.Data)
	}
	aliceBefore, bobBefore, directBefore := snapshot(alice, conv), snapshot(bob, conv), snapshot(alice, direct)
	aliceStats, bobStats := htGetStats(t, s, alice), htGetStats(t, s, bob)
	malloryStats := htGetStats(t, s, mallory)

	secrets := []string{title, body1, body2, filename, content}
	var raws [][]byte
	leaks := func(name string, raw []byte) {
		t.Helper()
		raws = append(raws, raw)
		for _, secret := range secrets {
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("%s: response reveals %q: %s", name, secret, raw)
			}
		}
	}

	// Reads: null, as for IDs that do not exist.
	for _, id := range []string{conv, direct, m1.ID, m2.ID, dm.ID, att.ID} {
		var out struct {
			Conversation *struct{ ID string }
			Node         *struct{ ID string }
		}
		r := htPost(t, s, mallory.Token, `query($id: ID!) { conversation(id: $id) { id title } node(id: $id) { id
			... on Conversation { title participants { id } messages { edges { node { body } } } }
			... on Message { body attachments { filename } }
			... on Attachment { filename url } } }`, map[string]any{"id": id})
		htOK(t, r, &out)
		leaks("read "+id, r.Raw)
		if out.Conversation != nil || out.Node != nil {
			t.Errorf("mallory resolves %s: %s", id, r.Raw)
		}
	}
	// Her lists do not include it.
	var list struct {
		Conversations struct {
			TotalCount int
			Edges      []struct{ Node struct{ ID string } }
		}
	}
	r := htPost(t, s, mallory.Token, `{ conversations(first: 100) { totalCount edges { node { id title lastMessage { body } } } } }`, nil)
	htOK(t, r, &list)
	leaks("conversations", r.Raw)
	if list.Conversations.TotalCount != 1 || len(list.Conversations.Edges) != 1 || list.Conversations.Edges[0].Node.ID != own {
		t.Errorf("mallory's conversations: %s", r.Raw)
	}

	// Every mutation on it: NOT_FOUND.
	for name, op := range map[string]struct {
		q    string
		vars map[string]any
	}{
		"sendMessage":                  {htSendMutation, htSendInput(conv, "mallory was here")},
		"sendMessage direct":           {htSendMutation, htSendInput(direct, "mallory was here")},
		"sendMessage with attachment":  {htSendMutation, map[string]any{"in": map[string]any{"conversationId": conv, "body": "x", "attachmentIds": []string{att.ID}}}},
		"editMessage":                  {`mutation($m: ID!) { editMessage(id: $m, body: "hacked") { id body } }`, map[string]any{"m": m1.ID}},
		"editMessage of bob":           {`mutation($m: ID!) { editMessage(id: $m, body: "hacked") { id body } }`, map[string]any{"m": m2.ID}},
		"deleteMessage":                {`mutation($m: ID!) { deleteMessage(id: $m) { id body } }`, map[string]any{"m": m1.ID}},
		"deleteMessage direct":         {`mutation($m: ID!) { deleteMessage(id: $m) { id body } }`, map[string]any{"m": dm.ID}},
		"markConversationRead":         {`mutation($c: ID!) { markConversationRead(conversationId: $c) { id title } }`, map[string]any{"c": conv}},
		"markConversationRead upTo":    {`mutation($c: ID!, $m: ID) { markConversationRead(conversationId: $c, upToMessageId: $m) { id title } }`, map[string]any{"c": conv, "m": m2.ID}},
		"addParticipants herself":      {`mutation($c: ID!, $u: [ID!]!) { addParticipants(conversationId: $c, userIds: $u) { id title } }`, map[string]any{"c": conv, "u": []string{mallory.ID}}},
		"addParticipants direct":       {`mutation($c: ID!, $u: [ID!]!) { addParticipants(conversationId: $c, userIds: $u) { id title } }`, map[string]any{"c": direct, "u": []string{mallory.ID}}},
		"leaveConversation":            {`mutation($c: ID!) { leaveConversation(conversationId: $c) }`, map[string]any{"c": conv}},
		"setTyping":                    {`mutation($c: ID!) { setTyping(conversationId: $c, typing: true) }`, map[string]any{"c": conv}},
		"setTyping off":                {`mutation($c: ID!) { setTyping(conversationId: $c, typing: false) }`, map[string]any{"c": conv}},
		"markConversationRead unknown": {`mutation($c: ID!) { markConversationRead(conversationId: $c) { id } }`, map[string]any{"c": "cnv_doesnotexist000000"}},
	} {
		r := htPost(t, s, mallory.Token, op.q, op.vars)
		leaks(name, r.Raw)
		if len(r.Errors) == 0 || r.Errors[0].Code() != "NOT_FOUND" {
			t.Errorf("%s: want NOT_FOUND, got %s", name, r.Raw)
		}
	}
	// Sending with Alice's attachment into her own conversation fails too.
	r = htSendWithR(t, s, mallory, own, "stolen file", att.ID)
	leaks("send stolen attachment", r.Raw)
	if len(r.Errors) == 0 || r.Errors[0].Code() != "BAD_USER_INPUT" {
		t.Errorf("sending another conversation's attachment: %s", r.Raw)
	}
	// Upload into it.
	r = htUpload(t, s, mallory.Token, conv, htFile{Name: "malware.exe", ContentType: "application/octet-stream", Data: []byte("MZ")})
	leaks("uploadAttachment", r.Raw)
	if len(r.Errors) == 0 || r.Errors[0].Code() != "NOT_FOUND" {
		t.Errorf("uploadAttachment: want NOT_FOUND, got %s", r.Raw)
	}
	// Download: 404 as for an unknown attachment, with the header or ?token=.
	for _, path := range []string{att.URL, att.URL + "?token=" + mallory.Token} {
		tok := mallory.Token
		if strings.Contains(path, "?token=") {
			tok = ""
		}
		status, _, body := htDownload(t, s, tok, path)
		leaks("download "+path, body)
		if status != http.StatusNotFound && (tok != "" || status != http.StatusUnauthorized) {
			t.Errorf("mallory downloads %s: status %d, want 404", path, status)
		}
	}
	unknownStatus, _, unknownBody := htFetch(t, s, mallory.Token, "/attachments/att_doesnotexist000000")
	if status, _, body := htDownload(t, s, mallory.Token, att.URL); status != unknownStatus || !bytes.Equal(body, unknownBody) {
		t.Errorf("a foreign attachment answers differently from an unknown one: %d %q vs %d %q", status, body, unknownStatus, unknownBody)
	}
	// Errors look the same as for IDs that do not exist.
	real := htPost(t, s, mallory.Token, htSendMutation, htSendInput(conv, "x"))
	fake := htPost(t, s, mallory.Token, htSendMutation, htSendInput("cnv_doesnotexist000000", "x"))
	if len(real.Errors) == 0 || len(fake.Errors) == 0 || real.Errors[0].Message != fake.Errors[0].Message {
		t.Errorf("existing and unknown conversations are told apart: %s vs %s", real.Raw, fake.Raw)
	}
	realEdit := htPost(t, s, mallory.Token, `mutation($m: ID!) { editMessage(id: $m, body: "x") { id } }`, map[string]any{"m": m1.ID})
	fakeEdit := htPost(t, s, mallory.Token, `mutation($m: ID!) { editMessage(id: $m, body: "x") { id } }`, map[string]any{"m": "msg_doesnotexist000000"})
	if len(realEdit.Errors) == 0 || len(fakeEdit.Errors) == 0 || realEdit.Errors[0].Message != fakeEdit.Errors[0].Message {
		t.Errorf("existing and unknown messages are told apart: %s vs %s", realEdit.Raw, fakeEdit.Raw)
	}
	// Users are not secret, but searching them reveals no conversation data.
	r = htPost(t, s, mallory.Token, `{ users { id username displayName } me { id } messagingStats { conversationCount unreadMessageCount sentMessageCount } }`, nil)
	htOK(t, r, nil)
	leaks("users", r.Raw)

	// Nothing changed, for anybody.
	if got := snapshot(alice, conv); got != aliceBefore {
		t.Errorf("alice's view changed:\nbefore %s\nafter  %s", aliceBefore, got)
	}
	if got := snapshot(bob, conv); got != bobBefore {
		t.Errorf("bob's view changed:\nbefore %s\nafter  %s", bobBefore, got)
	}
	if got := snapshot(alice, direct); got != directBefore {
		t.Errorf("the DIRECT conversation changed:\nbefore %s\nafter  %s", directBefore, got)
	}
	for _, c := range []struct {
		u      apptest.User
		before htStats
	}{{alice, aliceStats}, {bob, bobStats}, {mallory, malloryStats}} {
		if got := htGetStats(t, s, c.u); !reflect.DeepEqual(got, c.before) {
			t.Errorf("%s's messagingStats changed: %+v -> %+v", c.u.Username, c.before, got)
		}
	}
	if malloryStats != (htStats{ConversationCount: 1, SentMessageCount: 1}) {
		t.Errorf("mallory's stats count foreign conversations: %+v", malloryStats)
	}
	if c := htConv(t, s, alice, conv); len(c.Participants) != 2 {
		t.Errorf("participants changed: %v", c.participantIDs())
	}
	if status, _, body := htDownload(t, s, bob.Token, att.URL); status != http.StatusOK || string(body) != content {
		t.Errorf("bob can no longer download: %d", status)
	}
	if len(raws) < 25 {
		t.Fatalf("only %d responses checked", len(raws))
	}
}
