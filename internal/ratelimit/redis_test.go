package ratelimit

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/internal/testinfra"
)

func TestMain(m *testing.M) { os.Exit(testinfra.Run(m)) }

// Two limiters on one Redis (two replicas) share one budget per key.
func TestRedisSharesBudget(t *testing.T) {
	srv := testinfra.StartRedis(t)
	opt, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	c1, c2 := redis.NewClient(opt), redis.NewClient(opt)
	defer c1.Close()
	defer c2.Close()
	a, b := NewRedis(c1, "test"), NewRedis(c2, "test")
	rate := Rate{Events: 1, Per: time.Minute, Burst: 3}
	ctx := context.Background()
	for i, l := range []*Redis{a, b, a} {
		if d, err := l.Allow(ctx, "u", rate); err != nil || !d.Allowed {
			t.Fatalf("event %d: %+v %v", i, d, err)
		}
	}
	d, err := b.Allow(ctx, "u", rate)
	if err != nil || d.Allowed {
		t.Fatalf("4th event: %+v %v, want denied", d, err)
	}
	if d.RetryAfter <= 0 || d.RetryAfter > time.Minute {
		t.Fatalf("retry hint %v", d.RetryAfter)
	}
	if d, err := a.Allow(ctx, "other", rate); err != nil || !d.Allowed {
		t.Fatalf("other key: %+v %v", d, err)
	}
	// A different prefix (another deployment) has its own budget.
	if d, err := NewRedis(c1, "elsewhere").Allow(ctx, "u", rate); err != nil || !d.Allowed {
		t.Fatalf("other prefix: %+v %v", d, err)
	}
	srv.Stop(t)
	if _, err := a.Allow(ctx, "u", rate); err == nil {
		t.Fatal("no error with Redis down")
	}
}
