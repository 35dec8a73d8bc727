package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/parley-chat/parley/internal/app"
	"github.com/parley-chat/parley/internal/apptest"
	"github.com/parley-chat/parley/internal/config"
)

// obsScrape reads /metrics.
func obsScrape(t *testing.T, s *apptest.Server) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// obsValue is the value of the series of name with (at least) labels: a
// counter's or gauge's value, a histogram's sample count; -1 if absent.
func obsValue(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// obsAwait polls /metrics until the series has the value.
func obsAwait(t *testing.T, s *apptest.Server, want float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := obsValue(obsScrape(t, s), name, labels...)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labels, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMetricsOfOperationsEventsAndLimits(t *testing.T) {
	t.Parallel()
	s := apptest.Start(t, "RATE_LIMIT_MUTATIONS=3/h", "RATE_LIMIT_MUTATIONS_BURST=3")
	alice, bob := s.Register("obs_alice"), s.Register("obs_bob")
	conv := s.CreateConversation(alice, nil, bob) // alice's mutation 1

	fams := obsScrape(t, s)
	for _, f := range []string{"messageEvents", "inbox", "typing"} {
		if v := obsValue(fams, "parley_subscriptions_active", "field", f); v != 0 {
			t.Errorf("parley_subscriptions_active{field=%q} = %v before any subscription", f, v)
		}
	}

	c := s.ConnectAs(bob)
	defer c.Close()
	c.Subscribe("1", `subscription Watch($c: ID!) { messageEvents(conversationId: $c) { type cursor } }`, map[string]any{"c": conv})
	obsAwait(t, s, 1, "parley_subscriptions_active", "field", "messageEvents")

	send := `mutation SendIt($in: SendMessageInput!) { sendMessage(input: $in) { id } }`
	in := map[string]any{"in": map[string]any{"conversationId": conv, "body": "hello"}}
	if r := s.Post(alice.Token, send, in); len(r.Errors) > 0 { // mutation 2
		t.Fatal(r.Errors)
	}
	c.NextOp("1", 5*time.Second, nil)
	if r := s.Post(alice.Token, send, in); len(r.Errors) > 0 { // mutation 3
		t.Fatal(r.Errors)
	}
	c.NextOp("1", 5*time.Second, nil)
	if r := s.Post(alice.Token, send, in); len(r.Codes()) != 1 || r.Codes()[0] != "RATE_LIMITED" { // mutation 4
		t.Fatalf("4th mutation within the burst of 3: %+v", r.Errors)
	}
	if r := s.Post("", `query Mine { conversations(first: 1) { totalCount } }`, nil); len(r.Codes()) != 1 || r.Codes()[0] != "UNAUTHENTICATED" {
		t.Fatalf("anonymous conversations: %+v", r.Errors)
	}
	s.PostRaw("", "application/json", []byte(`{"query": "query Broken { me { ", "operationName": "Broken"}`))
	s.Post(alice.Token, `{ me { id } }`, nil)
	s.Post(alice.Token, `query `+strings.Repeat("X", 70)+` { me { id } }`, nil)

	c.Complete("1")
	obsAwait(t, s, 0, "parley_subscriptions_active", "field", "messageEvents")

	fams = obsScrape(t, s)
	for _, c := range []struct {
		name   string
		labels []string
		min    float64 // at least
		max    float64 // at most (0: no bound)
	}{
		{"parley_graphql_operation_duration_seconds", []string{"operation", "SendIt", "type", "mutation"}, 3, 3},
		{"parley_graphql_operation_duration_seconds", []string{"operation", "Watch", "type", "subscription"}, 1, 1},
		{"parley_graphql_operation_duration_seconds", []string{"operation", "anonymous", "type", "query"}, 1, 0},
		{"parley_graphql_operation_duration_seconds", []string{"operation", "other", "type", "query"}, 1, 1},
		{"parley_graphql_errors_total", []string{"operation", "SendIt", "type", "mutation", "code", "RATE_LIMITED"}, 1, 1},
		{"parley_graphql_errors_total", []string{"operation", "Mine", "type", "query", "code", "UNAUTHENTICATED"}, 1, 1},
		{"parley_graphql_errors_total", []string{"operation", "Broken", "type", "unknown", "code", "GRAPHQL_VALIDATION_FAILED"}, 1, 1},
		{"parley_ratelimit_rejections_total", []string{"limit", "mutations"}, 1, 1},
		{"parley_ratelimit_rejections_total", []string{"limit", "auth"}, 0, 0},
		{"parley_events_published_total", []string{"kind", "message"}, 2, 2},
		{"parley_events_published_total", []string{"kind", "conversation"}, 1, 0},
		{"parley_events_delivered_total", []string{"kind", "message"}, 2, 2},
		{"parley_event_delivery_latency_seconds", []string{"kind", "message"}, 2, 2},
		{"parley_sql_statement_duration_seconds", nil, 5, 0},
		{"parley_sql_statements_total", nil, 5, 0},
		{"parley_subscriber_dropped_events_total", nil, 0, 0},
		{"parley_ratelimit_errors_total", nil, 0, 0},
	} {
		got := obsValue(fams, c.name, c.labels...)
		if got < c.min || (c.max > 0 && got > c.max) || (c.max == 0 && c.min == 0 && got != 0) {
			t.Errorf("%s%v = %v, want %v..%v", c.name, c.labels, got, c.min, c.max)
		}
	}
	if h := fams["parley_event_delivery_latency_seconds"].Metric; len(h) == 0 || h[0].Histogram.GetSampleSum() > 5 {
		t.Errorf("delivery latency sum: %v", h)
	}
}

// syncBuffer is a log destination shared by the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// obsPost posts a GraphQL operation and returns the decoded body and the
// response's X-Request-Id.
func obsPost(t *testing.T, url, token, query string, vars map[string]any) (map[string]any, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s: %q", err, raw)
	}
	return out, resp.Header.Get("X-Request-Id")
}

func obsString(t *testing.T, v any, path ...string) string {
	t.Helper()
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("no %v in %v", path, v)
		}
		v = m[p]
	}
	s, ok := v.(string)
	if !ok {
		t.Fatalf("%v: %v is not a string", path, v)
	}
	return s
}

// TestLogsCarryRequestIDsAndNoSecrets runs a replica logging JSON at debug
// level into a buffer, signs up, signs in and sends a message, and checks
// that no password, token or message body reached the log, while every
// request line names its request ID and GraphQL operation.
func TestLogsCarryRequestIDsAndNoSecrets(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		"DATABASE_URL":           apptest.TestDatabaseURL(t),
		"ATTACHMENT_DIR":         filepath.Join(t.TempDir(), "attachments"),
		"JWT_SECRET":             "log-test-secret-log-test-secret-0123456",
		"LOG_LEVEL":              "debug",
		"RATE_LIMIT_AUTH":        "off",
		"RATE_LIMIT_MUTATIONS":   "off",
		"RATE_LIMIT_CONNECTIONS": "off",
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	a, err := app.New(context.Background(), cfg, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(a.Handler)
	defer a.Close()
	defer ts.Close()

	const (
		password = "correct-horse-battery-staple-7"
		body     = "the launch code is 0000-SECRET"
	)
	name := "logs_" + time.Now().Format("150405.000000")
	name = strings.ReplaceAll(name, ".", "_")
	reg, _ := obsPost(t, ts.URL, "", `mutation Register($u: String!, $p: String!) { register(username: $u, password: $p) { token user { id } } }`,
		map[string]any{"u": name, "p": password})
	regToken := obsString(t, reg, "data", "register", "token")
	// A literal in the document itself, not only in variables.
	login, _ := obsPost(t, ts.URL, "", `mutation SignIn { login(username: "`+name+`", password: "`+password+`") { token } }`, nil)
	token := obsString(t, login, "data", "login", "token")
	other, _ := obsPost(t, ts.URL, "", `mutation Register($u: String!, $p: String!) { register(username: $u, password: $p) { user { id } } }`,
		map[string]any{"u": name + "_b", "p": password + "-b"})
	otherID := obsString(t, other, "data", "register", "user", "id")
	conv, _ := obsPost(t, ts.URL, token, `mutation Start($p: [ID!]!) { createConversation(input: {participantIds: $p}) { id } }`,
		map[string]any{"p": []string{otherID}})
	convID := obsString(t, conv, "data", "createConversation", "id")
	sent, sendID := obsPost(t, ts.URL, token, `mutation Say($in: SendMessageInput!) { sendMessage(input: $in) { id body } }`,
		map[string]any{"in": map[string]any{"conversationId": convID, "body": body}})
	if obsString(t, sent, "data", "sendMessage", "body") != body {
		t.Fatalf("sendMessage: %v", sent)
	}
	// A failed sign-in and a bad token are logged too, without either.
	obsPost(t, ts.URL, "", `mutation { login(username: "`+name+`", password: "`+password+`-wrong") { token } }`, nil)
	obsPost(t, ts.URL, "not-a-token-"+password, `{ me { id } }`, nil)

	// An internal error: the database goes away under a signed-in query.
	_ = a.DB.SQL.Close()
	failed, failID := obsPost(t, ts.URL, token, `query Inbox { conversations(first: 1) { totalCount } }`, nil)
	if !strings.Contains(mustJSON(t, failed), "INTERNAL_SERVER_ERROR") {
		t.Fatalf("with the database closed: %v", failed)
	}

	ts.Close() // every request line is written
	out := logs.String()
	if testing.Verbose() {
		t.Log(out)
	}
	for what, secret := range map[string]string{"password": password, "token": token, "register token": regToken, "message body": body} {
		if strings.Contains(out, secret) {
			t.Errorf("the log contains the %s %q:\n%s", what, secret, out)
		}
	}
	if strings.Contains(strings.ToLower(out), "bearer") || strings.Contains(out, "authorization") {
		t.Errorf("the log mentions an Authorization header:\n%s", out)
	}

	var requests, internal []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line not JSON: %q", sc.Text())
		}
		switch line["msg"] {
		case "request":
			requests = append(requests, line)
		case "internal error":
			internal = append(internal, line)
		}
	}
	find := func(id string) map[string]any {
		for _, r := range requests {
			if r["request_id"] == id {
				return r
			}
		}
		t.Fatalf("no request line with request_id %q:\n%s", id, out)
		return nil
	}
	if r := find(sendID); r["operation"] != "Say" || r["operation_type"] != "mutation" {
		t.Errorf("sendMessage request line: %v", r)
	}
	for _, r := range requests {
		if id, _ := r["request_id"].(string); id == "" {
			t.Errorf("request line without request_id: %v", r)
		}
		if r["path"] == "/graphql" && r["operation_type"] == nil {
			t.Errorf("GraphQL request line without operation_type: %v", r)
		}
	}
	if len(internal) == 0 {
		t.Fatalf("no internal error logged:\n%s", out)
	}
	for _, l := range internal {
		if l["request_id"] != failID || l["operation"] != "Inbox" || l["operation_type"] != "query" {
			t.Errorf("internal error line: %v, want request_id %s, operation Inbox (query)", l, failID)
		}
	}
	if r := find(failID); r["operation"] != "Inbox" {
		t.Errorf("failed request line: %v", r)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
