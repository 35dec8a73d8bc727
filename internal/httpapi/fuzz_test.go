package httpapi_test

// Fuzz targets for the two ways hostile bytes reach the server:
//
//   - FuzzGraphQLHTTP: POST /graphql bodies (any Content-Type) and GET query
//     strings, through the real handler of a running app (SQLite in a temp
//     dir), called in process. Property: never a 5xx; always a JSON object
//     with data or errors, every error carrying an extensions.code of
//     API.md's list (or PERSISTED_QUERY_NOT_FOUND), none of them
//     INTERNAL_SERVER_ERROR; an answer within seconds.
//   - FuzzWebSocket: frames sent to a real server (one per fuzz worker
//     process, reused) after a valid connection_init, or in place of it.
//     Property: the server never panics; after the frames it either answers
//     a probe operation on that socket or has closed it with a close code;
//     and it keeps serving (/healthz, and a new connection when the old one
//     was closed).
//
// Run one with, say:
//
//	go test -run '^$' -fuzz '^FuzzGraphQLHTTP$' -fuzztime 15s ./internal/httpapi
//
// Plain `go test` runs the seeds: f.Add below and testdata/fuzz/<Target>/.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/app"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/config"
)

// fuzzCodes are the extensions.code values a client may see.
var fuzzCodes = []string{"UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND", "BAD_USER_INPUT", "RATE_LIMITED",
	"GRAPHQL_VALIDATION_FAILED", "PERSISTED_QUERY_NOT_FOUND"}

type fuzzApp struct {
	app   *app.App
	token string // of a user with a conversation
	conv  string
}

// startFuzzApp runs an app on a fresh SQLite database, with rate limits
// off (they would only turn inputs into RATE_LIMITED).
func startFuzzApp(tb testing.TB, env ...string) *fuzzApp {
	tb.Helper()
	dir := tb.TempDir()
	vars := map[string]string{
		"DATABASE_URL":                filepath.Join(dir, "fuzz.db"),
		"ATTACHMENT_DIR":              filepath.Join(dir, "attachments"),
		"JWT_SECRET":                  "fuzz-secret-fuzz-secret-fuzz-secret-0123",
		"RATE_LIMIT_AUTH":             "off",
		"RATE_LIMIT_MUTATIONS":        "off",
		"RATE_LIMIT_CONNECTIONS":      "off",
		"WS_MAX_CONNECTIONS_PER_USER": "100000",
		"MAX_REQUEST_BYTES":           "65536",
		"MAX_UPLOAD_BYTES":            "4096",
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		tb.Fatal(err)
	}
	logs := io.Discard
	if os.Getenv("PARLEY_FUZZ_LOG") != "" { // see why an input failed
		logs = os.Stderr
	}
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(a.Close)
	ctx := context.Background()
	var ids []string
	for _, name := range []string{"fuzzer", "peer"} {
		// A password hash nobody can match: these users never log in.
		u, err := a.DB.Client.User.Create().SetUsername(name).SetDisplayName(name).SetPasswordHash("x").Save(ctx)
		if err != nil {
			tb.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	token, err := auth.NewTokens(cfg.JWTSecret, time.Hour).Issue(ids[0])
	if err != nil {
		tb.Fatal(err)
	}
	c, err := a.Chat.CreateConversation(ctx, ids[0], []string{ids[1]}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &fuzzApp{app: a, token: token, conv: c.ID}
}

// checkGraphQLResponse checks the HTTP fuzz property on one response.
func checkGraphQLResponse(t *testing.T, status int, body []byte) {
	t.Helper()
	if status >= 500 {
		t.Fatalf("status %d: %.500s", status, body)
	}
	var resp struct {
		Data   json.RawMessage `json:"data"`
		Errors []struct {
			Message    string         `json:"message"`
			Extensions map[string]any `json:"extensions"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("status %d, body not a JSON object (%v): %.500q", status, err, body)
	}
	hasData := len(resp.Data) > 0 && string(resp.Data) != "null"
	if !hasData && len(resp.Errors) == 0 {
		t.Fatalf("status %d: neither data nor errors: %.500s", status, body)
	}
	for _, e := range resp.Errors {
		code, _ := e.Extensions["code"].(string)
		if !slices.Contains(fuzzCodes, code) || e.Message == "" {
			t.Fatalf("status %d: error %q with extensions.code %q: %.500s", status, e.Message, code, body)
		}
	}
}

func FuzzGraphQLHTTP(f *testing.F) {
	fa := startFuzzApp(f)
	q := func(s string) []byte { b, _ := json.Marshal(map[string]any{"query": s}); return b }
	// Realistic requests, valid and not.
	f.Add(false, true, "application/json", q(`{ me { id username } }`))
	f.Add(false, true, "application/json", q(`{ conversations(first: 5) { totalCount edges { cursor node { id kind participants { username } lastMessage { body } unreadCount } } } }`))
	f.Add(false, true, "application/json", []byte(`{"query": "query($c: ID!) { conversation(id: $c) { messages(last: 3) { edges { node { body } } } } }", "variables": {"c": "`+fa.conv+`"}}`))
	f.Add(false, true, "application/json", []byte(`{"query": "mutation($in: SendMessageInput!) { sendMessage(input: $in) { id } }", "variables": {"in": {"conversationId": "`+fa.conv+`", "body": "hi", "clientMessageId": "c1"}}}`))
	f.Add(false, true, "application/json", []byte(`{"query": "mutation { createConversation(input: {participantIds: [], title: \"t\"}) { id } }"}`))
	f.Add(false, false, "application/json", q(`mutation { login(username: "nobody", password: "password-123") { token } }`))
	f.Add(false, true, "application/json", []byte(`{"query": "query A { me { id } } query B { __typename }", "operationName": "C"}`))
	f.Add(false, true, "application/json", []byte(`{"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ecf4edb46db40b5132295c0291d62fb65d6759a9eedfa4d5d612dd5ec54a6b38"}}}`))
	f.Add(false, true, "application/json", []byte(`[{"query": "{ me { id } }"}, {"query": "{ __typename }"}]`))
	f.Add(false, true, "application/json", []byte(`{"query": "{ me { id "}`))
	f.Add(false, true, "application/json", []byte(`{"query": 5, "variables": []}`))
	f.Add(false, true, "application/json", []byte("{\"query\": \"{ me\x00 { id } }\"}"))
	f.Add(false, true, "application/json", []byte(`{"query": "subscription { inbox { type } }"}`))
	f.Add(false, true, "application/json", q(`query { me { ...F3 } } fragment F1 on User { id } fragment F2 on User { ...F1 ...F1 } fragment F3 on User { ...F2 ...F2 }`))
	f.Add(false, true, "application/json", q(`{ a: me { id } b: me { id } node(id: "msg_x") { id ... on Message { body } } }`))
	f.Add(false, true, "application/json", []byte(`{"query": "query($a: String) { conversations(first: 2, after: $a) { totalCount } }", "variables": {"a": "bTox"}}`))
	f.Add(false, true, "application/json", []byte(`{"query": "{ __schema { types { name } } }"}`))
	f.Add(false, true, "multipart/form-data; boundary=XyZ", []byte("--XyZ\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n"+
		`{"query": "mutation($c: ID!, $f: Upload!) { uploadAttachment(conversationId: $c, file: $f) { id } }", "variables": {"c": "`+fa.conv+`", "f": null}}`+
		"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"map\"\r\n\r\n{\"0\": [\"variables.f\"]}\r\n--XyZ\r\n"+
		"Content-Disposition: form-data; name=\"0\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XyZ--\r\n"))
	f.Add(false, true, "text/plain", []byte(`{ me { id } }`))
	f.Add(true, true, "", []byte(`query=%7B+me+%7B+id+%7D+%7D`))
	f.Add(true, true, "", []byte(`query=query+Q%28%24f%3A+Int%29+%7B+users%28first%3A+%24f%29+%7B+id+%7D+%7D&variables=%7B%22f%22%3A+2%7D&operationName=Q`))
	f.Add(true, true, "", []byte(`query=mutation+%7B+setTyping%28conversationId%3A+%22x%22%2C+typing%3A+true%29+%7D`))
	f.Add(true, false, "", []byte(`extensions=%7B%22persistedQuery%22%3A%7B%22version%22%3A1%2C%22sha256Hash%22%3A%22abc%22%7D%7D`))
	f.Add(true, true, "", []byte(`query=%ZZ&variables=%7B`))

	f.Fuzz(func(t *testing.T, get, authed bool, contentType string, body []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var req *http.Request
		if get {
			req = httptest.NewRequestWithContext(ctx, http.MethodGet, "/graphql", nil)
			req.URL.RawQuery = string(body)
		} else {
			req = httptest.NewRequestWithContext(ctx, http.MethodPost, "/graphql", bytes.NewReader(body))
			req.Header.Set("Content-Type", contentType)
		}
		if authed {
			req.Header.Set("Authorization", "Bearer "+fa.token)
		}
		rec := httptest.NewRecorder()
		start := time.Now()
		fa.app.Handler.ServeHTTP(rec, req)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("answered after %v", d)
		}
		checkGraphQLResponse(t, rec.Code, rec.Body.Bytes())
	})
}

// wsServer is the fuzz worker's server, started once and reused.
type wsServer struct {
	*fuzzApp
	url string

	mu     sync.Mutex
	panics []string // http.Server's error log lines about panics
}

func (s *wsServer) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("panic")) {
		s.mu.Lock()
		s.panics = append(s.panics, string(p))
		s.mu.Unlock()
	}
	return len(p), nil
}

func (s *wsServer) takePanics() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.panics
	s.panics = nil
	return p
}

func startWSServer(tb testing.TB) *wsServer {
	s := &wsServer{fuzzApp: startFuzzApp(tb, "WS_INIT_TIMEOUT=3s")}
	ts := httptest.NewUnstartedServer(s.app.Handler)
	ts.Config.ErrorLog = log.New(s, "", 0)
	ts.Start()
	tb.Cleanup(ts.Close)
	s.url = "ws" + strings.TrimPrefix(ts.URL, "http") + "/graphql"
	return s
}

type wsFrame struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// dial opens a socket; with init, it sends a valid connection_init and
// waits for the ack.
func (s *wsServer) dial(ctx context.Context, proto string, init bool) (*websocket.Conn, error) {
	c, resp, err := websocket.Dial(ctx, s.url, &websocket.DialOptions{Subprotocols: []string{proto}})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(8 << 20)
	if !init {
		return c, nil
	}
	b, _ := json.Marshal(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + s.token}})
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		c.CloseNow()
		return nil, err
	}
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return nil, fmt.Errorf("valid connection_init: %w", err)
		}
		var m wsFrame
		if json.Unmarshal(b, &m) == nil && m.Type == "connection_ack" {
			return c, nil
		}
	}
}

// probe starts `{ __typename }` as a fresh operation and reports whether it
// was answered, or else the code the socket closed with (-1: none, or
// still open at the deadline).
func probe(ctx context.Context, c *websocket.Conn, proto string) (answered bool, code int) {
	typ := "subscribe"
	if proto == "graphql-ws" {
		typ = "start"
	}
	b, _ := json.Marshal(map[string]any{"id": "zz-probe", "type": typ, "payload": map[string]any{"query": "{ __typename }"}})
	_ = c.Write(ctx, websocket.MessageText, b) // a closed socket shows on the read
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return false, int(websocket.CloseStatus(err))
		}
		var m wsFrame
		if json.Unmarshal(b, &m) == nil && m.ID == "zz-probe" && (m.Type == "next" || m.Type == "data") {
			return true, 0
		}
	}
}

func FuzzWebSocket(f *testing.F) {
	s := startWSServer(f)
	// frames: one message per line, after a valid connection_init (rawInit:
	// the first line replaces it).
	f.Add(false, false, []byte(`{"id": "1", "type": "subscribe", "payload": {"query": "{ me { id } }"}}`))
	f.Add(false, false, []byte(`{"id": "1", "type": "subscribe", "payload": {"query": "subscription($c: ID!) { messageEvents(conversationId: $c) { type } }", "variables": {"c": "`+s.conv+`"}}}
{"id": "1", "type": "complete"}`))
	f.Add(false, false, []byte(`{"id": "1", "type": "subscribe", "payload": {"query": "subscription { inbox { type } }"}}
{"id": "1", "type": "subscribe", "payload": {"query": "subscription { inbox { type } }"}}`))
	f.Add(false, false, []byte(`{"id": "m", "type": "subscribe", "payload": {"query": "mutation($c: ID!) { setTyping(conversationId: $c, typing: true) }", "variables": {"c": "`+s.conv+`"}}}`))
	f.Add(false, false, []byte(`{"type": "ping"}
{"type": "pong"}`))
	f.Add(false, false, []byte("not json"))
	f.Add(false, false, []byte(`{"type": "connection_init", "payload": {}}`))
	f.Add(false, false, []byte(`{"id": "1", "type": "subscribe", "payload": "{ me { id } }"}`))
	f.Add(false, false, []byte(`{"id": "1", "type": "subscribe", "payload": {"query": "subscription($c: ID!, $a: String) { messageEvents(conversationId: $c, after: $a) { type } }", "variables": {"c": "`+s.conv+`", "a": "junk"}}}`))
	f.Add(false, false, []byte(`{"type": "complete"}
{"type": 5}
{}`))
	f.Add(false, true, []byte(`{"type": "connection_init", "payload": "token"}`))
	f.Add(false, true, []byte(`{"type": "connection_init", "payload": {"token": 5}}`))
	f.Add(false, true, []byte(`{"id": "1", "type": "subscribe", "payload": {"query": "{ me { id } }"}}`))
	f.Add(true, false, []byte(`{"id": "1", "type": "start", "payload": {"query": "subscription { inbox { type } }"}}
{"id": "1", "type": "stop"}`))
	f.Add(true, false, []byte(`{"type": "connection_terminate"}`))
	f.Add(true, false, []byte(`{"id": "1", "type": "start", "payload": {"query": "{ me { id "}}`))
	f.Add(true, true, []byte(`{"type": "connection_init", "payload": {"authToken": "nope"}}`))

	f.Fuzz(func(t *testing.T, legacy, rawInit bool, frames []byte) {
		proto := "graphql-transport-ws"
		if legacy {
			proto = "graphql-ws"
		}
		lines := bytes.Split(frames, []byte("\n"))
		if len(lines) > 8 {
			lines = lines[:8]
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := s.dial(ctx, proto, !rawInit)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.CloseNow()
		for _, l := range lines {
			if err := c.Write(ctx, websocket.MessageText, l); err != nil {
				break // the server closed it; the probe reads why
			}
		}
		pctx, pcancel := context.WithTimeout(ctx, 8*time.Second)
		answered, code := probe(pctx, c, proto)
		pcancel()
		if !answered && code == -1 {
			t.Fatalf("%s: the socket neither answered a probe nor closed with a code", proto)
		}
		if p := s.takePanics(); len(p) > 0 {
			t.Fatalf("server panicked: %s", strings.Join(p, "\n"))
		}
		// Still serving: /healthz, and a new connection if this one closed.
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http"+strings.TrimPrefix(strings.TrimSuffix(s.url, "/graphql"), "ws")+"/healthz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("/healthz after the frames: %v", err)
		}
		resp.Body.Close()
		if !answered {
			c2, err := s.dial(ctx, proto, true)
			if err != nil {
				t.Fatalf("a new connection after a closed one: %v", err)
			}
			if ok, code := probe(ctx, c2, proto); !ok {
				t.Fatalf("a new connection does not answer (closed %d)", code)
			}
			c2.CloseNow()
		}
	})
}
