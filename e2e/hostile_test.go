package e2e

// Hostile input: malformed requests and frames, query bombs, oversized
// bodies and frames, junk IDs and cursors, forged tokens, tokens of deleted
// users and connection floods. Each test asserts a clear error, that the
// server keeps serving, and, where something could be written, that nothing
// was. Helpers are prefixed with "hs" (see oplimits_test.go).

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-chat/parley/internal/apptest"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/database"
)

// hsServing asserts that s still serves: /healthz, and a query for u.
func hsServing(t testing.TB, s *apptest.Server, u apptest.User) {
	t.Helper()
	resp, err := http.Get(s.URL + "/healthz")
	if err != nil {
		t.Fatalf("/healthz: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %d", resp.StatusCode)
	}
	var me struct{ Me struct{ ID string } }
	htOK(t, htPost(t, s, u.Token, `{ me { id } }`, nil), &me)
	if me.Me.ID != u.ID {
		t.Fatalf("me = %q, want %q", me.Me.ID, u.ID)
	}
}

// hsClientError asserts a refusal the client caused: a status below 500,
// at least one error, each with a message and a code from API.md's list
// (or the APQ handshake's) other than INTERNAL_SERVER_ERROR.
func hsClientError(t testing.TB, what string, r *htResp) {
	t.Helper()
	if r.Status >= 500 || len(r.Errors) == 0 {
		t.Errorf("%s: status %d %.300s", what, r.Status, r.Raw)
		return
	}
	for _, e := range r.Errors {
		if c := e.Code(); (!slices.Contains(htAPICodes, c) && c != "PERSISTED_QUERY_NOT_FOUND") || c == "INTERNAL_SERVER_ERROR" || e.Message == "" {
			t.Errorf("%s: error %q with code %q: %.300s", what, e.Message, c, r.Raw)
		}
	}
}

// hsCount counts the rows of table.
func hsCount(t testing.TB, s *apptest.Server, table string) int {
	t.Helper()
	var n int
	if err := s.App.DB.SQL.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// hsRows snapshots the row counts of every table a mutation may write.
func hsRows(t testing.TB, s *apptest.Server) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, table := range []string{"users", "conversations", "participants", "messages", "message_events", "attachments"} {
		out[table] = hsCount(t, s, table)
	}
	return out
}

func hsSameRows(t testing.TB, s *apptest.Server, before map[string]int, what string) {
	t.Helper()
	after := hsRows(t, s)
	for table, n := range before {
		if after[table] != n {
			t.Errorf("%s: %s went from %d to %d rows", what, table, n, after[table])
		}
	}
}

func TestHostileHTTPRequests(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)
	before := hsRows(t, s)
	send := fmt.Sprintf(`mutation { sendMessage(input: {conversationId: %q, body: \"x\"}) { id } }`, conv)

	deepJSON := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	deepVars := `{"query": "{ me { id } }", "variables": {"v": ` + strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000) + `}}`
	for _, c := range []struct{ name, contentType, body string }{
		{"truncated", "application/json", `{"query":`},
		{"trailing garbage", "application/json", `{"query": "{ me { id } }"}}`},
		{"trailing comma", "application/json", `{"query": "{ me { id } }",}`},
		{"two objects", "application/json", `{"query": "{ me { id } }"} {"query": "{ me { id } }"}`},
		{"raw NUL", "application/json", "{\"query\": \"{ me\x00 { id } }\"}"},
		{"escaped NUL", "application/json", `{"query": "{ me\u0000 { id } }"}`},
		{"NUL in a name", "application/json", `{"query": "{ m\u0000e { id } }"}`},
		{"invalid UTF-8", "application/json", "{\"query\": \"{ me { id } } \xff\xfe\"}"},
		{"lone surrogate", "application/json", `{"query": "{ users(search: \"\ud800\") { id } }", "variables": {"x": "\udfff"}}`},
		{"deep JSON array", "application/json", deepJSON},
		{"deep variables", "application/json", deepVars},
		{"deep variables, used", "application/json", strings.Replace(deepVars, "{ me { id } }", "query($v: String) { users(search: $v) { id } }", 1)},
		{"query a number", "application/json", `{"query": 5}`},
		{"query an object", "application/json", `{"query": {"a": 1}}`},
		{"query null", "application/json", `{"query": null}`},
		{"variables an array", "application/json", `{"query": "{ me { id } }", "variables": [1]}`},
		{"extensions a string", "application/json", `{"query": "{ me { id } }", "extensions": "x"}`},
		{"operationName a number", "application/json", `{"query": "{ me { id } }", "operationName": 1}`},
		{"bad persisted query", "application/json", `{"extensions": {"persistedQuery": {"version": "one", "sha256Hash": 5}}}`},
		{"persisted query version 2", "application/json", `{"extensions": {"persistedQuery": {"version": 2, "sha256Hash": "abc"}}}`},
		{"float as Int", "application/json", `{"query": "{ users(first: 1e400) { id } }"}`},
		{"Int overflow", "application/json", `{"query": "{ users(first: 2147483648) { id } }"}`},
		{"variable overflow", "application/json", `{"query": "query($f: Int) { users(first: $f) { id } }", "variables": {"f": 1e400}}`},
		{"negative page", "application/json", `{"query": "{ users(first: -1) { id } }"}`},
		{"huge page", "application/json", `{"query": "{ conversations(first: 1000000) { totalCount } }"}`},
		{"null for non-null", "application/json", `{"query": "query($c: ID!) { conversation(id: $c) { id } }", "variables": {"c": null}}`},
		{"mutation with a junk variable", "application/json", `{"query": "mutation($in: SendMessageInput!) { sendMessage(input: $in) { id } }", "variables": {"in": {"conversationId": [1], "body": {"x": 1}}}}`},
		{"mutation, unknown input field", "application/json", `{"query": "mutation($in: SendMessageInput!) { sendMessage(input: $in) { id } }", "variables": {"in": {"conversationId": "` + conv + `", "body": "x", "evil": true}}}`},
		{"mutation then syntax error", "application/json", `{"query": "` + send + ` }"}`},
		{"text/plain", "text/plain", `{"query": "{ me { id } }"}`},
		{"application/graphql", "application/graphql", `{ me { id } }`},
		{"form", "application/x-www-form-urlencoded", `query=%7B+me+%7B+id+%7D+%7D`},
		{"multipart junk", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{\r\n--x--\r\n"},
		{"multipart no boundary", "multipart/form-data", "junk"},
		// gqlgen's multipart transport panicked on these (found by FuzzGraphQLHTTP).
		{"multipart, operations null", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\nnull\r\n" +
			"--x\r\nContent-Disposition: form-data; name=\"map\"\r\n\r\n{\"0\": [\"variables.f\"]}\r\n" +
			"--x\r\nContent-Disposition: form-data; name=\"0\"; filename=\"a\"\r\n\r\na\r\n--x--\r\n"},
		{"multipart, no variables", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n" +
			`{"query": "mutation($f: Upload!) { uploadAttachment(conversationId: \"` + conv + `\", file: $f) { id } }"}` + "\r\n" +
			"--x\r\nContent-Disposition: form-data; name=\"map\"\r\n\r\n{\"0\": [\"variables.f\"]}\r\n" +
			"--x\r\nContent-Disposition: form-data; name=\"0\"; filename=\"a\"\r\n\r\na\r\n--x--\r\n"},
		{"bad content type", "application/json; charset", `{"query": "{ me { id } }"}`},
	} {
		start := time.Now()
		r := htPostBody(t, s, alice.Token, c.contentType, []byte(c.body))
		if c.name == "lone surrogate" || c.name == "deep variables" { // valid: answered
			htOK(t, r, nil)
			continue
		}
		hsClientError(t, c.name, r)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: answered after %v", c.name, d)
		}
	}
	for _, q := range []url.Values{
		{"query": {"{ me { id "}},
		{"query": {"{ me { id } }"}, "variables": {"{"}},
		{"query": {"{ me { id } }"}, "extensions": {"[1"}},
		{"query": {"{ me\x00 { id } }"}},
		{"query": {send}},
		{"query": {"{ me { id } }"}, "operationName": {"Nope"}},
		{"extensions": {`{"persistedQuery": {"version": 1, "sha256Hash": "` + strings.Repeat("f", 5000) + `"}}`}},
	} {
		hsClientError(t, "GET "+q.Encode()[:min(60, len(q.Encode()))], htGet(t, s, alice.Token, q))
	}
	hsSameRows(t, s, before, "malformed requests")
	hsServing(t, s, alice)
}

func TestHostileQueryBombs(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t) // default limits
	alice := htUser(t, s, "alice")
	reasons := []string{"TOKEN_LIMIT_EXCEEDED", "FIELD_LIMIT_EXCEEDED", "ALIAS_LIMIT_EXCEEDED", "DEPTH_LIMIT_EXCEEDED",
		"COMPLEXITY_LIMIT_EXCEEDED", "GRAPHQL_PARSE_FAILED"}
	var nested strings.Builder
	nested.WriteString("{ conversations { edges { node {")
	for range 10 {
		nested.WriteString(" lastMessage { conversation {")
	}
	nested.WriteString(" id" + strings.Repeat(" } }", 10) + " } } } }")
	for _, c := range []struct{ name, query string }{
		{"nested 23 deep", nested.String()},
		{"braces 5000 deep", strings.Repeat("{ me ", 5000) + strings.Repeat("}", 5000)},
		{"100 aliases", "{" + hsAliases(100, "me { id }") + " }"},
		{"1000 aliases of a page", "{" + hsAliases(1000, "users(first: 100) { id }") + " }"},
		{"fragment bomb", hsFragmentBomb(40)},
		{"pages of pages", `{ conversations(first: 100) { edges { node { messages(first: 100) { edges { node { body sender { username } } } } } } } }`},
		{"1 MB of tokens", "{" + strings.Repeat(" __typename", 90000) + " }"},
	} {
		start := time.Now()
		r := htPost(t, s, alice.Token, c.query, nil)
		hsClientError(t, c.name, r)
		if len(r.Errors) > 0 && !slices.Contains(reasons, fmt.Sprint(r.Errors[0].Extensions["reason"])) {
			t.Errorf("%s: reason %v: %.300s", c.name, r.Errors[0].Extensions["reason"], r.Raw)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: answered after %v", c.name, d)
		}
	}
	// Repeated directives and conflicting fields: many validation errors,
	// capped.
	for _, q := range []string{
		"{ me " + strings.Repeat("@include(if: true) ", 1500) + "{ id } }",
		"{" + strings.Repeat(" users(first: 1) { id } users(first: 2) { id }", 250) + " }",
	} {
		r := htPost(t, s, alice.Token, q, nil)
		hsClientError(t, "error bomb", r)
		if len(r.Errors) > 51 {
			t.Errorf("error bomb: %d errors", len(r.Errors))
		}
	}
	hsServing(t, s, alice)
}

func TestHostileOversized(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "MAX_REQUEST_BYTES=4096", "MAX_UPLOAD_BYTES=1000")
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)
	before := hsRows(t, s)

	// A body over the limit, small or huge (streamed, never read whole).
	for _, n := range []int{4097, 64 << 20} {
		start := time.Now()
		body := io.MultiReader(strings.NewReader(`{"query": "{ me { id } }", "variables": {"pad": "`), io.LimitReader(hsZeros{}, int64(n)))
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", body)
		req.Header.Set("Content-Type", "application/json")
		r, err := htDo(req, alice.Token)
		if err != nil {
			// The server may stop reading and close once it has answered.
			t.Logf("%d bytes: %v", n, err)
			continue
		}
		if r.Status != http.StatusRequestEntityTooLarge || len(r.Errors) == 0 || r.Errors[0].Code() != "BAD_USER_INPUT" {
			t.Errorf("%d bytes: status %d %.300s", n, r.Status, r.Raw)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("%d bytes: answered after %v", n, d)
		}
	}
	// A query string over the server's header limit: a 4xx, not JSON.
	resp, err := http.Get(s.URL + "/graphql?query=" + strings.Repeat("a", 2<<20))
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode > 499 {
			t.Errorf("2 MB query string: %d", resp.StatusCode)
		}
	}
	// Uploads over the limit, a little and a lot.
	for _, n := range []int{1001, 8 << 20} {
		r := htUpload(t, s, alice.Token, conv, htFile{Name: "big.bin", ContentType: "application/x-big", Data: bytes.Repeat([]byte("u"), n)})
		hsClientError(t, fmt.Sprintf("upload of %d bytes", n), r)
	}
	if files := htDirFiles(t, s.App.Config.AttachmentDir); len(files) != 0 {
		t.Errorf("refused uploads left files: %v", files)
	}
	// A WebSocket frame over the read limit (1 MiB) closes that socket
	// with 1009, and only that one.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c := hsConnect(t, ctx, s, alice, apptest.TransportWS)
	big, _ := json.Marshal(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": "{ me { id } }", "variables": map[string]any{"pad": strings.Repeat("p", 2<<20)}}})
	_ = c.Write(ctx, websocket.MessageText, big) // the server may close while we write
	if code := hsReadToClose(ctx, c); code != int(websocket.StatusMessageTooBig) {
		t.Errorf("oversized frame: close code %d, want 1009", code)
	}
	hsSameRows(t, s, before, "oversized requests")
	hsServing(t, s, alice)
	hsConnect(t, ctx, s, alice, apptest.TransportWS).CloseNow()
}

type hsZeros struct{}

func (hsZeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'z'
	}
	return len(p), nil
}

func TestHostileIDsAndCursors(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob, carol := htUser(t, s, "alice"), htUser(t, s, "bob"), htUser(t, s, "carol")
	conv := htCreateConv(t, s, alice, nil, bob)
	other := htCreateConv(t, s, alice, nil, carol)
	msg := htSend(t, s, alice, conv, "hello")
	otherMsg := htSend(t, s, carol, other, "elsewhere")
	att := htUploadOK(t, s, alice, conv, htFile{Name: "a.txt", ContentType: "text/plain", Data: []byte("a")})
	before := hsRows(t, s)
	unread := htConv(t, s, bob, conv).UnreadCount

	junk := []string{
		"", " ", "\x00", "cnv_\x00", "usr_" + alice.ID, "\xff\xfe\xfd", "🙂", strings.Repeat("x", 10000),
		"' OR 1=1 --", "cnv_%", "../../etc/passwd", alice.ID, att.ID, otherMsg.ID, other,
	}
	for _, id := range junk {
		label := fmt.Sprintf("%.40q", id)
		// Reads: null, never an internal error.
		var out struct {
			Node         *struct{ ID string }
			Conversation *struct{ ID string }
		}
		r := htPost(t, s, bob.Token, `query($id: ID!) { node(id: $id) { id } conversation(id: $id) { id } }`, map[string]any{"id": id})
		if len(r.Errors) > 0 {
			hsClientError(t, "read "+label, r)
		} else {
			htOK(t, r, &out)
			if out.Conversation != nil || (out.Node != nil && id != alice.ID && id != att.ID) {
				t.Errorf("read %s: %s", label, r.Raw)
			}
		}
		// Writes: refused, and nothing changes.
		for name, m := range map[string]struct {
			q    string
			vars map[string]any
		}{
			"sendMessage":          {htSendMutation, htSendInput(id, "x")},
			"editMessage":          {`mutation($id: ID!) { editMessage(id: $id, body: "edited") { id } }`, map[string]any{"id": id}},
			"deleteMessage":        {`mutation($id: ID!) { deleteMessage(id: $id) { id } }`, map[string]any{"id": id}},
			"markRead":             {`mutation($c: ID!, $m: ID) { markConversationRead(conversationId: $c, upToMessageId: $m) { id } }`, map[string]any{"c": conv, "m": id}},
			"addParticipants":      {`mutation($c: ID!, $u: [ID!]!) { addParticipants(conversationId: $c, userIds: $u) { id } }`, map[string]any{"c": conv, "u": []string{id}}},
			"createConversation":   {`mutation($u: [ID!]!) { createConversation(input: {participantIds: $u, title: "t"}) { id } }`, map[string]any{"u": []string{carol.ID, id}}},
			"send with attachment": {htSendMutation, map[string]any{"in": map[string]any{"conversationId": conv, "body": "x", "attachmentIds": []string{id}}}},
			"setTyping":            {`mutation($c: ID!) { setTyping(conversationId: $c, typing: true) }`, map[string]any{"c": id}},
		} {
			if id == alice.ID && name == "createConversation" {
				continue // alice may well be in a conversation with carol
			}
			hsClientError(t, name+" "+label, htPost(t, s, bob.Token, m.q, m.vars))
		}
	}
	// Cursors: junk, another list's, another conversation's.
	msgCursor := func(c string) string {
		var out struct {
			Conversation struct {
				Messages struct{ Edges []struct{ Cursor string } }
			}
		}
		htOK(t, htPost(t, s, alice.Token, `query($c: ID!) { conversation(id: $c) { messages(first: 1) { edges { cursor } } } }`, map[string]any{"c": c}), &out)
		return out.Conversation.Messages.Edges[0].Cursor
	}
	var convs struct {
		Conversations struct{ Edges []struct{ Cursor string } }
	}
	htOK(t, htPost(t, s, alice.Token, `{ conversations(first: 1) { edges { cursor } } }`, nil), &convs)
	convCursor := convs.Conversations.Edges[0].Cursor
	for _, cur := range []string{"junk", "\x00", "\xff", base64.RawURLEncoding.EncodeToString([]byte("m:\x00")), base64.RawURLEncoding.EncodeToString([]byte("m:-1")),
		base64.RawURLEncoding.EncodeToString([]byte("m:99999999999999999999999")), strings.Repeat("A", 100000), convCursor} {
		r := htPost(t, s, alice.Token, `query($c: ID!, $a: String) { conversation(id: $c) { messages(first: 5, after: $a) { edges { cursor } } } }`,
			map[string]any{"c": conv, "a": cur})
		if len(r.Errors) > 0 {
			hsClientError(t, fmt.Sprintf("messages after %.30q", cur), r)
		}
	}
	// messageEvents cursors over WebSocket: junk, a message cursor, another
	// conversation's event cursor. An error (not an internal one), or a
	// replay.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ws := hsConnect(t, ctx, s, alice, apptest.TransportWS)
	for i, cur := range []string{"junk", "\x00", strings.Repeat("A", 100000), msgCursor(conv), chat.EventCursor(other, 0), chat.EventCursor(conv, -5)} {
		id := fmt.Sprint("c", i)
		hsWrite(ctx, ws, map[string]any{"id": id, "type": "subscribe", "payload": map[string]any{
			"query": `subscription($c: ID!, $a: String) { messageEvents(conversationId: $c, after: $a) { type } }`, "variables": map[string]any{"c": conv, "a": cur}}})
		m := hsNextOf(t, ctx, ws, id)
		for _, e := range m.Errors() {
			if e.Code() == "INTERNAL_SERVER_ERROR" || e.Code() == "" {
				t.Errorf("messageEvents after %.30q: %s %s", cur, m.Type, m.Payload)
			}
		}
		if i < 5 && len(m.Errors()) == 0 {
			t.Errorf("messageEvents after %.30q: accepted: %s %s", cur, m.Type, m.Payload)
		}
		hsWrite(ctx, ws, map[string]any{"id": id, "type": "complete"})
	}
	for _, cur := range []string{"junk", msgCursor(conv), "\x00"} {
		r := htPost(t, s, alice.Token, `query($a: String) { conversations(first: 5, after: $a) { totalCount } }`, map[string]any{"a": cur})
		hsClientError(t, fmt.Sprintf("conversations after %.30q", cur), r)
	}
	// Another conversation's message cursor and message ID change nothing.
	r := htPost(t, s, alice.Token, `query($c: ID!, $a: String) { conversation(id: $c) { messages(first: 5, after: $a) { edges { cursor } } } }`,
		map[string]any{"c": other, "a": msgCursor(conv)})
	if len(r.Errors) > 0 {
		hsClientError(t, "other conversation's cursor", r)
	}
	hsClientError(t, "read up to another conversation's message", htPost(t, s, bob.Token,
		`mutation($c: ID!, $m: ID) { markConversationRead(conversationId: $c, upToMessageId: $m) { id } }`, map[string]any{"c": conv, "m": otherMsg.ID}))
	if n := htConv(t, s, bob, conv).UnreadCount; n != unread {
		t.Errorf("unread count %d after refused reads, want %d", n, unread)
	}
	hsSameRows(t, s, before, "junk IDs and cursors")
	if c := htConv(t, s, alice, conv); c == nil || c.LastMessage == nil || c.LastMessage.ID != msg.ID || c.LastMessage.Body != "hello" {
		t.Errorf("conversation changed: %+v", c)
	}
	hsServing(t, s, alice)
}

func TestHostileOperationNames(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)
	before := hsRows(t, s)
	doc := fmt.Sprintf(`query A { me { id } } mutation B { sendMessage(input: {conversationId: %q, body: "named"}) { id } }`, conv)
	for _, name := range []string{"C", "", "a", "B ", strings.Repeat("B", 10000), "\x00"} {
		b, _ := json.Marshal(map[string]any{"query": doc, "operationName": name})
		r := htPostBody(t, s, alice.Token, "application/json", b)
		htErr(t, r, "GRAPHQL_VALIDATION_FAILED")
		hsClientError(t, fmt.Sprintf("operationName %.20q", name), r)
	}
	// The mutation by name over GET: refused.
	hsClientError(t, "GET mutation by name", htGet(t, s, alice.Token, url.Values{"query": {doc}, "operationName": {"B"}}))
	hsSameRows(t, s, before, "unknown operations")
	// The right name runs exactly that operation.
	b, _ := json.Marshal(map[string]any{"query": doc, "operationName": "A"})
	htOK(t, htPostBody(t, s, alice.Token, "application/json", b), nil)
	hsSameRows(t, s, before, "query A")
	hsServing(t, s, alice)
}

// hsRawJWT builds a token from a header, claims, and a signature over
// "header.claims" made by sign (nil: no signature).
func hsRawJWT(header, claims map[string]any, sign func([]byte) []byte) string {
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	unsigned := enc(header) + "." + enc(claims)
	sig := ""
	if sign != nil {
		sig = base64.RawURLEncoding.EncodeToString(sign([]byte(unsigned)))
	}
	return unsigned + "." + sig
}

func TestHostileTokens(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)
	secret := s.App.Config.JWTSecret
	exp := time.Now().Add(time.Hour).Unix()
	claims := map[string]any{"sub": alice.ID, "exp": exp, "iat": time.Now().Unix()}
	hs := func(h func() hash.Hash) func([]byte) []byte {
		return func(b []byte) []byte { m := hmac.New(h, secret); m.Write(b); return m.Sum(nil) }
	}
	parts := strings.Split(alice.Token, ".")
	bobClaims, _ := json.Marshal(map[string]any{"sub": bob.ID, "exp": exp})
	tokens := map[string]string{
		"alg none":               hsRawJWT(map[string]any{"alg": "none", "typ": "JWT"}, claims, nil),
		"alg None":               hsRawJWT(map[string]any{"alg": "None"}, claims, nil),
		"HS512 with the secret":  hsRawJWT(map[string]any{"alg": "HS512", "typ": "JWT"}, claims, hs(sha512.New)),
		"RS256 header, HMAC sig": hsRawJWT(map[string]any{"alg": "RS256", "typ": "JWT"}, claims, hs(sha256.New)),
		"no alg":                 hsRawJWT(map[string]any{"typ": "JWT"}, claims, hs(sha256.New)),
		"expired":                htSign(t, secret, jwt.MapClaims{"sub": alice.ID, "exp": time.Now().Add(-time.Minute).Unix()}),
		"no exp":                 htSign(t, secret, jwt.MapClaims{"sub": alice.ID}),
		"no sub":                 htSign(t, secret, jwt.MapClaims{"exp": exp}),
		"not yet valid":          htSign(t, secret, jwt.MapClaims{"sub": alice.ID, "exp": exp, "nbf": exp - 60}),
		"sub not a string":       htSign(t, secret, jwt.MapClaims{"sub": 42, "exp": exp}),
		"tampered claims":        parts[0] + "." + base64.RawURLEncoding.EncodeToString(bobClaims) + "." + parts[2],
		"tampered signature":     parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
		"no signature":           parts[0] + "." + parts[1] + ".",
		"another secret":         htSign(t, []byte("another-secret-another-secret-0123456789"), jwt.MapClaims{"sub": alice.ID, "exp": exp}),
		"unknown user":           htSign(t, secret, jwt.MapClaims{"sub": "usr_d4nosuchuser000000", "exp": exp}),
		"garbage":                "a.b.c",
		"huge":                   strings.Repeat("A", 64<<10),
		"NUL":                    "\x00",
	}
	before := hsRows(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for name, tok := range tokens {
		if !strings.Contains(tok, "\x00") { // no HTTP client sends a NUL in a header
			htErr(t, htPost(t, s, tok, `{ me { id } }`, nil), "UNAUTHENTICATED")
			htErr(t, htPost(t, s, tok, htSendMutation, htSendInput(conv, "forged: "+name)), "UNAUTHENTICATED")
		}
		if status, _, _ := htFetch(t, s, "", "/attachments/att_x?token="+url.QueryEscape(tok)); status != http.StatusUnauthorized && status != http.StatusNotFound {
			t.Errorf("%s: attachment with ?token=: %d", name, status)
		}
		c, _, err := hsDial(ctx, s, apptest.TransportWS)
		if err != nil {
			t.Fatal(err)
		}
		hsWrite(ctx, c, map[string]any{"type": "connection_init", "payload": map[string]any{"token": tok}})
		if code := hsReadToClose(ctx, c); code != 4403 {
			t.Errorf("%s: WebSocket closed with %d, want 4403", name, code)
		}
	}
	hsSameRows(t, s, before, "forged tokens")
	hsServing(t, s, alice)
}

// A token whose user row is gone: UNAUTHENTICATED for `me`, every mutation
// and every subscription (HTTP, SSE, WebSocket), nothing written; queries
// answer as for a user in no conversation; signing in again works.
func TestHostileDeletedUserToken(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)
	ghost := htUser(t, s, "ghost")
	if _, err := s.App.DB.SQL.ExecContext(t.Context(), database.Rebind(s.App.DB.Dialect, "DELETE FROM users WHERE id = ?"), ghost.ID); err != nil {
		t.Fatal(err)
	}
	before := hsRows(t, s)

	htErr(t, htPost(t, s, ghost.Token, `{ me { id } }`, nil), "UNAUTHENTICATED")
	for name, m := range map[string]struct {
		q    string
		vars map[string]any
	}{
		"createConversation (direct)": {`mutation($u: [ID!]!) { createConversation(input: {participantIds: $u}) { id } }`, map[string]any{"u": []string{bob.ID}}},
		"createConversation (group)":  {`mutation($u: [ID!]!) { createConversation(input: {participantIds: $u, title: "g"}) { id } }`, map[string]any{"u": []string{bob.ID}}},
		"createConversation (alone)":  {`mutation { createConversation(input: {participantIds: [], title: "me"}) { id } }`, nil},
		"sendMessage":                 {htSendMutation, htSendInput(conv, "boo")},
		"markConversationRead":        {`mutation($c: ID!) { markConversationRead(conversationId: $c) { id } }`, map[string]any{"c": conv}},
		"setTyping":                   {`mutation($c: ID!) { setTyping(conversationId: $c, typing: true) }`, map[string]any{"c": conv}},
		"leaveConversation":           {`mutation($c: ID!) { leaveConversation(conversationId: $c) }`, map[string]any{"c": conv}},
	} {
		htErr(t, htPost(t, s, ghost.Token, m.q, m.vars), "UNAUTHENTICATED")
		_ = name
	}
	htErr(t, htUpload(t, s, ghost.Token, conv, htFile{Name: "g.txt", ContentType: "text/plain", Data: []byte("boo")}), "UNAUTHENTICATED")
	if files := htDirFiles(t, s.App.Config.AttachmentDir); len(files) != 0 {
		t.Errorf("upload by a deleted user left files: %v", files)
	}
	// SSE subscription.
	codes, _ := sseSubscribe(t, s, ghost.Token, `subscription { inbox { type } }`, nil).endCodes(t)
	if len(codes) == 0 || codes[0] != "UNAUTHENTICATED" {
		t.Errorf("SSE inbox for a deleted user: %v", codes)
	}
	// WebSocket: 4403 at connection_init.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, proto := range []string{apptest.TransportWS, apptest.LegacyWS} {
		c, _, err := hsDial(ctx, s, proto)
		if err != nil {
			t.Fatal(err)
		}
		hsWrite(ctx, c, map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + ghost.Token}})
		if code := hsReadToClose(ctx, c); proto == apptest.TransportWS && code != 4403 {
			t.Errorf("WebSocket for a deleted user: close code %d, want 4403", code)
		}
	}
	// Queries: an empty world.
	var out struct {
		Conversations  struct{ TotalCount int }
		MessagingStats htStats
	}
	htOK(t, htPost(t, s, ghost.Token, `{ conversations(first: 5) { totalCount }
		messagingStats { conversationCount unreadConversationCount unreadMessageCount sentMessageCount } }`, nil), &out)
	if out.Conversations.TotalCount != 0 || out.MessagingStats != (htStats{}) {
		t.Errorf("deleted user's queries: %+v", out)
	}
	hsSameRows(t, s, before, "deleted user's token")
	// Signing up again with the stale token still in the header works.
	r := htPost(t, s, ghost.Token, `mutation($u: String!) { register(username: $u, password: "password-123") { token } }`, map[string]any{"u": ghost.Username})
	htOK(t, r, nil)
	hsServing(t, s, alice)
}

func TestHostileWebSocketFrames(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	conv := htCreateConv(t, s, alice, nil, bob)
	before := hsRows(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	send := fmt.Sprintf(`mutation { sendMessage(input: {conversationId: %q, body: "x"}) { id } }`, conv)
	frames := []string{
		"not json", "", "{", "[]", "null", "5", `"subscribe"`, "{}", `{"type": 5}`, `{"type": "nope"}`,
		`{"type": "subscribe"}`, `{"type": "subscribe", "id": "1"}`, `{"type": "subscribe", "id": 1, "payload": {"query": "{ me { id } }"}}`,
		`{"type": "subscribe", "id": "1", "payload": "{ me { id } }"}`, `{"type": "subscribe", "id": "1", "payload": {"query": 5}}`,
		`{"type": "subscribe", "id": "1", "payload": {"query": "{ me { id "}}`, `{"type": "subscribe", "id": "1", "payload": {"query": "{ me { id } }", "variables": [1]}}`,
		`{"type": "subscribe", "id": "1", "payload": {"query": "` + strings.ReplaceAll(send, `"`, `\"`) + ` }"}}`,
		`{"type": "subscribe", "id": "1", "payload": {"query": "{ me\u0000 { id } }"}}`, "{\"type\": \"subscribe\", \"id\": \"\x00\xff\", \"payload\": {\"query\": \"{ me { id } }\"}}",
		`{"type": "subscribe", "id": "` + strings.Repeat("i", 100000) + `", "payload": {"query": "{ me { id } }"}}`,
		`{"type": "subscribe", "id": "1", "payload": {"query": "` + hsFragmentBomb(30) + `"}}`,
		`{"type": "connection_init", "payload": {}}`, `{"type": "complete", "id": "nope"}`, `{"type": "complete"}`, `{"type": "pong"}`, `{"type": "ping", "payload": [1]}`,
		`{"type": "start", "id": "1", "payload": {"query": "{ me { id } }"}}`, `{"type": "stop", "id": "1"}`, `{"type": "connection_terminate"}`,
		`{"type": "next", "id": "1", "payload": {"data": {}}}`, `{"type": "connection_ack"}`,
		`{"type": "subscribe", "id": "1", "payload": {"query": "{ me { id } }", "variables": ` + strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000) + `}}`,
	}
	outcomes := map[string]int{}
	for _, proto := range []string{apptest.TransportWS, apptest.LegacyWS} {
		for i, f := range frames {
			label := fmt.Sprintf("%s frame %d %.40q", proto, i, f)
			c := hsConnect(t, ctx, s, alice, proto)
			typ := websocket.MessageText
			if i%7 == 3 {
				typ = websocket.MessageBinary
			}
			if err := c.Write(ctx, typ, []byte(f)); err != nil {
				t.Fatalf("%s: write: %v", label, err)
			}
			answered, code := hsProbe(ctx, c, proto)
			switch {
			case answered:
				outcomes["answered"]++
			case code == -1:
				t.Errorf("%s: neither answered nor closed with a code", label)
			default:
				outcomes[fmt.Sprintf("closed %d", code)]++
			}
			c.CloseNow()
		}
		// Junk instead of connection_init: closed with a code.
		for _, f := range []string{"junk", `{"type": "subscribe", "id": "1", "payload": {"query": "{ me { id } }"}}`, `{"type": "connection_init", "payload": "x"}`,
			`{"type": "connection_init", "payload": [1]}`, `{"type": "connection_init", "payload": {"token": 5}}`} {
			c, _, err := hsDial(ctx, s, proto)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.Write(ctx, websocket.MessageText, []byte(f))
			code := hsReadToClose(ctx, c)
			if code == -1 || (proto == apptest.TransportWS && code == 1000) {
				t.Errorf("%s before init %q: close code %d", proto, f, code)
			}
		}
	}
	t.Logf("outcomes: %v", outcomes)
	hsSameRows(t, s, before, "hostile frames")
	hsServing(t, s, alice)
	hsConnect(t, ctx, s, alice, apptest.TransportWS).CloseNow()
}

// hsDial opens a WebSocket to s with subprotocol proto.
func hsDial(ctx context.Context, s *apptest.Server, proto string) (*websocket.Conn, *http.Response, error) {
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.URL, "http")+"/graphql", &websocket.DialOptions{Subprotocols: []string{proto}})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err == nil {
		c.SetReadLimit(4 << 20)
	}
	return c, resp, err
}

func hsWrite(ctx context.Context, c *websocket.Conn, v any) {
	b, _ := json.Marshal(v)
	_ = c.Write(ctx, websocket.MessageText, b) // a closed socket shows on the next read
}

// hsConnect dials as u and waits for connection_ack.
func hsConnect(t testing.TB, ctx context.Context, s *apptest.Server, u apptest.User, proto string) *websocket.Conn {
	t.Helper()
	c, _, err := hsDial(ctx, s, proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	hsWrite(ctx, c, map[string]any{"type": "connection_init", "payload": map[string]any{"token": u.Token}})
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("connect as %s: %v", u.Username, err)
		}
		var m apptest.Message
		_ = json.Unmarshal(b, &m)
		if m.Type == "connection_ack" {
			return c
		}
	}
}

// hsReadToClose reads until the socket closes and returns the close code
// (-1 without one, or when it stays open for 10 s).
func hsReadToClose(ctx context.Context, c *websocket.Conn) int {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	defer c.CloseNow()
	for {
		if _, _, err := c.Read(ctx); err != nil {
			return apptest.CloseStatus(err)
		}
	}
}

// hsNextOf reads frames until one of operation id arrives.
func hsNextOf(t testing.TB, ctx context.Context, c *websocket.Conn, id string) apptest.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for operation %s: %v", id, err)
		}
		var m apptest.Message
		if json.Unmarshal(b, &m) == nil && m.ID == id {
			return m
		}
	}
}

// hsProbe starts `{ __typename }` as operation "probe" and reports whether
// the server answered it, or else the close code the socket ended with.
func hsProbe(ctx context.Context, c *websocket.Conn, proto string) (answered bool, code int) {
	typ := "subscribe"
	if proto == apptest.LegacyWS {
		typ = "start"
	}
	hsWrite(ctx, c, map[string]any{"id": "probe", "type": typ, "payload": map[string]any{"query": "{ __typename }"}})
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return false, apptest.CloseStatus(err)
		}
		var m apptest.Message
		if json.Unmarshal(b, &m) == nil && m.ID == "probe" && (m.Type == "next" || m.Type == "data") {
			return true, 0
		}
	}
}

// 300 WebSockets opened at once by one user, with the default limits: past
// the burst (and the per-user cap) they are closed with 4429; the server
// stays healthy, other users connect, and goroutines and heap return near
// their baseline once the sockets close. Not parallel: it counts the
// process's goroutines.
func TestHostileConnectionFlood(t *testing.T) {
	const flood = 300
	// The defaults (apptest turns them off or up).
	s := apptest.Start(t, "RATE_LIMIT_CONNECTIONS=1/s", "RATE_LIMIT_CONNECTIONS_BURST=20", "WS_MAX_CONNECTIONS_PER_USER=20")
	alice, bob := htUser(t, s, "alice"), htUser(t, s, "bob")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	http.DefaultClient.CloseIdleConnections()
	baseGoroutines, baseHeap := apptest.SettledGoroutines(), heap()

	var (
		mu       sync.Mutex
		open     []*websocket.Conn
		outcomes = map[string]int{}
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outcome, c := func() (string, *websocket.Conn) {
				c, _, err := hsDial(ctx, s, apptest.TransportWS)
				if err != nil {
					return "dial: " + err.Error(), nil
				}
				hsWrite(ctx, c, map[string]any{"type": "connection_init", "payload": map[string]any{"token": alice.Token}})
				for {
					_, b, err := c.Read(ctx)
					if err != nil {
						c.CloseNow()
						return fmt.Sprintf("closed %d", apptest.CloseStatus(err)), nil
					}
					var m apptest.Message
					_ = json.Unmarshal(b, &m)
					if m.Type == "connection_ack" {
						return "ack", c
					}
				}
			}()
			mu.Lock()
			defer mu.Unlock()
			outcomes[outcome]++
			if c != nil {
				open = append(open, c)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d connections in %v: %v", flood, elapsed, outcomes)
	// The burst is 20, and the per-user cap 20; refills add 1/s.
	if acks := outcomes["ack"]; acks < 1 || acks > 20 {
		t.Errorf("%d connections accepted, want at most 20", acks)
	}
	if outcomes["ack"]+outcomes["closed 4429"] != flood {
		t.Errorf("outcomes other than ack and 4429: %v", outcomes)
	}
	peak := runtime.NumGoroutine()

	// Still serving: health, HTTP, and another user's WebSocket.
	hsServing(t, s, bob)
	hsConnect(t, ctx, s, bob, apptest.TransportWS).CloseNow()
	// The open ones still work.
	if len(open) > 0 {
		if answered, code := hsProbe(ctx, open[0], apptest.TransportWS); !answered {
			t.Errorf("an accepted connection stopped answering (closed %d)", code)
		}
	}

	for _, c := range open {
		c.CloseNow()
	}
	http.DefaultClient.CloseIdleConnections()
	const slack = 10
	var now int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if now = runtime.NumGoroutine(); now <= baseGoroutines+slack {
			break
		}
	}
	if now > baseGoroutines+slack {
		t.Errorf("goroutines: baseline %d, peak %d, still %d 10 s after closing", baseGoroutines, peak, now)
	}
	if h := heap(); h > baseHeap+32<<20 {
		t.Errorf("heap: baseline %d MB, %d MB after closing", baseHeap>>20, h>>20)
	} else {
		t.Logf("goroutines: baseline %d, peak %d, after %d; heap %d → %d KB", baseGoroutines, peak, now, baseHeap>>10, h>>10)
	}
}
