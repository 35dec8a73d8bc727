package viewcache

import (
	"fmt"
	"testing"
)

// BenchmarkGetHit: a cached answer, what every repeated list costs here.
func BenchmarkGetHit(b *testing.B) {
	c, _ := newCache(map[string][]string{"ann": {"c1", "c2"}}, 32<<20)
	fill(c, "ann", "list", string(make([]byte, 10_000)))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Get("ann", "list"); !ok {
			b.Fatal("miss")
		}
	}
}

// BenchmarkChangedNoMembersCached: what every committed change costs the
// service when none of the conversation's members has an answer cached
// (the common case under a stream of messages).
func BenchmarkChangedNoMembersCached(b *testing.B) {
	members := map[string][]string{}
	for i := range 1000 {
		members[fmt.Sprint("v", i)] = []string{fmt.Sprint("c", i)}
	}
	c, _ := newCache(members, 32<<20)
	for i := range 1000 {
		fill(c, fmt.Sprint("v", i), "list", "answer")
	}
	users := []string{"sender"}
	b.ReportAllocs()
	for b.Loop() {
		c.Changed("elsewhere", users)
	}
}
