//go:build unix

package httpapi

import (
	"sync"
	"syscall"
)

// tryWrite writes as much of b as the socket takes without waiting and
// returns how much that was (0 on any error: the blocking write that
// follows meets the error again and reports it). The callback RawConn.Write
// needs comes from pool (*nonBlockingWrite): a closure made per call would
// be an allocation per delivery.
func tryWrite(pool *sync.Pool, raw syscall.RawConn, b []byte) int {
	w, _ := pool.Get().(*nonBlockingWrite)
	if w == nil {
		w = &nonBlockingWrite{}
		w.fn = w.write
	}
	w.b, w.n = b, 0
	err := raw.Write(w.fn)
	n := w.n
	w.b = nil
	pool.Put(w)
	if err != nil {
		return 0
	}
	return n
}

type nonBlockingWrite struct {
	b  []byte
	n  int
	fn func(fd uintptr) bool // w.write, bound once
}

func (w *nonBlockingWrite) write(fd uintptr) bool {
	for w.n < len(w.b) {
		m, err := syscall.Write(int(fd), w.b[w.n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || m <= 0 {
			break
		}
		w.n += m
	}
	return true // never wait: the caller falls back to a timed write
}
