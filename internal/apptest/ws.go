package apptest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Subprotocols of the two WebSocket protocols.
const (
	TransportWS = "graphql-transport-ws" // graphql-ws library
	LegacyWS    = "graphql-ws"           // subscriptions-transport-ws
)

// WS is a raw WebSocket client; tests speak the protocols frame by frame.
type WS struct {
	t    testing.TB
	Conn *websocket.Conn
	ctx  context.Context
}

// Message is one protocol message.
type Message struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// Dial opens a WebSocket to /graphql with the given subprotocol.
func (s *Server) Dial(subprotocol string) *WS {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	s.t.Cleanup(cancel)
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.URL, "http")+"/graphql", &websocket.DialOptions{
		Subprotocols: []string{subprotocol},
		HTTPHeader:   http.Header{},
	})
	if err != nil {
		s.t.Fatalf("dial: %v", err)
	}
	if resp.Body != nil {
		resp.Body.Close()
	}
	c.SetReadLimit(1 << 22)
	s.t.Cleanup(func() { c.CloseNow() })
	return &WS{t: s.t, Conn: c, ctx: ctx}
}

// Send writes one message.
func (w *WS) Send(m any) {
	w.t.Helper()
	b, _ := json.Marshal(m)
	if err := w.Conn.Write(w.ctx, websocket.MessageText, b); err != nil {
		w.t.Fatalf("ws write: %v", err)
	}
}

// Read reads the next message, failing after timeout.
func (w *WS) Read(timeout time.Duration) Message {
	w.t.Helper()
	m, err := w.TryRead(timeout)
	if err != nil {
		w.t.Fatalf("ws read: %v", err)
	}
	return m
}

// TryRead reads the next message or returns the error (a close, a timeout).
func (w *WS) TryRead(timeout time.Duration) (Message, error) {
	ctx, cancel := context.WithTimeout(w.ctx, timeout)
	defer cancel()
	_, b, err := w.Conn.Read(ctx)
	if err != nil {
		return Message{}, err
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		w.t.Fatalf("ws message not JSON: %q", b)
	}
	return m, nil
}

// ReadSkipping reads the next message whose type is not one of skip
// (keep-alives and pings).
func (w *WS) ReadSkipping(timeout time.Duration, skip ...string) Message {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := w.Read(time.Until(deadline))
		keep := true
		for _, s := range skip {
			if m.Type == s {
				keep = false
			}
		}
		if m.Type == "ping" {
			w.Send(Message{Type: "pong"})
		}
		if keep {
			return m
		}
	}
}

// Init performs connection_init with payload and expects the ack.
func (w *WS) Init(payload map[string]any) {
	w.t.Helper()
	w.Send(map[string]any{"type": "connection_init", "payload": payload})
	m := w.ReadSkipping(5*time.Second, "ka", "ping")
	if m.Type != "connection_ack" {
		w.t.Fatalf("want connection_ack, got %s %s", m.Type, m.Payload)
	}
}

// Subscribe starts an operation (graphql-transport-ws "subscribe").
func (w *WS) Subscribe(id, query string, vars map[string]any) {
	w.Send(map[string]any{"id": id, "type": "subscribe", "payload": map[string]any{"query": query, "variables": vars}})
}

// Next reads the next "next" message, skipping pings, and decodes its data
// into v. It fails on "error" or "complete".
func (w *WS) Next(timeout time.Duration, v any) Message {
	w.t.Helper()
	m := w.ReadSkipping(timeout, "ping", "pong", "ka")
	if m.Type != "next" && m.Type != "data" {
		w.t.Fatalf("want next, got %s %s", m.Type, m.Payload)
	}
	var p struct {
		Data   json.RawMessage `json:"data"`
		Errors []GQLError      `json:"errors"`
	}
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		w.t.Fatal(err)
	}
	if len(p.Errors) > 0 {
		w.t.Fatalf("errors in next: %+v", p.Errors)
	}
	if v != nil {
		if err := json.Unmarshal(p.Data, v); err != nil {
			w.t.Fatal(err)
		}
	}
	return m
}

// CloseStatus returns the close code of err, or -1.
func CloseStatus(err error) int { return int(websocket.CloseStatus(err)) }

// Client is a WS whose frames are read by a background goroutine, so a wait
// can time out without closing the socket (coder/websocket closes a
// connection whose Read context ends). It answers "ping" with "pong" by
// itself and still hands the ping to the test. Use it from the test's
// goroutine only; after Pump, do not call the WS's own read methods.
type Client struct {
	*WS
	frames  chan Message
	done    chan struct{}
	err     error // the read error that ended the pump; valid once done is closed
	pending []Message
}

// ErrRecvTimeout is what Recv returns when nothing arrived in time.
var ErrRecvTimeout = errors.New("apptest: no message in time")

// Pump starts the background reader.
func (w *WS) Pump() *Client {
	c := &Client{WS: w, frames: make(chan Message, 1024), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			_, b, err := w.Conn.Read(w.ctx)
			if err != nil {
				c.err = err
				return
			}
			var m Message
			if err := json.Unmarshal(b, &m); err != nil {
				c.err = fmt.Errorf("ws message not JSON: %q", b)
				return
			}
			if m.Type == "ping" {
				pong, _ := json.Marshal(Message{Type: "pong"})
				_ = w.Conn.Write(w.ctx, websocket.MessageText, pong)
			}
			select {
			case c.frames <- m:
			case <-w.ctx.Done():
				c.err = w.ctx.Err()
				return
			}
		}
	}()
	return c
}

// Connect dials with subprotocol, performs connection_init with payload
// (expecting the ack) and starts the pump.
func (s *Server) Connect(subprotocol string, payload map[string]any) *Client {
	s.t.Helper()
	w := s.Dial(subprotocol)
	w.Init(payload)
	return w.Pump()
}

// ConnectAs connects with graphql-transport-ws and u's token.
func (s *Server) ConnectAs(u User) *Client {
	s.t.Helper()
	return s.Connect(TransportWS, map[string]any{"Authorization": "Bearer " + u.Token})
}

// Recv returns the next frame, keep-alives included. It returns
// ErrRecvTimeout if none arrived in time (the socket stays open), or the
// read error once the socket is closed.
func (c *Client) Recv(timeout time.Duration) (Message, error) {
	if len(c.pending) > 0 {
		m := c.pending[0]
		c.pending = c.pending[1:]
		return m, nil
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case m := <-c.frames:
		return m, nil
	case <-c.done:
		select { // frames read before the close come first
		case m := <-c.frames:
			return m, nil
		default:
			return Message{}, c.err
		}
	case <-timer.C:
		return Message{}, ErrRecvTimeout
	}
}

func isKeepAlive(m Message) bool {
	return m.Type == "ping" || m.Type == "pong" || m.Type == "ka"
}

// RecvOp returns the next non-keep-alive frame of operation id, keeping
// frames of other operations for later RecvOp/Recv calls.
func (c *Client) RecvOp(id string, timeout time.Duration) (Message, error) {
	deadline := time.Now().Add(timeout)
	var other []Message
	defer func() { c.pending = append(other, c.pending...) }()
	for {
		var m Message
		var err error
		if len(c.pending) > 0 {
			m, c.pending = c.pending[0], c.pending[1:]
		} else {
			timer := time.NewTimer(time.Until(deadline))
			select {
			case m = <-c.frames:
			case <-c.done:
				select {
				case m = <-c.frames:
				default:
					err = c.err
				}
			case <-timer.C:
				err = ErrRecvTimeout
			}
			timer.Stop()
		}
		if err != nil {
			return Message{}, err
		}
		if isKeepAlive(m) {
			continue
		}
		if m.ID != id {
			other = append(other, m)
			continue
		}
		return m, nil
	}
}

// MustOp is RecvOp failing the test on a timeout or close.
func (c *Client) MustOp(id string, timeout time.Duration) Message {
	c.t.Helper()
	m, err := c.RecvOp(id, timeout)
	if err != nil {
		c.t.Fatalf("op %s: want a message, got %v", id, err)
	}
	return m
}

// NextOp reads the next frame of id, which must be "next" (or legacy
// "data") without errors, and decodes its data into v.
func (c *Client) NextOp(id string, timeout time.Duration, v any) Message {
	c.t.Helper()
	m := c.MustOp(id, timeout)
	if m.Type != "next" && m.Type != "data" {
		c.t.Fatalf("op %s: want next, got %s %s", id, m.Type, m.Payload)
	}
	if errs := m.Errors(); len(errs) > 0 {
		c.t.Fatalf("op %s: errors in next: %+v", id, errs)
	}
	if v != nil {
		m.DecodeData(c.t, v)
	}
	return m
}

// Start begins an operation the legacy way (graphql-ws "start").
func (c *Client) Start(id, query string, vars map[string]any) {
	c.Send(map[string]any{"id": id, "type": "start", "payload": map[string]any{"query": query, "variables": vars}})
}

// Complete ends an operation from the client (graphql-transport-ws).
func (c *Client) Complete(id string) { c.Send(map[string]any{"id": id, "type": "complete"}) }

// Stop ends an operation from the client (legacy graphql-ws).
func (c *Client) Stop(id string) { c.Send(map[string]any{"id": id, "type": "stop"}) }

// Close closes the socket at once and waits for the pump to end.
func (c *Client) Close() {
	_ = c.Conn.CloseNow()
	<-c.done
}

// Done is closed when the pump ended (the socket closed); Err says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is the read error that ended the pump; call after Done is closed.
func (c *Client) Err() error { return c.err }

// Errors returns the GraphQL errors a message carries: the payload of an
// "error" message (a list), or payload.errors of next/data.
func (m Message) Errors() []GQLError {
	var list []GQLError
	if m.Type == "error" {
		if json.Unmarshal(m.Payload, &list) == nil {
			return list
		}
		var one GQLError // legacy graphql-ws sends a single error object
		if json.Unmarshal(m.Payload, &one) == nil {
			return []GQLError{one}
		}
		return nil
	}
	var p struct {
		Errors []GQLError `json:"errors"`
	}
	_ = json.Unmarshal(m.Payload, &p)
	return p.Errors
}

// DecodeData unmarshals payload.data of next/data into v.
func (m Message) DecodeData(t testing.TB, v any) {
	t.Helper()
	var p struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		t.Fatalf("payload %s: %v", m.Payload, err)
	}
	if err := json.Unmarshal(p.Data, v); err != nil {
		t.Fatalf("data %s: %v", p.Data, err)
	}
}
