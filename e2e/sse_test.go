package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/app"
	"github.com/parley-chat/parley/internal/apptest"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/events"
)

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	Event string
	Data  string
}

// sseStream is a subscription over SSE whose events are read by a
// background goroutine.
type sseStream struct {
	Resp   *http.Response
	events chan sseEvent
	done   chan struct{}
	err    error
	cancel context.CancelFunc
}

// sseSubscribe POSTs a subscription with Accept: text/event-stream.
func sseSubscribe(t *testing.T, s *apptest.Server, token, query string, vars map[string]any) *sseStream {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	st := &sseStream{Resp: resp, events: make(chan sseEvent, 1024), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(st.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<22)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Event != "" || ev.Data != "" {
					st.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"): // comment / keep-alive
			case strings.HasPrefix(line, "event:"):
				ev.Event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			case strings.HasPrefix(line, "data:"):
				if ev.Data != "" {
					ev.Data += "\n"
				}
				ev.Data += strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
			}
		}
		st.err = sc.Err()
	}()
	return st
}

// next returns the next event; ok is false when the stream ended.
func (st *sseStream) next(t *testing.T, timeout time.Duration) (sseEvent, bool) {
	t.Helper()
	select {
	case ev := <-st.events:
		return ev, true
	case <-st.done:
		select {
		case ev := <-st.events:
			return ev, true
		default:
			return sseEvent{}, false
		}
	case <-time.After(timeout):
		t.Fatalf("SSE: no event within %v", timeout)
		return sseEvent{}, false
	}
}

// nextData reads the next event, which must be "next" without errors, and
// decodes its data into v.
func (st *sseStream) nextData(t *testing.T, v any) {
	t.Helper()
	ev, ok := st.next(t, 10*time.Second)
	if !ok {
		t.Fatalf("SSE stream ended (%v)", st.err)
	}
	if ev.Event != "next" {
		t.Fatalf("SSE: want event next, got %q %s", ev.Event, ev.Data)
	}
	var p struct {
		Data   json.RawMessage
		Errors []apptest.GQLError
	}
	if err := json.Unmarshal([]byte(ev.Data), &p); err != nil {
		t.Fatalf("SSE data %q: %v", ev.Data, err)
	}
	if len(p.Errors) > 0 {
		t.Fatalf("SSE: errors %+v", p.Errors)
	}
	if err := json.Unmarshal(p.Data, v); err != nil {
		t.Fatalf("SSE data %s: %v", p.Data, err)
	}
}

// endCodes reads until the stream ends and returns every error code seen;
// an event with data fails the test.
func (st *sseStream) endCodes(t *testing.T) (codes []string, complete bool) {
	t.Helper()
	for {
		ev, ok := st.next(t, 10*time.Second)
		if !ok {
			return codes, complete
		}
		switch ev.Event {
		case "complete":
			complete = true
		case "next":
			var p struct {
				Data   json.RawMessage
				Errors []apptest.GQLError
			}
			if err := json.Unmarshal([]byte(ev.Data), &p); err != nil {
				t.Fatalf("SSE data %q: %v", ev.Data, err)
			}
			if len(p.Data) > 0 && string(p.Data) != "null" {
				t.Fatalf("SSE: want no data, got %s", ev.Data)
			}
			for _, e := range p.Errors {
				codes = append(codes, e.Code())
			}
		default:
			t.Fatalf("SSE: unexpected event %q %s", ev.Event, ev.Data)
		}
	}
}

func TestSSESubscription(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob := subRegister(t, s, "alice"), subRegister(t, s, "bob")
	conv := s.CreateConversation(alice, nil, bob)
	cur := subCursor(t, s, bob, alice, conv)

	// With `after`, the stream is gap-free from the start: no warm-up needed.
	st := sseSubscribe(t, s, bob.Token, subMessageEventsQ, subVars(conv, &cur))
	if st.Resp.StatusCode != http.StatusOK || !strings.HasPrefix(st.Resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("SSE response: %d %q", st.Resp.StatusCode, st.Resp.Header.Get("Content-Type"))
	}
	ids := []string{s.Send(alice, conv, "hello over sse"), s.Send(bob, conv, "and back")}
	subMutate(t, s, alice, `mutation($id: ID!) { editMessage(id: $id, body: "hello, edited") { id } }`, map[string]any{"id": ids[0]})
	want := []struct{ typ, id, sender string }{{"CREATED", ids[0], alice.ID}, {"CREATED", ids[1], bob.ID}, {"EDITED", ids[0], alice.ID}}
	seen := map[string]bool{cur: true}
	for i, w := range want {
		var d struct{ MessageEvents subMsgEvent }
		st.nextData(t, &d)
		ev := d.MessageEvents
		if ev.Type != w.typ || ev.Message.ID != w.id || ev.Message.Sender.ID != w.sender || seen[ev.Cursor] {
			t.Fatalf("SSE event %d: got %+v, want %s of %s", i, ev, w.typ, w.id)
		}
		seen[ev.Cursor] = true
	}

	// The client goes away: the stream ends.
	st.cancel()
	select {
	case <-st.done:
	case <-time.After(5 * time.Second):
		t.Fatal("SSE stream still open after the request was cancelled")
	}
	// And the server still serves the others: a new stream gets a new message.
	st2 := sseSubscribe(t, s, bob.Token, subInboxQ, nil)
	for i := 0; ; i++ { // inbox has no `after`: send until it is live
		s.Send(alice, conv, "for the inbox")
		select {
		case ev := <-st2.events:
			if ev.Event != "next" || !strings.Contains(ev.Data, "MESSAGE_CREATED") {
				t.Fatalf("SSE inbox: got %q %s", ev.Event, ev.Data)
			}
			st2.cancel()
			return
		case <-st2.done:
			t.Fatalf("SSE inbox stream ended: %v", st2.err)
		case <-time.After(100 * time.Millisecond):
			if i > 100 {
				t.Fatal("SSE inbox never received anything")
			}
		}
	}
}

func TestSSEErrors(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	alice, bob, eve := subRegister(t, s, "alice"), subRegister(t, s, "bob"), subRegister(t, s, "eve")
	conv := s.CreateConversation(alice, nil, bob)

	for _, tc := range []struct {
		name, token, query string
		vars               map[string]any
		want               string
	}{
		{"no token", "", subMessageEventsQ, subVars(conv, nil), "UNAUTHENTICATED"},
		{"no token inbox", "", subInboxQ, nil, "UNAUTHENTICATED"},
		{"bad token", "not-a-jwt", subInboxQ, nil, "UNAUTHENTICATED"},
		{"outsider", eve.Token, subMessageEventsQ, subVars(conv, nil), "NOT_FOUND"},
		{"outsider typing", eve.Token, subTypingQ, map[string]any{"c": conv}, "NOT_FOUND"},
		{"bad cursor", bob.Token, subMessageEventsQ, subVars(conv, apptest.Ptr("nope")), "BAD_USER_INPUT"},
	} {
		st := sseSubscribe(t, s, tc.token, tc.query, tc.vars)
		codes, complete := st.endCodes(t)
		if !subHasCode(codes, tc.want) {
			t.Errorf("%s: codes %v, want %s", tc.name, codes, tc.want)
		}
		if !complete {
			t.Errorf("%s: stream ended without event: complete", tc.name)
		}
	}
}

// TestSSEStalledReaderEnded: a client that stops reading an SSE stream has
// it ended after WS_WRITE_TIMEOUT (its subscription gone from the gauge)
// instead of holding it until TCP gives up.
func TestSSEStalledReaderEnded(t *testing.T) {
	t.Parallel()
	const size = 64000
	broker := events.NewMemoryBroker()
	s := apptest.StartWith(t, []app.Option{app.WithBroker(broker)}, "WS_WRITE_TIMEOUT=1s", fmt.Sprintf("MAX_MESSAGE_CHARS=%d", size))
	bob, carol := s.Register("sseb"), s.Register("ssec")
	conv := s.CreateConversation(bob, nil, carol)
	big := s.Send(bob, conv, strings.Repeat("x", size))
	active := func() float64 {
		return obsValue(obsScrape(t, s), "parley_subscriptions_active", "field", "messageEvents")
	}

	// A raw client: it reads the headers and the replayed message, then
	// never reads again.
	body, _ := json.Marshal(map[string]any{"query": subMessageEventsQ, "variables": map[string]any{"c": conv, "after": chat.EventCursor(conv, 0)}})
	u, _ := url.Parse(s.URL)
	nc, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "POST /graphql HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s",
		u.Host, carol.Token, len(body), body)
	br := bufio.NewReader(nc)
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream's start: %v", err)
		}
		if strings.HasPrefix(line, "data:") && strings.Contains(line, big) {
			break
		}
	}
	if n := active(); n != 1 {
		t.Fatalf("%v messageEvents subscriptions active, want the SSE one", n)
	}
	// ~13 MB of events: far more than loopback socket buffers hold.
	for j := range 200 {
		_ = broker.Publish(t.Context(), events.Event{Kind: events.KindMessage, ConversationID: conv, Type: chat.EventCreated,
			Seq: int64(1000 + j), MessageID: big, UserID: bob.ID, PublishedAt: time.Now()})
	}
	deadline := time.Now().Add(20 * time.Second)
	for active() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stalled SSE stream still holds its subscription 20 s later")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSSETypingExpires: over SSE the transport waits in the typing
// stream's Next (no readiness callback), so the expiry timer must wake it:
// a typing state that is not refreshed arrives as typing:false after the
// TTL.
func TestSSETypingExpires(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "TYPING_TTL=1s")
	alice, bob := s.Register("sseta"), s.Register("ssetb")
	conv := s.CreateConversation(alice, nil, bob)
	st := sseSubscribe(t, s, bob.Token, subTypingQ, map[string]any{"c": conv})
	setTyping := func(on bool) {
		r := s.Post(alice.Token, `mutation($c: ID!, $y: Boolean!) { setTyping(conversationId: $c, typing: $y) }`, map[string]any{"c": conv, "y": on})
		r.Decode(t, &struct{}{})
	}
	type typingData struct {
		Typing struct {
			Typing bool
			User   struct{ ID string }
		}
	}
	// The stream is live once alice's typing reaches it.
	var d typingData
	for i := 0; ; i++ {
		setTyping(true)
		select {
		case ev := <-st.events:
			if err := json.Unmarshal([]byte(ev.Data), &struct{ Data *typingData }{&d}); err != nil || !d.Typing.Typing || d.Typing.User.ID != alice.ID {
				t.Fatalf("first typing event %q: %v", ev.Data, err)
			}
		case <-time.After(100 * time.Millisecond):
			if i == 50 {
				t.Fatal("typing over SSE never arrived")
			}
			continue
		}
		break
	}
	last := time.Now()
	st.nextData(t, &d)
	if d.Typing.Typing || d.Typing.User.ID != alice.ID {
		t.Fatalf("got %+v, want alice's typing to expire", d.Typing)
	}
	if el := time.Since(last); el < 800*time.Millisecond || el > 3*time.Second {
		t.Fatalf("typing expired %v after the last refresh, TTL 1s", el)
	}
}
