package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

type churnResult struct {
	Users      int              `json:"users"`
	Groups     int              `json:"groups"`
	Attempts   int64            `json:"attempts"`
	OK         int64            `json:"ok"`
	Seconds    float64          `json:"seconds"`
	Rate       float64          `json:"rate_per_s"` // completed cycles per second
	Latency    LatSummary       `json:"latency"`    // scheduled start → first event
	Errors     map[string]int64 `json:"errors,omitempty"`
	Before     []serverSample   `json:"before"`
	After      []serverSample   `json:"after"`
	SettleSecs float64          `json:"settle_seconds"`
	Baseline   bool             `json:"back_to_baseline"` // goroutines and heap back near where they were
}

func (e *env) runChurn(ctx context.Context) error {
	cfg := e.cfg
	res := &churnResult{Users: cfg.Users, Groups: cfg.Groups}
	e.rep.Churn = res
	// Each group gets two messages and keeps the first one's cursor, so a
	// subscription resuming after it gets the second at once, from the database.
	users, groups, err := e.usersInGroups(ctx, "churn", "loadgen churn")
	if err != nil {
		return err
	}
	for g := range groups {
		if groups[g].Cursor != "" {
			continue
		}
		if groups[g].Cursor, err = e.cursorFor(ctx, users[groups[g].Members[0]], groups[g].ID); err != nil {
			return fmt.Errorf("setup cursor: %w", err)
		}
	}
	if err := e.setup.save(); err != nil {
		return err
	}
	specs := make([]subSpec, len(users))
	for u := range users {
		g := u % cfg.Groups
		specs[u] = subSpec{URL: cfg.URLs[0], Token: users[u].Token, Conv: groups[g].ID, Group: g, After: groups[g].Cursor}
	}
	if err := e.startWorkers(ctx, cfg.Procs); err != nil {
		return err
	}
	time.Sleep(time.Second)
	res.Before = e.watch.sample(ctx)
	e.beginPhase(ctx)
	e.log.Info("churning", "rate", cfg.Rate, "duration", cfg.Duration, "workers", len(e.workers))
	start := time.Now()
	stop := e.progress(ctx, "churn", func() string {
		p := e.workerProgress(ctx)
		return fmt.Sprintf("cycles=%d ok=%d rate=%.0f/s", p.Cycles, p.CyclesOK, float64(p.Cycles)/time.Since(start).Seconds())
	})
	resps, err := e.all(ctx, func(int) request {
		return request{Op: "churn", Churn: &churnReq{Specs: specs, URLs: cfg.URLs, Rate: cfg.Rate / float64(len(e.workers)), Duration: cfg.Duration}}
	})
	stop()
	if err != nil {
		return err
	}
	var lat Hist
	for _, r := range resps {
		res.Attempts += r.Churn.Attempts
		res.OK += r.Churn.OK
		res.Seconds = max(res.Seconds, r.Churn.Seconds)
		res.Errors = mergeCounts(res.Errors, r.Churn.Errors)
		lat.Merge(r.Churn.Lat)
	}
	res.Latency = lat.Summary()
	if res.Seconds > 0 {
		res.Rate = float64(res.OK) / res.Seconds
	}
	e.endPhase(ctx)
	e.rep.Throughput = res.Rate
	e.rep.Latency = res.Latency
	e.rep.Errors = mergeCounts(e.rep.Errors, res.Errors)
	e.rep.Checks.NotLive += res.Attempts - res.OK

	// Settle: wait for goroutines to come back to where they were.
	settleStart := time.Now()
	for {
		res.After = e.watch.sample(ctx)
		res.Baseline = backToBaseline(res.Before, res.After)
		if res.Baseline || time.Since(settleStart) > cfg.Settle || ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	res.SettleSecs = time.Since(settleStart).Seconds()
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return nil
}

// backToBaseline: goroutines within 2 % (at least 10) of before and the
// in-use heap within 25 % + 8 MB, on every replica that serves /metrics.
func backToBaseline(before, after []serverSample) bool {
	for i := range before {
		b, a := before[i].Metrics, after[i].Metrics
		if !b.OK || !a.OK {
			continue
		}
		if a.Goroutines > b.Goroutines+max(10, 0.02*b.Goroutines) {
			return false
		}
		if a.HeapInuse > b.HeapInuse*1.25+8<<20 {
			return false
		}
	}
	return true
}

// cursorFor posts two messages to conv and returns the first one's event
// cursor, read from a subscription.
func (e *env) cursorFor(ctx context.Context, u userRec, conv string) (string, error) {
	s := newSub(subSpec{URL: e.cfg.URLs[0], Token: u.Token, Conv: conv}, &sink{run: e.run})
	if err := s.open(ctx, e.hc.pick(-1)); err != nil {
		return "", err
	}
	go s.loop(ctx)
	defer s.close()
	// The protocol does not say when a subscription is live: send until
	// one event arrives.
	for try := 0; ; try++ {
		if _, err := e.setup.send(ctx, u, e.cfg.URLs[0], conv, "churn resume point"); err != nil {
			return "", err
		}
		select {
		case <-s.first:
		case <-time.After(500 * time.Millisecond):
			if try < 20 {
				continue
			}
			return "", fmt.Errorf("no event after %d sends (errors %v)", try+1, s.sink.errs.Snapshot())
		}
		break
	}
	s.mu.Lock()
	cur := s.cursor
	s.mu.Unlock()
	if _, err := e.setup.send(ctx, u, e.cfg.URLs[0], conv, "churn replayed message"); err != nil {
		return "", err
	}
	return cur, nil
}
