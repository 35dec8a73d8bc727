//go:build !unix

package httpapi

import "syscall"

// tryWrite writes nothing here: every write takes the timed path.
func tryWrite(syscall.RawConn, []byte) int { return 0 }
