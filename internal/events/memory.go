package events

import (
	"context"
	"sync"
)

// MemoryBroker is the single-process Broker: Publish calls every subscriber
// directly.
type MemoryBroker struct {
	mu       sync.RWMutex
	next     int
	handlers map[int]func(Event)
}

// NewMemoryBroker returns an empty in-process broker.
func NewMemoryBroker() *MemoryBroker {
	return &MemoryBroker{handlers: map[int]func(Event){}}
}

// Publish implements Broker.
func (b *MemoryBroker) Publish(_ context.Context, e Event) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, h := range b.handlers {
		h(e)
	}
	return nil
}

// Subscribe implements Broker; it returns at once and unsubscribes when ctx ends.
func (b *MemoryBroker) Subscribe(ctx context.Context, deliver func(Event)) error {
	b.mu.Lock()
	id := b.next
	b.next++
	b.handlers[id] = deliver
	b.mu.Unlock()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		delete(b.handlers, id)
		b.mu.Unlock()
	})
	return nil
}
