// Package viewcache keeps query responses per viewer until something the
// viewer can see changes.
//
// What a viewer reads of conversations (the list, one conversation, its
// messages and receipts) changes only through a committed change to one of
// the viewer's conversations, or to the viewer's membership. The service
// reports every such change before the mutation that made it returns
// (Changed), naming the conversation and the users whose membership
// changed; the cache then drops every response of every member of that
// conversation it holds. A response is stored only if no change that could
// concern its viewer committed while it was computed, so a response never
// outlives the state it was read from, on this replica.
//
// Changes made by other replicas reach this one late or not at all (Redis
// pub/sub loses messages while it reconnects), and writes made outside the
// service are never reported: the server turns the cache on only where it
// sees every write (see config RESPONSE_CACHE), and TTL bounds what an
// unreported write can leave behind.
package viewcache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Cache.
type Config struct {
	// MaxBytes bounds the responses held (and what indexes them); older
	// viewers' responses go first.
	MaxBytes int
	// TTL bounds how long a response is served.
	TTL time.Duration
	// Memberships returns every conversation the viewer takes part in (or
	// ever took part in: more is only more invalidation).
	Memberships func(ctx context.Context, viewer string) ([]string, error)
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
}

// recentChanges is how many changes a computation may overlap and still
// store its response; one overlapping more is not stored.
const recentChanges = 1024

// Cache holds responses per viewer. The zero value is not usable: New.
type Cache struct {
	cfg Config

	mu      sync.Mutex
	seq     uint64 // changes so far
	recent  [recentChanges]change
	viewers map[string]*viewerState
	byConv  map[string]map[*viewerState]struct{}
	bytes   int
	// oldest-first order of viewers, for eviction: a viewer is appended
	// when its state is created and skipped later if it was dropped.
	order []*viewerState

	hits, misses, stores, discards, invalidations, evictions atomic.Int64
}

type change struct {
	conversation string
	users        []string
}

type viewerState struct {
	viewer  string
	convs   []string
	entries map[string]entry
	bytes   int
	dropped bool
}

type entry struct {
	data    []byte
	expires time.Time
}

// New returns an empty cache.
func New(cfg Config) *Cache {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Cache{cfg: cfg, viewers: map[string]*viewerState{}, byConv: map[string]map[*viewerState]struct{}{}}
}

// Get returns the stored response of viewer for key, if it is still valid.
// The bytes are shared: callers must not change them.
func (c *Cache) Get(viewer, key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.viewers[viewer]; v != nil {
		if e, ok := v.entries[key]; ok {
			if c.cfg.Now().Before(e.expires) {
				c.hits.Add(1)
				return e.data, true
			}
			delete(v.entries, key)
			v.bytes -= entrySize(key, e.data)
			c.bytes -= entrySize(key, e.data)
		}
	}
	c.misses.Add(1)
	return nil, false
}

// Ticket marks the start of a computation whose response may be stored.
type Ticket struct {
	viewer string
	seq    uint64
	start  time.Time
}

// Begin returns the ticket to store a response computed from now on.
func (c *Cache) Begin(viewer string) Ticket {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Ticket{viewer: viewer, seq: c.seq, start: c.cfg.Now()}
}

// Put stores data as the response of t's viewer for key, unless a change
// that could concern the viewer committed since Begin. It reads the
// viewer's memberships (after the computation, so that a conversation
// joined meanwhile is in them) and keeps its own copy of nothing: data must
// not change afterwards.
func (c *Cache) Put(ctx context.Context, t Ticket, key string, data []byte) {
	size := entrySize(key, data)
	if size > c.cfg.MaxBytes/4 {
		c.discards.Add(1)
		return
	}
	convs, err := c.cfg.Memberships(ctx, t.viewer)
	if err != nil {
		c.discards.Add(1)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.unchangedSince(t, convs) {
		c.discards.Add(1)
		return
	}
	v := c.viewers[t.viewer]
	if v == nil {
		v = &viewerState{viewer: t.viewer, convs: convs, entries: map[string]entry{}}
		for _, id := range convs {
			v.bytes += len(id) + 48
			set := c.byConv[id]
			if set == nil {
				set = map[*viewerState]struct{}{}
				c.byConv[id] = set
			}
			set[v] = struct{}{}
		}
		c.bytes += v.bytes
		c.viewers[t.viewer] = v
		c.order = append(c.order, v)
	}
	if old, ok := v.entries[key]; ok {
		v.bytes -= entrySize(key, old.data)
		c.bytes -= entrySize(key, old.data)
	}
	v.entries[key] = entry{data: data, expires: t.start.Add(c.cfg.TTL)}
	v.bytes += size
	c.bytes += size
	c.stores.Add(1)
	c.evict()
}

// unchangedSince reports whether no change since t concerns a viewer in
// convs. Called with c.mu held.
func (c *Cache) unchangedSince(t Ticket, convs []string) bool {
	if c.seq-t.seq > recentChanges {
		return false // overlapped more changes than are remembered
	}
	for s := t.seq + 1; s <= c.seq; s++ {
		ch := c.recent[s%recentChanges]
		for _, u := range ch.users {
			if u == t.viewer {
				return false
			}
		}
		for _, id := range convs {
			if id == ch.conversation {
				return false
			}
		}
	}
	return true
}

// Changed reports a committed change to a conversation: every member's
// responses are dropped, and so are those of users, whose membership of it
// changed (added, left, or members of a new conversation).
func (c *Cache) Changed(conversationID string, users []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.recent[c.seq%recentChanges] = change{conversation: conversationID, users: users}
	for v := range c.byConv[conversationID] {
		c.invalidations.Add(int64(len(v.entries)))
		c.drop(v)
	}
	for _, u := range users {
		if v := c.viewers[u]; v != nil {
			c.invalidations.Add(int64(len(v.entries)))
			c.drop(v)
		}
	}
}

// drop forgets a viewer's responses and memberships. Called with c.mu held.
func (c *Cache) drop(v *viewerState) {
	if v.dropped {
		return
	}
	v.dropped = true
	delete(c.viewers, v.viewer)
	for _, id := range v.convs {
		if set := c.byConv[id]; set != nil {
			delete(set, v)
			if len(set) == 0 {
				delete(c.byConv, id)
			}
		}
	}
	c.bytes -= v.bytes
}

// evict drops the oldest viewers until the cache fits. Called with c.mu
// held.
func (c *Cache) evict() {
	i := 0
	for ; i < len(c.order) && (c.bytes > c.cfg.MaxBytes || c.order[i].dropped); i++ {
		if v := c.order[i]; !v.dropped {
			c.evictions.Add(int64(len(v.entries)))
			c.drop(v)
		}
	}
	if i > 0 {
		c.order = append(c.order[:0], c.order[i:]...)
	}
	if len(c.order) > 2*len(c.viewers)+64 {
		live := c.order[:0]
		for _, v := range c.order {
			if !v.dropped {
				live = append(live, v)
			}
		}
		clear(c.order[len(live):])
		c.order = live
	}
}

func entrySize(key string, data []byte) int { return len(key) + len(data) + 64 }

// Stats are the cache's counters since New, and what it holds now.
type Stats struct {
	Hits, Misses, Stores, Discards, Invalidations, Evictions int64
	Bytes                                                    int64
}

// Stats returns the cache's counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	b := c.bytes
	c.mu.Unlock()
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), Stores: c.stores.Load(), Discards: c.discards.Load(),
		Invalidations: c.invalidations.Load(), Evictions: c.evictions.Load(), Bytes: int64(b)}
}
