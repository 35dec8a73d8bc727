package graph

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
)

// A request its client abandoned is not an internal error in the logs;
// anything else unexpected is, and both stay masked for the client.
func TestErrorPresenterLogsCancelledRequestsAsInfo(t *testing.T) {
	var buf bytes.Buffer
	present := ErrorPresenter(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	base := graphql.WithResponseContext(context.Background(), graphql.DefaultErrorPresenter, nil)

	gone, cancel := context.WithCancel(base)
	cancel()
	e := present(gone, fmt.Errorf("send message: %w", context.Canceled))
	if line := buf.String(); !strings.Contains(line, "level=INFO") || !strings.Contains(line, "cancelled by the client") {
		t.Errorf("cancelled request logged as %q", line)
	}
	if e.Extensions["code"] != CodeInternal || e.Message != "internal server error" {
		t.Errorf("cancelled request presented as %+v", e)
	}

	buf.Reset()
	e = present(base, errors.New("disk on fire"))
	if line := buf.String(); !strings.Contains(line, "level=ERROR") || !strings.Contains(line, "internal error") {
		t.Errorf("internal error logged as %q", line)
	}
	if e.Extensions["code"] != CodeInternal || strings.Contains(e.Message, "fire") {
		t.Errorf("internal error presented as %+v", e)
	}
}
