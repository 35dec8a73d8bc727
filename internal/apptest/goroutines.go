package apptest

import (
	"runtime"
	"time"
)

// SettledGoroutines waits until the process's goroutine count has held
// still for a moment and returns it: the baseline, or the after-count, of a
// leak check.
func SettledGoroutines() int {
	n, stable := runtime.NumGoroutine(), 0
	for stable < 5 {
		time.Sleep(20 * time.Millisecond)
		if m := runtime.NumGoroutine(); m == n {
			stable++
		} else {
			n, stable = m, 0
		}
	}
	return n
}
