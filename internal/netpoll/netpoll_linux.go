//go:build linux

package netpoll

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
)

// Poller watches sockets with one epoll instance and one goroutine waiting
// on it. Both exist only while a socket is registered: a server with no
// WebSocket open has neither, and tests need no Close.
type Poller struct {
	mu   sync.Mutex
	inst *instance // nil while nothing is registered
	next uint32    // the last token handed out
}

// instance is one epoll instance and the sockets registered in it. Its
// goroutine owns the descriptors and closes them once told to stop.
type instance struct {
	epfd  int
	wake  [2]int // a pipe: a byte written to wake[1] stops the goroutine
	descs map[uint32]*Desc
}

// Desc is one registered socket.
type Desc struct {
	p       *Poller
	in      *instance
	rc      syscall.RawConn
	token   uint32 // the epoll data: never a file descriptor, which the kernel reuses
	onReady func()
	closed  bool // under p.mu
}

// armed is what a socket waits for: data, the peer's FIN (EPOLLRDHUP) or
// an error, reported once until Rearm.
const armed = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// wakeToken marks the pipe's events; sockets get the others.
const wakeToken = 0

// New returns a poller. It starts nothing until the first Register.
func New() (*Poller, error) { return &Poller{}, nil }

// Register watches the socket behind rc, which must be in non-blocking mode
// (as every socket of package net is). onReady is called on a goroutine of
// its own when the socket becomes readable, once per Register or Rearm.
func (p *Poller) Register(rc syscall.RawConn, onReady func()) (*Desc, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inst == nil {
		in, err := start()
		if err != nil {
			return nil, err
		}
		p.inst = in
		go p.run(in)
	}
	in := p.inst
	for {
		p.next++
		if _, used := in.descs[p.next]; p.next != wakeToken && !used {
			break
		}
	}
	d := &Desc{p: p, in: in, rc: rc, token: p.next, onReady: onReady}
	var ctlErr error
	err := rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: armed, Fd: int32(d.token)}
		ctlErr = syscall.EpollCtl(in.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil {
		err = ctlErr
	}
	if err != nil {
		p.stopIfIdleLocked()
		return nil, fmt.Errorf("netpoll: register: %w", err)
	}
	in.descs[d.token] = d
	return d, nil
}

func start() (*instance, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netpoll: epoll_create1: %w", err)
	}
	in := &instance{epfd: epfd, descs: map[uint32]*Desc{}}
	if err := syscall.Pipe2(in.wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		_ = syscall.Close(epfd)
		return nil, fmt.Errorf("netpoll: pipe2: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: wakeToken}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, in.wake[0], &ev); err != nil {
		in.close()
		return nil, fmt.Errorf("netpoll: watch pipe: %w", err)
	}
	return in, nil
}

func (in *instance) close() {
	_ = syscall.Close(in.wake[0])
	_ = syscall.Close(in.wake[1])
	_ = syscall.Close(in.epfd)
}

// stopIfIdleLocked lets the instance go once no socket is registered; its
// goroutine wakes, closes the descriptors and ends.
func (p *Poller) stopIfIdleLocked() {
	if p.inst == nil || len(p.inst.descs) > 0 {
		return
	}
	_, _ = syscall.Write(p.inst.wake[1], []byte{1})
	p.inst = nil
}

// Rearm asks for the next readiness report. Reports are one-shot so that
// only one goroutine reads a socket at a time: the callback calls Rearm
// once it has read until the socket would block. Data that arrived in
// between is reported at once.
func (d *Desc) Rearm() error {
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	var ctlErr error
	// Control holds the socket open: the descriptor cannot be closed and
	// reused by another connection under it.
	err := d.rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: armed, Fd: int32(d.token)}
		ctlErr = syscall.EpollCtl(d.in.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
	})
	if err == nil {
		err = ctlErr
	}
	if err != nil {
		return fmt.Errorf("netpoll: rearm: %w", errors.Join(ErrClosed, err))
	}
	return nil
}

// Close stops watching the socket; call it before closing the socket. A
// report already on its way may still call onReady once. Close is
// idempotent.
func (d *Desc) Close() {
	d.p.mu.Lock()
	defer d.p.mu.Unlock()
	if d.closed {
		return
	}
	d.closed = true
	delete(d.in.descs, d.token)
	// Fails harmlessly if the socket is closed already: the kernel dropped
	// it from the epoll set then.
	_ = d.rc.Control(func(fd uintptr) {
		_ = syscall.EpollCtl(d.in.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	})
	if d.p.inst == d.in {
		d.p.stopIfIdleLocked()
	}
}

// run waits for readiness and calls each ready socket's onReady on a
// goroutine of its own, until the instance is stopped.
func (p *Poller) run(in *instance) {
	events := make([]syscall.EpollEvent, 128)
	var ready []func()
	for {
		n, err := syscall.EpollWait(in.epfd, events, -1)
		if err != nil {
			if !errors.Is(err, syscall.EINTR) {
				// Not expected on a valid epoll descriptor; do not spin.
				time.Sleep(10 * time.Millisecond)
			}
			continue
		}
		stop := false
		ready = ready[:0]
		p.mu.Lock()
		for _, ev := range events[:n] {
			if ev.Fd == wakeToken {
				stop = true
				continue
			}
			if d := in.descs[uint32(ev.Fd)]; d != nil {
				ready = append(ready, d.onReady)
			}
		}
		p.mu.Unlock()
		for i, f := range ready {
			go f()
			ready[i] = nil
		}
		if stop {
			in.close()
			return
		}
	}
}
