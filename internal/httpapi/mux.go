package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/xid"

	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/web"
)

// Check is one readiness check.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Config wires the mux.
type Config struct {
	GraphQL         http.Handler
	Chat            *chat.Service
	Tokens          *auth.Tokens
	Checks          []Check
	Registry        *prometheus.Registry
	Logger          *slog.Logger
	MaxRequestBytes int64
	// TrustForwarded takes client IPs from X-Forwarded-For.
	TrustForwarded bool
	// Draining is set when shutdown has begun: /readyz fails from then on.
	Draining *atomic.Bool
	// AllowedOrigins are the cross origins given CORS (cors.go).
	AllowedOrigins []string
	// HideSchema answers SchemaPath with 404 (INTROSPECTION=false).
	HideSchema bool
}

// New returns the service's whole HTTP surface.
func New(cfg Config) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/graphql", limitBody(cfg.MaxRequestBytes, codeTransportErrors(cfg.GraphQL)))
	mux.Handle("GET /attachments/{id}", attachments(cfg.Chat))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /readyz", readyz(cfg.Checks, cfg.Draining))
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry}))
	mux.Handle("GET "+SchemaPath, schemaDocument(SchemaSDL(), cfg.HideSchema)) // sdl.go
	mux.Handle(web.AppPrefix+"/", web.App())                                   // the web chat; ServeMux redirects /app here
	mux.Handle("/", web.GraphiQL())
	return logRequests(cfg.Logger, traceRequests(withClientIP(cfg.TrustForwarded, authenticate(cfg.Tokens, newOriginPolicy(cfg.AllowedOrigins).cors(mux)))))
}

// authenticate puts the viewer of a valid Bearer token in the context. A
// missing or invalid token leaves the request anonymous; operations that need
// a viewer then fail with UNAUTHENTICATED.
func authenticate(tokens *auth.Tokens, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := r.Header.Get("Authorization"); h != "" {
			if id, err := tokens.Verify(h); err == nil {
				r = r.WithContext(auth.WithViewer(r.Context(), id))
			}
		}
		next.ServeHTTP(w, r)
	})
}

// limitBody answers empty, oversized and malformed JSON bodies itself with a
// GraphQL-shaped BAD_USER_INPUT error, before gqlgen sees them.
func limitBody(limit int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if r.Method != http.MethodPost || r.Header.Get("Upgrade") != "" || mt == "multipart/form-data" {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeGraphQLError(w, http.StatusRequestEntityTooLarge, "BAD_USER_INPUT", fmt.Sprintf("request body exceeds %d bytes", limit))
			return
		case err != nil:
			writeGraphQLError(w, http.StatusBadRequest, "BAD_USER_INPUT", "could not read request body")
			return
		case len(bytes.TrimSpace(body)) == 0:
			writeGraphQLError(w, http.StatusBadRequest, "BAD_USER_INPUT", "request body is empty: send {\"query\": \"…\"}")
			return
		case (mt == "application/json" || mt == "") && !json.Valid(body):
			writeGraphQLError(w, http.StatusBadRequest, "BAD_USER_INPUT", "request body is not valid JSON")
			return
		case (mt == "application/json" || mt == "") && isBatch(body): // limits.go
			writeGraphQLError(w, http.StatusBadRequest, "BAD_USER_INPUT", batchingNotSupportedErrMsg)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}

func writeGraphQLError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{
		"errors": []map[string]any{{"message": msg, "extensions": map[string]string{"code": code}}},
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func readyz(checks []Check, draining *atomic.Bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		results := map[string]string{}
		status := http.StatusOK
		for _, c := range checks {
			if err := c.Fn(ctx); err != nil {
				results[c.Name] = "failing: " + err.Error()
				status = http.StatusServiceUnavailable
			} else {
				results[c.Name] = "ok"
			}
		}
		if draining != nil && draining.Load() {
			results["shutdown"] = "draining"
			status = http.StatusServiceUnavailable
		}
		word := "ok"
		if status != http.StatusOK {
			word = "unavailable"
		}
		writeJSON(w, status, map[string]any{"status": word, "checks": results})
	})
}

// attachments serves attachment bytes to participants of the attachment's
// conversation. Anyone else gets 404, as if it did not exist. The token may
// come as a Bearer header or, for <img src> and download links, as ?token=.
func attachments(svc *chat.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		viewer := auth.Viewer(r.Context())
		if viewer == "" {
			if t := r.URL.Query().Get("token"); t != "" {
				viewer, _ = svc.Authenticate(r.Context(), t)
			}
		}
		if viewer == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="attachments"`)
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		a, f, err := svc.OpenAttachment(r.Context(), viewer, r.PathValue("id"))
		if errors.Is(err, chat.ErrNotFound) {
			http.NotFound(w, r)
			return
		}
		if err != nil {
			slog.ErrorContext(r.Context(), "open attachment", "err", err)
			http.Error(w, "internal server error", http.StatusInternalServerError)
			return
		}
		defer f.Close()
		h := w.Header()
		h.Set("Content-Type", a.ContentType)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
		h.Set("Cache-Control", "private, max-age=3600")
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": a.Filename}))
		http.ServeContent(w, r, "", a.CreatedAt, f)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and Hijack (SSE, WebSocket).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush keeps SSE streaming through the wrapper.
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

type requestIDKey struct{}

// RequestID returns the request's ID, for logs.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// logRequests gives every request an ID (echoed as X-Request-Id) and logs
// one line when it ends. Query strings are not logged: they may hold tokens.
func logRequests(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if id == "" || len(id) > 64 {
			id = xid.New().String()
		}
		w.Header().Set("X-Request-Id", id)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
		ctx, info := withRequestInfo(r.Context()) // filled in by observe.go
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w}
		start := time.Now()
		next.ServeHTTP(sw, r)
		level := slog.LevelDebug
		if sw.status >= 500 {
			level = slog.LevelError
		} else if r.URL.Path == "/graphql" || strings.HasPrefix(r.URL.Path, "/attachments/") {
			level = slog.LevelInfo
		}
		log.LogAttrs(r.Context(), level, "request", append([]slog.Attr{
			slog.String("request_id", id), slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", sw.status), slog.Int64("bytes", sw.bytes),
			slog.String("duration", time.Since(start).String()),
			slog.String("ws", strconv.FormatBool(r.Header.Get("Upgrade") != ""))}, info.attrs()...)...)
	})
}
