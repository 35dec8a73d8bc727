package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

const subscribeQuery = `subscription($c: ID!, $a: String) { messageEvents(conversationId: $c, after: $a) { type cursor message { id body createdAt sender { id displayName } } } }`

// subSpec says what one socket subscribes to.
type subSpec struct {
	Idx   int    `json:"i"`           // socket number: picks the source address
	URL   string `json:"u"`           // replica base URL
	Token string `json:"t"`           // the user's token
	Conv  string `json:"c"`           // conversation ID
	Group int    `json:"g"`           // group number (index into the run's groups)
	After string `json:"a,omitempty"` // resume cursor: replay from there
}

type wsMsg struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

type eventPayload struct {
	Data *struct {
		MessageEvents struct {
			Type    string `json:"type"`
			Cursor  string `json:"cursor"`
			Message struct {
				ID   string `json:"id"`
				Body string `json:"body"`
			} `json:"message"`
		} `json:"messageEvents"`
	} `json:"data"`
	Errors []gqlError `json:"errors"`
}

// body is what a load message says: "lg <run> <group> <seq> <scheduled unix ns>".
func messageBody(run string, group, seq int, sched time.Time) string {
	return fmt.Sprintf("lg %s %d %d %d", run, group, seq, sched.UnixNano())
}

func parseBody(s string) (run string, group, seq int, sched int64, ok bool) {
	f := strings.Fields(s)
	if len(f) != 5 || f[0] != "lg" {
		return "", 0, 0, 0, false
	}
	var e1, e2, e3 error
	group, e1 = strconv.Atoi(f[2])
	seq, e2 = strconv.Atoi(f[3])
	sched, e3 = strconv.ParseInt(f[4], 10, 64)
	return f[1], group, seq, sched, e1 == nil && e2 == nil && e3 == nil
}

// sink is what subscribers report to: one per worker.
type sink struct {
	run      string
	lat      syncHist // end to end: receive time − scheduled send time, seq ≥ 1
	errs     errCounter
	events   atomic.Int64 // every event received (warm-up included)
	measured atomic.Int64 // events of seq ≥ 1
	foreign  atomic.Int64 // events not of this run
}

// sub is one subscribed socket and what it received.
type sub struct {
	spec    subSpec
	conn    *websocket.Conn
	sink    *sink
	closing atomic.Bool
	done    chan struct{} // closed when the read loop ends

	mu       sync.Mutex
	seqs     []int32  // seq ≥ 1 in the order received, first copies only
	seen     []uint64 // bitset of seqs received
	dups     int
	distinct atomic.Int32 // distinct seqs received, warm-up (seq 0) included
	cursor   string       // last event's cursor
	first    chan struct{}
	once     sync.Once
}

func newSub(spec subSpec, s *sink) *sub {
	return &sub{spec: spec, sink: s, done: make(chan struct{}), first: make(chan struct{})}
}

// open dials, authenticates, subscribes and proves the socket answers a
// ping after the subscribe. Events arriving meanwhile are handled.
func (s *sub) open(ctx context.Context, hc *http.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, wsURL(s.spec.URL), &websocket.DialOptions{
		HTTPClient:   hc,
		Subprotocols: []string{"graphql-transport-ws"},
	})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return &opError{Code: "http:" + strconv.Itoa(resp.StatusCode), Err: err}
		}
		return fmt.Errorf("dial: %w", err)
	}
	s.conn = c
	fail := func(err error) error {
		c.CloseNow()
		if code := websocket.CloseStatus(err); code != -1 {
			return &opError{Code: "ws:" + strconv.Itoa(int(code)), Err: err}
		}
		return err
	}
	if err := s.write(ctx, `{"type":"connection_init","payload":{"Authorization":"Bearer `+s.spec.Token+`"}}`); err != nil {
		return fail(fmt.Errorf("connection_init: %w", err))
	}
	if err := s.readUntil(ctx, "connection_ack"); err != nil {
		return fail(err)
	}
	vars := map[string]any{"c": s.spec.Conv}
	if s.spec.After != "" {
		vars["a"] = s.spec.After
	}
	sm, _ := json.Marshal(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": subscribeQuery, "variables": vars}})
	if err := s.write(ctx, string(sm)); err != nil {
		return fail(fmt.Errorf("subscribe: %w", err))
	}
	if err := s.write(ctx, `{"type":"ping"}`); err != nil {
		return fail(fmt.Errorf("ping: %w", err))
	}
	if err := s.readUntil(ctx, "pong"); err != nil {
		return fail(err)
	}
	return nil
}

func (s *sub) write(ctx context.Context, m string) error {
	return s.conn.Write(ctx, websocket.MessageText, []byte(m))
}

// readUntil reads (handling what arrives) until a message of type want.
func (s *sub) readUntil(ctx context.Context, want string) error {
	for {
		_, b, err := s.conn.Read(ctx)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", want, err)
		}
		t, err := s.handle(ctx, b)
		if err != nil {
			return err
		}
		if t == want {
			return nil
		}
	}
}

// loop reads until the socket ends; run it once open succeeded.
func (s *sub) loop(ctx context.Context) {
	defer close(s.done)
	for {
		_, b, err := s.conn.Read(ctx)
		if err != nil {
			if !s.closing.Load() && ctx.Err() == nil {
				code := "net"
				if c := websocket.CloseStatus(err); c != -1 {
					code = "ws:" + strconv.Itoa(int(c))
				}
				s.sink.errs.Add("closed:"+code, 1)
			}
			return
		}
		if _, err := s.handle(ctx, b); err != nil {
			s.sink.errs.Add(errCode(err), 1)
		}
	}
}

// handle processes one frame and returns its type.
func (s *sub) handle(ctx context.Context, b []byte) (string, error) {
	now := time.Now().UnixNano()
	var m wsMsg
	if err := json.Unmarshal(b, &m); err != nil {
		return "", &opError{Code: "protocol", Err: fmt.Errorf("frame not JSON: %.100q", b)}
	}
	switch m.Type {
	case "ping":
		if err := s.write(ctx, `{"type":"pong"}`); err != nil {
			return m.Type, fmt.Errorf("pong: %w", err)
		}
	case "next":
		var p eventPayload
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			return m.Type, &opError{Code: "protocol", Err: fmt.Errorf("next payload: %w", err)}
		}
		if len(p.Errors) > 0 || p.Data == nil {
			code := "UNKNOWN"
			if len(p.Errors) > 0 && p.Errors[0].Extensions.Code != "" {
				code = p.Errors[0].Extensions.Code
			}
			return m.Type, &opError{Code: "gql:" + code, Err: errors.New("error in next")}
		}
		s.event(p.Data.MessageEvents.Message.Body, p.Data.MessageEvents.Cursor, now)
	case "error":
		var errs []gqlError
		_ = json.Unmarshal(m.Payload, &errs)
		code := "UNKNOWN"
		if len(errs) > 0 && errs[0].Extensions.Code != "" {
			code = errs[0].Extensions.Code
		}
		return m.Type, &opError{Code: "gql:" + code, Err: fmt.Errorf("subscription error: %s", m.Payload)}
	case "complete":
		return m.Type, &opError{Code: "complete", Err: errors.New("server completed the subscription")}
	}
	return m.Type, nil
}

func (s *sub) event(body, cursor string, now int64) {
	s.sink.events.Add(1)
	run, _, seq, sched, ok := parseBody(body)
	s.mu.Lock()
	s.cursor = cursor
	s.mu.Unlock()
	s.once.Do(func() { close(s.first) })
	if !ok || run != s.sink.run || seq < 0 {
		s.sink.foreign.Add(1)
		return
	}
	s.mu.Lock()
	w := seq / 64
	for len(s.seen) <= w {
		s.seen = append(s.seen, 0)
	}
	if s.seen[w]&(1<<(seq%64)) != 0 {
		if seq == 0 {
			s.mu.Unlock() // warm-up messages are resent until every socket has one
			return
		}
		s.dups++
		s.mu.Unlock()
		return
	}
	s.seen[w] |= 1 << (seq % 64)
	if seq > 0 {
		s.seqs = append(s.seqs, int32(seq))
	}
	s.mu.Unlock()
	s.distinct.Add(1)
	if seq > 0 {
		s.sink.measured.Add(1)
		s.sink.lat.RecordMicros((now - sched) / 1000)
	}
}

func (s *sub) has(seq int) bool {
	w := seq / 64
	return w < len(s.seen) && s.seen[w]&(1<<(seq%64)) != 0
}

// close ends the socket with a normal closure (the server sees the client
// leave) and waits briefly for the read loop.
func (s *sub) close() {
	if s.conn == nil {
		return
	}
	s.closing.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.write(ctx, `{"id":"1","type":"complete"}`)
	_ = s.conn.Close(websocket.StatusNormalClosure, "")
	select {
	case <-s.done:
	case <-ctx.Done():
		s.conn.CloseNow()
	}
}

// orderHash is an order-sensitive digest of the seqs received.
func orderHash(seqs []int32) uint64 {
	h := fnv.New64a()
	var b [4]byte
	for _, q := range seqs {
		b[0], b[1], b[2], b[3] = byte(q), byte(q>>8), byte(q>>16), byte(q>>24)
		h.Write(b[:])
	}
	return h.Sum64()
}
