package viewcache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// newCache returns a cache whose viewers are members of members[viewer].
func newCache(members map[string][]string, maxBytes int) (*Cache, *clock) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	return New(Config{MaxBytes: maxBytes, TTL: time.Minute, Now: clk.now,
		Memberships: func(_ context.Context, v string) ([]string, error) {
			if v == "broken" {
				return nil, errors.New("database down")
			}
			return members[v], nil
		}}), clk
}

func fill(c *Cache, viewer, key, data string) {
	c.Put(context.Background(), c.Begin(viewer), key, []byte(data))
}

func mustGet(t *testing.T, c *Cache, viewer, key, want string) {
	t.Helper()
	got, ok := c.Get(viewer, key)
	if want == "" {
		if ok {
			t.Fatalf("%s/%s: got %q, want nothing", viewer, key, got)
		}
		return
	}
	if !ok || string(got) != want {
		t.Fatalf("%s/%s: got %q (%v), want %q", viewer, key, got, ok, want)
	}
}

func TestChangeDropsMembersAndNamedUsers(t *testing.T) {
	c, _ := newCache(map[string][]string{"ann": {"c1", "c2"}, "bob": {"c2"}, "cy": {"c3"}}, 1<<20)
	for _, v := range []string{"ann", "bob", "cy"} {
		fill(c, v, "list", v+"'s list")
	}
	c.Changed("c1", nil) // ann's only
	mustGet(t, c, "ann", "list", "")
	mustGet(t, c, "bob", "list", "bob's list")
	fill(c, "ann", "list", "ann's list")
	c.Changed("c2", nil) // both members
	mustGet(t, c, "ann", "list", "")
	mustGet(t, c, "bob", "list", "")
	mustGet(t, c, "cy", "list", "cy's list")
	c.Changed("new", []string{"cy"}) // cy joined a conversation
	mustGet(t, c, "cy", "list", "")
	if s := c.Stats(); s.Bytes != 0 || s.Invalidations != 4 {
		t.Fatalf("stats after dropping everyone: %+v", s)
	}
}

// A change that commits while an answer is computed keeps that answer out,
// if it concerns the viewer: by membership read after the computation, or
// by name.
func TestChangeDuringComputationIsNotStored(t *testing.T) {
	members := map[string][]string{"ann": {"c1"}}
	c, _ := newCache(members, 1<<20)

	tk := c.Begin("ann")
	c.Changed("c1", nil)
	c.Put(context.Background(), tk, "list", []byte("stale"))
	mustGet(t, c, "ann", "list", "")

	tk = c.Begin("ann")
	c.Changed("c9", []string{"ann"}) // ann added to c9 (or left it)
	c.Put(context.Background(), tk, "list", []byte("stale"))
	mustGet(t, c, "ann", "list", "")

	tk = c.Begin("ann")
	c.Changed("other", []string{"bob"})
	c.Put(context.Background(), tk, "list", []byte("fresh"))
	mustGet(t, c, "ann", "list", "fresh")

	// More overlapping changes than are remembered: not stored.
	tk = c.Begin("ann")
	for i := range recentChanges + 1 {
		c.Changed(fmt.Sprint("x", i), nil)
	}
	c.Put(context.Background(), tk, "page", []byte("unknown"))
	mustGet(t, c, "ann", "page", "")
	if c.Stats().Discards != 3 {
		t.Fatalf("discards: %+v", c.Stats())
	}
}

func TestExpiresAfterTTL(t *testing.T) {
	c, clk := newCache(map[string][]string{"ann": {"c1"}}, 1<<20)
	fill(c, "ann", "list", "v1")
	clk.add(59 * time.Second)
	mustGet(t, c, "ann", "list", "v1")
	clk.add(time.Second)
	mustGet(t, c, "ann", "list", "")
}

func TestBoundedBytes(t *testing.T) {
	c, _ := newCache(map[string][]string{}, 20_000)
	data := string(make([]byte, 1000))
	for i := range 100 {
		fill(c, fmt.Sprint("v", i), "list", data)
	}
	s := c.Stats()
	if s.Bytes > 20_000 || s.Bytes < 10_000 {
		t.Fatalf("holds %d bytes, limit 20000", s.Bytes)
	}
	mustGet(t, c, "v0", "list", "")    // oldest went first
	mustGet(t, c, "v99", "list", data) // newest kept
	// An answer bigger than a quarter of the limit is not kept at all.
	fill(c, "big", "list", string(make([]byte, 6000)))
	mustGet(t, c, "big", "list", "")
	// Nor one whose viewer's memberships cannot be read.
	fill(c, "broken", "list", "x")
	mustGet(t, c, "broken", "list", "")
}

func TestConcurrentUse(t *testing.T) {
	c, _ := newCache(map[string][]string{"a": {"c1"}, "b": {"c1", "c2"}}, 1<<16)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				v := []string{"a", "b"}[i%2]
				if _, ok := c.Get(v, "k"); !ok {
					fill(c, v, "k", "data")
				}
				if i%7 == g {
					c.Changed([]string{"c1", "c2"}[i%2], nil)
				}
			}
		}()
	}
	wg.Wait()
	if s := c.Stats(); s.Hits == 0 || s.Stores == 0 || s.Invalidations == 0 {
		t.Fatalf("stats: %+v", s)
	}
}
