//go:build linux

package httpapi

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/parley-chat/parley/internal/netpoll"
)

// wsPoll is how a polled connection reads: no goroutine waits on it. When
// the poller reports the socket readable, a goroutine reads until it would
// block, handles every whole frame, keeps the bytes of a partial one and
// asks for the next report. Only that goroutine touches the fields below
// reading.
type wsPoll struct {
	c       *twsConn
	reading atomic.Bool // a goroutine is reading (one at a time)

	desc       *netpoll.Desc // set before the first read; closed by twsConn.finish
	pending    []byte        // the start of a frame that has not arrived whole
	need       int           // the length of that frame, as far as known (buffers grow to it)
	discarding bool          // after a framing violation, until the peer closes
}

const (
	// readBufferSize is the pooled buffer a read goes into: client messages
	// are small; a bigger frame gets a buffer of its own.
	readBufferSize = 1 << 10
)

// readBuffer returns a buffer for a polled connection's reads, shared by
// the transport's connections (an idle connection holds none).
func (t *webSocket) readBuffer() *[]byte {
	if bp, ok := t.reads.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, 0, readBufferSize)
	return &b
}

// newPoll registers c's socket with the poller, or returns nil if it is
// not a plain TCP socket or the poller refuses it: then a goroutine reads.
// It runs before anything else can touch c, so c.poll never changes. The
// first read is startPoll's: a report that comes before waits for it.
func (t *webSocket) newPoll(c *twsConn, nc net.Conn, early []byte) *wsPoll {
	if _, ok := nc.(*net.TCPConn); !ok || t.poller == nil || c.raw == nil {
		return nil
	}
	p := &wsPoll{c: c, pending: early, need: len(early)}
	p.reading.Store(true)
	var err error
	if p.desc, err = t.poller.Register(c.raw, p.readable); err != nil {
		t.log.Warn("websocket: poller refused the socket; reading on a goroutine", "err", err)
		return nil
	}
	return p
}

// startPoll reads what is there already (the client's first frames may
// have come with the upgrade request), then waits for readiness.
func (c *twsConn) startPoll() { c.readAndRearm() }

// readable is the poller's callback. It may come before c.poll is set:
// reading is set until startPoll's first read is done.
func (p *wsPoll) readable() {
	if !p.reading.CompareAndSwap(false, true) {
		return // the reader that has it rearms when it is done
	}
	p.c.readAndRearm()
}

func (c *twsConn) readAndRearm() {
	p := c.poll
	defer func() {
		if r := recover(); r != nil {
			c.t.log.Error("websocket: panic", "panic", fmt.Sprint(r))
			c.finish()
		}
	}()
	if !c.readSocket() {
		return
	}
	p.reading.Store(false)
	if err := p.desc.Rearm(); err != nil {
		// Closed meanwhile: whoever closed it has finished the connection.
		c.finish()
	}
}

// readSocket reads until the socket would block and handles what it read;
// false once the connection is over.
func (c *twsConn) readSocket() bool {
	p := c.poll
	bp := c.t.readBuffer()
	defer c.t.reads.Put(bp)
	buf, own := (*bp)[:0], false // own: buf is not the pooled buffer
	if cap(p.pending) > readBufferSize {
		buf, own = p.pending, true // a big frame: read on into its own buffer
	} else {
		buf = append(buf, p.pending...)
	}
	p.pending = nil
	if len(buf) > 0 && !c.pollDecode(&buf) {
		// Bytes that came with the upgrade request (a partial frame kept
		// from the last read parses as such again, cheaply).
		return false
	}
	for {
		if cap(buf)-len(buf) < 512 {
			// Doubling up to the frame's length: a peer that announces a
			// big frame and sends little of it gets little memory.
			nb := make([]byte, len(buf), max(len(buf)+readBufferSize, min(p.need, 2*cap(buf))))
			copy(nb, buf)
			buf, own = nb, true
		}
		n, err := readRaw(p.c.raw, buf[len(buf):cap(buf)])
		switch {
		case n > 0:
			buf = buf[:len(buf)+n]
			if !c.pollDecode(&buf) {
				return false
			}
		case errors.Is(err, syscall.EAGAIN):
			switch {
			case len(buf) == 0:
			case own && cap(buf) > readBufferSize:
				p.pending = buf // its own buffer, at most about twice what came
			default:
				// Only the partial frame stays with the connection.
				p.pending = append([]byte(nil), buf...)
			}
			return true
		default: // the peer closed (n == 0), a reset, or we closed it
			c.finish()
			return false
		}
	}
}

// pollDecode handles the whole frames in *buf and leaves the rest there;
// false once the connection is over.
func (c *twsConn) pollDecode(buf *[]byte) bool {
	p := c.poll
	if p.discarding {
		*buf = (*buf)[:0]
		return true
	}
	used, need, err := c.fr.asm.decode(*buf, c.control, c.message)
	*buf = (*buf)[:copy(*buf, (*buf)[used:])]
	p.need = need
	if err != nil {
		if !c.pollReadFailed(err) {
			return false
		}
		*buf = (*buf)[:0]
	}
	return true
}

// pollReadFailed is readFailed for a polled connection: a framing
// violation is answered with its close code and what the peer still sends
// is discarded until it closes, for up to closeGrace; any other error
// (the peer's close frame) ends the connection. It reports whether to read
// on.
func (c *twsConn) pollReadFailed(err error) bool {
	var we *wsError
	if !errors.As(err, &we) {
		c.finish()
		return false
	}
	if c.beginClose() {
		c.setClosedHow(strconv.Itoa(we.code))
		c.writeClose(we.code, we.reason)
	}
	c.poll.discarding = true
	time.AfterFunc(closeGrace, c.finish)
	return true
}

// close stops the poller watching the socket (before it is closed).
func (p *wsPoll) close() {
	if p.desc != nil {
		p.desc.Close()
	}
}

// readRaw reads what the socket has without waiting: EAGAIN if nothing.
func readRaw(rc syscall.RawConn, b []byte) (int, error) {
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), b)
			if rerr != syscall.EINTR {
				return true // never wait in Go's poller: ours reports readiness
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	return n, nil
}
