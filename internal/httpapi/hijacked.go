package httpapi

import (
	"context"
	"sync"
)

// Hijacked counts the WebSocket connections served outside net/http's
// bookkeeping (after Hijack, http.Server.Shutdown no longer sees them), so
// that a shutdown can wait for their close handshakes: a 1012 frame cut off
// by the process exiting would leave clients guessing.
type Hijacked struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed while n == 0
}

func (h *Hijacked) add() {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		h.zero = make(chan struct{})
	}
	h.n++
}

func (h *Hijacked) done() {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n--; h.n == 0 {
		close(h.zero)
	}
}

// Open reports how many connections are still open.
func (h *Hijacked) Open() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// Wait returns once every connection has closed, or with ctx's error.
func (h *Hijacked) Wait(ctx context.Context) error {
	h.mu.Lock()
	if h.n == 0 {
		h.mu.Unlock()
		return nil
	}
	zero := h.zero
	h.mu.Unlock()
	select {
	case <-zero:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
