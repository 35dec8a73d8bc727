package chat

import (
	"context"
	"sync"
	"time"

	"github.com/parley-chat/parley/ent"
)

// sendBatcher commits concurrent SQLite sends together: one transaction
// (BEGIN … COMMIT, the WAL frames of the pages they share written once)
// for every send that queued while the previous batch held the write lock.
// There is no goroutine of its own: the first sender to find no batch
// running leads, runs one batch (its own send first) and hands the lead to
// the oldest waiter, so no request waits for more than the batches queued
// ahead of it. SQLite has one writer at a time anyway; this makes each of
// its turns count for more sends instead of handing the lock over, through
// Go's scheduler, after every one.
type sendBatcher struct {
	mu      sync.Mutex
	queue   []*sendReq
	leading bool
}

// maxSendBatch bounds one transaction's sends.
const maxSendBatch = 64

type sendReq struct {
	viewer string
	in     SendInput
	body   string
	m      *ent.Message
	err    error
	done   chan bool // true: lead; false: finished (err and m set)
}

// sendSQLite stores the new message m as sendTx does, batched with
// concurrent sends.
func (s *Service) sendSQLite(ctx context.Context, viewer string, in SendInput, body string, m *ent.Message) error {
	r := &sendReq{viewer: viewer, in: in, body: body, m: m, done: make(chan bool, 1)}
	b := &s.sends
	b.mu.Lock()
	b.queue = append(b.queue, r)
	lead := !b.leading
	b.leading = true
	b.mu.Unlock()
	if !lead && !<-r.done {
		return r.err
	}
	// Leading: r is still queued (it was first, or it was handed the lead
	// as the oldest waiter).
	b.mu.Lock()
	n := min(len(b.queue), maxSendBatch)
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	b.mu.Unlock()
	s.runSendBatch(ctx, batch)
	b.mu.Lock()
	if len(b.queue) > 0 {
		next := b.queue[0]
		b.mu.Unlock()
		next.done <- true
	} else {
		b.leading = false
		b.mu.Unlock()
	}
	for _, o := range batch {
		if o != r {
			o.done <- false
		}
	}
	return r.err
}

// runSendBatch stores batch in one transaction. A send into a conversation
// its sender is not in changes nothing and fails alone; any other failure
// (a clientMessageId taken meanwhile, a database error) rolls the batch
// back, and each send is then tried in a transaction of its own, so one
// send's error is never another's.
func (s *Service) runSendBatch(ctx context.Context, batch []*sendReq) {
	// The leader's request may end; the others' must not fail with it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if len(batch) > 1 {
		saved := make([]ent.Message, len(batch))
		for i, r := range batch {
			saved[i] = *r.m
		}
		err := s.withTx(ctx, func(tx *ent.Tx) error {
			for _, r := range batch {
				r.err = s.sendTx(ctx, tx, r.viewer, r.in, r.body, nil, r.m)
				if r.err != nil && r.err != errNotMember {
					return r.err
				}
			}
			return nil
		})
		if err == nil {
			return
		}
		for i, r := range batch {
			*r.m, r.err = saved[i], nil
		}
	}
	for _, r := range batch {
		r.err = s.withTx(ctx, func(tx *ent.Tx) error {
			return s.sendTx(ctx, tx, r.viewer, r.in, r.body, nil, r.m)
		})
	}
}
