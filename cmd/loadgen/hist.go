package main

import (
	"encoding/json"
	"math/bits"
	"sync"
	"time"
)

// subBits sets the histogram's precision: 2^subBits linear sub-buckets per
// power of two, so a recorded value is off by at most 1/32 (about 3 %).
const subBits = 5

// Hist is a log-linear (HDR-style) histogram of microseconds. Its size is
// fixed whatever the number of samples, and histograms merge exactly.
type Hist struct {
	counts [64 << subBits]int64
	n      int64
	sum    int64
	max    int64
}

func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	if v < 1<<subBits {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - subBits - 1
	return (e+1)<<subBits + int((v>>e)&(1<<subBits-1))
}

// bucketHigh is the largest value that falls in bucket b.
func bucketHigh(b int) int64 {
	if b < 2<<subBits {
		return int64(b)
	}
	e := b>>subBits - 1
	m := int64(b&(1<<subBits-1) | 1<<subBits)
	return (m+1)<<e - 1
}

// Record adds one duration.
func (h *Hist) Record(d time.Duration) { h.RecordMicros(d.Microseconds()) }

// RecordMicros adds one value in microseconds.
func (h *Hist) RecordMicros(us int64) {
	if us < 0 {
		us = 0
	}
	h.counts[bucketOf(us)]++
	h.n++
	h.sum += us
	if us > h.max {
		h.max = us
	}
}

// Merge adds o's samples.
func (h *Hist) Merge(o *Hist) {
	if o == nil {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// Count is the number of samples.
func (h *Hist) Count() int64 { return h.n }

// Quantile returns the value (µs) below which a fraction q of samples fall.
func (h *Hist) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := int64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	var seen int64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(bucketHigh(b), h.max)
		}
	}
	return h.max
}

// LatSummary is a histogram summed up in milliseconds.
type LatSummary struct {
	Count  int64   `json:"count"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P99MS  float64 `json:"p99_ms"`
	P999MS float64 `json:"p999_ms"`
	MaxMS  float64 `json:"max_ms"`
}

// Summary sums h up.
func (h *Hist) Summary() LatSummary {
	s := LatSummary{Count: h.n}
	if h.n == 0 {
		return s
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	s.MeanMS = float64(h.sum) / float64(h.n) / 1000
	s.P50MS = ms(h.Quantile(0.50))
	s.P90MS = ms(h.Quantile(0.90))
	s.P99MS = ms(h.Quantile(0.99))
	s.P999MS = ms(h.Quantile(0.999))
	s.MaxMS = ms(h.max)
	return s
}

type histJSON struct {
	N       int64         `json:"n"`
	Sum     int64         `json:"sum"`
	Max     int64         `json:"max"`
	Buckets map[int]int64 `json:"b,omitempty"`
}

// MarshalJSON encodes only the non-empty buckets.
func (h *Hist) MarshalJSON() ([]byte, error) {
	j := histJSON{N: h.n, Sum: h.sum, Max: h.max, Buckets: map[int]int64{}}
	for b, c := range h.counts {
		if c != 0 {
			j.Buckets[b] = c
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON encoded.
func (h *Hist) UnmarshalJSON(b []byte) error {
	var j histJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*h = Hist{n: j.N, sum: j.Sum, max: j.Max}
	for b, c := range j.Buckets {
		if b >= 0 && b < len(h.counts) {
			h.counts[b] = c
		}
	}
	return nil
}

// syncHist is a Hist safe for concurrent use.
type syncHist struct {
	mu sync.Mutex
	h  Hist
}

func (s *syncHist) Record(d time.Duration) { s.RecordMicros(d.Microseconds()) }

func (s *syncHist) RecordMicros(us int64) {
	s.mu.Lock()
	s.h.RecordMicros(us)
	s.mu.Unlock()
}

// Snapshot returns a copy.
func (s *syncHist) Snapshot() *Hist {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.h
	return &c
}

// errCounter counts errors by code ("gql:NOT_FOUND", "http:502", "ws:4429", …).
type errCounter struct {
	mu sync.Mutex
	m  map[string]int64
}

func (e *errCounter) Add(code string, n int64) {
	e.mu.Lock()
	if e.m == nil {
		e.m = map[string]int64{}
	}
	e.m[code] += n
	e.mu.Unlock()
}

func (e *errCounter) Snapshot() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int64, len(e.m))
	for k, v := range e.m {
		out[k] = v
	}
	return out
}

func mergeCounts(dst, src map[string]int64) map[string]int64 {
	if dst == nil {
		dst = map[string]int64{}
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}
