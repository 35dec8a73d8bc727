// Package netpoll tells when sockets have something to read, without a
// goroutine blocked on each of them: an idle WebSocket then costs its
// socket and its state, not a goroutine stack (BENCHMARKS.md, "Where the
// memory goes").
//
// A Poller watches sockets registered with Register; when one becomes
// readable (data, the peer's FIN, an error) it calls the socket's callback
// on a goroutine of its own, once: the callback reads until the socket
// would block and then calls Desc.Rearm to hear about the next data. The
// callback of one socket therefore never runs twice at a time.
//
// It is implemented on Linux (epoll); elsewhere New returns
// ErrUnsupported and callers keep a goroutine per connection.
package netpoll

import "errors"

// ErrUnsupported: no poller on this platform (or for this connection).
var ErrUnsupported = errors.New("netpoll: not supported")

// ErrClosed: the socket was closed or deregistered.
var ErrClosed = errors.New("netpoll: closed")
