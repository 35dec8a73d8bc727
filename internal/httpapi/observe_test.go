package httpapi

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

func TestLimitNames(t *testing.T) {
	for key, want := range map[string]string{"mut:u1": "mutations", "auth:10.0.0.1": "auth", "ws:u1": "connections", "x": "other"} {
		if got := limitName(key); got != want {
			t.Errorf("limitName(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestContextLoggerAddsTheRequestIDOnce(t *testing.T) {
	var buf bytes.Buffer
	log := ContextLogger(slog.New(slog.NewTextHandler(&buf, nil)))
	if ContextLogger(log) != log {
		t.Error("wrapped twice")
	}
	ctx := context.WithValue(context.Background(), requestIDKey{}, "req-1")
	log.InfoContext(ctx, "a")
	log.With("k", "v").InfoContext(ctx, "b", "request_id", "req-1")
	log.Info("c") // no request
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines: %q", lines)
	}
	for i, want := range []int{1, 1, 0} {
		if n := strings.Count(lines[i], "request_id=req-1"); n != want {
			t.Errorf("line %q has request_id %d times, want %d", lines[i], n, want)
		}
	}
}
