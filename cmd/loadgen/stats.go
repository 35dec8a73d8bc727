package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// 100 on every Linux this runs on.
const clockTicks = 100

// procSample is a process's CPU time and resident memory.
type procSample struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	RSSBytes   int64   `json:"rss_bytes"`
}

// readProc reads /proc/<pid>/stat (utime + stime) and /proc/<pid>/status (VmRSS).
func readProc(pid int) (procSample, error) {
	var s procSample
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read stat: %w", err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	rest := string(b)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return s, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // field 14 of stat
	st, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	s.CPUSeconds = float64(ut+st) / clockTicks
	st2, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read status: %w", err)
	}
	for _, line := range strings.Split(string(st2), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			s.RSSBytes = kb * 1024
		}
	}
	return s, nil
}

// metricsSample is what a replica's /metrics says about itself.
type metricsSample struct {
	OK            bool    `json:"ok"`
	Goroutines    float64 `json:"go_goroutines"`
	RSSBytes      float64 `json:"process_resident_memory_bytes"`
	CPUSeconds    float64 `json:"process_cpu_seconds_total"`
	HeapInuse     float64 `json:"go_memstats_heap_inuse_bytes"`
	WSConnections float64 `json:"parley_ws_connections"`
	Delivered     float64 `json:"parley_events_delivered_total"`
	// The server's per-viewer response cache (RESPONSE_CACHE), if on.
	CacheHits   float64 `json:"response_cache_hits,omitempty"`
	CacheMisses float64 `json:"response_cache_misses,omitempty"`
}

func scrapeMetrics(ctx context.Context, c *http.Client, base string) metricsSample {
	var m metricsSample
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return m
	}
	resp, err := c.Do(req)
	if err != nil {
		return m
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_goroutines":
			m.Goroutines = v
		case "process_resident_memory_bytes":
			m.RSSBytes = v
		case "process_cpu_seconds_total":
			m.CPUSeconds = v
		case "go_memstats_heap_inuse_bytes":
			m.HeapInuse = v
		case "parley_ws_connections":
			m.WSConnections = v
		case "parley_events_delivered_total":
			m.Delivered += v
		case "parley_response_cache_total":
			switch {
			case strings.Contains(line, `result="hit"`):
				m.CacheHits = v
			case strings.Contains(line, `result="miss"`):
				m.CacheMisses = v
			}
		}
	}
	m.OK = true
	return m
}

// serverSample is one look at one replica: /proc when its PID is known,
// /metrics in any case.
type serverSample struct {
	At      time.Time     `json:"at"`
	Proc    *procSample   `json:"proc,omitempty"`
	Metrics metricsSample `json:"metrics"`
}

func (s serverSample) cpu() float64 {
	if s.Proc != nil {
		return s.Proc.CPUSeconds
	}
	return s.Metrics.CPUSeconds
}

func (s serverSample) rss() float64 {
	if s.Proc != nil {
		return float64(s.Proc.RSSBytes)
	}
	return s.Metrics.RSSBytes
}

// serverWatch samples the replicas periodically and keeps the peak RSS.
type serverWatch struct {
	urls []string
	pids []int // parallel to urls where given; 0 unknown
	hc   *http.Client

	mu   sync.Mutex
	peak []float64
}

func newServerWatch(urls []string, pids []int) *serverWatch {
	p := make([]int, len(urls))
	copy(p, pids)
	return &serverWatch{urls: urls, pids: p, hc: &http.Client{Timeout: 5 * time.Second}, peak: make([]float64, len(urls))}
}

func (w *serverWatch) sample(ctx context.Context) []serverSample {
	out := make([]serverSample, len(w.urls))
	var wg sync.WaitGroup
	for i := range w.urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := serverSample{At: time.Now()}
			if w.pids[i] > 0 {
				if p, err := readProc(w.pids[i]); err == nil {
					s.Proc = &p
				}
			}
			s.Metrics = scrapeMetrics(ctx, w.hc, w.urls[i])
			out[i] = s
		}()
	}
	wg.Wait()
	w.mu.Lock()
	for i, s := range out {
		w.peak[i] = max(w.peak[i], s.rss())
	}
	w.mu.Unlock()
	return out
}

func (w *serverWatch) peaks() []float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]float64(nil), w.peak...)
}

// selfCPU is this process's CPU time plus its workers' (read from /proc
// while they run, since RUSAGE_CHILDREN only counts children waited for).
func selfCPU(workerPIDs []int) float64 {
	user, sys := rusage()
	t := user + sys
	for _, pid := range workerPIDs {
		if p, err := readProc(pid); err == nil {
			t += p.CPUSeconds
		}
	}
	return t
}

// rusage is this process's user and system CPU seconds.
func rusage() (user, sys float64) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return tv(ru.Utime), tv(ru.Stime)
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

type hostInfo struct {
	Hostname   string `json:"hostname"`
	LoadAvg    string `json:"loadavg_start"` // /proc/loadavg: other work on the machine skews every figure
	LoadAvgEnd string `json:"loadavg_end"`
	NumCPU     int    `json:"num_cpu"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
}

func host() hostInfo {
	h, _ := os.Hostname()
	return hostInfo{Hostname: h, LoadAvg: loadAvg(), NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}
