package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/config"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// With no configuration the server keeps its SQLite file and attachments
// under ./data, logs the URLs it serves, and stops cleanly when its context
// ends (as it does on SIGINT/SIGTERM), ending open subscription streams.
func TestServeOnDefaultsAndStopCleanly(t *testing.T) {
	t.Chdir(t.TempDir())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg, err := config.Load(func(k string) (string, bool) {
		if k == "ADDR" {
			return addr, true
		}
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(slog.NewJSONHandler(&logs, nil))) }()

	base := "http://" + addr
	var resp *http.Response
	for i := 0; ; i++ {
		resp, err = http.Get(base + "/readyz")
		if err == nil {
			break
		}
		if i > 200 {
			t.Fatalf("server did not come up: %v\n%s", err, logs.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz = %d", resp.StatusCode)
	}
	for _, p := range []string{"data/parley.db", "data/attachments"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was not created: %v", p, err)
		}
	}
	for _, url := range []string{base + "/graphql", base + "/healthz", base + "/readyz", base + "/metrics"} {
		if !strings.Contains(logs.String(), url) {
			t.Errorf("start-up log does not name %s:\n%s", url, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "JWT_SECRET is not set") {
		t.Error("no warning about the random JWT secret")
	}

	// An open SSE stream must not hold up the shutdown.
	reg, err := http.Post(base+"/graphql", "application/json", strings.NewReader(
		`{"query":"mutation { register(username: \"carol\", password: \"password-123\") { token } }"}`))
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Data struct{ Register struct{ Token string } }
	}
	if err := json.NewDecoder(reg.Body).Decode(&out); err != nil || out.Data.Register.Token == "" {
		t.Fatalf("register: %v %+v", err, out)
	}
	reg.Body.Close()
	req, _ := http.NewRequest(http.MethodPost, base+"/graphql",
		strings.NewReader(`{"query":"subscription { inbox { type } }"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+out.Data.Register.Token)
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()

	first := make([]byte, 1)
	if _, err := stream.Body.Read(first); err != nil {
		t.Fatalf("the SSE stream did not open: %v", err)
	}
	streamEnded := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, stream.Body); close(streamEnded) }()

	stop()
	select {
	case <-streamEnded:
	case <-time.After(5 * time.Second):
		t.Fatal("the SSE stream was not ended by the shutdown")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server did not stop within 5 s")
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Errorf("no stop log:\n%s", logs.String())
	}
}
