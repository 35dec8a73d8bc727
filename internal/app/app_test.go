package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/config"
)

// On shutdown /readyz fails first while everything else still serves;
// after SHUTDOWN_DELAY the listener closes and Serve returns.
func TestShutdownFailsReadinessFirst(t *testing.T) {
	a := newTestApp(t, map[string]string{"SHUTDOWN_DELAY": "700ms"})
	ln, base := listenLoopback(t)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz before shutdown = %d %s", code, body)
	}
	stop()
	deadline := time.Now().Add(2 * time.Second)
	for {
		code, body := get("/readyz")
		if code == http.StatusServiceUnavailable && strings.Contains(body, "draining") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz during the shutdown delay = %d %s", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz during the delay = %d: the server must still serve", code)
	}
	select {
	case err := <-done:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the delay")
	}
	if code, _ := get("/healthz"); code != 0 {
		t.Fatalf("the listener still answers after shutdown (%d)", code)
	}
}

// pprof answers on the debug listener only, never on the public one.
func TestProfilesOnlyOnDebugListener(t *testing.T) {
	a := newTestApp(t, nil)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	pub, pubURL := listenLoopback(t)
	dbg, dbgURL := listenLoopback(t)
	go func() { _ = a.Serve(ctx, pub) }()
	debugDone := make(chan error, 1)
	go func() { debugDone <- a.ServeDebug(ctx, dbg) }()
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(dbgURL + "/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Errorf("debug listener: %d %.200s", code, body)
	}
	if code, _ := get(pubURL + "/debug/pprof/goroutine?debug=1"); code != http.StatusNotFound {
		t.Errorf("public listener served /debug/pprof/: %d", code)
	}
	stop()
	select {
	case err := <-debugDone:
		if err != nil {
			t.Errorf("ServeDebug: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("debug listener still serving after its context ended")
	}
}

// On shutdown Serve waits for graphql-transport-ws connections to finish
// their 1012 close handshake: the frame must not be cut off by the exit.
func TestShutdownWaitsForWebSocketClose(t *testing.T) {
	a := newTestApp(t, map[string]string{"RATE_LIMIT_AUTH": "off"})
	ln, base := listenLoopback(t)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- a.Serve(ctx, ln) }()

	resp, err := http.Post(base+"/graphql", "application/json",
		strings.NewReader(`{"query": "mutation { register(username: \"shutdown_ws\", password: \"password-123\") { token } }"}`))
	if err != nil {
		t.Fatal(err)
	}
	var reg struct {
		Data struct{ Register struct{ Token string } }
	}
	err = json.NewDecoder(resp.Body).Decode(&reg)
	resp.Body.Close()
	if err != nil || reg.Data.Register.Token == "" {
		t.Fatalf("register: %v %+v", err, reg)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(wctx, "ws"+strings.TrimPrefix(base, "http")+"/graphql", &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	init, _ := json.Marshal(map[string]any{"type": "connection_init", "payload": map[string]any{"token": reg.Data.Register.Token}})
	if err := c.Write(wctx, websocket.MessageText, init); err != nil {
		t.Fatal(err)
	}
	if _, ack, err := c.Read(wctx); err != nil || !strings.Contains(string(ack), "connection_ack") {
		t.Fatalf("init: %s %v", ack, err)
	}
	closed := make(chan int, 1)
	go func() {
		for {
			if _, _, err := c.Read(wctx); err != nil {
				closed <- int(websocket.CloseStatus(err))
				return
			}
		}
	}()
	stop()
	select {
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if n := a.Hijacked.Open(); n != 0 {
		t.Errorf("Serve returned with %d WebSockets open", n)
	}
	if code := <-closed; code != 1012 {
		t.Errorf("close code %d, want 1012", code)
	}
}

// newTestApp builds an App on a fresh SQLite database with env on top of
// the essentials, closed when the test ends.
func newTestApp(t *testing.T, env map[string]string) *App {
	t.Helper()
	dir := t.TempDir()
	vars := map[string]string{
		"DATABASE_URL": filepath.Join(dir, "db"), "ATTACHMENT_DIR": filepath.Join(dir, "att"),
		"JWT_SECRET": strings.Repeat("s", 32),
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// listenLoopback returns a listener on a free loopback port and its URL.
func listenLoopback(t *testing.T) (net.Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, "http://" + ln.Addr().String()
}
