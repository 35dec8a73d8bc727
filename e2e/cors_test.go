package e2e

// Cross-origin access (ALLOWED_ORIGINS): CORS on /graphql and
// /attachments/, and the origin check of WebSocket upgrades.

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/apptest"
)

func corsDo(t *testing.T, method, url, origin string, header map[string]string, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func corsPreflight(t *testing.T, url, origin string) *http.Response {
	t.Helper()
	return corsDo(t, http.MethodOptions, url, origin, map[string]string{
		"Access-Control-Request-Method":  "POST",
		"Access-Control-Request-Headers": "authorization, content-type",
	}, "")
}

// corsWS tries a WebSocket upgrade with origin and returns the refusal's
// status, or 101.
func corsWS(t *testing.T, s *apptest.Server, origin string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, resp, err := hygDial(ctx, s.URL, apptest.TransportWS, origin)
	if err == nil {
		c.CloseNow()
		return http.StatusSwitchingProtocols
	}
	if resp == nil {
		t.Fatalf("dial with Origin %q: %v", origin, err)
	}
	return resp.StatusCode
}

const corsQuery = `{"query":"{ __typename }"}`

func TestCORSAllowedOrigins(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "ALLOWED_ORIGINS=https://app.example.com, *.trusted.test")
	for _, path := range []string{"/graphql", "/attachments/att_nothing"} {
		for _, origin := range []string{"https://app.example.com", "https://x.trusted.test", "http://y.trusted.test"} {
			resp := corsPreflight(t, s.URL+path, origin)
			h := resp.Header
			if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != origin {
				t.Fatalf("preflight %s from %s: %d, Allow-Origin %q", path, origin, resp.StatusCode, h.Get("Access-Control-Allow-Origin"))
			}
			for _, want := range []string{"Authorization", "Content-Type"} {
				if !strings.Contains(h.Get("Access-Control-Allow-Headers"), want) {
					t.Errorf("preflight %s: Allow-Headers %q lacks %s", path, h.Get("Access-Control-Allow-Headers"), want)
				}
			}
			if !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") || h.Get("Access-Control-Max-Age") == "" ||
				!strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") || h.Get("Access-Control-Allow-Credentials") != "" {
				t.Errorf("preflight %s: headers %v", path, h)
			}
		}
	}
	// The actual requests carry the header too, errors included.
	resp := corsDo(t, http.MethodPost, s.URL+"/graphql", "https://app.example.com", map[string]string{"Content-Type": "application/json"}, corsQuery)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Request-Id") {
		t.Fatalf("POST: %d %v", resp.StatusCode, resp.Header)
	}
	resp = corsDo(t, http.MethodGet, s.URL+"/attachments/att_nothing", "https://x.trusted.test", nil, "")
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Access-Control-Allow-Origin") != "https://x.trusted.test" {
		t.Fatalf("attachment without token: %d %v", resp.StatusCode, resp.Header)
	}

	// Anyone else: no CORS headers, the preflight and the upgrade refused.
	for _, origin := range []string{"https://evil.example", "http://app.example.com", "https://trusted.test.evil.example", "null"} {
		resp := corsPreflight(t, s.URL+"/graphql", origin)
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from %s: %d, Allow-Origin %q", origin, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}
		resp = corsDo(t, http.MethodPost, s.URL+"/graphql", origin, map[string]string{"Content-Type": "application/json"}, corsQuery)
		if resp.Header.Get("Access-Control-Allow-Origin") != "" || !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Origin") {
			t.Errorf("POST from %s: %v", origin, resp.Header)
		}
		if code := corsWS(t, s, origin); code != http.StatusForbidden {
			t.Errorf("WebSocket from %s: %d, want 403", origin, code)
		}
	}

	// Allowed origins upgrade, and so do clients without an Origin.
	for _, origin := range []string{"https://app.example.com", "https://x.trusted.test", ""} {
		if code := corsWS(t, s, origin); code != http.StatusSwitchingProtocols {
			t.Errorf("WebSocket from %q: %d, want 101", origin, code)
		}
	}
	resp = corsDo(t, http.MethodPost, s.URL+"/graphql", "", map[string]string{"Content-Type": "application/json"}, corsQuery)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("POST without Origin: %d %v", resp.StatusCode, resp.Header)
	}
}

// By default only the server's own origin may use it from a browser.
func TestCORSDefaultSameOrigin(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t)
	resp := corsPreflight(t, s.URL+"/graphql", "https://app.example.com")
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("cross-origin preflight: %d %v", resp.StatusCode, resp.Header)
	}
	if code := corsWS(t, s, "https://app.example.com"); code != http.StatusForbidden {
		t.Fatalf("cross-origin WebSocket: %d, want 403", code)
	}
	for _, origin := range []string{s.URL, ""} { // GraphiQL at /, and non-browser clients
		if code := corsWS(t, s, origin); code != http.StatusSwitchingProtocols {
			t.Fatalf("WebSocket from %q: %d, want 101", origin, code)
		}
	}
}

// "*" lets any origin in; there are no credentials to protect (bearer
// tokens, no cookies).
func TestCORSAnyOrigin(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "ALLOWED_ORIGINS=*")
	resp := corsPreflight(t, s.URL+"/graphql", "https://anywhere.example")
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	if code := corsWS(t, s, "https://anywhere.example"); code != http.StatusSwitchingProtocols {
		t.Fatalf("WebSocket: %d, want 101", code)
	}
}
