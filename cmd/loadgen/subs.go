package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// subsResult is what fanout and connections measure.
type subsResult struct {
	Sockets        int              `json:"sockets"`
	Users          int              `json:"users"`
	Groups         int              `json:"groups"`
	Opened         int              `json:"opened"`
	OpenFailed     int              `json:"open_failed"`
	OpenSeconds    float64          `json:"open_seconds"`
	OpenRate       float64          `json:"open_rate_per_s"` // sockets proven per second, over all workers
	OpenLatency    LatSummary       `json:"open_latency"`
	OpenErrors     map[string]int64 `json:"open_errors,omitempty"`
	RSSPerConnByte float64          `json:"server_rss_per_conn_bytes,omitempty"`
	// HeldRSSPerConnByte: the same growth at the end of -hold (connections),
	// once the burst of opening has been collected.
	HeldRSSPerConnByte float64 `json:"server_rss_per_conn_held_bytes,omitempty"`
	OpenLoadgenCPU     float64 `json:"open_loadgen_cpu_seconds"` // this process and its workers, while opening
	OpenServerCPU      float64 `json:"open_server_cpu_seconds"`  // all replicas, while opening

	Sent          int64      `json:"sent"`
	SentOK        int64      `json:"sent_ok"`
	SendSeconds   float64    `json:"send_seconds"`
	SendRate      float64    `json:"send_rate_per_s"`
	SendLatency   LatSummary `json:"send_latency"` // HTTP sendMessage round trip
	Expected      int64      `json:"expected_deliveries"`
	Delivered     int64      `json:"delivered"`
	DeliveryRate  float64    `json:"delivery_rate_per_s"` // over the send phase plus drain
	E2ELatency    LatSummary `json:"e2e_latency"`         // receive − scheduled send
	DrainShort    int        `json:"drain_short_sockets"` // sockets still missing messages at the drain timeout
	ServerCPUSecs float64    `json:"server_cpu_seconds"`  // all replicas, send phase plus drain
	ServerCPUUsPD float64    `json:"server_cpu_us_per_delivery"`
}

func (e *env) runSubs(ctx context.Context) error {
	cfg := e.cfg
	res := &subsResult{Sockets: cfg.Subscribers, Users: cfg.Users, Groups: cfg.Groups}
	e.rep.Subs = res
	users, groups, err := e.usersInGroups(ctx, "groups", "loadgen group")
	if err != nil {
		return err
	}
	e.log.Info("setup done", "users", len(users), "groups", len(groups), "seconds", e.setup.stats.Seconds)

	if err := e.startWorkers(ctx, cfg.Procs); err != nil {
		return err
	}
	per := make([][]subSpec, len(e.workers))
	subsIn := make([]int, cfg.Groups)
	for j := range cfg.Subscribers {
		u := j % cfg.Users
		g := u % cfg.Groups
		subsIn[g]++
		per[j%len(e.workers)] = append(per[j%len(e.workers)], subSpec{Idx: j, URL: cfg.URLs[j%len(cfg.URLs)], Token: users[u].Token, Conv: groups[g].ID, Group: g})
	}

	// Open every socket.
	before := e.watch.sample(ctx)
	e.log.Info("opening sockets", "sockets", cfg.Subscribers, "workers", len(e.workers), "procs", cfg.Procs, "source_addrs", len(cfg.SourceAddrs))
	stop := e.progress(ctx, "open", func() string {
		p := e.workerProgress(ctx)
		return fmt.Sprintf("open=%d/%d errors=%v", p.Open, cfg.Subscribers, p.Errors)
	})
	openCPU := selfCPU(e.workerPIDs())
	resps, err := e.all(ctx, func(i int) request {
		return request{Op: "open", Open: &openReq{Specs: per[i], Rate: cfg.ConnRate / float64(len(e.workers)), Concurrency: cfg.ConnConcurrency}}
	})
	stop()
	if err != nil {
		return err
	}
	res.OpenLoadgenCPU = selfCPU(e.workerPIDs()) - openCPU
	var openLat Hist
	for _, r := range resps {
		res.Opened += r.Open.Opened
		res.OpenFailed += r.Open.Failed
		res.OpenSeconds = max(res.OpenSeconds, r.Open.Seconds)
		res.OpenErrors = mergeCounts(res.OpenErrors, r.Open.Errors)
		openLat.Merge(r.Open.Lat)
	}
	res.OpenLatency = openLat.Summary()
	afterOpenNow := e.watch.sample(ctx)
	for i := range afterOpenNow {
		res.OpenServerCPU += afterOpenNow[i].cpu() - before[i].cpu()
	}
	if res.OpenSeconds > 0 {
		res.OpenRate = float64(res.Opened) / res.OpenSeconds
	}
	e.log.Info("sockets open", "opened", res.Opened, "failed", res.OpenFailed, "seconds", fmt.Sprintf("%.2f", res.OpenSeconds), "rate", fmt.Sprintf("%.0f/s", res.OpenRate), "errors", res.OpenErrors)
	e.rep.Checks.NotLive += int64(res.OpenFailed)
	time.Sleep(cfg.OpenSettle) // let the server's memory settle, subscriptions start
	afterOpen := e.watch.sample(ctx)
	e.rep.Open = &openSamples{Before: before, After: afterOpen}
	if res.Opened > 0 {
		var d float64
		for i := range afterOpen {
			d += afterOpen[i].rss() - before[i].rss()
		}
		res.RSSPerConnByte = d / float64(res.Opened)
	}

	warm := cfg.Scenario == "fanout"
	if warm {
		// One message per group, received by every socket, proves them all
		// live. A subscription may start a little after its pong, so the
		// warm-up is sent again while sockets lack it.
		need := map[int]int{}
		var short int
		for try := 0; try < 10; try++ {
			for g, gr := range groups {
				need[g] = 1
				if _, err := e.setup.send(ctx, users[gr.Members[0]], cfg.URLs[g%len(cfg.URLs)], gr.ID, messageBody(e.run, g, 0, time.Now())); err != nil {
					return fmt.Errorf("warm-up send: %w", err)
				}
			}
			timeout := time.Second
			if try == 9 {
				timeout = cfg.Drain
			}
			if short, err = e.wait(ctx, need, timeout); err != nil {
				return err
			}
			if short == 0 {
				break
			}
		}
		e.log.Info("warm-up delivered", "short_sockets", short)
		e.rep.Checks.NotLive += int64(short)
	} else {
		e.log.Info("holding idle sockets", "hold", cfg.Hold)
		stop := e.progress(ctx, "hold", func() string {
			p := e.workerProgress(ctx)
			return fmt.Sprintf("open=%d errors=%v", p.Open, p.Errors)
		})
		select {
		case <-time.After(cfg.Hold):
		case <-ctx.Done():
		}
		stop()
		if res.Opened > 0 {
			held := e.watch.sample(ctx)
			var d float64
			for i := range held {
				d += held[i].rss() - before[i].rss()
			}
			res.HeldRSSPerConnByte = d / float64(res.Opened)
		}
	}

	// Send phase: open loop, scheduled times fixed in advance.
	total := cfg.Messages
	if !warm {
		total = cfg.Groups // the proof: one message per group
	} else if total <= 0 {
		total = int(cfg.Rate * cfg.Duration.Seconds())
	}
	perGroup := (total + cfg.Groups - 1) / cfg.Groups
	sent := make(map[int]*groupSent, cfg.Groups)
	for g := range cfg.Groups {
		sent[g] = &groupSent{Issue: make([]int64, perGroup+1), Resp: make([]int64, perGroup+1)}
	}
	var (
		sendLat            syncHist
		sendErrs           errCounter
		nSent, nOK, nFail  atomic.Int64
		wg                 sync.WaitGroup
		inflight           = make(chan struct{}, 2048)
		measuredBeforeSend = e.workerProgress(ctx).Measured
	)
	e.beginPhase(ctx)
	e.log.Info("sending", "messages", total, "rate", cfg.Rate)
	stop = e.progress(ctx, "send", func() string {
		p := e.workerProgress(ctx)
		return fmt.Sprintf("sent=%d ok=%d failed=%d delivered=%d errors=%v", nSent.Load(), nOK.Load(), nFail.Load(), p.Measured-measuredBeforeSend, mergeCounts(sendErrs.Snapshot(), p.Errors))
	})
	start := time.Now()
	for i := 0; i < total && ctx.Err() == nil; i++ {
		sched := start.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
		if d := time.Until(sched); d > 0 {
			time.Sleep(d)
		}
		g, seq := i%cfg.Groups, i/cfg.Groups+1
		gr := groups[g]
		u := users[gr.Members[seq%len(gr.Members)]]
		url := cfg.URLs[i%len(cfg.URLs)]
		inflight <- struct{}{}
		wg.Add(1)
		nSent.Add(1)
		go func() {
			defer func() { <-inflight; wg.Done() }()
			issue := time.Now()
			err := gql(ctx, e.hc.pick(-1), url, u.Token, sendMutation,
				map[string]any{"c": gr.ID, "b": messageBody(e.run, g, seq, sched), "k": fmt.Sprintf("%s-%d-%d", e.run, g, seq)}, nil)
			now := time.Now()
			sendLat.Record(now.Sub(issue))
			if err != nil {
				nFail.Add(1)
				sendErrs.Add(errCode(err), 1)
				return
			}
			nOK.Add(1)
			sent[g].Issue[seq] = issue.UnixNano()
			sent[g].Resp[seq] = now.UnixNano()
		}()
	}
	wg.Wait()
	res.SendSeconds = time.Since(start).Seconds()
	res.Sent, res.SentOK = nSent.Load(), nOK.Load()
	if res.SendSeconds > 0 {
		res.SendRate = float64(res.SentOK) / res.SendSeconds
	}
	res.SendLatency = sendLat.Snapshot().Summary()
	stop()

	// Drain: wait until every socket has every message sent OK.
	need := map[int]int{}
	for g, s := range sent {
		for _, r := range s.Resp {
			if r != 0 {
				need[g]++
			}
		}
		if warm {
			need[g]++
		}
	}
	stop = e.progress(ctx, "drain", func() string {
		p := e.workerProgress(ctx)
		return fmt.Sprintf("delivered=%d errors=%v", p.Measured-measuredBeforeSend, p.Errors)
	})
	res.DrainShort, err = e.wait(ctx, need, cfg.Drain)
	stop()
	if err != nil {
		return err
	}
	wall, serverCPU := e.endPhase(ctx)

	// Verify every delivery.
	vresps, err := e.all(ctx, func(int) request { return request{Op: "verify", Verify: &verifyReq{Groups: sent}} })
	if err != nil {
		return err
	}
	var e2e Hist
	hashes := map[int]map[uint64]int{}
	c := &e.rep.Checks
	errs := sendErrs.Snapshot()
	for _, r := range vresps {
		v := r.Verify
		res.Expected += v.Expected
		res.Delivered += v.Delivered
		c.Lost += v.Lost
		c.Duplicated += v.Duplicated
		c.OutOfOrder += v.OutOfOrder
		c.Extra += v.Extra
		c.Foreign += v.Foreign
		e2e.Merge(v.Lat)
		errs = mergeCounts(errs, v.Errors)
		for g, hs := range v.Hashes {
			if hashes[g] == nil {
				hashes[g] = map[uint64]int{}
			}
			for h, n := range hs {
				hashes[g][h] += n
			}
		}
	}
	for _, hs := range hashes {
		// Sockets that received everything must agree on one order.
		counts := make([]int, 0, len(hs))
		for _, n := range hs {
			counts = append(counts, n)
		}
		sort.Sort(sort.Reverse(sort.IntSlice(counts)))
		for _, n := range counts[1:] {
			c.OrderDisagreements += int64(n)
		}
	}
	e.rep.Errors = mergeCounts(e.rep.Errors, errs)
	e.rep.Errors = mergeCounts(e.rep.Errors, res.OpenErrors)
	res.E2ELatency = e2e.Summary()
	res.ServerCPUSecs = serverCPU
	if res.Delivered > 0 {
		res.ServerCPUUsPD = serverCPU * 1e6 / float64(res.Delivered)
	}
	if wall > 0 {
		res.DeliveryRate = float64(res.Delivered) / wall
	}
	e.rep.Throughput = res.DeliveryRate
	e.rep.Latency = res.E2ELatency

	e.log.Info("closing sockets")
	if _, err := e.all(ctx, func(int) request { return request{Op: "close"} }); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return nil
}

// wait waits until every socket of group g has need[g] distinct messages
// and returns how many are still short at the timeout.
func (e *env) wait(ctx context.Context, need map[int]int, timeout time.Duration) (int, error) {
	resps, err := e.all(ctx, func(int) request { return request{Op: "wait", Wait: &waitReq{Need: need, Timeout: timeout}} })
	if err != nil {
		return 0, err
	}
	short := 0
	for _, r := range resps {
		short += r.Wait.Short
	}
	return short, nil
}

// usersInGroups registers (or reuses) -users users of the main pool and
// puts user u in group u % -groups, one conversation per group, cached
// under shape (with the sizes) in the state file.
func (e *env) usersInGroups(ctx context.Context, shape, title string) ([]userRec, []groupRec, error) {
	cfg := e.cfg
	users, err := e.setup.users(ctx, "main", cfg.Users)
	if err != nil {
		return nil, nil, fmt.Errorf("setup users: %w", err)
	}
	members := make([][]int, cfg.Groups)
	for u := range users {
		members[u%cfg.Groups] = append(members[u%cfg.Groups], u)
	}
	groups, err := e.setup.groups(ctx, fmt.Sprintf("%s:u%d:k%d", shape, cfg.Users, cfg.Groups), users, members, title, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("setup groups: %w", err)
	}
	return users, groups, nil
}
