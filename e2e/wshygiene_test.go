package e2e

// WebSocket hygiene: the init timeout (4408), dead peers, clients that stop
// reading (1013), the per-user connection cap (4429) and the shutdown close
// code (1012).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/app"
	"github.com/parley-chat/parley/internal/apptest"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/events"
)

// hygDial opens a WebSocket to base's /graphql, with an Origin header
// unless origin is empty. On a refused upgrade it returns the response.
func hygDial(ctx context.Context, base, proto, origin string) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/graphql", &websocket.DialOptions{
		Subprotocols: []string{proto}, HTTPHeader: h,
	})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	return c, resp, err
}

// hygConnect dials as u and sends connection_init. It returns the open
// socket once acknowledged, or the error that closed it.
func hygConnect(t *testing.T, base string, u apptest.User, proto string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, _, err := hygDial(context.Background(), base, proto, "")
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.CloseNow() })
	init, _ := json.Marshal(map[string]any{"type": "connection_init", "payload": map[string]any{"token": u.Token}})
	if err := c.Write(ctx, websocket.MessageText, init); err != nil {
		return nil, err
	}
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return nil, err
		}
		var m apptest.Message
		_ = json.Unmarshal(b, &m)
		if m.Type == "connection_ack" {
			return c, nil
		}
	}
}

// hygAwaitSlot retries connecting as u until the per-user cap admits the
// connection (the one before it was released), for up to within.
func hygAwaitSlot(t *testing.T, s *apptest.Server, u apptest.User, proto string, within time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		c, err := hygConnect(t, s.URL, u, proto)
		if err == nil {
			c.CloseNow()
			return time.Since(start), nil
		}
		if code := apptest.CloseStatus(err); code != 4429 {
			return 0, fmt.Errorf("%s: connecting again: %v (code %d), want 4429 until the slot frees", u.Username, err, code)
		}
		if time.Since(start) > within {
			return 0, fmt.Errorf("%s: the server did not release the connection within %v", u.Username, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var errStillOpen = errors.New("socket still open")

// hygReadToClose reads until the socket closes and returns the error
// (errStillOpen if it did not close within).
func hygReadToClose(t *testing.T, c *websocket.Conn, within time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	frames := 0
	for {
		if _, _, err := c.Read(ctx); err != nil {
			if ctx.Err() != nil {
				return frames, fmt.Errorf("%w after %v (%d frames read)", errStillOpen, within, frames)
			}
			return frames, err
		}
		frames++
	}
}

// Without connection_init within WS_INIT_TIMEOUT the socket closes with
// 4408, as graphql-ws specifies; a client that inits in time stays open.
func TestWSInitTimeoutCloses4408(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "WS_INIT_TIMEOUT=300ms")
	u := s.Register("ina")
	for _, proto := range []string{apptest.TransportWS, apptest.LegacyWS} {
		w := s.Dial(proto)
		start := time.Now()
		_, err := w.TryRead(5 * time.Second)
		elapsed := time.Since(start)
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4408 || ce.Reason != "Connection initialisation timeout" {
			t.Fatalf("%s: want close 4408 \"Connection initialisation timeout\", got %v", proto, err)
		}
		if elapsed < 250*time.Millisecond || elapsed > 2*time.Second {
			t.Fatalf("%s: closed after %v, want ~300ms", proto, elapsed)
		}

		w = s.Dial(proto)
		time.Sleep(150 * time.Millisecond)
		w.Init(map[string]any{"token": u.Token})
		c := w.Pump()
		deadline := time.Now().Add(600 * time.Millisecond)
		for time.Now().Before(deadline) {
			if _, err := c.Recv(time.Until(deadline)); err != nil && !errors.Is(err, apptest.ErrRecvTimeout) {
				t.Fatalf("%s: initialised socket closed: %v", proto, err)
			}
		}
	}
}

// A client that stops answering pings is dropped after twice the ping
// interval, which frees its slot: graphql-transport-ws by its missing pong,
// the legacy protocol (whose ka is one-way) by protocol-level pings.
func TestWSDeadPeerDropped(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "WS_PING_INTERVAL=200ms", "WS_MAX_CONNECTIONS_PER_USER=1")
	for _, proto := range []string{apptest.TransportWS, apptest.LegacyWS} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			u := s.RegisterFor(t, "dead")
			w := s.Dial(proto)
			w.Init(map[string]any{"token": u.Token}) // then never reads (or pongs) again
			if _, err := hygConnect(t, s.URL, u, proto); apptest.CloseStatus(err) != 4429 {
				t.Fatalf("second connection: %v, want 4429 while the first is open", err)
			}
			took, err := hygAwaitSlot(t, s, u, proto, 3*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: dead peer released after %v", proto, took)
			// The dropped socket ends (no close frame: the peer is presumed dead).
			if _, err := hygReadToClose(t, w.Conn, 5*time.Second); errors.Is(err, errStillOpen) {
				t.Fatal(err)
			}
		})
	}
}

// A client that stops reading while thousands of events flow neither grows
// the server's memory nor delays anyone else: its writes block (its
// subscription ends as SLOW_CONSUMER once its queue fills), and after
// WS_WRITE_TIMEOUT its socket is closed with 1013, which a client catching
// up sees after what was buffered, and which releases the connection.
// Another subscriber of the same conversation gets every event meanwhile.
//
// The events are rung through the broker directly, each naming one real
// 64000-character message: sending 2000 messages takes over 10 s under -race.
func TestWSStalledReaderClosed1013(t *testing.T) {
	t.Parallel()
	const (
		nEvents      = 2000
		fill         = 120 // events that fill the stalled sockets: Linux loopback buffers (tcp_wmem 4 MB) hold ~60
		writeTimeout = time.Second
		size         = 64000
		heavyQ       = subMessageEventsQ
		lightQ       = `subscription($c: ID!, $after: String) { messageEvents(conversationId: $c, after: $after) { type cursor } }`
	)
	broker := events.NewMemoryBroker()
	s := apptest.StartWith(t, []app.Option{app.WithBroker(broker)},
		"WS_WRITE_TIMEOUT=1s", "WS_MAX_CONNECTIONS_PER_USER=1", fmt.Sprintf("MAX_MESSAGE_CHARS=%d", size))
	users := hygRegister(t, s, "bob", "carol", "dave")
	bob, carol, dave := users[0], users[1], users[2]
	conv := s.CreateConversation(bob, nil, carol, dave)
	big := s.Send(bob, conv, strings.Repeat("x", size))
	from := chat.EventCursor(conv, 0)

	// carol and dave subscribe, read the replayed message (so their
	// subscriptions are live) and stop reading; dave never reads again.
	var stalled []*apptest.WS
	for _, u := range []apptest.User{carol, dave} {
		w := s.Dial(apptest.TransportWS)
		w.Init(map[string]any{"token": u.Token})
		w.Subscribe("1", heavyQ, subVars(conv, &from))
		if m := w.Read(10 * time.Second); m.Type != "next" {
			t.Fatalf("%s: want the replayed message, got %s %s", u.Username, m.Type, m.Payload)
		}
		stalled = append(stalled, w)
	}
	// bob counts every event on "1", which selects no message (it costs no
	// database read). "h" selects what carol and dave do: while their
	// sockets fill, events are sent only as fast as bob's "h" takes them,
	// so that they stall on a full socket rather than overflow their queues
	// first. Then "h" ends and the rest flows at full speed.
	b := s.ConnectAs(bob)
	b.Subscribe("1", lightQ, subVars(conv, &from))
	b.Subscribe("h", heavyQ, subVars(conv, &from))
	b.NextOp("1", 10*time.Second, nil)
	b.NextOp("h", 10*time.Second, nil)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	publish := func(from, to int) {
		for j := from; j < to; j++ {
			_ = broker.Publish(t.Context(), events.Event{Kind: events.KindMessage, ConversationID: conv, Type: chat.EventCreated,
				Seq: int64(1000 + j), MessageID: big, UserID: bob.ID, PublishedAt: time.Now()})
		}
	}
	recv := func(op string, from, to int) {
		for j := from; j < to; j++ {
			m, err := b.RecvOp(op, 10*time.Second)
			if err != nil {
				t.Fatalf("bob %s: event %d of %d: %v", op, j+1, nEvents, err)
			}
			if m.Type != "next" || len(m.Errors()) > 0 {
				t.Fatalf("bob %s: event %d: %s %s", op, j+1, m.Type, m.Payload)
			}
		}
	}
	start := time.Now()
	for i := 0; i < fill; i += 40 {
		publish(i, i+40)
		recv("h", i, i+40)
	}
	b.Complete("h")
	filled := time.Now()

	var wg sync.WaitGroup
	wg.Go(func() {
		// carol's write blocked while the sockets filled. Once it has
		// timed out, her slot is free; she catches up then: she reads what
		// was buffered, then the close frame.
		if _, err := hygAwaitSlot(t, s, carol, apptest.TransportWS, 10*time.Second); err != nil {
			t.Error(err)
			return
		}
		t.Logf("carol's socket closing %v after the sockets filled", time.Since(filled).Round(time.Millisecond))
		frames, err := hygReadToClose(t, stalled[0].Conn, 10*time.Second)
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 1013 {
			t.Errorf("carol: after %d frames: %v, want close 1013", frames, err)
			return
		}
		t.Logf("carol: %d frames, then close %d %q", frames, ce.Code, ce.Reason)
		if frames >= fill {
			t.Errorf("carol read %d frames: she was never stalled", frames)
		}
	})
	wg.Go(func() {
		// dave never reads: his write times out too, and the connection is
		// dropped once the close frame could not be written for 5 s.
		if _, err := hygAwaitSlot(t, s, dave, apptest.TransportWS, 10*time.Second); err != nil {
			t.Error(err)
			return
		}
		t.Logf("dave's socket closing %v after the sockets filled", time.Since(filled).Round(time.Millisecond))
		time.Sleep(6 * time.Second)
		// Reading now gets what the kernel still held, then the end of a
		// connection the server dropped (a server still waiting to write
		// the close frame would deliver it now).
		frames, err := hygReadToClose(t, stalled[1].Conn, 10*time.Second)
		if errors.Is(err, errStillOpen) || apptest.CloseStatus(err) != -1 {
			t.Errorf("dave: after %d frames: %v, want the connection dropped without a close frame", frames, err)
		}
	})

	var slowest time.Duration
	for i := fill; i < nEvents; i += 100 {
		t0 := time.Now()
		publish(i, i+100)
		recv("1", i, i+100)
		slowest = max(slowest, time.Since(t0))
	}
	floodEnd := time.Now()
	t.Logf("%d events: %d paced in %v, the rest in %v by chunks of 100, each chunk with bob within %v",
		nEvents, fill, filled.Sub(start), floodEnd.Sub(filled), slowest)
	if slowest > time.Second {
		t.Errorf("bob waited up to %v for a chunk of 100 events", slowest)
	}

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap: %d MiB before, %d MiB after, with two stalled readers behind %d MiB of events",
		before.HeapAlloc>>20, after.HeapAlloc>>20, fill*size>>20)
	if growth > 32<<20 {
		t.Errorf("heap grew by %d MiB", growth>>20)
	}

	wg.Wait()
}

// hygRegister registers users concurrently (bcrypt is slow under -race).
func hygRegister(t *testing.T, s *apptest.Server, prefixes ...string) []apptest.User {
	t.Helper()
	users := make([]apptest.User, len(prefixes))
	errs := make([]error, len(prefixes))
	var wg sync.WaitGroup
	for i, p := range prefixes {
		wg.Go(func() {
			name := fmt.Sprintf("%s_%d_%d", p, time.Now().UnixNano()%100000, i)
			data, err := subPost(s.URL, "", `mutation($u: String!) { register(username: $u, password: "password-123") { token user { id username } } }`,
				map[string]any{"u": name})
			var out struct {
				Register struct {
					Token string
					User  struct{ ID, Username string }
				}
			}
			if err == nil {
				err = json.Unmarshal(data, &out)
			}
			users[i], errs[i] = apptest.User{ID: out.Register.User.ID, Username: out.Register.User.Username, Token: out.Register.Token}, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return users
}

// Over WS_MAX_CONNECTIONS_PER_USER open sockets, connection_init is
// answered by closing with 4429; closing one frees a slot; other users are
// not affected.
func TestWSMaxConnectionsPerUser(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "WS_MAX_CONNECTIONS_PER_USER=2")
	u, other := s.Register("capped"), s.Register("other")
	first := s.ConnectAs(u)
	s.Connect(apptest.LegacyWS, map[string]any{"token": u.Token})
	for _, proto := range []string{apptest.TransportWS, apptest.LegacyWS} {
		_, err := hygConnect(t, s.URL, u, proto)
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 4429 || !strings.Contains(ce.Reason, "at most 2") {
			t.Fatalf("%s: third connection: %v, want close 4429 naming the cap", proto, err)
		}
	}
	s.ConnectAs(other)
	s.ConnectAs(other)
	first.Close()
	if _, err := hygAwaitSlot(t, s, u, apptest.TransportWS, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// Shutting down closes every WebSocket with 1012 (Service Restart), which
// graphql-ws clients retry, not with 1000, which they take as the end.
func TestWSShutdownCloses1012(t *testing.T) {
	t.Parallel()
	t.Run("apptest", func(t *testing.T) {
		t.Parallel()
		s := apptest.Start(t)
		u := s.Register("sd")
		conv := s.CreateConversation(u, apptest.Ptr("shutdown"))
		sub := s.Dial(apptest.TransportWS)
		sub.Init(map[string]any{"token": u.Token})
		sub.Subscribe("1", subMessageEventsQ, subVars(conv, nil))
		legacy := s.Dial(apptest.LegacyWS)
		legacy.Init(map[string]any{"token": u.Token})
		fresh := s.Dial(apptest.TransportWS) // not initialised yet
		time.Sleep(100 * time.Millisecond)   // let the subscription start
		s.Stop()
		for name, w := range map[string]*apptest.WS{"subscribed": sub, "legacy": legacy, "uninitialised": fresh} {
			_, err := hygReadToClose(t, w.Conn, 5*time.Second)
			if code := apptest.CloseStatus(err); code != 1012 {
				t.Errorf("%s: %v (code %d), want 1012", name, err, code)
			}
		}
	})
	t.Run("serve", func(t *testing.T) {
		t.Parallel()
		env := map[string]string{
			"DATABASE_URL": apptest.TestDatabaseURL(t), "ATTACHMENT_DIR": t.TempDir(),
			"JWT_SECRET": "test-secret-test-secret-test-secret-0123", "LOG_LEVEL": "error",
		}
		cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatal(err)
		}
		a, err := app.New(t.Context(), cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- a.Serve(ctx, ln) }()
		c, _, err := hygDial(t.Context(), "http://"+ln.Addr().String(), apptest.TransportWS, "")
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		stop()
		_, err = hygReadToClose(t, c, 5*time.Second)
		if code := apptest.CloseStatus(err); code != 1012 {
			t.Errorf("got %v (code %d), want 1012", err, code)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
}

// An SSE subscription that ends with an error mid-stream (here NOT_FOUND,
// on leaving; SLOW_CONSUMER alike) ends with that error as its last "next"
// and then "complete" (gqlgen's SSE transport has no subscription error
// list: adding to it used to crash the server), and a WebSocket one with
// "error", whether or not the socket closes at the same moment.
func TestStreamEndsWithErrorOnEveryTransport(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	users := hygRegister(t, s, "owner", "leaver")
	owner, leaver := users[0], users[1]
	conv := s.CreateConversation(owner, apptest.Ptr("group"), leaver)
	from := chat.EventCursor(conv, 0)
	s.Send(owner, conv, "hello")

	sse := sseSubscribe(t, s, leaver.Token, subMessageEventsQ, subVars(conv, &from))
	var first struct{ MessageEvents subMsgEvent }
	sse.nextData(t, &first)
	ws := s.ConnectAs(leaver)
	ws.Subscribe("1", subMessageEventsQ, subVars(conv, &from))
	subNextMsg(t, ws, "1")

	subMutate(t, s, leaver, `mutation($c: ID!) { leaveConversation(conversationId: $c) }`, map[string]any{"c": conv})
	if codes, complete := sse.endCodes(t); !slices.Equal(codes, []string{"NOT_FOUND"}) || !complete {
		t.Errorf("SSE: codes %v, complete %v; want NOT_FOUND then complete", codes, complete)
	}
	m := ws.MustOp("1", 10*time.Second)
	if errs := m.Errors(); m.Type != "error" || len(errs) != 1 || errs[0].Code() != "NOT_FOUND" {
		t.Errorf("WebSocket: %s %s, want error NOT_FOUND", m.Type, m.Payload)
	}
	if r := s.Post(owner.Token, `{ me { id } }`, nil); len(r.Errors) > 0 {
		t.Fatalf("server unwell: %+v", r.Errors)
	}
}
