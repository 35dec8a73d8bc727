//go:build !unix

package httpapi

import (
	"sync"
	"syscall"
)

// tryWrite writes nothing here: every write takes the timed path.
func tryWrite(*sync.Pool, syscall.RawConn, []byte) int { return 0 }
