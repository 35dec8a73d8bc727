package web

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, target string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func indexHTML(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := get(t, h, "/", nil)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /: status %d", rec.Code)
	}
	return rec.Body.String()
}

var (
	attrRef = regexp.MustCompile(`(?i)\b(?:src|href)\s*=\s*["']([^"']+)["']`)
	// "/assets/x.js" and, in Vite's preload maps, "assets/x.css".
	assetRef = regexp.MustCompile(`\bassets/[A-Za-z0-9._-]+\.[A-Za-z0-9]+`)
	// Chunks and CSS refer to their siblings relatively ("./monaco-x.js").
	siblingRef = regexp.MustCompile(`["'\x60(]\./([A-Za-z0-9._-]+\.(?:js|css|ttf|woff2?))`)
	cdnHosts   = []string{
		"unpkg.com", "cdn.jsdelivr.net", "esm.sh/", "fonts.googleapis.com",
		"fonts.gstatic.com", "cdnjs.cloudflare.com", "cdn.skypack.dev",
	}
)

func TestIndex(t *testing.T) {
	h := GraphiQL()
	for _, p := range []string{"/", "/index.html"} {
		rec := get(t, h, p, nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: status %d", p, rec.Code)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("GET %s: Content-Type %q, want text/html", p, ct)
		}
		if cc := rec.Header().Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache", p, cc)
		}
		body := rec.Body.String()
		if !strings.Contains(body, "<script") {
			t.Errorf("GET %s: no <script> tag in:\n%s", p, body)
		}
		if !strings.Contains(body, `id="graphiql"`) {
			t.Errorf("GET %s: no #graphiql mount point", p)
		}
	}
}

func TestIndexHasNoExternalURLs(t *testing.T) {
	body := indexHTML(t, GraphiQL())
	if strings.Contains(body, "https://") || strings.Contains(body, "http://") {
		t.Errorf("index.html references an absolute URL:\n%s", body)
	}
	for _, m := range attrRef.FindAllStringSubmatch(body, -1) {
		if !strings.HasPrefix(m[1], "/") || strings.HasPrefix(m[1], "//") {
			t.Errorf("index.html references %q, want a same-origin absolute path", m[1])
		}
	}
	for _, host := range cdnHosts {
		if strings.Contains(body, host) {
			t.Errorf("index.html references CDN %s", host)
		}
	}
}

// TestAssetsServed fetches every file index.html references, and,
// transitively, every /assets/ file those reference (lazy chunks, Monaco web
// workers, fonts), checking each is served with a body and immutable caching.
func TestAssetsServed(t *testing.T) {
	h := GraphiQL()
	body := indexHTML(t, h)

	var queue []string
	for _, m := range attrRef.FindAllStringSubmatch(body, -1) {
		queue = append(queue, m[1])
	}
	if len(queue) == 0 {
		t.Fatal("index.html references no assets")
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
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s: status %d", ref, rec.Code)
			continue
		}
		if rec.Body.Len() == 0 {
			t.Errorf("GET %s: empty body", ref)
		}
		if strings.HasPrefix(ref, "/assets/") {
			if cc := rec.Header().Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
				t.Errorf("GET %s: Cache-Control %q", ref, cc)
			}
		}
		ct := rec.Header().Get("Content-Type")
		switch path.Ext(ref) {
		case ".js":
			if !strings.HasPrefix(ct, "text/javascript") {
				t.Errorf("GET %s: Content-Type %q", ref, ct)
			}
		case ".css":
			if !strings.HasPrefix(ct, "text/css") {
				t.Errorf("GET %s: Content-Type %q", ref, ct)
			}
		case ".ttf", ".woff", ".woff2":
			if !strings.HasPrefix(ct, "font/") {
				t.Errorf("GET %s: Content-Type %q", ref, ct)
			}
		}
		if ext := path.Ext(ref); ext == ".js" || ext == ".css" {
			text := rec.Body.String()
			for _, host := range cdnHosts {
				if strings.Contains(text, host) {
					t.Errorf("%s references CDN %s", ref, host)
				}
			}
			for _, m := range assetRef.FindAllString(text, -1) {
				queue = append(queue, "/"+m)
			}
			for _, m := range siblingRef.FindAllStringSubmatch(text, -1) {
				queue = append(queue, path.Join(path.Dir(ref), m[1]))
			}
		}
	}
	var workers int
	for ref := range seen {
		if strings.Contains(ref, ".worker") {
			workers++
		}
	}
	if workers == 0 {
		t.Errorf("no Monaco web worker found among %d served assets", len(seen))
	}
	for p := range loadFiles() {
		if !seen[p] && p != "/" && p != "/index.html" {
			t.Errorf("embedded %s is never referenced from index.html or another asset", p)
		}
	}
	t.Logf("served %d assets (%d workers)", len(seen), workers)
}

func TestEveryEmbeddedAssetIsReachable(t *testing.T) {
	h := GraphiQL()
	for p := range loadFiles() {
		if rec := get(t, h, p, nil); rec.Code != http.StatusOK {
			t.Errorf("GET %s: status %d", p, rec.Code)
		}
	}
}

func TestNotFound(t *testing.T) {
	h := GraphiQL()
	for _, p := range []string{
		"/graphql", "/nope", "/assets", "/assets/", "/assets/nope.js",
		"/graphiql/dist/index.html", "/assets/../index.html", "/index.html/",
	} {
		if rec := get(t, h, p, nil); rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, rec.Code)
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	rec := httptest.NewRecorder()
	GraphiQL().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("{}")))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /: status %d, want 405", rec.Code)
	}
	if allow := rec.Header().Get("Allow"); allow != "GET, HEAD" {
		t.Errorf("Allow %q", allow)
	}
}

func firstScript(t *testing.T, h http.Handler) string {
	t.Helper()
	for _, m := range attrRef.FindAllStringSubmatch(indexHTML(t, h), -1) {
		if strings.HasSuffix(m[1], ".js") {
			return m[1]
		}
	}
	t.Fatal("index.html references no .js file")
	return ""
}

func TestGzipAndConditional(t *testing.T) {
	h := GraphiQL()
	js := firstScript(t, h)

	plain := get(t, h, js, nil)
	if plain.Header().Get("Content-Encoding") != "" {
		t.Fatalf("GET %s without Accept-Encoding: Content-Encoding %q", js, plain.Header().Get("Content-Encoding"))
	}

	gz := get(t, h, js, map[string]string{"Accept-Encoding": "br, gzip;q=0.8"})
	if gz.Code != http.StatusOK || gz.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("GET %s with gzip: status %d, Content-Encoding %q", js, gz.Code, gz.Header().Get("Content-Encoding"))
	}
	if !strings.Contains(gz.Header().Get("Vary"), "Accept-Encoding") {
		t.Errorf("missing Vary: Accept-Encoding")
	}
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(unzipped, plain.Body.Bytes()) {
		t.Errorf("gzip body differs from identity body")
	}
	if gz.Header().Get("ETag") == plain.Header().Get("ETag") {
		t.Errorf("gzip and identity share ETag %s", gz.Header().Get("ETag"))
	}

	if rec := get(t, h, js, map[string]string{"Accept-Encoding": "gzip;q=0"}); rec.Header().Get("Content-Encoding") != "" {
		t.Errorf("gzip;q=0 still got Content-Encoding %q", rec.Header().Get("Content-Encoding"))
	}

	etag := get(t, h, "/", nil).Header().Get("ETag")
	if etag == "" {
		t.Fatal("index.html has no ETag")
	}
	if rec := get(t, h, "/", map[string]string{"If-None-Match": etag}); rec.Code != http.StatusNotModified {
		t.Errorf("GET / with If-None-Match: status %d, want 304", rec.Code)
	}
}
