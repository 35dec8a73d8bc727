package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/apptest"
)

func TestMain(m *testing.M) {
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
	srv := apptest.Start(t)
	state := filepath.Join(t.TempDir(), "state.json")
	base := []string{"-url", srv.URL, "-state", state, "-progress", "500ms", "-open-settle", "100ms"}
	cases := []struct {
		name string
		args []string
		min  float64 // least throughput
	}{
		{"fanout", []string{"-scenario", "fanout", "-subscribers", "40", "-sockets-per-user", "4", "-groups", "4", "-rate", "40", "-duration", "1s", "-drain", "5s"}, 1},
		{"fanout-procs", []string{"-scenario", "fanout", "-subscribers", "40", "-sockets-per-user", "4", "-groups", "2", "-rate", "20", "-duration", "1s", "-procs", "2", "-source-addrs", "127.0.0.1-127.0.0.3"}, 1},
		{"connections", []string{"-scenario", "connections", "-conns", "60", "-sockets-per-user", "20", "-groups", "3", "-hold", "200ms"}, 1},
		{"churn", []string{"-scenario", "churn", "-users", "3", "-groups", "3", "-rate", "20", "-duration", "1s", "-settle", "10s"}, 1},
		{"sendrate", []string{"-scenario", "sendrate", "-workers", "4", "-duration", "1s"}, 1},
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
			if _, err := os.Stat(jsonPath); err != nil {
				t.Errorf("no JSON report: %v", err)
			}
		})
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
