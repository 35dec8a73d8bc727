package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"syscall"
	"time"
)

// env is one run's shared state in the coordinator.
type env struct {
	cfg     config
	log     *slog.Logger
	run     string // random run ID, in every message body
	hc      *httpClients
	watch   *serverWatch
	setup   *setup
	rep     *Report
	workers []handle
	stderr  io.Writer

	phaseStart    time.Time
	phaseCPU      float64
	phaseServers  []serverSample
	stoppedWorker bool
}

// startWorkers starts n worker processes, or one in-process worker for 0.
func (e *env) startWorkers(ctx context.Context, n int) error {
	if n == 0 {
		w := &worker{ctx: ctx}
		e.workers = []handle{&localHandle{w: w}}
	} else {
		for range n {
			h, err := startRemote(ctx)
			if err != nil {
				return err
			}
			e.workers = append(e.workers, h)
		}
	}
	_, err := e.all(ctx, func(int) request {
		return request{Op: "init", Init: &initReq{Run: e.run, SourceAddrs: e.cfg.SourceAddrs}}
	})
	return err
}

func (e *env) workerPIDs() []int {
	var out []int
	for _, h := range e.workers {
		if p := h.pid(); p > 0 {
			out = append(out, p)
		}
	}
	return out
}

func (e *env) stopWorkers() {
	if e.stoppedWorker {
		return
	}
	e.stoppedWorker = true
	for _, h := range e.workers {
		if err := h.stop(); err != nil {
			e.log.Warn("worker stop", "err", err)
		}
	}
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	lg := &e.rep.Loadgen
	lg.Procs = len(e.workerPIDs())
	lg.RunCPUSeconds = tv(self.Utime) + tv(self.Stime) + tv(children.Utime) + tv(children.Stime)
	lg.RunWallSeconds = time.Since(e.rep.Start).Seconds()
	if lg.RunWallSeconds > 0 {
		lg.RunCPUShare = lg.RunCPUSeconds / lg.RunWallSeconds
	}
}

// all sends one request to every worker at once and collects the answers.
func (e *env) all(ctx context.Context, mk func(i int) request) ([]response, error) {
	out := make([]response, len(e.workers))
	errs := make([]error, len(e.workers))
	var wg sync.WaitGroup
	for i, h := range e.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = h.call(ctx, mk(i))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return out, fmt.Errorf("worker %d: %w", i, err)
		}
	}
	return out, nil
}

// beginPhase marks the start of the measured phase: server samples and
// the load generator's own CPU.
func (e *env) beginPhase(ctx context.Context) {
	e.phaseServers = e.watch.sample(ctx)
	e.phaseCPU = selfCPU(e.workerPIDs())
	e.phaseStart = time.Now()
}

// endPhase closes the measured phase and returns the servers' CPU seconds
// spent in it.
func (e *env) endPhase(ctx context.Context) (wall float64, serverCPU float64) {
	wall = time.Since(e.phaseStart).Seconds()
	cpu := selfCPU(e.workerPIDs()) - e.phaseCPU
	end := e.watch.sample(ctx)
	lg := &e.rep.Loadgen
	lg.CPUSeconds, lg.WallSeconds = cpu, wall
	if wall > 0 {
		lg.CPUShare = cpu / wall
	}
	for i := range end {
		serverCPU += end[i].cpu() - e.phaseServers[i].cpu()
	}
	e.rep.Servers = make([]serverReport, len(end))
	peaks := e.watch.peaks()
	for i := range end {
		pid := 0
		if i < len(e.cfg.ServerPIDs) {
			pid = e.cfg.ServerPIDs[i]
		}
		e.rep.Servers[i] = serverReport{URL: e.cfg.URLs[i], PID: pid, PhaseStart: e.phaseServers[i], PhaseEnd: end[i],
			CPUSeconds: end[i].cpu() - e.phaseServers[i].cpu(), PeakRSS: peaks[i]}
		if wall > 0 {
			e.rep.Servers[i].CPUShare = e.rep.Servers[i].CPUSeconds / wall
		}
	}
	return wall, serverCPU
}

// progress prints line() every -progress until stop is called.
func (e *env) progress(ctx context.Context, phase string, line func() string) (stop func()) {
	if e.cfg.Progress <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		t := time.NewTicker(e.cfg.Progress)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			srv := ""
			for i, s := range e.watch.sample(ctx) {
				srv += fmt.Sprintf(" srv%d[rss=%.0fMB cpu=%.1fs gor=%.0f ws=%.0f]", i, s.rss()/1e6, s.cpu(), s.Metrics.Goroutines, s.Metrics.WSConnections)
			}
			l := line()
			if ctx.Err() != nil {
				return // the phase ended while sampling: the figures are cut short
			}
			fmt.Fprintf(e.stderr, "%s +%.0fs %s%s\n", phase, time.Since(start).Seconds(), l, srv)
		}
	}()
	return func() { cancel(); <-done }
}

// workerProgress sums the workers' counters.
func (e *env) workerProgress(ctx context.Context) progressResp {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var sum progressResp
	resps, _ := e.all(ctx, func(int) request { return request{Op: "progress"} })
	for _, r := range resps {
		if r.Progress == nil {
			continue
		}
		sum.Open += r.Progress.Open
		sum.Cycles += r.Progress.Cycles
		sum.CyclesOK += r.Progress.CyclesOK
		sum.Events += r.Progress.Events
		sum.Measured += r.Progress.Measured
		sum.Errors = mergeCounts(sum.Errors, r.Progress.Errors)
	}
	return sum
}
