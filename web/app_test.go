package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAppIndex(t *testing.T) {
	h := App()
	// Client-side routes get the page too, so reloads and shared links work.
	for _, p := range []string{"/app/", "/app/index.html", "/app/c/conv123", "/app/some/route"} {
		rec := get(t, h, p, nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: status %d", p, rec.Code)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("GET %s: Content-Type %q", p, ct)
		}
		if cc := rec.Header().Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache", p, cc)
		}
		csp := rec.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: Content-Security-Policy %q", p, csp)
		}
		if !strings.Contains(rec.Body.String(), `id="root"`) {
			t.Errorf("GET %s: no #root mount point", p)
		}
	}
}

func TestAppRedirectsToSlash(t *testing.T) {
	rec := get(t, App(), "/app?x=1", nil)
	if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "/app/?x=1" {
		t.Fatalf("GET /app: status %d, Location %q", rec.Code, rec.Header().Get("Location"))
	}
}

// Every file the page references (transitively) is served under /app/ with
// the right caching, and nothing comes from a CDN.
func TestAppAssetsServed(t *testing.T) {
	h := App()
	body := get(t, h, "/app/", nil).Body.String()
	var queue []string
	for _, m := range attrRef.FindAllStringSubmatch(body, -1) {
		if !strings.HasPrefix(m[1], "/app/") {
			t.Errorf("index.html references %q, want a path under /app/", m[1])
		}
		queue = append(queue, m[1])
	}
	if len(queue) < 2 {
		t.Fatalf("index.html references %d files, want the script and the stylesheet at least", len(queue))
	}
	seen := map[string]bool{}
	for len(queue) > 0 {
		ref := queue[0]
		queue = queue[1:]
		if seen[ref] {
			continue
		}
		seen[ref] = true
		rec := get(t, h, ref, nil)
		if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
			t.Errorf("GET %s: status %d, %d bytes", ref, rec.Code, rec.Body.Len())
			continue
		}
		if strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
			t.Errorf("GET %s: served HTML (the SPA fallback) instead of the file", ref)
		}
		if strings.HasPrefix(ref, "/app/assets/") {
			if cc := rec.Header().Get("Cache-Control"); cc != cacheImmutable {
				t.Errorf("GET %s: Cache-Control %q", ref, cc)
			}
		}
		text := rec.Body.String()
		for _, host := range cdnHosts {
			if strings.Contains(text, host) {
				t.Errorf("%s references CDN %s", ref, host)
			}
		}
		for _, m := range assetRef.FindAllString(text, -1) {
			queue = append(queue, "/app/"+m)
		}
	}
	for p := range loadAppFiles() {
		if p != "/" && p != "/index.html" && !seen["/app"+p] {
			t.Errorf("embedded %s is never referenced", p)
		}
	}
}

func TestAppNotFound(t *testing.T) {
	h := App()
	for _, p := range []string{"/app/assets/nope.js", "/app/assets/", "/app/nope.js", "/app/c/x.css", "/apples", "/", "/graphql"} {
		if rec := get(t, h, p, nil); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, rec.Code)
		}
	}
}

func TestAppMethodNotAllowed(t *testing.T) {
	rec := httptest.NewRecorder()
	App().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/app/c/x", strings.NewReader("{}")))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /app/c/x: status %d, want 405", rec.Code)
	}
}
