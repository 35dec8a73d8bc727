package httpapi

import (
	"sync"
	"time"
)

// drainPool runs subscription drains on goroutines that outlive one
// delivery. A goroutine started per delivery costs more than the delivery
// itself once its stack has grown through gqlgen's execution and our
// framing; a worker keeps its grown stack and is handed the next op
// through a channel.
//
// A drain can block (a viewer-dependent selection reads the database; a
// socket whose buffer is full blocks its writer until the write timeout),
// so an op never waits for a busy worker: with every worker busy and the
// pool at its size, the op gets a goroutine of its own, as before. Idle
// workers leave after idleTimeout, so a quiet server keeps none.
type drainPool struct {
	work        chan drainer // capacity max: a send never blocks
	max         int
	idleTimeout time.Duration

	mu sync.Mutex
	// idle counts waiting workers not yet promised an op; an op sent on
	// work was promised to one of them by decrementing it.
	idle    int
	workers int
}

// drainer is a subscription with deliveries to write (*twsOp).
type drainer interface{ drain() }

func newDrainPool(size int, idleTimeout time.Duration) *drainPool {
	return &drainPool{work: make(chan drainer, size), max: size, idleTimeout: idleTimeout}
}

// run has op drained by a worker, or by a goroutine of its own.
func (p *drainPool) run(op drainer) {
	p.mu.Lock()
	switch {
	case p.idle > 0:
		p.idle--
		p.mu.Unlock()
		p.work <- op
	case p.workers < p.max:
		p.workers++
		p.mu.Unlock()
		go p.worker(op)
	default:
		p.mu.Unlock()
		go op.drain()
	}
}

func (p *drainPool) worker(op drainer) {
	timer := time.NewTimer(p.idleTimeout)
	defer timer.Stop()
	for {
		op.drain()
		p.mu.Lock()
		p.idle++
		p.mu.Unlock()
		timer.Reset(p.idleTimeout) // no stale tick to drain since Go 1.23
		select {
		case op = <-p.work:
		case <-timer.C:
			p.mu.Lock()
			if p.idle == 0 {
				// Every idle worker, this one included, has been
				// promised an op: one is on its way.
				p.mu.Unlock()
				op = <-p.work
				continue
			}
			p.idle--
			p.workers--
			p.mu.Unlock()
			return
		}
	}
}
