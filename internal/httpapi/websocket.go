package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/metrics"
	"github.com/parley-chat/parley/internal/netpoll"

	"github.com/parley-chat/parley/internal/auth"
)

// WebSocket close codes, besides CloseForbidden (4403) and CloseRateLimited
// (4429, also used for too many open connections).
const (
	// CloseInitTimeout: no connection_init within WS_INIT_TIMEOUT (as
	// graphql-ws specifies).
	CloseInitTimeout = 4408
	// CloseServiceRestart: the replica is shutting down; reconnect (to
	// another replica) and resume with `after`.
	CloseServiceRestart = 1012
	// CloseTryAgainLater: the client stopped reading, so a write blocked
	// for longer than WS_WRITE_TIMEOUT; reconnect and resume with `after`.
	CloseTryAgainLater = 1013
)

const (
	reasonInitTimeout = "Connection initialisation timeout"
	reasonRestart     = "Service restart: reconnect"
	reasonSlow        = "Too slow reading: reconnect and resume with after"
)

// webSocket wraps gqlgen's WebSocket transport with what it lacks: the
// graphql-ws init timeout code, a write timeout, a per-user connection cap,
// 1012 on shutdown, origin checks and, for the legacy protocol, which has
// no pong, dead-peer detection by protocol-level pings.
type webSocket struct {
	base         transport.Websocket
	initTimeout  time.Duration // connection_init must arrive within it (4408)
	writeTimeout time.Duration // a write blocked longer closes with 1013; 0: none
	pingInterval time.Duration // legacy graphql-ws: protocol pings, dead after 2×
	maxPerUser   int           // open connections per user on this replica (4429); 0: no cap
	origins      originPolicy
	check        initCheck
	log          *slog.Logger
	metrics      *metrics.Metrics

	frames            sync.Pool // *[]byte frame buffers (wsconn.go)
	nonBlockingWrites sync.Pool // trywrite_unix.go
	// writeWatches: *writeWatch timers, shared by the connections' writes
	// (an idle connection holds none).
	writeWatches sync.Pool
	reads        sync.Pool // *[]byte read buffers of polled connections (wspoll.go)
	// poller reports readable graphql-transport-ws sockets (wspoll.go); nil:
	// a goroutine per connection reads.
	poller *netpoll.Poller
	// opHeaders are the request headers every graphql-transport-ws
	// operation sees (read-only, shared): only that it came over a
	// WebSocket matters to the extensions that look.
	opHeaders http.Header
	hijacked  *Hijacked
	watches   streamWatches // wswatch.go

	// queries interns operation texts (internQuery).
	qmu     sync.Mutex
	queries map[string]string

	mu      sync.Mutex
	perUser map[string]int
}

var _ graphql.Transport = (*webSocket)(nil)

// newWebSocket wraps base. It takes over base's InitTimeout, on which gqlgen
// would close with 1002.
func newWebSocket(log *slog.Logger, opt GraphQLOptions, check initCheck, base transport.Websocket) *webSocket {
	t := &webSocket{
		check: check, hijacked: opt.Hijacked, opHeaders: http.Header{"Upgrade": []string{"websocket"}},
		base: base, initTimeout: base.InitTimeout, writeTimeout: opt.WSWriteTimeout,
		pingInterval: base.KeepAlivePingInterval, maxPerUser: opt.WSMaxConnsPerUser,
		origins: newOriginPolicy(opt.AllowedOrigins), log: log, perUser: map[string]int{}, metrics: opt.Metrics,
	}
	t.base.InitTimeout = 0
	if t.log == nil {
		t.log = slog.Default()
	}
	if !opt.WSGoroutinePerConn {
		if p, err := netpoll.New(); err == nil {
			t.poller = p
		}
	}
	return t
}

// writeWatch closes a connection whose write takes longer than the write
// timeout. The timer is shared through a pool rather than kept by each
// connection between writes (~130 bytes of every idle connection).
type writeWatch struct {
	timer *time.Timer
	c     atomic.Pointer[twsConn]
}

func (w *writeWatch) fire() {
	if c := w.c.Load(); c != nil {
		c.writeTimedOut()
	}
}

// writeWatch arms a timer for c's write.
func (t *webSocket) writeWatch(c *twsConn, d time.Duration) *writeWatch {
	w, _ := t.writeWatches.Get().(*writeWatch)
	if w == nil {
		w = &writeWatch{}
		w.c.Store(c)
		w.timer = time.AfterFunc(d, w.fire)
		return w
	}
	w.c.Store(c)
	w.timer.Reset(d)
	return w
}

// writeDone disarms w once the write is over. Only a timer stopped before
// it fired goes back to the pool: one that fired is c's, and may still be
// running fire.
func (t *webSocket) writeDone(w *writeWatch) {
	if w.timer.Stop() {
		w.c.Store(nil)
		t.writeWatches.Put(w)
	}
}

// internQuery returns q, or an equal string kept from an earlier
// operation: a subscription's operation context keeps its query text for
// as long as it runs, and thousands of subscribers send the same one. The
// table is bounded; when full it starts over.
func (t *webSocket) internQuery(q string) string {
	if len(q) > 8<<10 {
		return q
	}
	t.qmu.Lock()
	defer t.qmu.Unlock()
	if s, ok := t.queries[q]; ok {
		return s
	}
	if t.queries == nil || len(t.queries) >= 1024 {
		t.queries = make(map[string]string)
	}
	t.queries[q] = q
	return q
}

func (t *webSocket) Supports(r *http.Request) bool { return t.base.Supports(r) }

func (t *webSocket) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	if !t.origins.allowed(r) {
		http.Error(w, "Forbidden: origin not allowed (see ALLOWED_ORIGINS)", http.StatusForbidden)
		return
	}
	if offeredSubprotocol(r, transportWSProtocol) {
		t.serveTransportWS(w, r, exec) // wsconn.go
		return
	}
	c := &wsConn{wsState: wsState{t: t}, reqCtx: r.Context(), done: make(chan struct{})}
	ws := t.base
	ws.Implementation = c
	ws.InitFunc = c.init
	defer c.release()
	ws.Do(w, r, exec)
	c.closeIfInitInvalid() // hostile-input fix, see there
}

// closeIfInitInvalid closes a socket gqlgen gave up on during
// connection_init without closing it: a payload that is not a JSON object
// makes gqlgen's Do return before the InitFunc, leaving the socket (and a
// goroutine) open until the client goes away. Any other way out of the
// init phase has closed already, which makes this a no-op.
func (c *wsConn) closeIfInitInvalid() {
	c.mu.Lock()
	pending := c.conn != nil && c.initState == 0
	c.mu.Unlock()
	if pending {
		c.closeWith(4400, "Invalid connection_init payload: want an object")
	}
}

func (t *webSocket) acquire(user string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.maxPerUser > 0 && t.perUser[user] >= t.maxPerUser {
		return false
	}
	t.perUser[user]++
	return true
}

func (t *webSocket) releaseUser(user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.perUser[user]--; t.perUser[user] <= 0 {
		delete(t.perUser, user)
	}
}

// wsConn is one connection: gqlgen's WebsocketImplementation (it accepts
// itself) and WebsocketConn over coder/websocket.
type wsConn struct {
	wsState                 // its mu guards the fields below too
	reqCtx  context.Context // ends when the server shuts down
	conn    *websocket.Conn
	done    chan struct{}

	initState int // 0 waiting, 1 connection_init received, 2 timed out
	initTimer *time.Timer
	readTimer *time.Timer
	stopWatch func() bool
	closed    func(how string)
}

var (
	_ transport.WebsocketImplementation = (*wsConn)(nil)
	_ transport.WebsocketConn           = (*wsConn)(nil)
	_ transport.WebsocketReadLimiter    = (*wsConn)(nil)
	_ transport.WebsocketReadDeadliner  = (*wsConn)(nil)
)

// Accept upgrades the request; coder/websocket checks the origin again.
func (c *wsConn) Accept(w http.ResponseWriter, r *http.Request, o transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	for k, vs := range o.ResponseHeader {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:       o.Subprotocols,
		OriginPatterns:     c.t.origins.patterns,
		InsecureSkipVerify: c.t.origins.any,
	})
	if err != nil {
		return nil, err
	}
	c.conn = conn
	c.closed = c.t.metrics.WSOpened()
	c.mu.Lock()
	if c.t.initTimeout > 0 {
		c.initTimer = time.AfterFunc(c.t.initTimeout, c.initTimedOut)
	}
	c.mu.Unlock()
	// The request's context ends when the server shuts down (its
	// BaseContext is cancelled with ErrShuttingDown): tell the client to
	// reconnect elsewhere. It also ends when gqlgen returns for any other
	// reason; that is no restart.
	c.stopWatch = context.AfterFunc(c.reqCtx, func() {
		if shuttingDown(c.reqCtx) {
			c.closeWith(CloseServiceRestart, reasonRestart)
		}
	})
	if p := conn.Subprotocol(); (p == "" || p == "graphql-ws") && c.t.pingInterval > 0 {
		go c.pingLoop()
	}
	return c, nil
}

// release runs when gqlgen is done with the connection.
func (c *wsConn) release() {
	close(c.done)
	c.mu.Lock()
	c.stopTimersLocked()
	user := c.user
	c.user = ""
	how, closed := c.closedHow, c.closed
	c.mu.Unlock()
	if closed != nil {
		if how == "" {
			how = "peer"
		}
		closed(how)
	}
	if c.stopWatch != nil {
		c.stopWatch()
	}
	if user != "" {
		c.t.releaseUser(user)
	}
}

func (c *wsConn) stopTimersLocked() {
	if c.initTimer != nil {
		c.initTimer.Stop()
	}
	if c.readTimer != nil {
		c.readTimer.Stop()
		c.readTimer = nil
	}
}

func (c *wsConn) initTimedOut() {
	c.mu.Lock()
	if c.initState != 0 {
		c.mu.Unlock()
		return
	}
	c.initState = 2
	c.mu.Unlock()
	c.closeWith(CloseInitTimeout, reasonInitTimeout)
}

// init wraps the InitFunc: it stops the init timer, then enforces the
// per-user cap once the base InitFunc has authenticated the viewer.
func (c *wsConn) init(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
	c.mu.Lock()
	late := c.initState == 2
	if !late {
		c.initState = 1
		if c.initTimer != nil {
			c.initTimer.Stop()
		}
	}
	c.mu.Unlock()
	if late {
		ctx = transport.WithWebsocketCloseCode(ctx, CloseInitTimeout)
		return transport.AppendCloseReason(ctx, reasonInitTimeout), nil, errors.New("connection initialisation timeout")
	}
	var ack *transport.InitPayload
	if c.t.base.InitFunc != nil {
		var err error
		if ctx, ack, err = c.t.base.InitFunc(ctx, p); err != nil {
			return ctx, ack, err
		}
	}
	if user := auth.Viewer(ctx); user != "" {
		if !c.t.acquire(user) {
			msg := fmt.Sprintf("too many connections: at most %d open WebSockets per user", c.t.maxPerUser)
			ctx = transport.WithWebsocketCloseCode(ctx, CloseRateLimited)
			ctx = transport.AppendCloseReason(ctx, fmt.Sprintf("Too many connections: at most %d per user", c.t.maxPerUser))
			return ctx, nil, errors.New(msg)
		}
		c.mu.Lock()
		c.user = user
		c.mu.Unlock()
	}
	return ctx, ack, nil
}

func (c *wsConn) beginClose() bool { return c.wsState.beginClose(c.stopTimersLocked) }

// closeWith starts the close handshake in the background: coder/websocket
// gives the close frame 5 s (it waits behind a blocked write) and the peer
// 5 s to answer, then drops the connection.
func (c *wsConn) closeWith(code int, reason string) {
	if !c.beginClose() {
		return
	}
	c.setClosedHow(strconv.Itoa(code))
	go func() { _ = c.conn.Close(websocket.StatusCode(code), reason) }()
}

func (c *wsConn) dropDeadPeer() { c.wsState.dropDeadPeer(c.beginClose, c.conn.CloseNow) }

// pingLoop detects dead peers of the legacy protocol, whose "ka" is one-way:
// a protocol-level ping unanswered for an interval closes the socket. gqlgen
// reads all the time, and coder/websocket answers and matches pongs there.
func (c *wsConn) pingLoop() {
	tick := time.NewTicker(c.t.pingInterval)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.t.pingInterval)
		err := c.conn.Ping(ctx)
		timedOut := ctx.Err() != nil
		cancel()
		if err != nil {
			if timedOut {
				c.dropDeadPeer()
			}
			return // closed
		}
	}
}

func (c *wsConn) Subprotocol() string { return c.conn.Subprotocol() }

func (c *wsConn) SetReadLimit(limit int64) { c.conn.SetReadLimit(limit) }

func (c *wsConn) NextReader() (int, io.Reader, error) {
	typ, data, err := c.conn.Read(context.Background())
	if err != nil {
		switch websocket.CloseStatus(err) {
		case websocket.StatusNormalClosure, websocket.StatusNoStatusRcvd:
			return int(typ), nil, transport.ErrWebsocketClosed
		}
		return int(typ), nil, err
	}
	return int(typ), bytes.NewReader(data), nil
}

// WriteJSON writes one message. A write that blocks for longer than the
// write timeout (the client stopped reading and the TCP buffers are full)
// closes the connection with 1013, which releases the blocked goroutines.
func (c *wsConn) WriteJSON(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if d := c.t.writeTimeout; d > 0 {
		timer := time.AfterFunc(d, func() {
			c.t.log.Warn("closing a WebSocket whose client stopped reading", "user", c.viewer(), "code", CloseTryAgainLater)
			c.closeWith(CloseTryAgainLater, reasonSlow)
		})
		defer timer.Stop()
	}
	return c.conn.Write(context.Background(), websocket.MessageText, data)
}

// ErrShuttingDown is the cause with which a server cancels its streams
// base context when it shuts down; streams ended with it tell clients to
// reconnect (WebSocket close code 1012).
var ErrShuttingDown = errors.New("server shutting down")

func shuttingDown(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), ErrShuttingDown)
}

// WriteClose closes with gqlgen's code, except that the normal closure
// gqlgen sends when the request's context ends becomes 1012 if the server
// is shutting down.
func (c *wsConn) WriteClose(code int, reason string) error {
	if code == transport.WebsocketCloseNormalClosure && shuttingDown(c.reqCtx) {
		code, reason = CloseServiceRestart, reasonRestart
	}
	c.closeWith(code, reason)
	return nil
}

// Close drops the connection unless a close handshake owns it already.
func (c *wsConn) Close() error {
	if !c.beginClose() {
		return nil
	}
	return c.conn.CloseNow()
}

// SetReadDeadline is gqlgen's pong deadline (graphql-transport-ws): past it
// the peer is dead and the socket is dropped.
func (c *wsConn) SetReadDeadline(deadline time.Time) error {
	c.mu.Lock()
	if c.readTimer != nil {
		c.readTimer.Stop()
		c.readTimer = nil
	}
	if c.closing || deadline.IsZero() {
		c.mu.Unlock()
		return nil
	}
	d := time.Until(deadline)
	if d > 0 {
		c.readTimer = time.AfterFunc(d, c.dropDeadPeer)
	}
	c.mu.Unlock()
	if d <= 0 {
		c.dropDeadPeer()
	}
	return nil
}
