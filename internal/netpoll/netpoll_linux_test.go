//go:build linux

package netpoll

import (
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"
)

func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return s.(*net.TCPConn), c.(*net.TCPConn)
}

func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("no report: %s", what)
	}
}

func quiet(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("unexpected report: %s", what)
	case <-time.After(50 * time.Millisecond):
	}
}

// Reports are one-shot until Rearm; data already there when rearming is
// reported at once; the peer's FIN is reported; after Close nothing is,
// and the poller's goroutine ends with its last socket.
func TestPoller(t *testing.T) {
	before := runtime.NumGoroutine()
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	s, c := tcpPair(t)
	rc, err := s.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{}, 10)
	d, err := p.Register(rc, func() { ready <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	quiet(t, ready, "nothing to read")
	_, _ = c.Write([]byte("a"))
	wait(t, ready, "data")
	_, _ = c.Write([]byte("b"))
	quiet(t, ready, "not rearmed")
	if err := d.Rearm(); err != nil {
		t.Fatal(err)
	}
	wait(t, ready, "data unread when rearmed")
	drain(t, rc)
	if err := d.Rearm(); err != nil {
		t.Fatal(err)
	}
	quiet(t, ready, "all read")
	_ = c.CloseWrite()
	wait(t, ready, "FIN")

	d.Close()
	d.Close() // idempotent
	if err := d.Rearm(); err == nil {
		t.Fatal("Rearm after Close succeeded")
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before: the poller's did not end", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A new registration starts a new instance.
	s2, c2 := tcpPair(t)
	rc2, _ := s2.SyscallConn()
	d2, err := p.Register(rc2, func() { ready <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c2.Write([]byte("x"))
	wait(t, ready, "second instance")
	// A socket closed while registered: Rearm fails, Close is harmless.
	_ = s2.Close()
	if err := d2.Rearm(); err == nil {
		t.Fatal("Rearm of a closed socket succeeded")
	}
	d2.Close()
}

func drain(t *testing.T, rc syscall.RawConn) {
	t.Helper()
	buf := make([]byte, 64)
	_ = rc.Read(func(fd uintptr) bool {
		for {
			if n, err := syscall.Read(int(fd), buf); n <= 0 || err != nil {
				return true
			}
		}
	})
}
