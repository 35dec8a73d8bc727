package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/apptest"
	"github.com/parley-chat/parley/internal/testinfra"
)

func TestMain(m *testing.M) {
	// writefloor re-executes this binary as its sending process.
	if os.Getenv(floorEnv) != "" {
		if err := floorMain(); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	// -procs re-executes this binary as a worker process.
	if os.Getenv(workerEnv) == "1" {
		if err := workerMain(); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestScenarios runs every scenario briefly against a real replica through
// the same code path as the command line.
func TestScenarios(t *testing.T) {
	t.Parallel()
	srv := apptest.Start(t)
	state := filepath.Join(t.TempDir(), "state.json")
	base := []string{"-url", srv.URL, "-state", state, "-progress", "500ms", "-open-settle", "100ms"}
	cases := []struct {
		name string
		args []string
		min  float64 // least throughput
	}{
		{"fanout", []string{"-scenario", "fanout", "-subscribers", "40", "-sockets-per-user", "8", "-groups", "4", "-rate", "40", "-duration", "1s", "-drain", "5s"}, 1},
		{"fanout-procs", []string{"-scenario", "fanout", "-subscribers", "40", "-sockets-per-user", "8", "-groups", "2", "-rate", "20", "-duration", "1s", "-procs", "2", "-source-addrs", "127.0.0.1-127.0.0.3"}, 1},
		{"connections", []string{"-scenario", "connections", "-conns", "60", "-sockets-per-user", "20", "-groups", "3", "-hold", "200ms"}, 1},
		{"churn", []string{"-scenario", "churn", "-users", "2", "-groups", "2", "-rate", "20", "-duration", "1s", "-settle", "10s"}, 1},
		{"sendrate", []string{"-scenario", "sendrate", "-workers", "3", "-users", "2", "-duration", "1s"}, 1},
		{"list", []string{"-scenario", "list", "-workers", "2", "-convs", "21", "-duration", "1s"}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var out, errOut bytes.Buffer
			jsonPath := filepath.Join(t.TempDir(), "out.json")
			rep, err := run(ctx, append(append(tc.args, base...), "-json", jsonPath), &out, &errOut)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, errOut.String())
			}
			t.Log("\n" + out.String())
			c := rep.Checks
			if c.Lost != 0 || c.Duplicated != 0 || c.OutOfOrder != 0 || c.OrderDisagreements != 0 || c.NotLive != 0 || !rep.Pass {
				t.Errorf("checks failed: %+v pass=%v\n%s", c, rep.Pass, errOut.String())
			}
			if rep.Throughput < tc.min {
				t.Errorf("throughput %.1f/s, want at least %.1f", rep.Throughput, tc.min)
			}
			if len(rep.Errors) != 0 {
				t.Errorf("errors: %v", rep.Errors)
			}
			if rep.Subs != nil && rep.Subs.Delivered != rep.Subs.Expected {
				t.Errorf("delivered %d of %d", rep.Subs.Delivered, rep.Subs.Expected)
			}
			if tc.name == "connections" && (rep.Subs.HeldRSSPerConnByte == 0 || !bytes.Contains(out.Bytes(), []byte("at the end of the hold"))) {
				t.Errorf("no RSS per socket at the end of the hold: %+v", rep.Subs)
			}
			if _, err := os.Stat(jsonPath); err != nil {
				t.Errorf("no JSON report: %v", err)
			}
		})
	}
}

// TestTwoReplicas spreads sockets and senders over two replicas bridged by
// Redis: every delivery crosses or stays, and all must arrive.
func TestTwoReplicas(t *testing.T) {
	t.Parallel()
	rds := testinfra.StartRedis(t)
	a := apptest.Start(t, "REDIS_URL="+rds.URL())
	b := apptest.StartReplica(t, a.DatabaseURL(), nil, "REDIS_URL="+rds.URL())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	rep, err := run(ctx, []string{"-scenario", "fanout", "-url", a.URL + "," + b.URL, "-subscribers", "20", "-sockets-per-user", "5",
		"-groups", "2", "-rate", "20", "-duration", "1s", "-open-settle", "100ms", "-progress", "0"}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	t.Log("\n" + out.String())
	if !rep.Pass || rep.Subs.Delivered != rep.Subs.Expected || rep.Subs.Expected != 20*10 { // 20 messages over 2 groups of 10 sockets
		t.Errorf("pass=%v delivered %d of %d (want 200); checks %+v", rep.Pass, rep.Subs.Delivered, rep.Subs.Expected, rep.Checks)
	}
	if len(rep.Servers) != 2 {
		t.Errorf("%d server reports, want 2", len(rep.Servers))
	}
}

func TestHist(t *testing.T) {
	var h Hist
	for v := int64(1); v <= 100000; v++ {
		h.RecordMicros(v)
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		got, want := float64(h.Quantile(q)), q*100000
		if got < want*0.96 || got > want*1.04 {
			t.Errorf("q%.2f = %.0f, want about %.0f", q, got, want)
		}
	}
	if h.Quantile(1) != 100000 {
		t.Errorf("max %d", h.Quantile(1))
	}
	b, err := h.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var h2 Hist
	if err := h2.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	if h2 != h {
		t.Error("JSON round trip changed the histogram")
	}
}

func TestParseSourceAddrs(t *testing.T) {
	got, err := parseSourceAddrs("127.0.0.1-127.0.0.3,127.0.1.9")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.1.9"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if _, err := parseSourceAddrs("127.0.0.5-127.0.0.1"); err == nil {
		t.Error("backwards range accepted")
	}
}

// TestVerifyFindsFaults feeds sockets bad deliveries and checks that each
// fault is counted.
func TestVerifyFindsFaults(t *testing.T) {
	w := &worker{ctx: context.Background(), sink: &sink{run: "r"}}
	now := time.Now()
	deliver := func(seqs ...int) *sub {
		s := newSub(subSpec{Group: 0}, w.sink)
		for _, q := range seqs {
			s.event(messageBody("r", 0, q, now), "", now.UnixNano())
		}
		w.subs = append(w.subs, s)
		return s
	}
	deliver(1, 2, 3)    // all well
	deliver(1, 3, 2)    // 3 before 2, though 2 completed before 3 was sent
	deliver(1, 1, 2)    // 1 twice, 3 lost
	deliver(0, 1, 2, 3) // warm-up, then all well
	s := newSub(subSpec{Group: 0}, w.sink)
	s.event("lg other-run 0 1 5", "", now.UnixNano()) // another run's message
	w.subs = append(w.subs, s)

	ns := now.UnixNano()
	sent := &groupSent{
		Issue: []int64{0, ns, ns + 10, ns + 30, ns + 40},
		Resp:  []int64{0, ns + 5, ns + 20, ns + 35, 0}, // seq 4 failed
	}
	r := w.verify(&verifyReq{Groups: map[int]*groupSent{0: sent}})
	if r.Lost != 1+3 { // sub C lost 3; the foreign-only sub lost 1, 2, 3
		t.Errorf("lost %d, want 4", r.Lost)
	}
	if r.Duplicated != 1 {
		t.Errorf("duplicated %d, want 1", r.Duplicated)
	}
	if r.OutOfOrder != 1 {
		t.Errorf("out of order %d, want 1", r.OutOfOrder)
	}
	if r.Foreign != 1 {
		t.Errorf("foreign %d, want 1", r.Foreign)
	}
	if got := len(r.Hashes[0]); got != 2 {
		t.Errorf("%d distinct orders among complete sockets, want 2: %v", got, r.Hashes)
	}
	if r.Expected != 5*3 || r.Delivered != 15-4 {
		t.Errorf("expected %d delivered %d, want 15 and 11", r.Expected, r.Delivered)
	}
}

// TestWriteFloor runs the no-server scenario: every frame the sending
// process wrote is read back, and its CPU is accounted per write.
func TestWriteFloor(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	rep, err := run(ctx, []string{"-scenario", "writefloor", "-subscribers", "20", "-groups", "4", "-rate", "100", "-duration", "500ms", "-frame-bytes", "100"}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	t.Log("\n" + out.String())
	f := rep.Floor
	if f == nil || !rep.Pass {
		t.Fatalf("no floor result or not passed: %+v", rep)
	}
	// 50 ticks at 100/s, 5 sockets per group: about 250 writes.
	if f.Writes < 100 || f.Received != f.Writes*100 {
		t.Errorf("writes %d, received %d bytes, want every write's 100 bytes", f.Writes, f.Received)
	}
	if f.CPUPerWriteUS <= 0 || f.SenderSysSecs+f.SenderUserSecs <= 0 {
		t.Errorf("no CPU accounted: %+v", f)
	}
	if !bytes.Contains(out.Bytes(), []byte("µs per write")) {
		t.Errorf("report lacks the per-write CPU:\n%s", out.String())
	}
}
