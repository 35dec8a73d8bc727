package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/trace"

	"github.com/parley-chat/parley/graph"
	"github.com/parley-chat/parley/internal/auth"
)

// graphql-transport-ws, served by our own code rather than gqlgen's
// transport: what a connection costs when idle and what an event costs
// per subscriber are what fan-out is made of (BENCHMARKS.md).
//
//   - No goroutine per idle connection: on Linux, a poller (internal/netpoll)
//     reports a socket with something to read, and a goroutine reads what
//     is there, handles it and ends (wspoll.go); between reads a connection
//     keeps only the bytes of a partial frame. Elsewhere, and for a
//     connection that is not a plain TCP socket, one goroutine per
//     connection reads, with a shallow stack and no buffer of its own
//     between messages. Operations run on goroutines of their own, which
//     end with them.
//   - A subscription whose stream can say when it has something
//     (graph.StreamReadiness) has no goroutine while idle: the hub's
//     callback starts one that writes what is ready and ends.
//   - Every message is one frame built in a pooled buffer and written with
//     one call; a "next" is the encoded payload (shared by subscribers of
//     the same event and selection) with the envelope around it, not
//     re-marshalled.
//
// Close codes are graphql-ws's (4400, 4401, 4403, 4408, 4409, 4429) and
// ours (1012, 1013). The legacy graphql-ws protocol stays on gqlgen's
// transport (websocket.go).

const (
	transportWSProtocol = "graphql-transport-ws"

	closeBadRequest   = 4400
	closeUnauthorized = 4401
	closeDuplicateOp  = 4409

	// closeGrace is how long a closing handshake may take: writing the
	// close frame (behind a blocked write) and the peer's answer.
	closeGrace = 5 * time.Second
	// wsReadLimit bounds one message (as gqlgen's transport did).
	wsReadLimit = 1 << 20
)

type streamsBaseKey struct{}

// StreamsContext marks ctx, an http.Server's BaseContext, as the context
// whose end (with cause ErrShuttingDown) ends every stream. WebSockets
// outlive their upgrade request's context, which net/http cancels when
// the handler returns, so they take their end from this one.
func StreamsContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, streamsBaseKey{}, ctx)
}

// twsConn is one graphql-transport-ws connection.
type twsConn struct {
	wsState // its mu guards the fields from acked on too
	exec    graphql.GraphExecutor
	nc      net.Conn
	raw     syscall.RawConn // nc's, for writes that must not block and the poller's reads; nil for TLS
	fr      frameReader     // the goroutine's reader, or the poller's assembler (fr.asm)
	poll    *wsPoll         // nil: a goroutine reads (set before anything runs)

	// base holds the upgrade request's values (connContext); it never
	// ends, so that the database queries of connection_init and of
	// operations do not leave maps of children and channels behind in a
	// context as long-lived as the connection. opCtx (set at
	// connection_init) adds the viewer. ended is set once the connection
	// is closing; its operations are stopped then (endOps).
	base       context.Context
	opCtx      context.Context
	ended      atomic.Bool
	initCancel context.CancelFunc // aborts an authentication in progress

	// wsem serialises frame writes; a channel so that the close handshake
	// can give up on a write that never ends.
	wsem      chan struct{}
	closeSent bool // under wsem

	acked     bool
	initDone  bool
	ops       opSet
	initTimer *time.Timer
	pingTimer *time.Timer
	pongDue   bool
	closed    func(how string)
	// The connection's place in the list of its streams context
	// (wswatch.go), under the transport's watches.mu.
	watch                *streamWatch
	watchPrev, watchNext *twsConn
	finished             bool
}

// serveTransportWS upgrades r and serves graphql-transport-ws on a
// goroutine of the connection's own; it returns at once.
func (t *webSocket) serveTransportWS(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	if err := checkUpgrade(r); err != nil {
		http.Error(w, "Bad Request: "+err.Error(), http.StatusBadRequest)
		return
	}
	h := w.Header()
	h.Set("Upgrade", "websocket")
	h.Set("Connection", "Upgrade")
	h.Set("Sec-WebSocket-Accept", websocketAccept(r.Header.Get("Sec-WebSocket-Key")))
	h.Set("Sec-WebSocket-Protocol", transportWSProtocol)
	w.WriteHeader(http.StatusSwitchingProtocols)
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.log.Error("websocket hijack", "err", err)
		return
	}
	// The client may have written before it saw the 101 (pipelining): those
	// bytes are in net/http's reader, which is dropped after this.
	var early []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		early = bytes.Clone(b)
	}
	brw = nil
	base, _ := r.Context().Value(streamsBaseKey{}).(context.Context)
	if base == nil {
		base = context.Background()
	}
	c := &twsConn{
		wsState: wsState{t: t}, exec: exec, nc: nc, fr: frameReader{asm: msgAssembler{limit: wsReadLimit}},
		base: connContext(r.Context()), wsem: make(chan struct{}, 1),
		closed: t.metrics.WSOpened(),
	}
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	c.poll = t.newPoll(c, nc, early) // wspoll.go; nil: not pollable
	if c.poll == nil {
		c.fr.r = nc
		if len(early) > 0 {
			c.fr.r = io.MultiReader(bytes.NewReader(early), nc)
		}
	}
	t.hijacked.add()
	c.mu.Lock()
	if t.initTimeout > 0 {
		c.initTimer = time.AfterFunc(t.initTimeout, c.initTimedOut)
	}
	c.mu.Unlock()
	t.watches.add(base, c) // closed when the server's streams end
	if c.poll != nil {
		c.startPoll() // reads what is there already, then waits for readiness
		return
	}
	go c.serve()
}

// serve is the connection's goroutine when it is not polled.
// connContext is a connection's context: the values of the upgrade
// request that its operations use (request ID and client IP for logs and
// limits, a viewer from an Authorization header, the trace parent and
// baggage), without the request's own contexts and middleware state, which
// would otherwise live as long as the connection (BENCHMARKS.md). A new
// request-scoped value that operations need must be added here.
func connContext(r context.Context) context.Context {
	ctx := context.Background()
	if id := RequestID(r); id != "" {
		ctx = context.WithValue(ctx, requestIDKey{}, id)
	}
	if ip := clientIP(r); ip != "" {
		ctx = context.WithValue(ctx, clientIPKey{}, ip)
	}
	if v := auth.Viewer(r); v != "" {
		ctx = auth.WithViewer(ctx, v)
	}
	if sc := trace.SpanContextFromContext(r); sc.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, sc)
	}
	if b := baggage.FromContext(r); b.Len() > 0 {
		ctx = baggage.ContextWithBaggage(ctx, b)
	}
	return ctx
}

func (c *twsConn) serve() {
	defer func() {
		if p := recover(); p != nil {
			c.t.log.Error("websocket: panic", "panic", fmt.Sprint(p))
		}
		c.finish()
	}()
	for {
		op, msg, err := c.fr.readMessage(c.control)
		if err == nil {
			err = c.message(op, msg)
		}
		if err != nil {
			c.readFailed(err)
			return
		}
	}
}

// message handles one data message from the client.
func (c *twsConn) message(_ byte, msg []byte) error {
	c.mu.Lock()
	c.pongDue = false // any message proves the peer alive
	closing := c.closing
	c.mu.Unlock()
	if !closing { // else waiting for the peer's close frame
		c.handle(msg)
	}
	return nil
}

// closeNow drops the connection without a handshake. A goroutine-served
// connection then ends in its reader (which sees the socket closed); a
// polled one has no reader to notice, so it ends here.
func (c *twsConn) closeNow() error {
	if c.poll == nil {
		return c.nc.Close()
	}
	c.finish()
	return nil
}

// control handles a control frame read between messages.
func (c *twsConn) control(op byte, payload []byte) error {
	switch op {
	case opPing:
		c.writeFrame(opPong, payload)
	case opClose:
		code, reason, err := parseClose(payload)
		if err != nil {
			return err
		}
		if c.beginClose() {
			c.setClosedHow("peer")
			echo := code
			if code == 1005 {
				echo = closeNormal
			}
			c.writeClose(echo, "")
		}
		return &peerCloseError{code: code, reason: reason}
	}
	return nil
}

// readFailed answers a framing violation with its close code; any other
// read error (EOF, a reset, our own close) just ends the connection.
func (c *twsConn) readFailed(err error) {
	var we *wsError
	if !errors.As(err, &we) {
		return
	}
	if c.beginClose() {
		c.setClosedHow(strconv.Itoa(we.code))
		c.writeClose(we.code, we.reason)
	}
	c.discardUntilClosed()
}

// discardUntilClosed reads and drops what the peer still sends (the rest
// of a frame we refused, its close frame) until it closes, for up to
// closeGrace: closing with unread input would reset the connection and
// could destroy our close frame before the peer reads it.
func (c *twsConn) discardUntilClosed() {
	_ = c.nc.SetReadDeadline(time.Now().Add(closeGrace))
	_, _ = io.Copy(io.Discard, c.fr.r)
}

// finish releases everything once the connection is over; it runs once.
func (c *twsConn) finish() {
	c.mu.Lock()
	if c.finished {
		c.mu.Unlock()
		return
	}
	// closing too: a connection_init being handled by a polled reader
	// right now must not take a per-user slot that nobody would release.
	c.finished, c.closing = true, true
	c.mu.Unlock()
	c.t.watches.remove(c)
	c.endOps()
	if c.poll != nil {
		c.poll.close() // before the socket: its descriptor must not be reused under the poller
	}
	_ = c.nc.Close()
	c.mu.Lock()
	c.stopTimersLocked()
	user, how := c.user, c.closedHow
	c.user = ""
	c.mu.Unlock()
	if user != "" {
		c.t.releaseUser(user)
	}
	if how == "" {
		how = "peer"
	}
	c.closed(how)
	c.t.hijacked.done()
}

func (c *twsConn) stopTimersLocked() {
	if c.initTimer != nil {
		c.initTimer.Stop()
		c.initTimer = nil
	}
	if c.pingTimer != nil {
		c.pingTimer.Stop()
	}
}

// twsMessage is a message of the protocol, either way.
type twsMessage struct {
	ID      *string         `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

func (c *twsConn) handle(raw []byte) {
	var m twsMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		c.closeWith(closeBadRequest, "Invalid message received")
		return
	}
	switch m.Type {
	case "connection_init":
		c.connectionInit(m.Payload)
	case "ping":
		if len(m.Payload) > 0 && !isJSONObject(m.Payload) && string(m.Payload) != "null" {
			c.closeWith(closeBadRequest, `Invalid message received: "ping" payload must be an object`)
			return
		}
		c.writeMessage("pong", "", m.Payload)
	case "pong":
	case "subscribe":
		c.subscribe(m)
	case "complete":
		if m.ID == nil || *m.ID == "" {
			c.closeWith(closeBadRequest, `Invalid message received: "complete" needs an id`)
			return
		}
		c.mu.Lock()
		op := c.ops.get(*m.ID)
		c.mu.Unlock()
		if op != nil {
			// Answered with a "complete" once the operation has stopped
			// (as gqlgen's transport does), never with another "next".
			op.completedByClient.Store(true)
			op.stop()
		}
	default:
		c.closeWith(closeBadRequest, fmt.Sprintf("Invalid message received: unexpected type %.40q", m.Type))
	}
}

func isJSONObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

func (c *twsConn) connectionInit(payload json.RawMessage) {
	c.mu.Lock()
	again := c.initDone
	c.initDone = true
	if c.initTimer != nil {
		c.initTimer.Stop()
		c.initTimer = nil // an idle connection keeps no timer it will not use
	}
	closing := c.closing
	c.mu.Unlock()
	if closing {
		return
	}
	if again {
		c.closeWith(CloseRateLimited, "Too many initialisation requests")
		return
	}
	p := transport.InitPayload{}
	if len(payload) > 0 && string(payload) != "null" {
		if !isJSONObject(payload) || json.Unmarshal(payload, &p) != nil {
			c.closeWith(closeBadRequest, "Invalid connection_init payload: want an object")
			return
		}
	}
	// Its own context, cancelled when it is done (and, by endOps, if the
	// connection closes first): nothing of it stays in a long-lived one.
	actx, cancel := context.WithCancel(c.base)
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		cancel()
		return
	}
	c.initCancel = cancel
	c.mu.Unlock()
	ctx, code, reason, err := c.t.authenticate(actx, p)
	c.mu.Lock()
	c.initCancel = nil
	c.mu.Unlock()
	cancel()
	ctx = context.WithoutCancel(ctx)
	if err != nil {
		c.closeWith(code, reason)
		return
	}
	if user := auth.Viewer(ctx); user != "" {
		if !c.t.acquire(user) {
			c.closeWith(CloseRateLimited, fmt.Sprintf("Too many connections: at most %d per user", c.t.maxPerUser))
			return
		}
		c.mu.Lock()
		if c.closing {
			c.mu.Unlock()
			c.t.releaseUser(user)
			return
		}
		c.user = user
		c.mu.Unlock()
	}
	c.opCtx = ctx
	c.mu.Lock()
	c.acked = true
	if d := c.t.pingInterval; d > 0 {
		c.pingTimer = time.AfterFunc(d, c.pingTick)
	}
	c.mu.Unlock()
	c.writeMessage("connection_ack", "", nil)
}

func (c *twsConn) initTimedOut() {
	c.mu.Lock()
	late := !c.initDone
	c.initDone = true
	c.mu.Unlock()
	if late {
		c.closeWith(CloseInitTimeout, reasonInitTimeout)
	}
}

// pingTick sends a protocol ping every interval; a peer that answered
// nothing for a whole interval since the last one is dropped.
func (c *twsConn) pingTick() {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	dead := c.pongDue
	c.pongDue = true
	c.pingTimer.Reset(c.t.pingInterval)
	c.mu.Unlock()
	if dead {
		c.dropDeadPeer()
		return
	}
	c.writeMessage("ping", "", nil)
}

func (c *twsConn) dropDeadPeer() { c.wsState.dropDeadPeer(c.beginClose, c.closeNow) }

// beginClose reports whether the caller is the one to close (see
// wsState.beginClose); the connection's operations end.
func (c *twsConn) beginClose() bool {
	if !c.wsState.beginClose(c.stopTimersLocked) {
		return false
	}
	c.endOps()
	return true
}

// endOps marks the connection as ending and stops its operations and an
// authentication in progress. Their contexts are not children of a
// connection context (see base).
func (c *twsConn) endOps() {
	c.ended.Store(true)
	c.mu.Lock()
	ops := c.ops.close()
	cancelInit := c.initCancel
	c.initCancel = nil
	c.mu.Unlock()
	if cancelInit != nil {
		cancelInit()
	}
	for _, op := range ops {
		op.stop()
	}
}

// closeWith starts the close handshake in the background: the close frame
// gets closeGrace to be written (behind a blocked write), then the peer
// closeGrace to answer; then the connection is dropped.
func (c *twsConn) closeWith(code int, reason string) {
	if !c.beginClose() {
		return
	}
	c.setClosedHow(strconv.Itoa(code))
	go func() {
		if !c.writeClose(code, reason) {
			_ = c.closeNow()
			return
		}
		time.AfterFunc(closeGrace, func() { _ = c.closeNow() })
	}()
}

// writeClose writes the close frame; after it no data frame is written.
// It reports whether the frame was written.
func (c *twsConn) writeClose(code int, reason string) bool {
	timer := time.NewTimer(closeGrace)
	defer timer.Stop()
	select {
	case c.wsem <- struct{}{}:
	case <-timer.C:
		return false
	}
	defer func() { <-c.wsem }()
	if c.closeSent {
		return true
	}
	c.closeSent = true
	p := closePayload(code, reason)
	buf := appendFrameHeader(make([]byte, 0, 4+len(p)), opClose, len(p))
	buf = append(buf, p...)
	_ = c.nc.SetWriteDeadline(time.Now().Add(closeGrace))
	_, err := c.nc.Write(buf)
	return err == nil
}

// writeFrame writes one frame whose payload is the parts concatenated; a
// write blocked for longer than the write timeout (the client stopped
// reading) closes the connection with 1013.
func (c *twsConn) writeFrame(op byte, parts ...[]byte) bool {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	bp := c.t.frameBuffer()
	buf := appendFrameHeader((*bp)[:0], op, n)
	for _, p := range parts {
		buf = append(buf, p...)
	}
	ok := c.write(buf)
	if cap(buf) <= 64<<10 {
		*bp = buf[:0]
		c.t.frames.Put(bp)
	}
	return ok
}

// write writes a whole frame (or several) under the write lock.
func (c *twsConn) write(frame []byte) bool {
	c.wsem <- struct{}{}
	defer func() { <-c.wsem }()
	if c.closeSent {
		return false
	}
	// Nearly every frame fits in the socket's buffer: one non-blocking
	// write, and no write timer to arm and stop.
	if c.raw != nil {
		n := tryWrite(&c.t.nonBlockingWrites, c.raw, frame)
		if n == len(frame) {
			return true
		}
		frame = frame[n:]
	}
	if d := c.t.writeTimeout; d > 0 {
		w := c.t.writeWatch(c, d)
		defer c.t.writeDone(w)
	}
	_, err := c.nc.Write(frame)
	return err == nil
}

func (c *twsConn) writeTimedOut() {
	c.t.log.Warn("closing a WebSocket whose client stopped reading", "user", c.viewer(), "code", CloseTryAgainLater)
	c.closeWith(CloseTryAgainLater, reasonSlow)
}

// writeMessage writes {"type":…,"id":…,"payload":…}; payload must be JSON
// (or empty).
func (c *twsConn) writeMessage(typ, id string, payload []byte) bool {
	return c.writeEnvelope(typ, id, "", payload, "")
}

// writeEnvelope writes {"type":typ,"id":id,"payload":pre+payload+post} as
// one frame built in a pooled buffer: the hot path of every delivery.
func (c *twsConn) writeEnvelope(typ, id, pre string, payload []byte, post string) bool {
	if !plainJSONString(id) {
		q, _ := json.Marshal(id)
		id = string(q[1 : len(q)-1])
	}
	n := len(`{"type":""}`) + len(typ)
	if id != "" {
		n += len(`,"id":""`) + len(id)
	}
	body := len(pre) + len(payload) + len(post)
	if body > 0 {
		n += len(`,"payload":`) + body
	}
	bp := c.t.frameBuffer()
	buf := appendFrameHeader((*bp)[:0], opText, n)
	buf = append(buf, `{"type":"`...)
	buf = append(buf, typ...)
	buf = append(buf, '"')
	if id != "" {
		buf = append(buf, `,"id":"`...)
		buf = append(buf, id...)
		buf = append(buf, '"')
	}
	if body > 0 {
		buf = append(buf, `,"payload":`...)
		buf = append(buf, pre...)
		buf = append(buf, payload...)
		buf = append(buf, post...)
	}
	buf = append(buf, '}')
	ok := c.write(buf)
	if cap(buf) <= 64<<10 {
		*bp = buf[:0]
		c.t.frames.Put(bp)
	}
	return ok
}

// plainJSONString reports whether s needs no escaping inside JSON quotes.
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < 0x20 || b == '"' || b == '\\' || b >= 0x80 {
			return false
		}
	}
	return true
}

// sendResponse writes a "next". The common case, data without errors or
// extensions, is written as it is: no marshalling per subscriber.
func (c *twsConn) sendResponse(id string, r *graphql.Response) bool {
	if len(r.Errors) == 0 && len(r.Extensions) == 0 && len(r.Data) > 0 {
		return c.writeEnvelope("next", id, `{"data":`, r.Data, "}")
	}
	b, err := json.Marshal(r)
	if err != nil {
		c.t.log.Error("websocket: encode response", "err", err)
		return false
	}
	return c.writeMessage("next", id, b)
}

func (c *twsConn) sendError(id string, errs gqlerror.List) bool {
	b, err := json.Marshal(errs)
	if err != nil {
		c.t.log.Error("websocket: encode errors", "err", err)
		return false
	}
	return c.writeMessage("error", id, b)
}

// twsOp is one running operation.
type twsOp struct {
	c      *twsConn
	id     string
	ctx    context.Context
	cancel context.CancelFunc

	// For a subscription driven without a goroutine of its own: through
	// gqlgen's response handler, or detached from it (det, with params to
	// run the operation again for an event; graph/detach.go).
	responses graphql.ResponseHandler
	det       *graph.DetachedStream
	params    *graphql.RawParams
	rawVars   json.RawMessage // params.Variables as sent, decoded again per run
	// runCancel ends the context the operation runs in (see run), if it
	// still has one; guarded by mu.
	runCancel  context.CancelFunc
	ready      func() bool
	handedOver atomic.Bool // the stream's readiness callback drives it (set last)
	scheduled  atomic.Bool // a goroutine owns the stream and is draining it
	kicked     atomic.Bool // something may be ready since the owner last looked
	finished   atomic.Bool
	// ended is set by stop: asked per delivery, where ctx.Err() would walk
	// the whole chain of values gqlgen and our middleware added.
	ended atomic.Bool
	// completedByClient: the client sent "complete".
	completedByClient atomic.Bool

	mu  sync.Mutex
	err *gqlerror.Error // the error that ended the stream
}

type twsSubscribePayload struct {
	Query         *string         `json:"query"`
	OperationName string          `json:"operationName"`
	Variables     json.RawMessage `json:"variables"`
	Extensions    map[string]any  `json:"extensions"`
}

// decodeVariables decodes an operation's variables as gqlgen's transports
// do (numbers kept as json.Number); absent or null is none.
func decodeVariables(raw json.RawMessage) (map[string]any, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var vars map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&vars); err != nil {
		return nil, err
	}
	return vars, nil
}

func (c *twsConn) subscribe(m twsMessage) {
	c.mu.Lock()
	acked := c.acked
	c.mu.Unlock()
	if !acked {
		c.closeWith(closeUnauthorized, "Unauthorized")
		return
	}
	if m.ID == nil || *m.ID == "" {
		c.closeWith(closeBadRequest, `Invalid message received: "subscribe" needs an id`)
		return
	}
	var p twsSubscribePayload
	dec := json.NewDecoder(bytes.NewReader(m.Payload))
	dec.UseNumber() // as gqlgen's transports decode variables
	if !isJSONObject(m.Payload) || dec.Decode(&p) != nil || p.Query == nil {
		c.closeWith(closeBadRequest, `Invalid message received: "subscribe" needs a payload with a query`)
		return
	}
	vars, err := decodeVariables(p.Variables)
	if err != nil {
		c.closeWith(closeBadRequest, `Invalid message received: "subscribe" needs a payload with a query`)
		return
	}
	id := *m.ID
	query := c.t.internQuery(*p.Query)
	// Not a child of a connection context (see base): cancelled by the
	// connection's endOps.
	ctx, cancel := context.WithCancel(c.opCtx)
	op := &twsOp{c: c, id: id, ctx: ctx, cancel: cancel, rawVars: p.Variables}
	c.mu.Lock()
	if c.ops.closed { // closing meanwhile
		c.mu.Unlock()
		cancel()
		return
	}
	if c.ops.get(id) != nil {
		c.mu.Unlock()
		cancel()
		c.closeWith(closeDuplicateOp, fmt.Sprintf("Subscriber for %.100s already exists", id))
		return
	}
	c.ops.add(op)
	c.mu.Unlock()
	params := &graphql.RawParams{
		Query: query, OperationName: p.OperationName, Variables: vars, Extensions: p.Extensions,
		Headers: c.t.opHeaders, ReadTime: graphql.TraceTiming{Start: graphql.Now(), End: graphql.Now()},
	}
	go op.run(params)
}

// run executes the operation. A query or mutation answers and completes;
// a subscription is handed to its stream's readiness callback if it has
// one, and its goroutine ends.
func (op *twsOp) run(params *graphql.RawParams) {
	c := op.c
	defer func() {
		if p := recover(); p != nil {
			c.t.log.Error("websocket operation: panic", "panic", fmt.Sprint(p))
			op.setErr(&gqlerror.Error{Message: "internal system error", Extensions: map[string]any{"code": graph.CodeInternal}})
			op.finish()
		}
	}()
	// The operation runs in a context of its own, not derived from op.ctx:
	// database/sql leaves a done channel and a children map on every
	// cancelable context a query runs under, and a detached subscription
	// keeps op.ctx for as long as it lives. stop ends this one too.
	runCtx, runCancel := context.WithCancel(c.opCtx)
	op.mu.Lock()
	op.runCancel = runCancel
	op.mu.Unlock()
	if op.ended.Load() {
		runCancel()
	}
	ctx := graphql.StartOperationTrace(runCtx)
	rc, errs := c.exec.CreateOperationContext(ctx, params)
	if errs != nil {
		resp := c.exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		if errcode.GetErrorKind(errs) == errcode.KindProtocol {
			// graphql-transport-ws: "error" ends the operation.
			op.setErr(resp.Errors[0])
			if len(resp.Errors) > 1 {
				op.finished.Store(true)
				c.sendError(op.id, resp.Errors)
				op.release()
				return
			}
			op.finish()
			return
		}
		c.sendResponse(op.id, resp)
		op.finish()
		return
	}
	ctx = graphql.WithOperationContext(ctx, rc)
	ctx = graph.WithStreamErrorSink(ctx, op.setErr)
	var detach *graph.DetachRequest
	if rc.Operation != nil && rc.Operation.Operation == ast.Subscription {
		ctx, detach = graph.WithDetach(ctx, c.opCtx)
	}
	responses, ctx := c.exec.DispatchOperation(ctx, rc)
	if det := detach.Stream(); det != nil {
		// Keep nothing of this execution: an event is run again, if it
		// must be executed for this subscriber at all (reexecute).
		op.det, op.ready = det, det.Ready
		op.params = &graphql.RawParams{Query: params.Query, OperationName: params.OperationName, Headers: params.Headers}
		op.mu.Lock()
		op.runCancel = nil
		op.mu.Unlock()
		runCancel()
		op.handedOver.Store(true)
		det.OnReady(op.kick)
		op.kick()
		return
	}
	if rc.Operation != nil && rc.Operation.Operation == ast.Subscription {
		if ready, onReady, ok := graph.StreamReadiness(ctx); ok {
			op.ctx, op.responses, op.ready = ctx, responses, ready
			op.handedOver.Store(true) // from now on stop kicks it to notice the end
			onReady(op.kick)
			op.kick()
			return
		}
	}
	for {
		r := responses(ctx)
		if r == nil {
			break
		}
		if !c.sendResponse(op.id, r) {
			break
		}
	}
	op.finish()
}

// stop cancels the operation. One driven by its stream's readiness is
// kicked, so that a goroutine notices while it is idle; before that, run's
// own first kick notices.
func (op *twsOp) stop() {
	op.ended.Store(true)
	op.cancelAll()
	if op.handedOver.Load() {
		op.kick()
	}
}

// cancelAll ends the operation's context and the one it runs in.
func (op *twsOp) cancelAll() {
	op.cancel()
	op.mu.Lock()
	runCancel := op.runCancel
	op.mu.Unlock()
	if runCancel != nil {
		runCancel()
	}
}

func (op *twsOp) setErr(err *gqlerror.Error) {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.err = err
}

// kick makes sure a goroutine is writing what the stream has ready.
func (op *twsOp) kick() {
	op.kicked.Store(true)
	if op.scheduled.CompareAndSwap(false, true) {
		go op.drain()
	}
}

func (op *twsOp) drain() {
	defer func() {
		if p := recover(); p != nil {
			op.c.t.log.Error("websocket subscription: panic", "panic", fmt.Sprint(p))
			op.setErr(&gqlerror.Error{Message: "internal system error", Extensions: map[string]any{"code": graph.CodeInternal}})
			op.finish()
		}
	}()
	// Only the goroutine that set scheduled touches the stream; a kick
	// while it drains makes it look again before it lets go.
	for {
		op.kicked.Store(false)
		if op.finished.Load() {
			return
		}
		for !op.ended.Load() && op.ready() {
			r := op.next()
			if r == nil {
				op.finish()
				return
			}
			if !op.c.sendResponse(op.id, r) {
				op.cancel()
				op.finish()
				return
			}
		}
		if op.ended.Load() {
			op.finish()
			return
		}
		op.scheduled.Store(false)
		if !op.kicked.Load() || !op.scheduled.CompareAndSwap(false, true) {
			return
		}
	}
}

// next is the subscription's next response; nil once it is over.
func (op *twsOp) next() *graphql.Response {
	if op.det == nil {
		return op.responses(op.ctx)
	}
	r, ok := op.det.Respond(op.ctx, op.reexecute)
	if !ok {
		if err := op.det.Err(); err != nil {
			op.setErr(err)
		}
		return nil
	}
	return r
}

// reexecute runs a detached subscription's operation for one event.
func (op *twsOp) reexecute(ev any) *graphql.Response {
	c := op.c
	ctx := graphql.StartOperationTrace(graph.WithEvent(op.ctx, ev))
	vars, err := decodeVariables(op.rawVars) // they decoded when the operation began
	if err != nil {
		return &graphql.Response{Errors: gqlerror.List{{Message: "variables: " + err.Error()}}}
	}
	params := *op.params
	params.Variables = vars
	rc, errs := c.exec.CreateOperationContext(ctx, &params)
	if errs != nil {
		return c.exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
	}
	responses, ctx := c.exec.DispatchOperation(graphql.WithOperationContext(ctx, rc), rc)
	return responses(ctx)
}

// finish ends the operation once: "error" if its stream ended with one,
// "complete" if it ended by itself; nothing if the client completed it or
// the connection is going.
func (op *twsOp) finish() {
	if !op.finished.CompareAndSwap(false, true) {
		return
	}
	op.mu.Lock()
	err := op.err
	op.mu.Unlock()
	switch {
	case op.c.ended.Load():
		// The connection is closing: its close frame says it all.
	case err != nil:
		op.c.sendError(op.id, gqlerror.List{err})
	case op.ctx.Err() == nil || op.completedByClient.Load():
		op.c.writeMessage("complete", op.id, nil)
	}
	op.release()
}

func (op *twsOp) release() {
	op.c.mu.Lock()
	op.c.ops.remove(op)
	op.c.mu.Unlock()
	op.cancelAll()
	if op.det != nil {
		op.det.Release() // nothing else does: it holds no context of gqlgen's
	}
}

// opSet is a connection's running operations by id. A connection nearly
// always has none or one, so the first is held inline, not in a map.
type opSet struct {
	first  *twsOp
	more   map[string]*twsOp
	closed bool // the connection is closing: no more operations
}

func (s *opSet) get(id string) *twsOp {
	if s.first != nil && s.first.id == id {
		return s.first
	}
	return s.more[id]
}

func (s *opSet) add(op *twsOp) {
	if s.first == nil {
		s.first = op
		return
	}
	if s.more == nil {
		s.more = map[string]*twsOp{}
	}
	s.more[op.id] = op
}

func (s *opSet) remove(op *twsOp) {
	if s.first == op {
		s.first = nil
		return
	}
	if s.more[op.id] == op {
		delete(s.more, op.id)
	}
}

// close empties the set for good and returns what it held.
func (s *opSet) close() []*twsOp {
	var ops []*twsOp
	if s.first != nil {
		ops = append(ops, s.first)
	}
	for _, op := range s.more {
		ops = append(ops, op)
	}
	s.first, s.more, s.closed = nil, nil, true
	return ops
}

// authenticate checks a connection_init payload; on failure it returns the
// close code and reason.
func (t *webSocket) authenticate(ctx context.Context, p transport.InitPayload) (context.Context, int, string, error) {
	if t.check == nil {
		return ctx, 0, "", nil
	}
	next, err := t.check(ctx, p)
	if err != nil {
		var refused *initRefusal
		if errors.As(err, &refused) {
			return ctx, refused.code, refused.reason, err
		}
		return ctx, CloseForbidden, "Forbidden", err
	}
	return next, 0, "", nil
}

// frameBuffer returns a buffer for building frames, from a pool shared by
// the transport's connections (an idle connection holds none).
func (t *webSocket) frameBuffer() *[]byte {
	if bp, ok := t.frames.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, 0, 1024)
	return &b
}
