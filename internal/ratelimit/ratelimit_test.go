package ratelimit

import (
	"context"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	r, err := ParseRate("20/s", 40)
	if err != nil || r != (Rate{Events: 20, Per: time.Second, Burst: 40}) {
		t.Fatalf("ParseRate = %+v, %v", r, err)
	}
	if r, err := ParseRate("off", 0); err != nil || !r.Disabled() {
		t.Fatalf("off = %+v, %v", r, err)
	}
	for _, bad := range []string{"", "20", "x/s", "20/d", "-1/s"} {
		if _, err := ParseRate(bad, 0); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
}

func TestMemoryBurstThenSteadyRate(t *testing.T) {
	m := NewMemory()
	now := time.Unix(1000, 0)
	m.now = func() time.Time { return now }
	rate := Rate{Events: 10, Per: time.Second, Burst: 3}
	ctx := context.Background()
	for i := range 3 {
		if d, _ := m.Allow(ctx, "u", rate); !d.Allowed {
			t.Fatalf("burst event %d denied", i)
		}
	}
	d, _ := m.Allow(ctx, "u", rate)
	if d.Allowed || d.RetryAfter != 100*time.Millisecond {
		t.Fatalf("4th event = %+v, want denied with 100ms retry", d)
	}
	if d, _ := m.Allow(ctx, "other", rate); !d.Allowed {
		t.Fatal("keys must be counted apart")
	}
	now = now.Add(100 * time.Millisecond)
	if d, _ := m.Allow(ctx, "u", rate); !d.Allowed {
		t.Fatalf("after the retry hint: %+v", d)
	}
	if d, _ := m.Allow(ctx, "u", Rate{}); !d.Allowed {
		t.Fatal("a disabled rate must allow")
	}
}
