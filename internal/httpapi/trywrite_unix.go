//go:build unix

package httpapi

import "syscall"

// tryWrite writes as much of b as the socket takes without waiting and
// returns how much that was (0 on any error: the blocking write that
// follows meets the error again and reports it).
func tryWrite(raw syscall.RawConn, b []byte) int {
	n := 0
	err := raw.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, err := syscall.Write(int(fd), b[n:])
			if err == syscall.EINTR {
				continue
			}
			if err != nil || m <= 0 {
				break
			}
			n += m
		}
		return true // never wait: the caller falls back to a timed write
	})
	if err != nil {
		return 0
	}
	return n
}
