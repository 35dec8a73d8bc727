package httpapi

import (
	"context"
	"sync"
)

// streamWatches close graphql-transport-ws connections when the context
// their streams end with (StreamsContext: the server's) ends. One
// context.AfterFunc per such context, and a list through the connections,
// rather than an AfterFunc per connection: that one cost ~170 bytes of
// every idle connection (BENCHMARKS.md).
type streamWatches struct {
	mu      sync.Mutex
	watches map[context.Context]*streamWatch
}

// streamWatch is the open connections of one streams context.
type streamWatch struct {
	ctx  context.Context
	head *twsConn
	stop func() bool
}

// add watches c under ctx. If ctx has ended already, c is closed at once
// (from another goroutine).
func (w *streamWatches) add(ctx context.Context, c *twsConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sw := w.watches[ctx]
	if sw == nil {
		sw = &streamWatch{ctx: ctx}
		if w.watches == nil {
			w.watches = map[context.Context]*streamWatch{}
		}
		w.watches[ctx] = sw
		sw.stop = context.AfterFunc(ctx, func() { w.ended(sw) })
	}
	c.watch, c.watchNext = sw, sw.head
	if sw.head != nil {
		sw.head.watchPrev = c
	}
	sw.head = c
}

// remove stops watching c (once it is finished); it is idempotent.
func (w *streamWatches) remove(c *twsConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	sw := c.watch
	if sw == nil {
		return
	}
	if c.watchPrev != nil {
		c.watchPrev.watchNext = c.watchNext
	} else {
		sw.head = c.watchNext
	}
	if c.watchNext != nil {
		c.watchNext.watchPrev = c.watchPrev
	}
	c.watch, c.watchPrev, c.watchNext = nil, nil, nil
	if sw.head == nil && w.watches[sw.ctx] == sw {
		delete(w.watches, sw.ctx)
		sw.stop()
	}
}

// ended closes every connection of sw: with 1012 when the server is
// shutting down (reconnect elsewhere), else 1001.
func (w *streamWatches) ended(sw *streamWatch) {
	w.mu.Lock()
	var conns []*twsConn
	for c := sw.head; c != nil; c = c.watchNext {
		conns = append(conns, c)
	}
	if w.watches[sw.ctx] == sw {
		delete(w.watches, sw.ctx) // a connection under it from now on starts a new watch, ended at once
	}
	w.mu.Unlock()
	restart := shuttingDown(sw.ctx)
	for _, c := range conns {
		if restart {
			c.closeWith(CloseServiceRestart, reasonRestart)
		} else {
			c.closeWith(closeGoingAway, "server stopped")
		}
	}
}
