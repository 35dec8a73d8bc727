package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

type closedResult struct {
	Workers  int              `json:"workers"`
	Users    int              `json:"users"`
	Convs    int              `json:"convs"`
	OK       int64            `json:"ok"`
	Failed   int64            `json:"failed"`
	Seconds  float64          `json:"seconds"`
	Rate     float64          `json:"rate_per_s"`
	Latency  LatSummary       `json:"latency"`
	Errors   map[string]int64 `json:"errors,omitempty"`
	AvgEdges float64          `json:"avg_edges,omitempty"` // list: conversations per page
	// list with -list-send-rate: messages sent into the listed
	// conversations during the run (each one makes a worker's next list
	// be computed afresh, whatever the server caches).
	Sends       int64 `json:"sends,omitempty"`
	SendsFailed int64 `json:"sends_failed,omitempty"`
}

const listQuery = `query { conversations(first: 20) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id kind title createdAt updatedAt unreadCount participants { id username displayName avatarUrl } lastMessage { id body createdAt sender { id displayName } } } } } }`

func (e *env) runClosed(ctx context.Context) error {
	cfg := e.cfg
	W := cfg.Workers
	res := &closedResult{Workers: W, Users: cfg.Users, Convs: cfg.Convs}
	e.rep.Closed = res
	// Two users beyond the workers' own take part in every conversation.
	// list users take part in no other scenario's conversations, which
	// would crowd their first page with big groups.
	pool := "main"
	if cfg.Scenario == "list" {
		pool = "list"
	}
	users, err := e.setup.users(ctx, pool, cfg.Users+2)
	if err != nil {
		return fmt.Errorf("setup users: %w", err)
	}
	extraA, extraB := cfg.Users, cfg.Users+1
	var convOf func(w int) string
	var listConvs []groupRec
	switch cfg.Scenario {
	case "sendrate":
		// Worker w sends as user w%Users into conversation w%Convs.
		members := make([][]int, cfg.Convs)
		for u := range cfg.Users {
			members[u%cfg.Convs] = append(members[u%cfg.Convs], u)
		}
		for c := range members {
			members[c] = append(members[c], extraA)
		}
		groups, err := e.setup.groups(ctx, fmt.Sprintf("send:u%d:c%d", cfg.Users, cfg.Convs), users, members, "loadgen send", nil)
		if err != nil {
			return fmt.Errorf("setup conversations: %w", err)
		}
		convOf = func(w int) string { return groups[(w%cfg.Users)%cfg.Convs].ID }
	case "list":
		// Every user owns Convs conversations with the two extra users, each
		// with a message from an extra user (unread) and one of its own.
		var members [][]int
		for u := range cfg.Users {
			for range cfg.Convs {
				members = append(members, []int{u, extraA, extraB})
			}
		}
		var sends atomic.Int64
		var err error
		listConvs, err = e.setup.groups(ctx, fmt.Sprintf("list:u%d:c%d", cfg.Users, cfg.Convs), users, members, "loadgen list",
			func(ctx context.Context, i int, g groupRec) error {
				url := cfg.URLs[i%len(cfg.URLs)]
				if _, err := e.setup.send(ctx, users[extraA], url, g.ID, fmt.Sprintf("hello from A in %d", i)); err != nil {
					return err
				}
				if _, err := e.setup.send(ctx, users[g.Members[0]], url, g.ID, fmt.Sprintf("reply in %d", i)); err != nil {
					return err
				}
				if n := sends.Add(2); n%500 == 0 {
					e.log.Info("list setup", "messages", n)
				}
				return nil
			})
		if err != nil {
			return fmt.Errorf("setup conversations: %w", err)
		}
	}
	e.log.Info("setup done", "users", len(users), "seconds", fmt.Sprintf("%.1f", e.setup.stats.Seconds))

	var (
		lat      syncHist
		errs     errCounter
		ok, fail atomic.Int64
		edges    atomic.Int64
		wg       sync.WaitGroup
		seq      atomic.Int64
	)
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	op := func(w int) error {
		u := users[w%cfg.Users]
		url := cfg.URLs[w%len(cfg.URLs)]
		if cfg.Scenario == "sendrate" {
			n := seq.Add(1)
			return gql(runCtx, e.hc.pick(-1), url, u.Token, sendMutation,
				map[string]any{"c": convOf(w), "b": fmt.Sprintf("sendrate %s %d", e.run, n), "k": fmt.Sprintf("%s-s%d", e.run, n)}, nil)
		}
		var out struct {
			Conversations struct {
				Edges []struct{ Cursor string } `json:"edges"`
			} `json:"conversations"`
		}
		if err := gql(runCtx, e.hc.pick(-1), url, u.Token, listQuery, nil, &out); err != nil {
			return err
		}
		if len(out.Conversations.Edges) == 0 {
			return &opError{Code: "empty", Err: errors.New("no conversations listed")}
		}
		edges.Add(int64(len(out.Conversations.Edges)))
		return nil
	}
	e.beginPhase(ctx)
	stop := e.progress(ctx, cfg.Scenario, func() string {
		return fmt.Sprintf("ok=%d failed=%d errors=%v", ok.Load(), fail.Load(), errs.Snapshot())
	})
	start := time.Now()
	if cfg.Scenario == "list" && cfg.ListSendRate > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.listSends(runCtx, res, users[extraA], listConvs)
		}()
	}
	for w := range W {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for runCtx.Err() == nil {
				t := time.Now()
				err := op(w)
				if runCtx.Err() != nil && err != nil {
					return // cut off by the end of the run: not counted
				}
				lat.Record(time.Since(t))
				if err != nil {
					fail.Add(1)
					errs.Add(errCode(err), 1)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	stop()
	res.Seconds = time.Since(start).Seconds()
	e.endPhase(ctx)
	res.OK, res.Failed = ok.Load(), fail.Load()
	res.Rate = float64(res.OK) / res.Seconds
	res.Latency = lat.Snapshot().Summary()
	res.Errors = errs.Snapshot()
	if res.OK > 0 && cfg.Scenario == "list" {
		res.AvgEdges = float64(edges.Load()) / float64(res.OK)
	}
	e.rep.Throughput = res.Rate
	e.rep.Latency = res.Latency
	e.rep.Errors = mergeCounts(e.rep.Errors, res.Errors)
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return nil
}

// listSends sends cfg.ListSendRate messages a second (open loop) from a
// user in every listed conversation, round the conversations, so that the
// lists of their members change while they are read.
func (e *env) listSends(ctx context.Context, res *closedResult, from userRec, convs []groupRec) {
	var ok, failed atomic.Int64
	defer func() { res.Sends, res.SendsFailed = ok.Load(), failed.Load() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(time.Duration(float64(time.Second) / e.cfg.ListSendRate))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		conv := convs[i%len(convs)].ID
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := gql(ctx, e.hc.pick(-1), e.cfg.URLs[i%len(e.cfg.URLs)], from.Token, sendMutation,
				map[string]any{"c": conv, "b": fmt.Sprintf("list churn %s %d", e.run, i), "k": fmt.Sprintf("%s-l%d", e.run, i)}, nil)
			switch {
			case err == nil:
				ok.Add(1)
			case ctx.Err() == nil:
				failed.Add(1)
			}
		}()
	}
}
