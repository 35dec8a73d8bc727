package httpapi_test

// graphql-transport-ws over raw sockets, on both ways of reading a
// connection: the poller (WS_POLL=true, Linux) and a goroutine per
// connection (WS_POLL=false). Raw sockets decide how bytes are split
// across reads: frames cut anywhere, frames sent with the upgrade request
// (left in net/http's buffer by the hijack), peers that vanish.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/httpapi"
)

var pollModes = []string{"true", "false"}

type rawServer struct {
	*fuzzApp
	addr string
	stop context.CancelFunc
	done chan error
}

// startRawServer serves the app on a real listener through App.Serve, as
// in production (shutdown included).
func startRawServer(t *testing.T, poll string) *rawServer {
	t.Helper()
	a := startFuzzApp(t, "WS_POLL="+poll, "WS_INIT_TIMEOUT=3s", "SHUTDOWN_TIMEOUT=10s")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &rawServer{fuzzApp: a, addr: ln.Addr().String(), stop: cancel, done: make(chan error, 1)}
	go func() { s.done <- a.app.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

type rawClient struct {
	t  *testing.T
	nc *net.TCPConn
	br *bufio.Reader
}

// dial upgrades a raw connection; early is written in the same write as
// the request, before the 101.
func (s *rawServer) dial(t *testing.T, early []byte) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	req := "GET /graphql HTTP/1.1\r\nHost: " + s.addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
	if _, err := nc.Write(append([]byte(req), early...)); err != nil {
		t.Fatal(err)
	}
	c := &rawClient{t: t, nc: nc.(*net.TCPConn), br: bufio.NewReader(nc)}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	status, err := c.br.ReadString('\n')
	if err != nil || !strings.Contains(status, " 101 ") {
		t.Fatalf("upgrade: %q %v", status, err)
	}
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			return c
		}
	}
}

func textFrame(v any) []byte {
	b, _ := json.Marshal(v)
	return httpapi.ClientFrame(true, 0x1, b)
}

func (s *rawServer) initFrame() []byte {
	return textFrame(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + s.token}})
}

// writeSplit writes b in pieces of n bytes, pausing so that the server
// reads them separately.
func (c *rawClient) writeSplit(b []byte, n int) {
	c.t.Helper()
	_ = c.nc.SetNoDelay(true)
	for len(b) > 0 {
		k := min(n, len(b))
		if _, err := c.nc.Write(b[:k]); err != nil {
			c.t.Fatal(err)
		}
		b = b[k:]
		time.Sleep(time.Millisecond)
	}
}

// read returns the next server frame.
func (c *rawClient) read() (op byte, payload []byte, err error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var e [2]byte
		if _, err := io.ReadFull(c.br, e[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err := io.ReadFull(c.br, e[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(e[:])
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(c.br, payload)
	return h[0] & 0x0F, payload, err
}

// expect reads messages until one of type typ (with id, if given), failing
// on a close frame.
func (c *rawClient) expect(typ, id string) wsFrame {
	c.t.Helper()
	for {
		op, p, err := c.read()
		if err != nil {
			c.t.Fatalf("waiting for %s: %v", typ, err)
		}
		switch op {
		case 0x8:
			c.t.Fatalf("waiting for %s: closed with %d %s", typ, binary.BigEndian.Uint16(p), p[2:])
		case 0x1:
			var m wsFrame
			if err := json.Unmarshal(p, &m); err != nil {
				c.t.Fatalf("bad message %q: %v", p, err)
			}
			if m.Type == typ && (id == "" || m.ID == id) {
				return m
			}
		}
	}
}

// expectAll reads until a message of type typ for each of ids, in any
// order.
func (c *rawClient) expectAll(typ string, ids ...string) {
	c.t.Helper()
	left := map[string]bool{}
	for _, id := range ids {
		left[id] = true
	}
	for len(left) > 0 {
		m := c.expect(typ, "")
		delete(left, m.ID)
	}
}

// expectClose reads until the server's close frame and returns its code.
func (c *rawClient) expectClose() int {
	c.t.Helper()
	for {
		op, p, err := c.read()
		if err != nil {
			c.t.Fatalf("waiting for a close frame: %v", err)
		}
		if op == 0x8 {
			if len(p) < 2 {
				return 1005
			}
			return int(binary.BigEndian.Uint16(p))
		}
	}
}

func waitOpen(t *testing.T, h *httpapi.Hijacked, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.Open() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d WebSockets open, want %d", h.Open(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Frames sent with the upgrade request, then frames cut at every byte, a
// ping between the fragments of a message, and a message bigger than a
// read buffer: every message is answered as if it had come in one piece.
func TestWSRawFraming(t *testing.T) {
	for _, poll := range pollModes {
		t.Run("poll="+poll, func(t *testing.T) {
			s := startRawServer(t, poll)
			sub := func(id string) []byte {
				return textFrame(map[string]any{"id": id, "type": "subscribe", "payload": map[string]any{"query": "{ __typename }"}})
			}
			// connection_init and a first operation with the request.
			c := s.dial(t, append(s.initFrame(), sub("early")...))
			c.expect("connection_ack", "")
			if m := c.expect("next", "early"); !strings.Contains(string(m.Payload), `"Query"`) {
				t.Fatalf("early: %s", m.Payload)
			}
			c.expect("complete", "early")

			// One byte per write.
			c.writeSplit(sub("bytewise"), 1)
			c.expect("next", "bytewise")
			c.expect("complete", "bytewise")

			// Two messages and a half in one write, the rest later.
			b := append(append(sub("a"), sub("b")...), sub("c")...)
			cut := len(b) - 7
			c.writeSplit(b[:cut], len(b))
			c.expectAll("complete", "a", "b") // operations run concurrently: in any order
			c.writeSplit(b[cut:], len(b))
			c.expect("complete", "c")

			// A fragmented message with a ping in between, cut at odd places.
			msg, _ := json.Marshal(map[string]any{"id": "frag", "type": "subscribe", "payload": map[string]any{"query": "{ __typename }"}})
			var fr []byte
			fr = append(fr, httpapi.ClientFrame(false, 0x1, msg[:10])...)
			fr = append(fr, httpapi.ClientFrame(true, 0x9, []byte("hi"))...)
			fr = append(fr, httpapi.ClientFrame(false, 0x0, msg[10:20])...)
			fr = append(fr, httpapi.ClientFrame(true, 0x0, msg[20:])...)
			c.writeSplit(fr, 5)
			op, p, err := c.read()
			if err != nil || op != 0xA || string(p) != "hi" {
				t.Fatalf("pong: %x %q %v", op, p, err)
			}
			c.expect("complete", "frag")

			// 300 KB (JSON whitespace) in 64 KB writes.
			big := fmt.Sprintf(`{"id":"big","type":"subscribe","payload":{"query":"{ __typename }"}%s}`, strings.Repeat(" ", 300<<10))
			c.writeSplit(httpapi.ClientFrame(true, 0x1, []byte(big)), 64<<10)
			c.expect("complete", "big")

			// The connection is still in order afterwards.
			c.writeSplit(textFrame(map[string]any{"type": "ping"}), 3)
			c.expect("pong", "")
		})
	}
}

// A framing violation split across reads is answered with its close code,
// and the server closes once the peer answers.
func TestWSRawViolation(t *testing.T) {
	for _, poll := range pollModes {
		t.Run("poll="+poll, func(t *testing.T) {
			s := startRawServer(t, poll)
			c := s.dial(t, s.initFrame())
			c.expect("connection_ack", "")
			bad := httpapi.ClientFrame(true, 0x1, []byte{0xff, 0xfe, 0xfd}) // not UTF-8
			c.writeSplit(bad, 2)
			if code := c.expectClose(); code != 1007 {
				t.Fatalf("closed with %d, want 1007", code)
			}
			c.writeSplit(httpapi.ClientFrame(true, 0x8, binary.BigEndian.AppendUint16(nil, 1007)), 100)
			_ = c.nc.CloseWrite() // the server waits for the TCP close
			if _, _, err := c.read(); !errors.Is(err, io.EOF) {
				t.Fatalf("after the close handshake: %v, want EOF", err)
			}
			waitOpen(t, s.app.Hijacked, 0)
		})
	}
}

// A peer that vanishes (FIN, or a reset) with a subscription open frees
// its connection.
func TestWSRawPeerVanishes(t *testing.T) {
	for _, poll := range pollModes {
		t.Run("poll="+poll, func(t *testing.T) {
			s := startRawServer(t, poll)
			subscribe := textFrame(map[string]any{"id": "s", "type": "subscribe", "payload": map[string]any{
				"query": "subscription($c: ID!) { messageEvents(conversationId: $c) { type } }", "variables": map[string]any{"c": s.conv}}})
			var clients []*rawClient
			for range 4 {
				c := s.dial(t, s.initFrame())
				c.expect("connection_ack", "")
				c.writeSplit(subscribe, 1000)
				clients = append(clients, c)
			}
			// A ping answered proves the subscription was taken.
			for _, c := range clients {
				c.writeSplit(textFrame(map[string]any{"type": "ping"}), 1000)
				c.expect("pong", "")
			}
			waitOpen(t, s.app.Hijacked, 4)
			_ = clients[0].nc.Close() // FIN
			_ = clients[1].nc.SetLinger(0)
			_ = clients[1].nc.Close()                                                      // RST
			_, _ = clients[2].nc.Write(httpapi.ClientFrame(true, 0x1, []byte(`{"type":`))) // half a frame, then FIN
			_ = clients[2].nc.Close()
			waitOpen(t, s.app.Hijacked, 1)
			clients[3].writeSplit(textFrame(map[string]any{"type": "ping"}), 1000)
			clients[3].expect("pong", "")
		})
	}
}

// Shutdown closes polled connections with 1012 and waits for their close
// handshakes; a peer that answers lets Serve return at once.
func TestWSRawShutdown(t *testing.T) {
	for _, poll := range pollModes {
		t.Run("poll="+poll, func(t *testing.T) {
			s := startRawServer(t, poll)
			var clients []*rawClient
			for range 3 {
				c := s.dial(t, s.initFrame())
				c.expect("connection_ack", "")
				clients = append(clients, c)
			}
			start := time.Now()
			s.stop()
			for _, c := range clients {
				if code := c.expectClose(); code != httpapi.CloseServiceRestart {
					t.Fatalf("closed with %d, want %d", code, httpapi.CloseServiceRestart)
				}
				c.writeSplit(httpapi.ClientFrame(true, 0x8, binary.BigEndian.AppendUint16(nil, 1000)), 100)
			}
			select {
			case err := <-s.done:
				s.done <- err // for the cleanup
			case <-time.After(4 * time.Second):
				t.Fatal("Serve did not return after every client answered the close")
			}
			if d := time.Since(start); d > 4*time.Second {
				t.Fatalf("shutdown took %v", d)
			}
			if n := s.app.Hijacked.Open(); n != 0 {
				t.Fatalf("%d WebSockets open after shutdown", n)
			}
		})
	}
}
