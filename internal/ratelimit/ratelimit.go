// Package ratelimit counts requests per key with GCRA (the generic cell rate
// algorithm): a steady rate with a burst allowance, one timestamp per key.
// Memory counts within one process; Redis counts across every replica that
// shares the Redis, using the Redis server's clock so replicas' clocks do
// not matter.
package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Rate is Events per Per, with up to Burst at once.
type Rate struct {
	Events int
	Per    time.Duration
	Burst  int
}

// Disabled reports whether the rate lets everything through.
func (r Rate) Disabled() bool { return r.Events <= 0 || r.Per <= 0 }

// interval is the time one event costs.
func (r Rate) interval() time.Duration { return r.Per / time.Duration(r.Events) }

func (r Rate) tolerance() time.Duration { return r.interval() * time.Duration(max(r.Burst, 1)) }

// ParseRate reads "20/s", "300/m" or "1000/h"; "0" or "off" disables.
func ParseRate(s string, burst int) (Rate, error) {
	if s == "0" || s == "off" {
		return Rate{}, nil
	}
	n, unit, ok := strings.Cut(s, "/")
	events, err := strconv.Atoi(n)
	if !ok || err != nil || events <= 0 {
		return Rate{}, fmt.Errorf("rate %q: want N/s, N/m or N/h", s)
	}
	per := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[unit]
	if per == 0 {
		return Rate{}, fmt.Errorf("rate %q: want N/s, N/m or N/h", s)
	}
	if burst <= 0 {
		burst = events
	}
	return Rate{Events: events, Per: per, Burst: burst}, nil
}

// Decision is the answer for one event.
type Decision struct {
	Allowed bool
	// RetryAfter is how long until the event would be allowed.
	RetryAfter time.Duration
}

// Memory is an in-process limiter.
type Memory struct {
	mu    sync.Mutex
	tat   map[string]time.Time // theoretical arrival time per key
	now   func() time.Time
	sweep time.Time
}

// NewMemory returns an empty in-process limiter.
func NewMemory() *Memory {
	return &Memory{tat: map[string]time.Time{}, now: time.Now}
}

// Allow counts one event for key.
func (m *Memory) Allow(_ context.Context, key string, r Rate) (Decision, error) {
	if r.Disabled() {
		return Decision{Allowed: true}, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.forgetIdle(now)
	tat := m.tat[key]
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(r.interval())
	if over := next.Sub(now) - r.tolerance(); over > 0 {
		return Decision{RetryAfter: over}, nil
	}
	m.tat[key] = next
	return Decision{Allowed: true}, nil
}

// forgetIdle drops keys whose bucket has refilled, at most once a minute,
// so the map does not grow with every user ever seen.
func (m *Memory) forgetIdle(now time.Time) {
	if now.Sub(m.sweep) < time.Minute {
		return
	}
	m.sweep = now
	for k, t := range m.tat {
		if t.Before(now) {
			delete(m.tat, k)
		}
	}
}
