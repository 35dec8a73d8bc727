package httpapi

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type testDrainer struct {
	ran   chan struct{}
	block chan struct{} // nil: return at once
}

func (d *testDrainer) drain() {
	if d.block != nil {
		<-d.block
	}
	d.ran <- struct{}{}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (p *drainPool) counts() (workers, idle int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.workers, p.idle
}

// TestDrainPoolReusesWorkers: sequential deliveries are drained by the
// same worker, and the worker leaves once idle.
func TestDrainPoolReusesWorkers(t *testing.T) {
	p := newDrainPool(2, 100*time.Millisecond)
	d := &testDrainer{ran: make(chan struct{})}
	for range 50 {
		p.run(d)
		<-d.ran
		waitFor(t, "the worker to be idle again", func() bool { _, idle := p.counts(); return idle == 1 })
	}
	if w, _ := p.counts(); w != 1 {
		t.Fatalf("%d workers for sequential deliveries, want 1", w)
	}
	waitFor(t, "the idle worker to leave", func() bool { w, idle := p.counts(); return w == 0 && idle == 0 })
}

// TestDrainPoolNeverQueuesBehindBusyWorkers: with every worker blocked,
// further ops still run at once, on goroutines of their own.
func TestDrainPoolNeverQueuesBehindBusyWorkers(t *testing.T) {
	p := newDrainPool(2, time.Second)
	block := make(chan struct{})
	blocked := &testDrainer{ran: make(chan struct{}, 2), block: block}
	p.run(blocked)
	p.run(blocked)
	free := &testDrainer{ran: make(chan struct{}, 10)}
	for range 10 {
		p.run(free)
	}
	for i := range 10 {
		select {
		case <-free.ran:
		case <-time.After(5 * time.Second):
			t.Fatalf("op %d waited behind blocked workers", i)
		}
	}
	if w, _ := p.counts(); w != 2 {
		t.Fatalf("%d workers, want the pool's size 2", w)
	}
	close(block)
	<-blocked.ran
	<-blocked.ran
}

// TestDrainPoolConcurrentRunsAndExits: ops handed over while workers time
// out are all drained (none stranded in the queue).
func TestDrainPoolConcurrentRunsAndExits(t *testing.T) {
	p := newDrainPool(4, time.Millisecond)
	var done atomic.Int64
	d := &countingDrainer{n: &done}
	var wg sync.WaitGroup
	const senders, each = 8, 500
	for range senders {
		wg.Go(func() {
			for i := range each {
				p.run(d)
				if i%50 == 0 {
					time.Sleep(2 * time.Millisecond) // let workers time out
				}
			}
		})
	}
	wg.Wait()
	waitFor(t, "every op drained", func() bool { return done.Load() == senders*each })
	waitFor(t, "every worker gone", func() bool { w, idle := p.counts(); return w == 0 && idle == 0 })
}

type countingDrainer struct{ n *atomic.Int64 }

func (d *countingDrainer) drain() { d.n.Add(1) }
