package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/apptest"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
)

// ---------------------------------------------------------------------------
// Helpers shared by the subscription tests (prefixed "sub" to stay clear of
// the other e2e files of this package).

const (
	subMessageEventsQ = `subscription($c: ID!, $after: String) { messageEvents(conversationId: $c, after: $after) {
		type cursor message { id body editedAt deletedAt sender { id username } } } }`
	subInboxQ  = `subscription { inbox { type conversation { id } message { id body sender { id } } user { id } } }`
	subTypingQ = `subscription($c: ID!) { typing(conversationId: $c) { conversationId typing user { id username } } }`
)

type subMsgEvent struct {
	Type    string
	Cursor  string
	Message struct {
		ID        string
		Body      string
		EditedAt  *string
		DeletedAt *string
		Sender    struct{ ID, Username string }
	}
}

type subInboxEvent struct {
	Type         string
	Conversation struct{ ID string }
	Message      *struct {
		ID, Body string
		Sender   struct{ ID string }
	}
	User *struct{ ID string }
}

type subTypingEvent struct {
	ConversationID string
	Typing         bool
	User           struct{ ID, Username string }
}

func subVars(conv string, after *string) map[string]any {
	v := map[string]any{"c": conv}
	if after != nil {
		v["after"] = *after
	}
	return v
}

// subNextMsg reads the next messageEvents event of op id.
func subNextMsg(t *testing.T, c *apptest.Client, id string) subMsgEvent {
	t.Helper()
	var d struct{ MessageEvents subMsgEvent }
	c.NextOp(id, 10*time.Second, &d)
	return d.MessageEvents
}

func subNextInbox(t *testing.T, c *apptest.Client, id string) subInboxEvent {
	t.Helper()
	var d struct{ Inbox subInboxEvent }
	c.NextOp(id, 10*time.Second, &d)
	return d.Inbox
}

func subNextTyping(t *testing.T, c *apptest.Client, id string, timeout time.Duration) subTypingEvent {
	t.Helper()
	var d struct{ Typing subTypingEvent }
	c.NextOp(id, timeout, &d)
	return d.Typing
}

// subExpectEnd reads the frames of op id until the operation ends and
// returns the codes of the errors that ended it. Any frame with data fails.
func subExpectEnd(t *testing.T, c *apptest.Client, id string) []string {
	t.Helper()
	var codes []string
	for {
		m, err := c.RecvOp(id, 5*time.Second)
		if err != nil {
			t.Fatalf("op %s: want it to end, got %v (codes so far %v)", id, err, codes)
		}
		if m.Type == "next" || m.Type == "data" {
			var p struct{ Data json.RawMessage }
			_ = json.Unmarshal(m.Payload, &p)
			if len(p.Data) > 0 && string(p.Data) != "null" {
				t.Fatalf("op %s: want no data, got %s", id, m.Payload)
			}
		}
		for _, e := range m.Errors() {
			codes = append(codes, e.Code())
		}
		switch m.Type {
		case "complete":
			return codes
		case "error":
			// graphql-transport-ws: "error" ends the operation, no complete follows.
			return codes
		}
	}
}

// subExpectQuiet fails if op id delivers anything but keep-alives or a
// complete within d.
func subExpectQuiet(t *testing.T, c *apptest.Client, id string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		m, err := c.RecvOp(id, time.Until(deadline))
		if errors.Is(err, apptest.ErrRecvTimeout) {
			return
		}
		if err != nil {
			t.Fatalf("op %s: socket closed: %v", id, err)
		}
		if m.Type != "complete" {
			t.Fatalf("op %s: want nothing more, got %s %s", id, m.Type, m.Payload)
		}
	}
}

type subTarget struct {
	c    *apptest.Client
	id   string
	body func(m apptest.Message) (string, bool) // the warm-up body a frame carries, if any
}

func subMsgBody(m apptest.Message) (string, bool) {
	var d struct{ MessageEvents subMsgEvent }
	var p struct{ Data json.RawMessage }
	if json.Unmarshal(m.Payload, &p) != nil || json.Unmarshal(p.Data, &d) != nil {
		return "", false
	}
	return d.MessageEvents.Message.Body, true
}

func subInboxBody(m apptest.Message) (string, bool) {
	var d struct{ Inbox subInboxEvent }
	var p struct{ Data json.RawMessage }
	if json.Unmarshal(m.Payload, &p) != nil || json.Unmarshal(p.Data, &d) != nil || d.Inbox.Message == nil {
		return "", false
	}
	return d.Inbox.Message.Body, true
}

// subAwaitEnded waits until the server has ended op id after the client's
// complete/stop: gqlgen answers with a "complete" of its own once the
// operation's goroutines are done. Nothing is sent meanwhile, so no event
// may arrive. Without that answer, it gives up after a second.
func subAwaitEnded(t *testing.T, c *apptest.Client, id string) {
	t.Helper()
	m, err := c.RecvOp(id, time.Second)
	if errors.Is(err, apptest.ErrRecvTimeout) {
		t.Logf("op %s: no complete from the server after the client ended it", id)
		return
	}
	if err != nil || m.Type != "complete" {
		t.Fatalf("op %s: after the client ended it, got %s %s %v", id, m.Type, m.Payload, err)
	}
}

// subWarm sends "warmup-<n>" messages from sender to conv until every
// target has received one, then drains each target up to the last warm-up
// sent, and returns the last frame of each target.
func subWarm(t *testing.T, s *apptest.Server, sender apptest.User, conv string, targets ...subTarget) []apptest.Message {
	t.Helper()
	got := make([]bool, len(targets))
	last := make([]apptest.Message, len(targets))
	n := 0
	for ; n < 200; n++ {
		s.Send(sender, conv, fmt.Sprintf("warmup-%d", n))
		all := true
		for i, tg := range targets {
			if got[i] {
				continue
			}
			m, err := tg.c.RecvOp(tg.id, 100*time.Millisecond)
			if errors.Is(err, apptest.ErrRecvTimeout) {
				all = false
				continue
			}
			if err != nil {
				t.Fatalf("warm-up: %v", err)
			}
			if m.Type != "next" && m.Type != "data" {
				t.Fatalf("warm-up: want next, got %s %s", m.Type, m.Payload)
			}
			got[i], last[i] = true, m
		}
		if all {
			break
		}
	}
	want := fmt.Sprintf("warmup-%d", n)
	for i, tg := range targets {
		if !got[i] {
			t.Fatalf("warm-up: subscription %s never received anything", tg.id)
		}
		for {
			body, ok := tg.body(last[i])
			if ok && body == want {
				break
			}
			last[i] = tg.c.NextOp(tg.id, 10*time.Second, nil)
		}
	}
	return last
}

// subCursor returns the cursor of the newest event of conv, made by a
// warm-up message: subscribing with it as `after` then gets every later
// event, replay and live with no gap.
func subCursor(t *testing.T, s *apptest.Server, viewer, sender apptest.User, conv string) string {
	t.Helper()
	c := s.ConnectAs(viewer)
	defer c.Close()
	c.Subscribe("warm", subMessageEventsQ, subVars(conv, nil))
	last := subWarm(t, s, sender, conv, subTarget{c, "warm", subMsgBody})
	var d struct{ MessageEvents subMsgEvent }
	last[0].DecodeData(t, &d)
	if d.MessageEvents.Cursor == "" {
		t.Fatal("event without cursor")
	}
	return d.MessageEvents.Cursor
}

// subRegister registers a user, reporting failures to the (sub)test t.
func subRegister(t *testing.T, s *apptest.Server, prefix string) apptest.User {
	t.Helper()
	return s.RegisterFor(t, prefix)
}

// subPost is a goroutine-safe sendMessage/any mutation (it never calls
// t.Fatal): it returns an error instead.
func subPost(url, token, query string, vars map[string]any) (json.RawMessage, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Data   json.RawMessage
		Errors []apptest.GQLError
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if len(r.Errors) > 0 {
		return nil, fmt.Errorf("%+v", r.Errors)
	}
	return r.Data, nil
}

const subSendQ = `mutation($in: SendMessageInput!) { sendMessage(input: $in) { id } }`

func subSendAsync(s *apptest.Server, u apptest.User, conv, body string) error {
	_, err := subPost(s.URL, u.Token, subSendQ, map[string]any{"in": map[string]any{"conversationId": conv, "body": body}})
	return err
}

func subMutate(t *testing.T, s *apptest.Server, u apptest.User, query string, vars map[string]any) {
	t.Helper()
	r := s.Post(u.Token, query, vars)
	if len(r.Errors) > 0 {
		t.Fatalf("mutation failed: %+v", r.Errors)
	}
}

func subHasCode(codes []string, want string) bool {
	for _, c := range codes {
		if c == want {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------
// 1. graphql-transport-ws: every accepted token key, full exchange.

func TestWSTransportTokenKeysAndExchange(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := subRegister(t, s, "alice"), subRegister(t, s, "bob")
	conv := s.CreateConversation(alice, nil, bob)

	for _, tc := range []struct{ key, value string }{
		{"Authorization", "Bearer " + bob.Token},
		{"Authorization", bob.Token},
		{"authorization", "Bearer " + bob.Token},
		{"authorization", bob.Token},
		{"authToken", bob.Token},
		{"token", bob.Token},
	} {
		c := s.Connect(apptest.TransportWS, map[string]any{tc.key: tc.value})
		// A query over the socket: next with the data, then complete.
		c.Subscribe("q", `query { me { id username } }`, nil)
		var me struct{ Me struct{ ID, Username string } }
		c.NextOp("q", 5*time.Second, &me)
		if me.Me.ID != bob.ID || me.Me.Username != bob.Username {
			t.Fatalf("%s=%q: signed in as %+v, want bob", tc.key, tc.value[:10], me.Me)
		}
		if m := c.MustOp("q", 5*time.Second); m.Type != "complete" {
			t.Fatalf("query: want complete after next, got %s %s", m.Type, m.Payload)
		}
		c.Close()
	}

	c := s.ConnectAs(bob)
	// A mutation over the socket ends the same way.
	c.Subscribe("m", `mutation($c: ID!) { setTyping(conversationId: $c, typing: false) }`, map[string]any{"c": conv})
	var mut struct{ SetTyping bool }
	c.NextOp("m", 5*time.Second, &mut)
	if !mut.SetTyping {
		t.Fatal("setTyping over WS returned false")
	}
	if m := c.MustOp("m", 5*time.Second); m.Type != "complete" {
		t.Fatalf("mutation: want complete, got %s %s", m.Type, m.Payload)
	}

	// Subscribe, receive a checked event.
	c.Subscribe("1", subMessageEventsQ, subVars(conv, nil))
	last := subWarm(t, s, alice, conv, subTarget{c, "1", subMsgBody})
	var warm struct{ MessageEvents subMsgEvent }
	last[0].DecodeData(t, &warm)
	msgID := s.Send(alice, conv, "hello bob")
	ev := subNextMsg(t, c, "1")
	if ev.Type != "CREATED" || ev.Message.ID != msgID || ev.Message.Body != "hello bob" ||
		ev.Message.Sender.ID != alice.ID || ev.Message.Sender.Username != alice.Username || ev.Cursor == "" ||
		ev.Cursor == warm.MessageEvents.Cursor {
		t.Fatalf("unexpected event %+v", ev)
	}

	// A second operation on the same socket serves as the marker: once it
	// has an event, operation 1 would have had it too.
	c.Subscribe("2", subMessageEventsQ, subVars(conv, &ev.Cursor))
	c.Complete("1")
	subAwaitEnded(t, c, "1")
	s.Send(alice, conv, "after complete")
	if got := subNextMsg(t, c, "2"); got.Message.Body != "after complete" {
		t.Fatalf("marker op: got %q", got.Message.Body)
	}
	subExpectQuiet(t, c, "1", 300*time.Millisecond)
	// The socket is still usable after the client completed an operation.
	s.Send(alice, conv, "still here")
	if got := subNextMsg(t, c, "2"); got.Message.Body != "still here" {
		t.Fatalf("marker op: got %q", got.Message.Body)
	}
}

// ---------------------------------------------------------------------------
// 2. Missing, bad and expired tokens close the socket with 4403.

func TestWSInitRejectsBadTokens(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := subRegister(t, s, "alice"), subRegister(t, s, "bob")
	conv := s.CreateConversation(alice, nil, bob)

	expired, err := auth.NewTokens(s.App.Config.JWTSecret, -time.Minute).Issue(bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := auth.NewTokens([]byte("another-secret-another-secret-0123456"), time.Hour).Issue(bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		payload map[string]any
	}{
		{"no payload", nil},
		{"empty payload", map[string]any{}},
		{"empty token", map[string]any{"Authorization": "Bearer "}},
		{"garbage", map[string]any{"Authorization": "Bearer not-a-jwt"}},
		{"other key", map[string]any{"authToken": otherKey}},
		{"expired", map[string]any{"Authorization": "Bearer " + expired}},
		{"expired token key", map[string]any{"token": expired}},
		{"tampered", map[string]any{"token": bob.Token[:len(bob.Token)-2] + "xx"}},
	}
	for _, proto := range []string{apptest.TransportWS, apptest.LegacyWS} {
		for _, tc := range cases {
			w := s.Dial(proto)
			init := map[string]any{"type": "connection_init"}
			if tc.payload != nil {
				init["payload"] = tc.payload
			}
			w.Send(init)
			// Pipeline a subscription behind the init: it must never start.
			start := map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": subMessageEventsQ, "variables": subVars(conv, nil)}}
			if proto == apptest.LegacyWS {
				start["type"] = "start"
			}
			b, _ := json.Marshal(start)
			_ = w.Conn.Write(t.Context(), websocket.MessageText, b) // the server may already have closed
			s.Send(alice, conv, "nobody unauthenticated may see this")
			var types []string
			for {
				m, err := w.TryRead(5 * time.Second)
				if err != nil {
					code := apptest.CloseStatus(err)
					if proto == apptest.TransportWS && code != 4403 {
						t.Errorf("%s %s: close code %d (%v), want 4403", proto, tc.name, code, err)
					}
					if proto == apptest.LegacyWS && code == -1 {
						t.Errorf("%s %s: socket not closed by the server: %v", proto, tc.name, err)
					}
					break
				}
				types = append(types, m.Type)
				switch m.Type {
				case "connection_ack", "next", "data", "ka":
					t.Errorf("%s %s: got %s %s before the close", proto, tc.name, m.Type, m.Payload)
				}
			}
			if proto == apptest.LegacyWS && (len(types) == 0 || types[0] != "connection_error") {
				t.Errorf("%s %s: want connection_error before the close, got %v", proto, tc.name, types)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// 3. Legacy subscriptions-transport-ws.

func TestWSLegacyProtocol(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := subRegister(t, s, "alice"), subRegister(t, s, "bob")
	conv := s.CreateConversation(alice, nil, bob)

	w := s.Dial(apptest.LegacyWS)
	if got := w.Conn.Subprotocol(); got != apptest.LegacyWS {
		t.Fatalf("negotiated subprotocol %q", got)
	}
	w.Send(map[string]any{"type": "connection_init", "payload": map[string]any{"authToken": bob.Token}})
	if m := w.Read(5 * time.Second); m.Type != "connection_ack" {
		t.Fatalf("want connection_ack, got %s %s", m.Type, m.Payload)
	}
	if m := w.Read(5 * time.Second); m.Type != "ka" {
		t.Fatalf("want ka right after the ack, got %s %s", m.Type, m.Payload)
	}
	c := w.Pump()
	c.Start("1", subMessageEventsQ, subVars(conv, nil))
	last := subWarm(t, s, alice, conv, subTarget{c, "1", subMsgBody})
	if last[0].Type != "data" {
		t.Fatalf("legacy event type %q, want data", last[0].Type)
	}
	id := s.Send(alice, conv, "legacy hello")
	m := c.NextOp("1", 5*time.Second, nil)
	if m.Type != "data" {
		t.Fatalf("want data, got %s", m.Type)
	}
	var d struct{ MessageEvents subMsgEvent }
	m.DecodeData(t, &d)
	if d.MessageEvents.Type != "CREATED" || d.MessageEvents.Message.ID != id || d.MessageEvents.Message.Body != "legacy hello" {
		t.Fatalf("unexpected event %+v", d.MessageEvents)
	}

	// stop: no more data for 1; operation 2 is the marker.
	c.Start("2", subMessageEventsQ, subVars(conv, &d.MessageEvents.Cursor))
	c.Stop("1")
	subAwaitEnded(t, c, "1")
	s.Send(alice, conv, "after stop")
	if got := subNextMsg(t, c, "2"); got.Message.Body != "after stop" {
		t.Fatalf("marker: got %q", got.Message.Body)
	}
	subExpectQuiet(t, c, "1", 300*time.Millisecond)

	// A query over the legacy protocol: data then complete.
	c.Start("q", `query { me { username } }`, nil)
	var me struct{ Me struct{ Username string } }
	c.NextOp("q", 5*time.Second, &me)
	if me.Me.Username != bob.Username {
		t.Fatalf("me over legacy = %q", me.Me.Username)
	}
	if m := c.MustOp("q", 5*time.Second); m.Type != "complete" {
		t.Fatalf("want complete, got %s", m.Type)
	}
	// connection_terminate closes the socket.
	c.Send(map[string]any{"type": "connection_terminate"})
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("connection_terminate did not close the socket")
	}
}

// ---------------------------------------------------------------------------
// 4. Keep-alives and the init timeout.

func TestWSKeepAlive(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "WS_PING_INTERVAL=200ms")
	bob := subRegister(t, s, "bob")

	// graphql-transport-ws: the server pings; the client's pongs keep the
	// socket open across several intervals.
	c := s.ConnectAs(bob)
	pings := 0
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		m, err := c.Recv(time.Until(deadline))
		if errors.Is(err, apptest.ErrRecvTimeout) {
			break
		}
		if err != nil {
			t.Fatalf("socket closed although pongs were sent: %v", err)
		}
		if m.Type == "ping" {
			pings++
		}
		if m.Type == "ka" {
			t.Fatal("graphql-transport-ws client got a legacy ka")
		}
	}
	if pings < 3 {
		t.Fatalf("got %d pings in 1.5s with a 200ms interval", pings)
	}
	c.Subscribe("q", `query { me { id } }`, nil)
	c.NextOp("q", 5*time.Second, nil)

	// Legacy: "ka" frames, no ping.
	l := s.Connect(apptest.LegacyWS, map[string]any{"token": bob.Token})
	kas := 0
	deadline = time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		m, err := l.Recv(time.Until(deadline))
		if errors.Is(err, apptest.ErrRecvTimeout) {
			break
		}
		if err != nil {
			t.Fatalf("legacy socket closed: %v", err)
		}
		switch m.Type {
		case "ka":
			kas++
		case "ping":
			t.Fatal("legacy client got a graphql-transport-ws ping")
		}
	}
	if kas < 3 {
		t.Fatalf("got %d ka in 1.5s with a 200ms interval", kas)
	}
}

func TestWSInitTimeout(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "WS_INIT_TIMEOUT=300ms")
	for _, proto := range []string{apptest.TransportWS, apptest.LegacyWS} {
		w := s.Dial(proto)
		start := time.Now()
		m, err := w.TryRead(5 * time.Second)
		elapsed := time.Since(start)
		if err == nil {
			t.Fatalf("%s: got %s %s before connection_init", proto, m.Type, m.Payload)
		}
		code := apptest.CloseStatus(err)
		t.Logf("%s: closed after %v with code %d (%v)", proto, elapsed.Round(time.Millisecond), code, err)
		if code == -1 || elapsed > 2*time.Second || elapsed < 250*time.Millisecond {
			t.Fatalf("%s: want a close frame ~300ms after connecting, got code %d after %v (%v)", proto, code, elapsed, err)
		}
	}
}

// ---------------------------------------------------------------------------
// 5. messageEvents: CREATED, EDITED, DELETED in sequence order, each once;
// resuming from any cursor gives exactly the rest.

func TestSubMessageEventsOrder(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := subRegister(t, s, "alice"), subRegister(t, s, "bob")
	conv := s.CreateConversation(alice, nil, bob)
	start := subCursor(t, s, bob, alice, conv)

	c := s.ConnectAs(bob)
	c.Subscribe("1", subMessageEventsQ, subVars(conv, &start))
	m1 := s.Send(alice, conv, "one")
	subMutate(t, s, alice, `mutation($id: ID!) { editMessage(id: $id, body: "one, edited") { id } }`, map[string]any{"id": m1})
	m2 := s.Send(alice, conv, "two")
	subMutate(t, s, alice, `mutation($id: ID!) { deleteMessage(id: $id) { id } }`, map[string]any{"id": m1})
	// Deleting a tombstone again changes nothing and publishes nothing.
	subMutate(t, s, alice, `mutation($id: ID!) { deleteMessage(id: $id) { id } }`, map[string]any{"id": m1})
	m3 := s.Send(alice, conv, "three")

	want := []struct{ typ, id string }{{"CREATED", m1}, {"EDITED", m1}, {"CREATED", m2}, {"DELETED", m1}, {"CREATED", m3}}
	var got []subMsgEvent
	seen := map[string]bool{start: true}
	for i, w := range want {
		ev := subNextMsg(t, c, "1")
		if ev.Type != w.typ || ev.Message.ID != w.id {
			t.Fatalf("event %d: got %s %s (%q), want %s %s", i, ev.Type, ev.Message.ID, ev.Message.Body, w.typ, w.id)
		}
		if seen[ev.Cursor] {
			t.Fatalf("event %d: cursor %q repeated", i, ev.Cursor)
		}
		seen[ev.Cursor] = true
		got = append(got, ev)
	}
	// The message is shown as it is now; at least the final states are fixed.
	if d := got[3]; d.Message.Body != "" || d.Message.DeletedAt == nil {
		t.Fatalf("DELETED event shows %+v, want a tombstone", d.Message)
	}
	if e := got[1]; e.Message.EditedAt == nil {
		t.Fatalf("EDITED event without editedAt: %+v", e.Message)
	}
	if got[4].Message.Body != "three" {
		t.Fatalf("CREATED three shows %q", got[4].Message.Body)
	}

	// Resume after each cursor: exactly the events after it, same cursors.
	for k := range got {
		r := s.ConnectAs(bob)
		r.Subscribe("r", subMessageEventsQ, subVars(conv, &got[k].Cursor))
		for j := k + 1; j < len(got); j++ {
			ev := subNextMsg(t, r, "r")
			if ev.Type != got[j].Type || ev.Message.ID != got[j].Message.ID || ev.Cursor != got[j].Cursor {
				t.Fatalf("resume after %d: event %d is %s %s %s, want %s %s %s", k, j,
					ev.Type, ev.Message.ID, ev.Cursor, got[j].Type, got[j].Message.ID, got[j].Cursor)
			}
		}
		r.Close()
	}

	// Each once: nothing more is pending; the next event is the next change.
	m4 := s.Send(alice, conv, "four")
	if ev := subNextMsg(t, c, "1"); ev.Type != "CREATED" || ev.Message.ID != m4 {
		t.Fatalf("after the sequence: got %s %s %q, want CREATED four", ev.Type, ev.Message.ID, ev.Message.Body)
	}
}

// ---------------------------------------------------------------------------
// 6. The replay seam: replay from the database and live delivery meet with
// no gap and no duplicate while messages keep arriving; a disconnected
// client resumes with the last cursor it got.

func TestSubReplaySeam(t *testing.T) {
	t.Parallel()
	const before, during = 50, 200
	const total = before + during
	s := apptest.Start(t)
	alice, bob := subRegister(t, s, "alice"), subRegister(t, s, "bob")
	conv := s.CreateConversation(alice, nil, bob)
	body := func(i int) string { return fmt.Sprintf("m-%d", i) }

	// A live subscriber sees everything; it is the reference for cursors.
	live := s.ConnectAs(bob)
	live.Subscribe("live", subMessageEventsQ, subVars(conv, nil))
	subWarm(t, s, alice, conv, subTarget{live, "live", subMsgBody})
	cursor := map[string]string{}
	readInOrder := func(c *apptest.Client, id string, from, to int, check bool) string {
		t.Helper()
		var last string
		for i := from; i < to; i++ {
			ev := subNextMsg(t, c, id)
			if ev.Type != "CREATED" || ev.Message.Body != body(i) {
				t.Fatalf("%s: event for %s: got %s %q (gap, duplicate or reorder)", id, body(i), ev.Type, ev.Message.Body)
			}
			if check {
				if want, ok := cursor[body(i)]; ok && want != ev.Cursor {
					t.Fatalf("%s: cursor of %s is %q, the live subscriber got %q", id, body(i), ev.Cursor, want)
				}
			} else {
				for b, c := range cursor {
					if c == ev.Cursor {
						t.Fatalf("%s: cursor of %s equals the cursor of %s", id, body(i), b)
					}
				}
				cursor[body(i)] = ev.Cursor
			}
			last = ev.Cursor
		}
		return last
	}
	for i := range before {
		s.Send(alice, conv, body(i))
	}
	readInOrder(live, "live", 0, before, false)

	// 200 more, concurrently, while replaying subscribers start.
	progress := make(chan int, during)
	sendErr := make(chan error, 1)
	go func() {
		defer close(progress)
		for i := before; i < total; i++ {
			if err := subSendAsync(s, alice, conv, body(i)); err != nil {
				sendErr <- fmt.Errorf("send %s: %w", body(i), err)
				return
			}
			progress <- i
		}
	}()
	waitFor := func(n int) {
		for i := range progress {
			if i >= n {
				return
			}
		}
	}
	from := cursor[body(9)] // the 10th event
	var replayers []*apptest.Client
	for _, at := range []int{before + 20, before + 60, before + 100, before + 150} {
		waitFor(at)
		r := s.ConnectAs(bob)
		r.Subscribe("replay", subMessageEventsQ, subVars(conv, &from))
		replayers = append(replayers, r)
	}

	// The first one disconnects mid-stream and resumes on a new socket.
	const cut = 130
	lastCur := readInOrder(replayers[0], "replay", 10, cut+1, true)
	replayers[0].Close()
	resumed := s.ConnectAs(bob)
	resumed.Subscribe("resume", subMessageEventsQ, subVars(conv, &lastCur))

	for range progress { // wait for the sender
	}
	select {
	case err := <-sendErr:
		t.Fatal(err)
	default:
	}
	readInOrder(live, "live", before, total, false)
	readInOrder(resumed, "resume", cut+1, total, true)
	for _, r := range replayers[1:] {
		readInOrder(r, "replay", 10, total, true)
	}
	// No duplicate after the last one either: the next event is the next message.
	s.Send(alice, conv, "end")
	for _, c := range append([]*apptest.Client{live, resumed}, replayers[1:]...) {
		id := "replay"
		if c == live {
			id = "live"
		} else if c == resumed {
			id = "resume"
		}
		if ev := subNextMsg(t, c, id); ev.Message.Body != "end" {
			t.Fatalf("%s: after %s got %q, want end", id, body(total-1), ev.Message.Body)
		}
	}
}

// ---------------------------------------------------------------------------
// 7. Access errors and bad cursors.

func TestSubAccessErrors(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob, eve := subRegister(t, s, "alice"), subRegister(t, s, "bob"), subRegister(t, s, "eve")
	conv := s.CreateConversation(alice, nil, bob)
	other := s.CreateConversation(alice, nil, eve)
	cur := subCursor(t, s, bob, alice, conv)
	otherCur := subCursor(t, s, eve, alice, other)

	c := s.ConnectAs(eve)
	check := func(id, query string, vars map[string]any, want string) {
		t.Helper()
		c.Subscribe(id, query, vars)
		codes := subExpectEnd(t, c, id)
		if len(codes) == 0 || !subHasCode(codes, want) {
			t.Errorf("%s: error codes %v, want %s", id, codes, want)
		}
	}
	check("outsider-events", subMessageEventsQ, subVars(conv, nil), "NOT_FOUND")
	check("outsider-events-after", subMessageEventsQ, subVars(conv, &cur), "NOT_FOUND")
	check("outsider-typing", subTypingQ, map[string]any{"c": conv}, "NOT_FOUND")
	check("unknown-conversation", subMessageEventsQ, subVars("does-not-exist", nil), "NOT_FOUND")
	check("malformed-after", subMessageEventsQ, subVars(other, apptest.Ptr("not a cursor!")), "BAD_USER_INPUT")
	check("base64-garbage-after", subMessageEventsQ, subVars(other, apptest.Ptr("Zm9vOmJhcg")), "BAD_USER_INPUT")
	check("cursor-of-another-conversation", subMessageEventsQ, subVars(other, &cur), "BAD_USER_INPUT")

	// Eve's own conversation works on the same socket, and nothing of conv
	// reaches her: the next event she gets is the one in her conversation.
	c.Subscribe("own", subMessageEventsQ, subVars(other, &otherCur))
	c.Subscribe("inbox", subInboxQ, nil)
	subWarm(t, s, alice, other, subTarget{c, "inbox", subInboxBody})
	s.Send(alice, conv, "secret")
	s.Send(bob, conv, "secret too")
	s.Send(alice, other, "for eve")
	if e := subNextInbox(t, c, "inbox"); e.Conversation.ID != other || e.Message == nil || e.Message.Body != "for eve" {
		t.Fatalf("eve's inbox: got %+v, want the message in her conversation", e)
	}
	// "own" replays the warm-ups first, then "for eve"; never "secret".
	for {
		ev := subNextMsg(t, c, "own")
		if strings.HasPrefix(ev.Message.Body, "secret") {
			t.Fatalf("outsider got %q", ev.Message.Body)
		}
		if ev.Message.Body == "for eve" {
			break
		}
	}
	for _, id := range []string{"outsider-events", "outsider-events-after", "outsider-typing"} {
		subExpectQuiet(t, c, id, 50*time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// 8. inbox.

func TestInboxEvents(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob, carol, dave := subRegister(t, s, "alice"), subRegister(t, s, "bob"), subRegister(t, s, "carol"), subRegister(t, s, "dave")
	direct := s.CreateConversation(alice, nil, bob)

	bi := s.ConnectAs(bob)
	bi.Subscribe("i", subInboxQ, nil)
	ai := s.ConnectAs(alice)
	ai.Subscribe("i", subInboxQ, nil)
	subWarm(t, s, alice, direct, subTarget{bi, "i", subInboxBody}, subTarget{ai, "i", subInboxBody})

	type want struct {
		typ, conv, msg, user string
		body                 *string
	}
	expect := func(c *apptest.Client, who string, ws ...want) {
		t.Helper()
		for _, w := range ws {
			e := subNextInbox(t, c, "i")
			bad := e.Type != w.typ || e.Conversation.ID != w.conv
			if w.msg != "" && (e.Message == nil || e.Message.ID != w.msg) {
				bad = true
			}
			if (w.typ == "CONVERSATION_CREATED" || w.typ == "PARTICIPANTS_CHANGED") && e.Message != nil {
				bad = true
			}
			if w.user != "" && (e.User == nil || e.User.ID != w.user) {
				bad = true
			}
			if w.body != nil && (e.Message == nil || e.Message.Body != *w.body) {
				bad = true
			}
			if bad {
				t.Fatalf("%s's inbox: got %+v (msg %+v user %+v), want %+v", who, e, e.Message, e.User, w)
			}
		}
	}

	g := s.CreateConversation(carol, apptest.Ptr("group"), bob)
	m1 := s.Send(alice, direct, "m1")
	subMutate(t, s, alice, `mutation($id: ID!) { editMessage(id: $id, body: "m1 edited") { id } }`, map[string]any{"id": m1})
	subMutate(t, s, alice, `mutation($id: ID!) { deleteMessage(id: $id) { id } }`, map[string]any{"id": m1})
	m2 := s.Send(bob, g, "m2 from bob")
	subMutate(t, s, bob, `mutation($c: ID!) { markConversationRead(conversationId: $c) { id } }`, map[string]any{"c": direct})
	subMutate(t, s, carol, `mutation($c: ID!) { markConversationRead(conversationId: $c) { id } }`, map[string]any{"c": g})
	subMutate(t, s, carol, `mutation($c: ID!, $u: [ID!]!) { addParticipants(conversationId: $c, userIds: $u) { id } }`,
		map[string]any{"c": g, "u": []string{dave.ID}})
	subMutate(t, s, carol, `mutation($c: ID!) { leaveConversation(conversationId: $c) }`, map[string]any{"c": g})
	// A conversation without bob: none of it reaches bob.
	h := s.CreateConversation(alice, apptest.Ptr("no bob"), carol)
	s.Send(alice, h, "not for bob")
	s.Send(carol, h, "not for bob either")
	marker := s.Send(alice, direct, "marker")

	empty := ""
	expect(bi, "bob",
		want{typ: "CONVERSATION_CREATED", conv: g},
		want{typ: "MESSAGE_CREATED", conv: direct, msg: m1},
		want{typ: "MESSAGE_EDITED", conv: direct, msg: m1},
		want{typ: "MESSAGE_DELETED", conv: direct, msg: m1, body: &empty},
		want{typ: "MESSAGE_CREATED", conv: g, msg: m2},         // his own
		want{typ: "READ", conv: direct, msg: m1, user: bob.ID}, // his own; message: the last one read
		want{typ: "READ", conv: g, msg: m2, user: carol.ID},
		want{typ: "PARTICIPANTS_CHANGED", conv: g, user: dave.ID},
		want{typ: "PARTICIPANTS_CHANGED", conv: g, user: carol.ID},
		want{typ: "MESSAGE_CREATED", conv: direct, msg: marker},
	)
	expect(ai, "alice",
		want{typ: "MESSAGE_CREATED", conv: direct, msg: m1}, // her own
		want{typ: "MESSAGE_EDITED", conv: direct, msg: m1},
		want{typ: "MESSAGE_DELETED", conv: direct, msg: m1, body: &empty},
		want{typ: "READ", conv: direct, msg: m1, user: bob.ID},
		want{typ: "CONVERSATION_CREATED", conv: h}, // her own
		want{typ: "MESSAGE_CREATED", conv: h},
		want{typ: "MESSAGE_CREATED", conv: h},
		want{typ: "MESSAGE_CREATED", conv: direct, msg: marker},
	)
}

// ---------------------------------------------------------------------------
// 9. typing.

func TestTypingEvents(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "TYPING_TTL=1s")
	alice, bob := subRegister(t, s, "alice"), subRegister(t, s, "bob")
	conv := s.CreateConversation(alice, nil, bob)
	ttl := s.App.Chat.Limits().TypingTTL
	setTyping := func(u apptest.User, on bool) {
		t.Helper()
		subMutate(t, s, u, `mutation($c: ID!, $y: Boolean!) { setTyping(conversationId: $c, typing: $y) }`,
			map[string]any{"c": conv, "y": on})
	}
	// warm calls setTyping(u, true) until c's typing subscription reports u.
	warm := func(c *apptest.Client, u apptest.User) (subTypingEvent, time.Time) {
		t.Helper()
		for range 100 {
			at := time.Now()
			setTyping(u, true)
			m, err := c.RecvOp("t", 100*time.Millisecond)
			if errors.Is(err, apptest.ErrRecvTimeout) {
				continue
			}
			if err != nil || m.Type != "next" {
				t.Fatalf("typing: got %s %s %v", m.Type, m.Payload, err)
			}
			var d struct{ Typing subTypingEvent }
			m.DecodeData(t, &d)
			return d.Typing, at
		}
		t.Fatal("typing subscription never received anything")
		return subTypingEvent{}, time.Time{}
	}

	a := s.ConnectAs(alice)
	a.Subscribe("t", subTypingQ, map[string]any{"c": conv})
	b := s.ConnectAs(bob)
	b.Subscribe("t", subTypingQ, map[string]any{"c": conv})

	// Alice's subscription is live before she types (bob's typing reaches it).
	if ev, _ := warm(a, bob); ev.User.ID != bob.ID || !ev.Typing || ev.ConversationID != conv {
		t.Fatalf("alice got %+v, want bob typing", ev)
	}
	ev, lastRefresh := warm(b, alice)
	if ev.User.ID != alice.ID || ev.User.Username != alice.Username || !ev.Typing || ev.ConversationID != conv {
		t.Fatalf("bob got %+v, want alice typing", ev)
	}
	// Bob stops: alice's next event is that, never her own typing.
	setTyping(bob, false)
	if ev := subNextTyping(t, a, "t", 5*time.Second); ev.User.ID != bob.ID || ev.Typing {
		t.Fatalf("alice got %+v, want bob stopped typing", ev)
	}
	// Alice's state expires by itself: bob gets typing:false after the TTL,
	// and nothing in between (refreshes during the warm-up are not news).
	ev = subNextTyping(t, b, "t", ttl+3*time.Second)
	elapsed := time.Since(lastRefresh)
	if ev.User.ID != alice.ID || ev.Typing {
		t.Fatalf("bob got %+v, want alice's typing to expire", ev)
	}
	if elapsed < ttl-200*time.Millisecond || elapsed > ttl+2*time.Second {
		t.Fatalf("typing expired %v after the last refresh, TTL is %v", elapsed, ttl)
	}
	t.Logf("typing expired %v after the last refresh (TTL %v)", elapsed.Round(time.Millisecond), ttl)
	subExpectQuiet(t, a, "t", 100*time.Millisecond) // alice never heard of her own typing
}

// ---------------------------------------------------------------------------
// 10. Leaving a conversation ends its subscriptions.

func TestSubLeaveEndsSubscriptions(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob, carol := subRegister(t, s, "alice"), subRegister(t, s, "bob"), subRegister(t, s, "carol")
	g := s.CreateConversation(alice, apptest.Ptr("group"), bob, carol)
	direct := s.CreateConversation(alice, nil, bob)
	cur := subCursor(t, s, bob, alice, g)

	c := s.ConnectAs(bob)
	c.Subscribe("m", subMessageEventsQ, subVars(g, &cur))
	c.Subscribe("t", subTypingQ, map[string]any{"c": g})
	c.Subscribe("t-direct", subTypingQ, map[string]any{"c": direct})
	c.Subscribe("i", subInboxQ, nil)
	subWarm(t, s, alice, direct, subTarget{c, "i", subInboxBody})
	// The typing subscription on g is live.
	for i := 0; ; i++ {
		subMutate(t, s, alice, `mutation($c: ID!) { setTyping(conversationId: $c, typing: true) }`, map[string]any{"c": g})
		if _, err := c.RecvOp("t", 100*time.Millisecond); err == nil {
			break
		} else if !errors.Is(err, apptest.ErrRecvTimeout) || i > 100 {
			t.Fatal(err)
		}
	}
	subMutate(t, s, alice, `mutation($c: ID!) { setTyping(conversationId: $c, typing: false) }`, map[string]any{"c": g})
	if ev := subNextTyping(t, c, "t", 5*time.Second); ev.Typing {
		t.Fatalf("want alice stopped typing, got %+v", ev)
	}

	subMutate(t, s, bob, `mutation($c: ID!) { leaveConversation(conversationId: $c) }`, map[string]any{"c": g})
	codes := subExpectEnd(t, c, "m")
	if !subHasCode(codes, "NOT_FOUND") {
		t.Errorf("messageEvents after leaving ended with codes %v, want NOT_FOUND", codes)
	}
	// Bob's own inbox hears that he left (his other devices stay in sync).
	if e := subNextInbox(t, c, "i"); e.Type != "PARTICIPANTS_CHANGED" || e.Conversation.ID != g || e.User == nil || e.User.ID != bob.ID {
		t.Fatalf("bob's inbox: got %+v, want PARTICIPANTS_CHANGED for his leaving", e)
	}

	// After leaving, nothing of g reaches bob: not messages, not typing.
	s.Send(alice, g, "bob is gone")
	subMutate(t, s, alice, `mutation($c: ID!) { setTyping(conversationId: $c, typing: true) }`, map[string]any{"c": g})
	subMutate(t, s, alice, `mutation($c: ID!) { setTyping(conversationId: $c, typing: true) }`, map[string]any{"c": direct})
	if ev := subNextTyping(t, c, "t-direct", 5*time.Second); ev.User.ID != alice.ID || !ev.Typing {
		t.Fatalf("marker typing: %+v", ev)
	}
	marker := s.Send(alice, direct, "marker")
	if e := subNextInbox(t, c, "i"); e.Message == nil || e.Message.ID != marker {
		t.Fatalf("bob's inbox after leaving: got %+v (%+v), want the marker in the direct conversation", e, e.Message)
	}
	// The typing subscription on g must not deliver alice's typing any more
	// (it may end with NOT_FOUND).
	for {
		m, err := c.RecvOp("t", 300*time.Millisecond)
		if errors.Is(err, apptest.ErrRecvTimeout) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Type == "next" && len(m.Errors()) == 0 {
			t.Fatalf("typing of a conversation bob left still delivers: %s", m.Payload)
		}
		if m.Type == "complete" || m.Type == "error" {
			break
		}
	}
	subExpectQuiet(t, c, "m", 50*time.Millisecond)
}

// ---------------------------------------------------------------------------
// 12. Many subscribers.

func TestSubManySubscribers(t *testing.T) {
	t.Parallel()
	const subs, msgs = 50, 20
	s := apptest.Start(t)
	alice, bob := subRegister(t, s, "alice"), subRegister(t, s, "bob")
	conv := s.CreateConversation(alice, nil, bob)
	cur := subCursor(t, s, bob, alice, conv)

	clients := make([]*apptest.Client, subs)
	for i := range clients {
		clients[i] = s.ConnectAs(bob)
		clients[i].Subscribe("s", subMessageEventsQ, subVars(conv, &cur))
	}
	for i := range msgs {
		s.Send(alice, conv, fmt.Sprintf("msg-%d", i))
	}
	s.Send(alice, conv, "end")
	for k, c := range clients {
		for i := range msgs {
			if ev := subNextMsg(t, c, "s"); ev.Message.Body != fmt.Sprintf("msg-%d", i) {
				t.Fatalf("subscriber %d: event %d is %q", k, i, ev.Message.Body)
			}
		}
		if ev := subNextMsg(t, c, "s"); ev.Message.Body != "end" {
			t.Fatalf("subscriber %d: after the %d messages got %q", k, msgs, ev.Message.Body)
		}
	}
}

// ---------------------------------------------------------------------------
// Subscribers of one event share its per-event loaders (events.Delivery
// Scope); a subscriber that disconnects while that event is being resolved
// must not break the event for the others.

func TestSubDisconnectDoesNotBreakOthers(t *testing.T) {
	t.Parallel()
	const rounds, victims, survivors = 15, 8, 3
	s := apptest.Start(t)
	alice, bob := subRegister(t, s, "alice"), subRegister(t, s, "bob")
	conv := s.CreateConversation(alice, nil, bob)
	cur := subCursor(t, s, bob, alice, conv)

	var keep []*apptest.Client
	for range survivors {
		c := s.ConnectAs(bob)
		c.Subscribe("s", subMessageEventsQ, subVars(conv, &cur))
		keep = append(keep, c)
	}
	for r := range rounds {
		var vs []*apptest.Client
		for range victims {
			v := s.ConnectAs(bob)
			v.Subscribe("s", subMessageEventsQ, subVars(conv, &cur))
			vs = append(vs, v)
		}
		// Everyone is live once the priming event reached them.
		prime := fmt.Sprintf("prime-%d", r)
		s.Send(alice, conv, prime)
		for _, c := range append(vs, keep...) {
			ev := subNextMsg(t, c, "s")
			if ev.Message.Body != prime {
				t.Fatalf("round %d: got %q, want %q", r, ev.Message.Body, prime)
			}
			cur = ev.Cursor
		}
		// The victims go away while the next event is being resolved.
		body := fmt.Sprintf("round-%d", r)
		s.Send(alice, conv, body)
		for _, v := range vs {
			_ = v.Conn.CloseNow()
		}
		for k, c := range keep {
			m := c.MustOp("s", 10*time.Second)
			if errs := m.Errors(); m.Type != "next" || len(errs) > 0 {
				t.Fatalf("round %d: survivor %d got %s %s after other subscribers disconnected", r, k, m.Type, m.Payload)
			}
			var d struct{ MessageEvents subMsgEvent }
			m.DecodeData(t, &d)
			if d.MessageEvents.Message.Body != body {
				t.Fatalf("round %d: survivor %d got %q, want %q", r, k, d.MessageEvents.Message.Body, body)
			}
			cur = d.MessageEvents.Cursor
		}
		for _, v := range vs {
			<-v.Done()
		}
	}
}

// ---------------------------------------------------------------------------
// 13. No goroutine outlives its subscription. Not parallel: it counts the
// process's goroutines.

func TestSubGoroutineLeak(t *testing.T) {
	const conns = 20
	s := apptest.Start(t)
	alice, bob := subRegister(t, s, "alice"), subRegister(t, s, "bob")
	conv := s.CreateConversation(alice, nil, bob)
	cur := subCursor(t, s, bob, alice, conv)

	http.DefaultClient.CloseIdleConnections()
	baseline := apptest.SettledGoroutines()

	var clients []*apptest.Client
	for range conns {
		c := s.ConnectAs(bob)
		c.Subscribe("m", subMessageEventsQ, subVars(conv, &cur))
		c.Subscribe("i", subInboxQ, nil)
		c.Subscribe("t", subTypingQ, map[string]any{"c": conv})
		clients = append(clients, c)
	}
	s.Send(alice, conv, "to everyone")
	for _, c := range clients {
		if ev := subNextMsg(t, c, "m"); ev.Message.Body != "to everyone" {
			t.Fatalf("got %q", ev.Message.Body)
		}
	}
	// The server needs no goroutine per idle subscription any more; each
	// connection still has its client's reader here, so fewer than one per
	// connection would mean they were not open.
	peak := runtime.NumGoroutine()
	if peak < baseline+conns {
		t.Fatalf("only %d goroutines with %d connections open (baseline %d): the check would prove nothing", peak, conns, baseline)
	}
	// Half end their operations first, the rest just drop the socket.
	for i, c := range clients {
		if i%2 == 0 {
			c.Complete("m")
			c.Complete("i")
			c.Complete("t")
		}
	}
	for i, c := range clients {
		if i%2 == 0 {
			c.MustOp("m", 5*time.Second)
		}
		c.Close()
	}
	http.DefaultClient.CloseIdleConnections()

	const slack = 5
	var now int
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if now = runtime.NumGoroutine(); now <= baseline+slack {
			t.Logf("goroutines: baseline %d, peak %d, after closing %d", baseline, peak, now)
			return
		}
	}
	var buf strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
	t.Fatalf("goroutines: baseline %d, peak %d, still %d 2s after closing every client\n%s", baseline, peak, now, buf.String())
}

// A resync that tells idle subscribers of a sequence they have (after a
// restart the hub has seen nothing, so it rings every watched
// conversation) leaves no goroutine behind: one waiting in each stream
// until the conversation's next message is what a connection no longer
// costs.
func TestSubResyncLeavesNoGoroutine(t *testing.T) {
	const conns = 20
	s := apptest.Start(t)
	other := apptest.StartReplica(t, s.DatabaseURL(), nil) // no broker between them
	alice, bob := subRegister(t, s, "alice"), subRegister(t, s, "bob")
	conv := s.CreateConversation(alice, nil, bob)
	other.Send(alice, conv, "unseen by s's hub")

	var clients []*apptest.Client
	for range conns {
		c := s.ConnectAs(bob)
		c.Subscribe("m", subMessageEventsQ, subVars(conv, nil)) // live from the stored sequence
		clients = append(clients, c)
	}
	http.DefaultClient.CloseIdleConnections()
	baseline := apptest.SettledGoroutines()
	s.App.Hub.RequestResync()
	requireNoParkedGoroutines(t, baseline, "the resync")
	// And every subscription still delivers.
	s.Send(alice, conv, "after the resync")
	for _, c := range clients {
		if ev := subNextMsg(t, c, "m"); ev.Message.Body != "after the resync" {
			t.Fatalf("got %q", ev.Message.Body)
		}
	}
}

// requireNoParkedGoroutines fails the test if, shortly after what, the
// process has more than a few goroutines beyond baseline.
func requireNoParkedGoroutines(t *testing.T, baseline int, what string) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	if now := apptest.SettledGoroutines(); now > baseline+5 {
		var buf strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
		t.Fatalf("goroutines: %d before %s, %d after\n%s", baseline, what, now, buf.String())
	}
}

// TestSubConversationChangeLeavesNoGoroutine: a participants change that
// does not concern a subscriber (someone else was added) is dropped by the
// stream's Ready; before, every idle messageEvents subscription of the
// conversation parked a goroutine in Next until its next message.
func TestSubConversationChangeLeavesNoGoroutine(t *testing.T) {
	const conns = 20
	s := apptest.Start(t)
	alice, bob, carol := subRegister(t, s, "alice"), subRegister(t, s, "bob"), subRegister(t, s, "carol")
	conv := s.CreateConversation(alice, apptest.Ptr("group"), bob)

	// From the start of the conversation: "before" reaches every
	// subscription, replayed or live, whenever each becomes live.
	s.Send(alice, conv, "before")
	from := chat.EventCursor(conv, 0)
	var clients []*apptest.Client
	for range conns {
		c := s.ConnectAs(bob)
		c.Subscribe("m", subMessageEventsQ, subVars(conv, &from))
		clients = append(clients, c)
	}
	for _, c := range clients {
		subNextMsg(t, c, "m")
	}
	http.DefaultClient.CloseIdleConnections()
	baseline := apptest.SettledGoroutines()
	r := s.Post(alice.Token, `mutation($c: ID!, $u: [ID!]!) { addParticipants(conversationId: $c, userIds: $u) { id } }`,
		map[string]any{"c": conv, "u": []string{carol.ID}})
	r.Decode(t, &struct{}{})
	requireNoParkedGoroutines(t, baseline, "the participants change")
	s.Send(alice, conv, "after")
	for _, c := range clients {
		if ev := subNextMsg(t, c, "m"); ev.Message.Body != "after" {
			t.Fatalf("got %q", ev.Message.Body)
		}
	}
}
