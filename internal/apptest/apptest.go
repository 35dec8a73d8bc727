// Package apptest starts a real replica (real database, real HTTP server on
// loopback) for end-to-end tests — on SQLite, or on PostgreSQL with
// PARLEY_TEST_DATABASE=postgres — and speaks to it the way clients do: JSON
// over HTTP, graphql-transport-ws and legacy graphql-ws over WebSocket, SSE.
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/app"
	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/httpapi"
	"github.com/parley-chat/parley/internal/testinfra"
)

// Server is a running replica.
type Server struct {
	URL string
	App *app.App
	t   testing.TB

	ts         *httptest.Server
	endStreams context.CancelCauseFunc
	stopOnce   sync.Once
}

// DatabaseURL is the replica's DATABASE_URL: pass it to StartReplica for
// another replica on the same database.
func (s *Server) DatabaseURL() string { return s.App.Config.DatabaseURL }

// Start runs a replica on a fresh database: SQLite in a temp dir, or a
// database of its own on the test process's PostgreSQL server when
// PARLEY_TEST_DATABASE=postgres (see TestDatabaseURL). env overrides
// configuration variables (name=value).
func Start(t testing.TB, env ...string) *Server {
	t.Helper()
	return StartWith(t, nil, env...)
}

// StartWith is Start with options for app.New (such as another broker).
func StartWith(t testing.TB, opts []app.Option, env ...string) *Server {
	t.Helper()
	if _, ok := lookup(env, "DATABASE_URL"); ok {
		return start(t, opts, env)
	}
	return start(t, opts, append([]string{"DATABASE_URL=" + TestDatabaseURL(t)}, env...))
}

// StartReplica runs another replica on the database of databaseURL (say,
// another Server's DatabaseURL()), as a second instance of one deployment:
// same JWT secret, and the same attachment directory as the replica started
// on that database (replicas share storage), or a fresh one if there is
// none. env adds or overrides configuration variables, such as REDIS_URL.
// The database belongs to the first replica: it lives as long as that
// replica's test.
func StartReplica(t testing.TB, databaseURL string, opts []app.Option, env ...string) *Server {
	t.Helper()
	vars := []string{"DATABASE_URL=" + databaseURL}
	if dir, ok := attachmentDirs.Load(databaseURL); ok {
		vars = append(vars, "ATTACHMENT_DIR="+dir.(string))
	}
	return start(t, opts, append(vars, env...))
}

// TestDatabaseURL returns a fresh, empty database for t, of the kind
// PARLEY_TEST_DATABASE selects: unset or "sqlite" for a SQLite file in a
// temp dir, "postgres" for a database of its own on the PostgreSQL server
// that testinfra starts for the test process (the package's TestMain must
// use testinfra.Run). The database goes away with t.
func TestDatabaseURL(t testing.TB) string {
	t.Helper()
	switch kind := os.Getenv("PARLEY_TEST_DATABASE"); kind {
	case "", "sqlite":
		return filepath.Join(t.TempDir(), "test.db")
	case "postgres", "postgresql":
		return testinfra.PostgresURL(t)
	default:
		t.Fatalf("PARLEY_TEST_DATABASE=%q: want sqlite or postgres", kind)
		return ""
	}
}

// attachmentDirs maps the database URLs of started replicas to their
// attachment directories, for StartReplica.
var attachmentDirs sync.Map

func lookup(env []string, name string) (string, bool) {
	v, ok := "", false
	for _, kv := range env {
		if k, val, _ := strings.Cut(kv, "="); k == name {
			v, ok = val, true
		}
	}
	return v, ok
}

// LogDiscard, set to any non-empty value in Start's env (LogDiscard+"=1"),
// makes the replica log as a deployed one does (LOG_FORMAT, LOG_LEVEL) to
// io.Discard instead of to the test's log: benchmarks pay for formatting
// the log lines without keeping them.
const LogDiscard = "APPTEST_LOG_DISCARD"

func start(t testing.TB, opts []app.Option, env []string) *Server {
	t.Helper()
	vars := map[string]string{
		"ATTACHMENT_DIR": filepath.Join(t.TempDir(), "attachments"),
		"JWT_SECRET":     "test-secret-test-secret-test-secret-0123",
		"LOG_LEVEL":      "warn",
		// Tests register and connect far faster than any user; the limits
		// have tests of their own that turn them on.
		"RATE_LIMIT_AUTH":        "off",
		"RATE_LIMIT_MUTATIONS":   "off",
		"RATE_LIMIT_CONNECTIONS": "off",
		// Some tests open many sockets as one user.
		"WS_MAX_CONNECTIONS_PER_USER": "1000",
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: cfg.LogLevel}))
	if vars[LogDiscard] != "" {
		// Benchmarks: the production logger (LOG_FORMAT, LOG_LEVEL) with
		// its formatting cost, writing nowhere.
		log = app.NewLogger(io.Discard, cfg)
	}
	a, err := app.New(context.Background(), cfg, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, loaded := attachmentDirs.LoadOrStore(cfg.DatabaseURL, cfg.AttachmentDir); !loaded {
		t.Cleanup(func() { attachmentDirs.Delete(cfg.DatabaseURL) })
	}
	// Streams (WebSocket, SSE) end when this context does, as they do in a
	// replica shutting down.
	streams, endStreams := context.WithCancelCause(context.Background())
	ts := httptest.NewUnstartedServer(a.Handler)
	ts.Config.BaseContext = func(net.Listener) context.Context { return httpapi.StreamsContext(streams) }
	ts.Start()
	srv := &Server{URL: ts.URL, App: a, t: t, ts: ts, endStreams: endStreams}
	t.Cleanup(srv.Stop)
	return srv
}

// Stop stops the replica as a shutdown does: streams end, connections are
// cut and the listener closed. Calling it again, or the test's cleanup
// afterwards, is harmless.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		s.endStreams(httpapi.ErrShuttingDown)
		s.ts.CloseClientConnections()
		s.ts.Close()
		s.App.Close()
	})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Response is a GraphQL response.
type Response struct {
	Status int
	Data   json.RawMessage `json:"data"`
	Errors []GQLError      `json:"errors"`
}

// GQLError is one GraphQL error.
type GQLError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

// Code returns extensions.code.
func (e GQLError) Code() string { s, _ := e.Extensions["code"].(string); return s }

// Codes lists the codes of all errors.
func (r *Response) Codes() []string {
	var out []string
	for _, e := range r.Errors {
		out = append(out, e.Code())
	}
	return out
}

// Decode unmarshals data into v, failing the test on GraphQL errors.
func (r *Response) Decode(t testing.TB, v any) {
	t.Helper()
	if len(r.Errors) > 0 {
		t.Fatalf("unexpected errors: %+v", r.Errors)
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		t.Fatalf("decode %s: %v", r.Data, err)
	}
}

// Post sends a GraphQL operation as a JSON POST.
func (s *Server) Post(token, query string, vars map[string]any) *Response {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	return s.PostRaw(token, "application/json", body)
}

// PostRaw sends any body to /graphql.
func (s *Server) PostRaw(token, contentType string, body []byte) *Response {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	return s.do(req, token)
}

func (s *Server) do(req *http.Request, token string) *Response {
	s.t.Helper()
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := &Response{Status: resp.StatusCode}
	if err := json.Unmarshal(raw, out); err != nil {
		s.t.Fatalf("%s %s: status %d, body not JSON: %q", req.Method, req.URL, resp.StatusCode, raw)
	}
	return out
}

// Get sends a query over GET /graphql.
func (s *Server) Get(token string, params map[string]string) *Response {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/graphql", nil)
	q := req.URL.Query()
	for k, v := range params {
		q.Set(k, v)
	}
	req.URL.RawQuery = q.Encode()
	return s.do(req, token)
}

// User is a registered test user.
type User struct {
	ID, Username, Token string
}

// userSeq makes usernames unique across parallel tests and runs.
var userSeq atomic.Int64

// Register creates a user with a unique name based on prefix.
func (s *Server) Register(prefix string) User {
	s.t.Helper()
	return s.RegisterFor(s.t, prefix)
}

// RegisterFor is Register reporting failures to t (a subtest's, say).
func (s *Server) RegisterFor(t testing.TB, prefix string) User {
	t.Helper()
	name := fmt.Sprintf("%s_%d_%d", prefix, time.Now().UnixNano()%100000, userSeq.Add(1))
	r := s.Post("", `mutation($u: String!) { register(username: $u, password: "password-123") { token user { id username } } }`,
		map[string]any{"u": name})
	var out struct {
		Register struct {
			Token string
			User  struct{ ID, Username string }
		}
	}
	r.Decode(t, &out)
	return User{ID: out.Register.User.ID, Username: out.Register.User.Username, Token: out.Register.Token}
}

// CreateConversation creates a conversation of owner with others and returns its ID.
func (s *Server) CreateConversation(owner User, title *string, others ...User) string {
	s.t.Helper()
	ids := []string{}
	for _, o := range others {
		ids = append(ids, o.ID)
	}
	r := s.Post(owner.Token, `mutation($in: CreateConversationInput!) { createConversation(input: $in) { id } }`,
		map[string]any{"in": map[string]any{"participantIds": ids, "title": title}})
	var out struct{ CreateConversation struct{ ID string } }
	r.Decode(s.t, &out)
	return out.CreateConversation.ID
}

// Send sends a message and returns its ID.
func (s *Server) Send(u User, conversationID, body string) string {
	s.t.Helper()
	r := s.Post(u.Token, `mutation($in: SendMessageInput!) { sendMessage(input: $in) { id } }`,
		map[string]any{"in": map[string]any{"conversationId": conversationID, "body": body}})
	var out struct{ SendMessage struct{ ID string } }
	r.Decode(s.t, &out)
	return out.SendMessage.ID
}

// Ptr returns a pointer to v.
func Ptr[T any](v T) *T { return &v }

// TempFile writes content to a file in a temp dir and returns its path.
func TempFile(t testing.TB, name string, content []byte) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
