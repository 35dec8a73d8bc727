// Package web embeds the browser UI that ships inside the Parley binary.
//
// It exists so that `go run .` (or the released binary) can serve a GraphiQL
// page for exploring and testing the GraphQL API with no Node.js toolchain,
// no internet access and no CDN: the page is bundled ahead of time with Vite
// from web/graphiql (see web/README.md and web/build.sh), the build output in
// web/graphiql/dist is committed, and it is compiled into the binary with an
// embed directive. Every JS, CSS, font and web-worker file the page needs is
// served by the handler returned from GraphiQL.
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

const (
	distDir = "graphiql/dist"

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

// loadFiles indexes the embedded build by URL path: "/" and "/index.html"
// for the page, "/assets/<name>" for everything else Vite emitted.
var loadFiles = sync.OnceValue(func() map[string]*file {
	files := make(map[string]*file)
	err := fs.WalkDir(graphiqlDist, distDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := graphiqlDist.ReadFile(p)
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
		}
		return nil
	})
	if err != nil {
		// The embedded tree is fixed at compile time; failing to walk it is a
		// build defect, not a run-time condition.
		panic("web: reading embedded GraphiQL build: " + err.Error())
	}
	if files["/"] == nil {
		panic("web: embedded GraphiQL build has no index.html; run web/build.sh")
	}
	return files
})

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
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.contentType)
		h.Set("Cache-Control", f.cacheControl)
		h.Set("X-Content-Type-Options", "nosniff")
		if f.cacheControl == cacheRevalidate {
			h.Set("Content-Security-Policy", contentSecurityPolicy)
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
	})
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
