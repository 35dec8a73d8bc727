package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"
)

// workerEnv, set to 1, makes the binary a worker process: it reads
// requests from stdin and writes responses to stdout, one JSON value each.
const workerEnv = "PARLEY_LOADGEN_WORKER"

type request struct {
	ID     int        `json:"id"`
	Op     string     `json:"op"` // init, open, progress, wait, verify, close, churn
	Init   *initReq   `json:"init,omitempty"`
	Open   *openReq   `json:"open,omitempty"`
	Wait   *waitReq   `json:"wait,omitempty"`
	Verify *verifyReq `json:"verify,omitempty"`
	Churn  *churnReq  `json:"churn,omitempty"`
}

type response struct {
	ID       int           `json:"id"`
	Err      string        `json:"err,omitempty"`
	Open     *openResp     `json:"open,omitempty"`
	Progress *progressResp `json:"progress,omitempty"`
	Wait     *waitResp     `json:"wait,omitempty"`
	Verify   *verifyResp   `json:"verify,omitempty"`
	Churn    *churnResp    `json:"churn,omitempty"`
}

type initReq struct {
	Run         string   `json:"run"`
	SourceAddrs []string `json:"src"`
}

type openReq struct {
	Specs       []subSpec `json:"specs"`
	Rate        float64   `json:"rate"` // sockets/s, 0: as fast as Concurrency allows
	Concurrency int       `json:"conc"`
}

type openResp struct {
	Opened  int              `json:"opened"`
	Failed  int              `json:"failed"`
	Seconds float64          `json:"seconds"` // from the first dial to the last socket proven
	Lat     *Hist            `json:"lat"`     // dial → ack → subscribe → pong
	Errors  map[string]int64 `json:"errors,omitempty"`
}

type progressResp struct {
	Open     int              `json:"open"`
	Cycles   int64            `json:"cycles"`
	CyclesOK int64            `json:"cycles_ok"`
	Events   int64            `json:"events"`
	Measured int64            `json:"measured"`
	Errors   map[string]int64 `json:"errors,omitempty"`
}

type waitReq struct {
	Need    map[int]int   `json:"need"` // group → distinct seqs every socket must have
	Timeout time.Duration `json:"timeout"`
}

type waitResp struct {
	Short int `json:"short"` // sockets still short of Need at the timeout
}

// groupSent is what the coordinator knows about one group's sends:
// indexed by seq (1…); Resp 0 means the send failed.
type groupSent struct {
	Issue []int64 `json:"issue"`
	Resp  []int64 `json:"resp"`
}

type verifyReq struct {
	Groups map[int]*groupSent `json:"groups"`
}

type verifyResp struct {
	Expected   int64                  `json:"expected"`     // deliveries that had to arrive
	Delivered  int64                  `json:"delivered"`    // of those, received
	Lost       int64                  `json:"lost"`         // sent OK, not received
	Duplicated int64                  `json:"duplicated"`   // received twice on one socket
	OutOfOrder int64                  `json:"out_of_order"` // received after a message sent after it completed
	Extra      int64                  `json:"extra"`        // received though the send failed
	Foreign    int64                  `json:"foreign"`      // events not of this run
	Hashes     map[int]map[uint64]int `json:"hashes"`       // group → order digest → sockets (complete sockets only)
	Lat        *Hist                  `json:"lat"`
	Errors     map[string]int64       `json:"errors,omitempty"`
}

type churnReq struct {
	Specs    []subSpec     `json:"specs"`
	URLs     []string      `json:"urls"` // replicas, round-robin per attempt
	Rate     float64       `json:"rate"`
	Duration time.Duration `json:"duration"`
}

type churnResp struct {
	Attempts int64            `json:"attempts"`
	OK       int64            `json:"ok"`
	Lat      *Hist            `json:"lat"` // dial → first event
	Errors   map[string]int64 `json:"errors,omitempty"`
	Seconds  float64          `json:"seconds"`
}

// worker holds sockets for the coordinator.
type worker struct {
	ctx  context.Context
	run  string
	hc   *httpClients
	sink *sink

	mu      sync.Mutex
	subs    []*sub
	opening atomic.Int64 // sockets proven in the open running now
	cycles  atomic.Int64 // churn cycles finished
	cycleOK atomic.Int64 // of those, received their event
}

func (w *worker) handle(ctx context.Context, req request) response {
	resp := response{ID: req.ID}
	var err error
	switch req.Op {
	case "init":
		w.run = req.Init.Run
		w.hc = newHTTPClients(req.Init.SourceAddrs, 4)
		w.sink = &sink{run: req.Init.Run}
	case "open":
		resp.Open = w.open(ctx, req.Open)
	case "progress":
		w.mu.Lock()
		n := len(w.subs)
		w.mu.Unlock()
		resp.Progress = &progressResp{Open: n + int(w.opening.Load()), Events: w.sink.events.Load(), Measured: w.sink.measured.Load(), Errors: w.sink.errs.Snapshot(),
			Cycles: w.cycles.Load(), CyclesOK: w.cycleOK.Load()}
	case "wait":
		resp.Wait = w.wait(ctx, req.Wait)
	case "verify":
		resp.Verify = w.verify(req.Verify)
	case "close":
		w.closeAll()
	case "churn":
		resp.Churn = w.churn(ctx, req.Churn)
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	if err != nil {
		resp.Err = err.Error()
	}
	return resp
}

func (w *worker) open(ctx context.Context, req *openReq) *openResp {
	conc := req.Concurrency
	if conc <= 0 {
		conc = 256
	}
	var (
		lat    syncHist
		errs   errCounter
		mu     sync.Mutex
		opened []*sub
		wg     sync.WaitGroup
	)
	sem := make(chan struct{}, conc)
	start := time.Now()
	for i, spec := range req.Specs {
		if req.Rate > 0 {
			if d := time.Until(start.Add(time.Duration(float64(i) / req.Rate * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s := newSub(spec, w.sink)
			t := time.Now()
			if err := s.open(w.ctx, w.hc.pick(spec.Idx)); err != nil {
				errs.Add(errCode(err), 1)
				return
			}
			lat.Record(time.Since(t))
			w.opening.Add(1)
			go s.loop(w.ctx)
			mu.Lock()
			opened = append(opened, s)
			mu.Unlock()
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	w.mu.Lock()
	w.subs = append(w.subs, opened...)
	w.opening.Add(-int64(len(opened)))
	w.mu.Unlock()
	return &openResp{Opened: len(opened), Failed: len(req.Specs) - len(opened), Seconds: secs, Lat: lat.Snapshot(), Errors: errs.Snapshot()}
}

func (w *worker) wait(ctx context.Context, req *waitReq) *waitResp {
	deadline := time.Now().Add(req.Timeout)
	w.mu.Lock()
	pending := append([]*sub(nil), w.subs...)
	w.mu.Unlock()
	for {
		rest := pending[:0]
		for _, s := range pending {
			if int(s.distinct.Load()) < req.Need[s.spec.Group] {
				rest = append(rest, s)
			}
		}
		pending = rest
		if len(pending) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return &waitResp{Short: len(pending)}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (w *worker) verify(req *verifyReq) *verifyResp {
	r := &verifyResp{Hashes: map[int]map[uint64]int{}, Foreign: w.sink.foreign.Load(), Errors: w.sink.errs.Snapshot(), Lat: w.sink.lat.Snapshot()}
	w.mu.Lock()
	subs := append([]*sub(nil), w.subs...)
	w.mu.Unlock()
	for _, s := range subs {
		g := req.Groups[s.spec.Group]
		if g == nil {
			continue
		}
		s.mu.Lock()
		r.Duplicated += int64(s.dups)
		lost := int64(0)
		for seq := 1; seq < len(g.Resp); seq++ {
			if g.Resp[seq] == 0 {
				if s.has(seq) {
					r.Extra++
				}
				continue
			}
			r.Expected++
			if s.has(seq) {
				r.Delivered++
			} else {
				lost++
			}
		}
		r.Lost += lost
		// Causal order: a message whose send completed before another's
		// send began must arrive first.
		var maxIssue int64
		for _, q := range s.seqs {
			if int(q) >= len(g.Resp) || g.Resp[q] == 0 {
				continue
			}
			if g.Resp[q] < maxIssue {
				r.OutOfOrder++
			}
			maxIssue = max(maxIssue, g.Issue[q])
		}
		if lost == 0 {
			if r.Hashes[s.spec.Group] == nil {
				r.Hashes[s.spec.Group] = map[uint64]int{}
			}
			r.Hashes[s.spec.Group][orderHash(s.seqs)]++
		}
		s.mu.Unlock()
	}
	return r
}

func (w *worker) closeAll() {
	w.mu.Lock()
	subs := w.subs
	w.subs = nil
	w.mu.Unlock()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 512)
	for _, s := range subs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s.close()
		}()
	}
	wg.Wait()
}

// churn connects, subscribes with a resume cursor, waits for the first
// (replayed) event and disconnects, Rate times a second for Duration.
func (w *worker) churn(ctx context.Context, req *churnReq) *churnResp {
	var (
		lat  syncHist
		errs errCounter
		wg   sync.WaitGroup
		ok   int64
		mu   sync.Mutex
		n    int64
	)
	start := time.Now()
	end := start.Add(req.Duration)
	for i := 0; ; i++ {
		at := start.Add(time.Duration(float64(i) / req.Rate * float64(time.Second)))
		if !at.Before(end) || ctx.Err() != nil {
			break
		}
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		n++
		spec := req.Specs[i%len(req.Specs)]
		spec.Idx = i
		if len(req.URLs) > 0 {
			spec.URL = req.URLs[i%len(req.URLs)]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := newSub(spec, &sink{run: w.run})
			err := s.open(w.ctx, w.hc.pick(i))
			if err == nil {
				go s.loop(w.ctx)
				select {
				case <-s.first:
				case <-s.done:
					err = &opError{Code: "closed", Err: errors.New("socket ended before the first event")}
				case <-time.After(10 * time.Second):
					err = &opError{Code: "timeout", Err: errors.New("no event within 10s")}
				}
				s.close()
			}
			w.cycles.Add(1)
			if err != nil {
				errs.Add(errCode(err), 1)
				return
			}
			w.cycleOK.Add(1)
			lat.Record(time.Since(at))
			mu.Lock()
			ok++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return &churnResp{Attempts: n, OK: ok, Lat: lat.Snapshot(), Errors: errs.Snapshot(), Seconds: time.Since(start).Seconds()}
}

// workerMain serves requests on stdin until it closes.
func workerMain() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &worker{ctx: ctx}
	dec := json.NewDecoder(bufio.NewReaderSize(os.Stdin, 1<<20))
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	var encMu sync.Mutex
	var wg sync.WaitGroup
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("worker: read request: %w", err)
		}
		handle := func() {
			resp := w.handle(ctx, req)
			encMu.Lock()
			defer encMu.Unlock()
			if err := enc.Encode(resp); err == nil {
				_ = out.Flush()
			}
		}
		if req.Op == "init" {
			handle() // everything else needs it done
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); handle() }()
	}
	wg.Wait()
	w.closeAll()
	return nil
}

// handle is a worker, in this process or another.
type handle interface {
	call(ctx context.Context, req request) (response, error)
	pid() int // 0 when in-process
	stop() error
}

type localHandle struct{ w *worker }

func (l *localHandle) call(ctx context.Context, req request) (response, error) {
	r := l.w.handle(ctx, req)
	if r.Err != "" {
		return r, errors.New(r.Err)
	}
	return r, nil
}
func (l *localHandle) pid() int    { return 0 }
func (l *localHandle) stop() error { l.w.closeAll(); return nil }

type remoteHandle struct {
	cmd *exec.Cmd
	in  io.WriteCloser

	mu      sync.Mutex
	enc     *json.Encoder
	nextID  int
	pending map[int]chan response
	dead    error
}

func startRemote(ctx context.Context) (*remoteHandle, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), workerEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("worker stdin: %w", err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("worker stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	r := &remoteHandle{cmd: cmd, in: in, enc: json.NewEncoder(in), pending: map[int]chan response{}}
	go r.read(outp)
	return r, nil
}

func (r *remoteHandle) read(outp io.Reader) {
	dec := json.NewDecoder(bufio.NewReaderSize(outp, 1<<20))
	for {
		var resp response
		if err := dec.Decode(&resp); err != nil {
			r.mu.Lock()
			r.dead = fmt.Errorf("worker %d gone: %w", r.cmd.Process.Pid, err)
			for id, ch := range r.pending {
				close(ch)
				delete(r.pending, id)
			}
			r.mu.Unlock()
			return
		}
		r.mu.Lock()
		ch := r.pending[resp.ID]
		delete(r.pending, resp.ID)
		r.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
}

func (r *remoteHandle) call(ctx context.Context, req request) (response, error) {
	ch := make(chan response, 1)
	r.mu.Lock()
	if r.dead != nil {
		r.mu.Unlock()
		return response{}, r.dead
	}
	r.nextID++
	req.ID = r.nextID
	r.pending[req.ID] = ch
	err := r.enc.Encode(req)
	r.mu.Unlock()
	if err != nil {
		return response{}, fmt.Errorf("send to worker: %w", err)
	}
	select {
	case resp, ok := <-ch:
		if !ok {
			r.mu.Lock()
			defer r.mu.Unlock()
			return response{}, r.dead
		}
		if resp.Err != "" {
			return resp, errors.New(resp.Err)
		}
		return resp, nil
	case <-ctx.Done():
		r.mu.Lock()
		delete(r.pending, req.ID)
		r.mu.Unlock()
		return response{}, ctx.Err()
	}
}

func (r *remoteHandle) pid() int { return r.cmd.Process.Pid }

func (r *remoteHandle) stop() error {
	_ = r.in.Close()
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		return <-done
	}
}
