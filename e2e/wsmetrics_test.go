package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/apptest"
)

func scrape(t *testing.T, s *apptest.Server) string {
	t.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func waitMetric(t *testing.T, s *apptest.Server, line string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(scrape(t, s), line+"\n") {
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed %q", line)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Open WebSocket connections and how they ended are on /metrics.
func TestWebSocketConnectionMetrics(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "WS_MAX_CONNECTIONS_PER_USER=1")
	u := s.RegisterFor(t, "metered")
	c := s.ConnectAs(u)
	waitMetric(t, s, "parley_ws_connections 1")
	// Over the per-user cap: closed by the server with 4429.
	ws := s.Dial(apptest.TransportWS)
	ws.Send(map[string]any{"type": "connection_init", "payload": map[string]any{"token": u.Token}})
	for {
		if _, err := ws.TryRead(5 * time.Second); err != nil {
			break
		}
	}
	waitMetric(t, s, `parley_ws_closes_total{code="4429"} 1`)
	c.Close()
	waitMetric(t, s, "parley_ws_connections 0")
	waitMetric(t, s, `parley_ws_closes_total{code="peer"} 1`)
}
