// Package web embeds the browser UI that ships inside the Parley binary.
//
// It exists so that `go run .` (or the released binary) can serve a GraphiQL
// page for exploring and testing the GraphQL API, and a reference web chat
// built on Apollo Client, with no Node.js toolchain, no internet access and
// no CDN: both are bundled ahead of time with Vite from web/graphiql and
// web/app (see web/README.md and web/build.sh), the build output in their
// dist directories is committed, and it is compiled into the binary with
// embed directives. Every JS, CSS, font and web-worker file a page needs is
// served by the handlers returned from GraphiQL and App.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed graphiql/dist
var graphiqlDist embed.FS

//go:embed app/dist
var appDist embed.FS

// AppPrefix is where App expects to be mounted: the chat's build uses
// absolute /app/ URLs (Vite's base).
const AppPrefix = "/app"

const (
	// Cache-Control for content-hashed files under /assets/.
	cacheImmutable = "public, max-age=31536000, immutable"
	// Cache-Control for index.html: always revalidate (cheap thanks to ETag),
	// so a new build's asset names are picked up at once.
	cacheRevalidate = "no-cache"

	// contentSecurityPolicy only lets the page load code, styles, fonts and
	// workers from its own origin (data: for inlined fonts/icons) and talk to
	// its own origin (HTTP and WebSocket to /graphql). Monaco injects style
	// elements at run time, hence 'unsafe-inline' for styles only.
	contentSecurityPolicy = "default-src 'self'; " +
		"script-src 'self'; " +
		"style-src 'self' 'unsafe-inline'; " +
		"img-src 'self' data:; " +
		"font-src 'self' data:; " +
		"worker-src 'self' blob:; " +
		"connect-src 'self' ws: wss:; " +
		"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"

	// appContentSecurityPolicy is the chat's: React sets styles through the
	// CSSOM and nothing injects style elements, so no 'unsafe-inline' at all.
	appContentSecurityPolicy = "default-src 'self'; " +
		"script-src 'self'; " +
		"style-src 'self'; " +
		"img-src 'self' data:; " +
		"connect-src 'self' ws: wss:; " +
		"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
)

// contentTypes covers the extensions Vite emits, independently of the host's
// MIME tables.
var contentTypes = map[string]string{
	".html":  "text/html; charset=utf-8",
	".js":    "text/javascript; charset=utf-8",
	".mjs":   "text/javascript; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".json":  "application/json",
	".map":   "application/json",
	".svg":   "image/svg+xml",
	".png":   "image/png",
	".ico":   "image/x-icon",
	".ttf":   "font/ttf",
	".otf":   "font/otf",
	".woff":  "font/woff",
	".woff2": "font/woff2",
	".wasm":  "application/wasm",
	".txt":   "text/plain; charset=utf-8",
}

// compressible lists the content types worth gzipping on the fly.
var compressible = map[string]bool{
	".html": true, ".js": true, ".mjs": true, ".css": true, ".json": true,
	".map": true, ".svg": true, ".ttf": true, ".otf": true, ".txt": true, ".wasm": true,
}

type file struct {
	name         string
	data         []byte
	contentType  string
	cacheControl string
	etag         string
	compress     bool

	gzOnce sync.Once
	gz     []byte // nil if compressing does not pay off
}

func (f *file) gzipped() []byte {
	f.gzOnce.Do(func() {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if _, err := zw.Write(f.data); err != nil {
			return
		}
		if err := zw.Close(); err != nil {
			return
		}
		if buf.Len() < len(f.data)*9/10 {
			f.gz = buf.Bytes()
		}
	})
	return f.gz
}

// loadBuild indexes an embedded Vite build by URL path, relative to where
// its handler is mounted: "/" and "/index.html" for the page, "/assets/<name>"
// for everything Vite emitted, and "/<name>" for files copied from public/.
func loadBuild(fsys embed.FS, distDir string) map[string]*file {
	files := make(map[string]*file)
	err := fs.WalkDir(fsys, distDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fsys.ReadFile(p)
		if err != nil {
			return err
		}
		urlPath := strings.TrimPrefix(p, distDir)
		ext := strings.ToLower(path.Ext(p))
		ctype := contentTypes[ext]
		if ctype == "" {
			ctype = mime.TypeByExtension(ext)
		}
		if ctype == "" {
			ctype = "application/octet-stream"
		}
		sum := sha256.Sum256(data)
		f := &file{
			name:         path.Base(p),
			data:         data,
			contentType:  ctype,
			cacheControl: cacheImmutable,
			etag:         `"` + hex.EncodeToString(sum[:12]) + `"`,
			compress:     compressible[ext] && len(data) >= 1024,
		}
		switch {
		case urlPath == "/index.html":
			f.cacheControl = cacheRevalidate
			files["/"] = f
			files["/index.html"] = f
		case strings.HasPrefix(urlPath, "/assets/"):
			files[urlPath] = f
		case strings.Count(urlPath, "/") == 1:
			// Not content-hashed (public/favicon.svg, say): revalidate.
			f.cacheControl = cacheRevalidate
			files[urlPath] = f
		}
		return nil
	})
	if err != nil {
		// The embedded tree is fixed at compile time; failing to walk it is a
		// build defect, not a run-time condition.
		panic("web: reading embedded build " + distDir + ": " + err.Error())
	}
	if files["/"] == nil {
		panic("web: embedded build " + distDir + " has no index.html; run web/build.sh")
	}
	return files
}

// loadFiles and loadAppFiles index each build once, on first use.
var (
	loadFiles    = sync.OnceValue(func() map[string]*file { return loadBuild(graphiqlDist, "graphiql/dist") })
	loadAppFiles = sync.OnceValue(func() map[string]*file { return loadBuild(appDist, "app/dist") })
)

// GraphiQL returns an http.Handler serving the offline GraphiQL page.
//
// Mount it at the root of the server's mux (it uses absolute /assets/ URLs),
// next to the GraphQL endpoint, which the page expects at same-origin
// /graphql (POST, and WebSocket with the graphql-transport-ws protocol):
//
//	mux.Handle("/graphql", graphqlHandler)
//	mux.Handle("/", web.GraphiQL())
//
// It serves index.html at "/" and "/index.html" (Cache-Control: no-cache) and
// the hashed build files under "/assets/" (Cache-Control: public,
// max-age=31536000, immutable), gzip-compressed when the client accepts it.
// Only GET and HEAD are allowed; any other path is 404 Not Found.
func GraphiQL() http.Handler {
	files := loadFiles()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := files[r.URL.Path]
		if f == nil {
			http.NotFound(w, r)
			return
		}
		serveFile(w, r, f, contentSecurityPolicy)
	})
}

// App returns an http.Handler serving the reference web chat (web/app), a
// single-page application that talks to same-origin /graphql over HTTP and
// WebSocket. Mount it at AppPrefix + "/":
//
//	mux.Handle("/app/", web.App())
//
// It serves index.html at "/app/" (Cache-Control: no-cache), the hashed
// build files under "/app/assets/" (immutable, gzip when accepted), and
// index.html again for every other extension-less path under /app/, which
// are the chat's client-side routes (/app/c/<conversation id>), so that a
// reload or a shared link works. "/app" redirects to "/app/". Missing
// assets and other files are 404; only GET and HEAD are allowed.
func App() http.Handler {
	files := loadAppFiles()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rel, ok := strings.CutPrefix(r.URL.Path, AppPrefix)
		switch {
		case !ok || (rel != "" && rel[0] != '/'):
			http.NotFound(w, r)
			return
		case rel == "":
			target := AppPrefix + "/"
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, target, http.StatusMovedPermanently)
			return
		}
		f := files[rel]
		if f == nil {
			// Client-side routes have no extension; a missing build file
			// (an old asset name, a typo) must stay a 404, not become HTML.
			if strings.HasPrefix(rel, "/assets/") || path.Ext(rel) != "" {
				http.NotFound(w, r)
				return
			}
			f = files["/"]
		}
		serveFile(w, r, f, appContentSecurityPolicy)
	})
}

// serveFile writes one embedded file with its caching headers, the page's
// security headers (for index.html) and gzip when the client accepts it.
func serveFile(w http.ResponseWriter, r *http.Request, f *file, csp string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("Cache-Control", f.cacheControl)
	h.Set("X-Content-Type-Options", "nosniff")
	if strings.HasPrefix(f.contentType, "text/html") {
		h.Set("Content-Security-Policy", csp)
		// The page may be opened as /?token=...; do not leak it to links.
		h.Set("Referrer-Policy", "no-referrer")
	}
	body, etag := f.data, f.etag
	if f.compress {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r) {
			if gz := f.gzipped(); gz != nil {
				body = gz
				etag = strings.TrimSuffix(f.etag, `"`) + `-gz"`
				h.Set("Content-Encoding", "gzip")
			}
		}
	}
	h.Set("ETag", etag)
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reports whether the request's Accept-Encoding allows gzip.
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				continue
			}
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}
