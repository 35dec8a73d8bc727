package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Report is the outcome of one run; -json writes it whole.
type Report struct {
	Scenario   string           `json:"scenario"`
	Run        string           `json:"run"`
	Args       []string         `json:"args"`
	Config     config           `json:"config"`
	Start      time.Time        `json:"start"`
	Host       hostInfo         `json:"host"`
	Setup      setupStats       `json:"setup"`
	Throughput float64          `json:"throughput_per_s"` // deliveries/s (fanout, connections), cycles/s (churn), requests/s (sendrate, list)
	Latency    LatSummary       `json:"latency"`          // the scenario's main latency
	Subs       *subsResult      `json:"subs,omitempty"`
	Open       *openSamples     `json:"open_samples,omitempty"`
	Churn      *churnResult     `json:"churn,omitempty"`
	Closed     *closedResult    `json:"closed,omitempty"`
	Floor      *floorResult     `json:"floor,omitempty"`
	Checks     checks           `json:"checks"`
	Errors     map[string]int64 `json:"errors"`
	Servers    []serverReport   `json:"servers"` // over the measured phase
	Loadgen    loadgenReport    `json:"loadgen"`
	Pass       bool             `json:"pass"`
}

type checks struct {
	Lost               int64 `json:"lost"`
	Duplicated         int64 `json:"duplicated"`
	OutOfOrder         int64 `json:"out_of_order"`
	OrderDisagreements int64 `json:"order_disagreements"` // sockets of a group whose order differs from the others'
	NotLive            int64 `json:"not_live"`            // sockets that failed to open or prove live; failed churn cycles
	Extra              int64 `json:"extra"`               // received though the send reported failure
	Foreign            int64 `json:"foreign"`             // events that were not this run's
}

type openSamples struct {
	Before []serverSample `json:"before"`
	After  []serverSample `json:"after"`
}

type serverReport struct {
	URL        string       `json:"url"`
	PID        int          `json:"pid,omitempty"`
	PhaseStart serverSample `json:"phase_start"`
	PhaseEnd   serverSample `json:"phase_end"`
	CPUSeconds float64      `json:"cpu_seconds"`
	CPUShare   float64      `json:"cpu_share"` // cores busy on average
	PeakRSS    float64      `json:"peak_rss_bytes"`
}

type loadgenReport struct {
	Procs          int     `json:"procs"`
	CPUSeconds     float64 `json:"cpu_seconds"` // measured phase, this process and its workers
	WallSeconds    float64 `json:"wall_seconds"`
	CPUShare       float64 `json:"cpu_share"` // cores busy on average in the measured phase
	RunCPUSeconds  float64 `json:"run_cpu_seconds"`
	RunWallSeconds float64 `json:"run_wall_seconds"`
	RunCPUShare    float64 `json:"run_cpu_share"` // whole run, setup included (getrusage SELF + CHILDREN)
}

func (r *Report) finish() {
	c := r.Checks
	r.Pass = c.Lost == 0 && c.Duplicated == 0 && c.OutOfOrder == 0 && c.OrderDisagreements == 0 && c.NotLive == 0
	if r.Churn != nil && !r.Churn.Baseline {
		r.Pass = false
	}
	if r.Errors == nil {
		r.Errors = map[string]int64{}
	}
}

func mb(b float64) string { return fmt.Sprintf("%.1f MB", b/1e6) }

func lat(l LatSummary) string {
	return fmt.Sprintf("p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms  (n=%d)", l.P50MS, l.P90MS, l.P99MS, l.MaxMS, l.Count)
}

func (r *Report) print(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	if r.Floor != nil {
		p("== loadgen %s  run %s  (no server)", r.Scenario, r.Run)
	} else {
		p("== loadgen %s  run %s  %s", r.Scenario, r.Run, strings.Join(r.Config.URLs, ","))
		p("setup: %d registered, %d conversations created, %d messages, %.1fs", r.Setup.Registered, r.Setup.Created, r.Setup.Messages, r.Setup.Seconds)
	}
	if s := r.Subs; s != nil {
		p("sockets: %d of %d opened (%d users, %d groups) in %.2fs = %.0f/s; open %s", s.Opened, s.Sockets, s.Users, s.Groups, s.OpenSeconds, s.OpenRate, lat(s.OpenLatency))
		if s.OpenSeconds > 0 {
			p("while opening: server CPU %.2fs (%.2f cores), loadgen CPU %.2fs (%.2f cores)", s.OpenServerCPU, s.OpenServerCPU/s.OpenSeconds, s.OpenLoadgenCPU, s.OpenLoadgenCPU/s.OpenSeconds)
		}
		if r.Open != nil {
			for i := range r.Open.Before {
				p("server %d RSS: %s before open, %s after", i, mb(r.Open.Before[i].rss()), mb(r.Open.After[i].rss()))
			}
			p("server RSS per socket: %.1f KB (all replicas' growth over all sockets)", s.RSSPerConnByte/1e3)
			if s.HeldRSSPerConnByte != 0 {
				p("server RSS per socket at the end of the hold: %.1f KB", s.HeldRSSPerConnByte/1e3)
			}
		}
		p("sends: %d ok of %d in %.2fs = %.1f/s; sendMessage %s", s.SentOK, s.Sent, s.SendSeconds, s.SendRate, lat(s.SendLatency))
		p("deliveries: %d of %d expected, %.0f/s; end to end %s", s.Delivered, s.Expected, s.DeliveryRate, lat(s.E2ELatency))
		if s.DrainShort > 0 {
			p("drain: %d sockets still missing messages after -drain %s", s.DrainShort, r.Config.Drain)
		}
		p("server CPU: %.2fs = %.1f µs per delivery", s.ServerCPUSecs, s.ServerCPUUsPD)
	}
	if c := r.Churn; c != nil {
		p("churn: %d of %d cycles ok in %.1fs = %.0f/s; connect→event %s", c.OK, c.Attempts, c.Seconds, c.Rate, lat(c.Latency))
		for i := range c.Before {
			b, a := c.Before[i].Metrics, c.After[i].Metrics
			p("server %d: goroutines %.0f → %.0f, heap in use %s → %s, RSS %s → %s (after %.1fs settle)", i, b.Goroutines, a.Goroutines, mb(b.HeapInuse), mb(a.HeapInuse), mb(c.Before[i].rss()), mb(c.After[i].rss()), c.SettleSecs)
		}
		p("back to baseline: %v", c.Baseline)
	}
	if r.Floor != nil {
		r.Floor.print(w)
	}
	if c := r.Closed; c != nil {
		p("%s: %d workers, %d ok, %d failed in %.1fs = %.1f req/s; %s", r.Scenario, c.Workers, c.OK, c.Failed, c.Seconds, c.Rate, lat(c.Latency))
		if c.AvgEdges > 0 {
			p("avg conversations per page: %.1f", c.AvgEdges)
		}
		if c.Sends > 0 || c.SendsFailed > 0 {
			p("messages sent into the listed conversations meanwhile: %d (%d failed)", c.Sends, c.SendsFailed)
		}
	}
	for i, s := range r.Servers {
		p("server %d (%s pid %d): CPU %.2fs over the phase (%.2f cores), RSS %s → %s, goroutines %.0f → %.0f", i, s.URL, s.PID, s.CPUSeconds, s.CPUShare, mb(s.PhaseStart.rss()), mb(s.PhaseEnd.rss()), s.PhaseStart.Metrics.Goroutines, s.PhaseEnd.Metrics.Goroutines)
		if a, b := s.PhaseStart.Metrics, s.PhaseEnd.Metrics; b.CacheHits+b.CacheMisses > a.CacheHits+a.CacheMisses {
			hits, misses := b.CacheHits-a.CacheHits, b.CacheMisses-a.CacheMisses
			p("server %d response cache over the phase: %.0f hits, %.0f misses (%.1f%% hits)", i, hits, misses, 100*hits/(hits+misses))
		}
	}
	c := r.Checks
	p("checks: lost %d, duplicated %d, out of order %d, order disagreements %d, not live %d, extra %d, foreign %d", c.Lost, c.Duplicated, c.OutOfOrder, c.OrderDisagreements, c.NotLive, c.Extra, c.Foreign)
	keys := make([]string, 0, len(r.Errors))
	for k := range r.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, r.Errors[k]))
	}
	p("errors: %s", strings.Join(parts, " "))
	l := r.Loadgen
	p("loadgen CPU: %.2fs over %.1fs = %.2f cores in the phase (%d worker procs); whole run %.2f cores", l.CPUSeconds, l.WallSeconds, l.CPUShare, l.Procs, l.RunCPUShare)
	p("machine load average: %s at start, %s at end (%d CPUs)", r.Host.LoadAvg, r.Host.LoadAvgEnd, r.Host.NumCPU)
	p("pass: %v", r.Pass)
}
