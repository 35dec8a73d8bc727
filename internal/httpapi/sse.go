package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
)

// sseTransport is gqlgen's SSE transport with a write timeout. Without one,
// a client that stops reading (its socket buffer full) holds its stream —
// a goroutine blocked in a write, the subscription and its queue — until
// TCP gives up, many minutes later. Past the timeout the stream ends, as a
// stalled WebSocket's does (WS_WRITE_TIMEOUT covers both).
type sseTransport struct {
	transport.SSE
	writeTimeout time.Duration
	log          *slog.Logger
}

func (t sseTransport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	if t.writeTimeout <= 0 {
		t.SSE.Do(w, r, exec)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	rc := http.NewResponseController(w)
	// Left set, the deadline would cut off the connection's next request.
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	log := t.log
	if log == nil {
		log = slog.Default()
	}
	dw := &deadlineWriter{ResponseWriter: w, rc: rc, timeout: t.writeTimeout}
	dw.stalled = func() {
		if dw.failed.CompareAndSwap(false, true) {
			log.WarnContext(ctx, "ending an SSE stream whose client stopped reading", "timeout", t.writeTimeout)
			cancel()
		}
	}
	t.SSE.Do(dw, r.WithContext(ctx), exec)
}

// deadlineWriter gives every write and flush of a stream the write
// timeout; the first that fails ends the stream (stalled).
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	stalled func()
	failed  atomic.Bool
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	n, err := w.ResponseWriter.Write(p)
	if err != nil {
		w.stalled()
	}
	return n, err
}

// Flush is what sends an event: the server's writer buffers the rest.
func (w *deadlineWriter) Flush() {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	if err := w.rc.Flush(); err != nil {
		w.stalled()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
