package e2e

// Latency benchmarks of the two hot read paths of the no-N+1 issue, on the
// seeded benchmark database (seed.Defaults: 10k users, 100k conversations,
// 1M messages), through the real HTTP handler:
//
//	go test -run '^$' -bench 'ConversationList|MessagePage' -benchtime 2000x ./e2e/
//	PARLEY_TEST_DATABASE=postgres go test -run '^$' -bench 'ConversationList|MessagePage' -benchtime 2000x ./e2e/
//
// Every iteration is one request; besides ns/op each benchmark reports the
// p50, p90 and p99 of the request latencies (sent until the whole response
// body is read) and req/s. The database is seeded once per test process and
// shared by every benchmark (seeding 1M messages takes a while: see
// BENCHMARKS.md). Environment:
//
//	PARLEY_TEST_DATABASE=postgres   PostgreSQL instead of SQLite
//	PARLEY_BENCH_MESSAGES=N         seed N messages (N/10 conversations,
//	                                N/100 users) for a quick run
//	PARLEY_BENCH_DATABASE_URL=url   use this database as it is, already
//	                                seeded (go run . seed), instead of seeding

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/apptest"
	"github.com/parley-chat/parley/internal/database"
	"github.com/parley-chat/parley/internal/seed"
	"github.com/parley-chat/parley/internal/testinfra"
)

func BenchmarkConversationList(b *testing.B) {
	d := benchDatabase(b)
	for _, method := range []string{http.MethodPost, http.MethodGet} {
		b.Run(method, func(b *testing.B) {
			benchRequests(b, d, method, conversationListQ, map[string]any{"n": 20}, func(data json.RawMessage) error {
				var out struct {
					Conversations struct {
						TotalCount int
						Edges      []struct {
							Node struct {
								ID           string
								Participants []struct{ ID string }
							}
						}
					}
				}
				if err := json.Unmarshal(data, &out); err != nil {
					return err
				}
				if want := min(20, d.conversations); len(out.Conversations.Edges) != want || out.Conversations.TotalCount != d.conversations {
					return fmt.Errorf("%d edges of %d conversations, want %d of %d",
						len(out.Conversations.Edges), out.Conversations.TotalCount, want, d.conversations)
				}
				for _, e := range out.Conversations.Edges {
					if len(e.Node.Participants) < 2 {
						return fmt.Errorf("conversation %s has %d participants", e.Node.ID, len(e.Node.Participants))
					}
				}
				return nil
			})
		})
	}
}

func BenchmarkMessagePage(b *testing.B) {
	d := benchDatabase(b)
	for _, method := range []string{http.MethodPost, http.MethodGet} {
		b.Run(method, func(b *testing.B) {
			benchRequests(b, d, method, messagePageQ, map[string]any{"c": d.conversation, "n": 50}, func(data json.RawMessage) error {
				var out struct {
					Conversation struct {
						Messages struct {
							TotalCount int
							Edges      []struct {
								Node struct {
									ID     string
									Sender struct{ Username string }
								}
							}
						}
					}
				}
				if err := json.Unmarshal(data, &out); err != nil {
					return err
				}
				m := out.Conversation.Messages
				if len(m.Edges) != 50 || m.TotalCount != d.messages {
					return fmt.Errorf("%d edges of %d messages, want 50 of %d", len(m.Edges), m.TotalCount, d.messages)
				}
				for _, e := range m.Edges {
					if e.Node.Sender.Username == "" {
						return fmt.Errorf("message %s without a sender", e.Node.ID)
					}
				}
				return nil
			})
		})
	}
}

// benchRequests starts a replica on the shared database, logs in as its
// typical user, checks one response in depth (check) and warms up, then
// sends the operation b.N times, one request at a time over one kept-alive
// connection, and reports the latency percentiles.
func benchRequests(b *testing.B, d *benchDB, method, query string, vars map[string]any, check func(json.RawMessage) error) {
	// Executing the operation is what is measured, not the response cache.
	s := apptest.Start(b, "DATABASE_URL="+d.url, "RESYNC_INTERVAL=1h", "RESPONSE_CACHE=off")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 30 * time.Second}
	b.Cleanup(client.CloseIdleConnections)

	login := s.Post("", `mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }`,
		map[string]any{"u": d.username, "p": seed.Defaults().Password})
	var auth struct{ Login struct{ Token string } }
	login.Decode(b, &auth)

	newRequest := requestMaker(b, s.URL+"/graphql", auth.Login.Token, method, query, vars)
	send := func() (time.Duration, error) {
		req := newRequest()
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if err != nil {
			return 0, err
		}
		// gqlgen writes "errors" before "data": a response that starts
		// with data has no errors. This keeps the client's share of the
		// two cores small; the first response is decoded in full.
		if resp.StatusCode == http.StatusOK && bytes.HasPrefix(raw, []byte(`{"data":{`)) && check == nil {
			return took, nil
		}
		var out struct {
			Data   json.RawMessage
			Errors []json.RawMessage
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			return 0, fmt.Errorf("status %d, body not JSON: %.200q", resp.StatusCode, raw)
		}
		if resp.StatusCode != http.StatusOK || len(out.Errors) > 0 || len(out.Data) == 0 || string(out.Data) == "null" {
			return 0, fmt.Errorf("status %d: %.500s", resp.StatusCode, raw)
		}
		if !bytes.HasPrefix(raw, []byte(`{"data":{`)) {
			return 0, fmt.Errorf("response does not start with data: %.100s", raw)
		}
		if check != nil {
			if err := check(out.Data); err != nil {
				return 0, err
			}
			check = nil // in depth once; every response is checked for errors
		}
		return took, nil
	}
	// Warm: query cache, prepared plans, pooled connections, page cache.
	for range 200 {
		if _, err := send(); err != nil {
			b.Fatal(err)
		}
	}
	statementsBefore := s.App.DB.Statements.Load()
	lat := make([]time.Duration, 0, b.N)
	started := time.Now()
	for b.Loop() {
		took, err := send()
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, took)
	}
	elapsed := time.Since(started)
	b.StopTimer()
	reportLatencies(b, lat, elapsed, s.App.DB.Statements.Load()-statementsBefore)
}

// reportLatencies reports the p50, p90 and p99 of lat, the requests per
// second over elapsed, and statements per request.
func reportLatencies(b *testing.B, lat []time.Duration, elapsed time.Duration, statements int64) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		i := min(len(lat)-1, int(float64(len(lat))*p/100))
		return float64(lat[i]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(50), "p50-ms")
	b.ReportMetric(pct(90), "p90-ms")
	b.ReportMetric(pct(99), "p99-ms")
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(statements)/float64(len(lat)), "stmts/op")
}

// requestMaker returns a function building the request anew (a body can be
// read once), with everything that does not change computed up front.
func requestMaker(b *testing.B, endpoint, token, method, query string, vars map[string]any) func() *http.Request {
	varsJSON, err := json.Marshal(vars)
	if err != nil {
		b.Fatal(err)
	}
	if method == http.MethodGet {
		target := endpoint + "?" + url.Values{"query": {query}, "variables": {string(varsJSON)}}.Encode()
		return func() *http.Request {
			req, _ := http.NewRequest(http.MethodGet, target, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			return req
		}
	}
	body, err := json.Marshal(map[string]any{"query": query, "variables": json.RawMessage(varsJSON)})
	if err != nil {
		b.Fatal(err)
	}
	return func() *http.Request {
		req, _ := http.NewRequest(http.MethodPost, endpoint, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		return req
	}
}

// benchDB is the seeded database shared by the benchmarks of this process,
// and the typical user and busy conversation they read.
type benchDB struct {
	url           string
	username      string
	conversations int    // the user's conversations
	conversation  string // one of them with at least 50 messages
	messages      int    // its messages
}

var bench struct {
	mu  sync.Mutex
	db  *benchDB
	err error
}

// benchDatabase returns the shared database, seeding it on first use.
// Not a sync.Once: a skip (no PostgreSQL) inside it would leave it done.
func benchDatabase(b *testing.B) *benchDB {
	b.Helper()
	bench.mu.Lock()
	defer bench.mu.Unlock()
	if bench.db == nil && bench.err == nil {
		bench.db, bench.err = newBenchDB(b)
	}
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.db
}

func newBenchDB(b *testing.B) (*benchDB, error) {
	ctx := context.Background()
	dbURL := os.Getenv("PARLEY_BENCH_DATABASE_URL")
	seedIt := dbURL == ""
	if seedIt {
		switch kind := os.Getenv("PARLEY_TEST_DATABASE"); kind {
		case "", "sqlite":
			dir, err := benchTempDir()
			if err != nil {
				return nil, err
			}
			dbURL = filepath.Join(dir, "bench.db")
		case "postgres", "postgresql":
			// The database outlives b: it goes when TestMain's testinfra.Run
			// stops the server and removes its data directory.
			dbURL = testinfra.PostgresURL(processLifetime{b})
		default:
			return nil, fmt.Errorf("PARLEY_TEST_DATABASE=%q: want sqlite or postgres", kind)
		}
	}
	db, err := database.Open(ctx, dbURL, database.Options{})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if seedIt {
		log := slog.New(slog.DiscardHandler)
		if testing.Verbose() {
			log = slog.New(slog.NewTextHandler(os.Stderr, nil))
		}
		if _, err := db.ApplyMigrations(ctx, log); err != nil {
			return nil, err
		}
		o := seed.Defaults()
		if v := os.Getenv("PARLEY_BENCH_MESSAGES"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 100 {
				return nil, fmt.Errorf("PARLEY_BENCH_MESSAGES=%q: want a number of at least 100", v)
			}
			o.Messages, o.Conversations, o.Users = n, max(10, n/10), max(100, n/100)
		}
		o.Logger = log
		res, err := seed.Run(ctx, db, o)
		if err != nil {
			return nil, err
		}
		b.Logf("seeded %s: %d users, %d conversations, %d participants, %d messages, %d attachments in %s",
			db.Dialect, res.Users, res.Conversations, res.Participants, res.Messages, res.Attachments, res.Took.Round(time.Millisecond))
	}
	d, err := typicalUser(ctx, db)
	if err != nil {
		return nil, err
	}
	d.url = dbURL
	b.Logf("reading as %s (%d conversations), conversation %s (%d messages)", d.username, d.conversations, d.conversation, d.messages)
	return d, nil
}

// typicalUser picks the user at the 75th percentile of conversation counts
// (among users with a conversation of at least 50 messages; the busiest
// user's if there are none) and that user's busiest conversation.
func typicalUser(ctx context.Context, db *database.DB) (*benchDB, error) {
	rows, err := db.SQL.QueryContext(ctx, `SELECT u.username, COUNT(*), MAX(c.message_count)
		FROM participants p JOIN conversations c ON c.id = p.conversation_id JOIN users u ON u.id = p.user_id
		GROUP BY u.username`)
	if err != nil {
		return nil, err
	}
	type candidate struct {
		name          string
		convs, busies int
	}
	var all []candidate
	for rows.Next() {
		var c candidate
		if err := rows.Scan(&c.name, &c.convs, &c.busies); err != nil {
			rows.Close()
			return nil, err
		}
		all = append(all, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, errors.New("no participants: is the database seeded?")
	}
	slices.SortFunc(all, func(a, b candidate) int {
		if a.convs != b.convs {
			return a.convs - b.convs
		}
		return strings.Compare(a.name, b.name)
	})
	p75 := all[len(all)*3/4].convs
	pick := all[len(all)-1]
	for _, c := range all {
		if c.convs >= p75 && c.busies >= 50 {
			pick = c
			break
		}
	}
	d := &benchDB{username: pick.name, conversations: pick.convs}
	ph := "?"
	if db.Dialect == "postgres" {
		ph = "$1"
	}
	err = db.SQL.QueryRowContext(ctx, `SELECT c.id, c.message_count FROM conversations c
		JOIN participants p ON p.conversation_id = c.id JOIN users u ON u.id = p.user_id
		WHERE u.username = `+ph+` ORDER BY c.message_count DESC, c.id LIMIT 1`, pick.name).
		Scan(&d.conversation, &d.messages)
	if err != nil {
		return nil, err
	}
	if d.messages < 50 {
		return nil, fmt.Errorf("the busiest conversation of %s has %d messages, fewer than a page of 50: seed more", pick.name, d.messages)
	}
	return d, nil
}

// processLifetime is b for a resource that lives as long as the test
// process: what b would clean up when this benchmark run ends is left to
// the end of the process.
type processLifetime struct{ testing.TB }

func (processLifetime) Cleanup(func()) {}

// benchDirPrefix names the temp dirs of the SQLite benchmark databases.
const benchDirPrefix = "parley-bench-"

// benchTempDir makes a temp dir for this process's SQLite database. No
// benchmark's cleanup may remove it (it outlives each), and there is no
// hook at the end of the process here, so each run removes the dirs of
// earlier runs whose process has ended (each dir names its process in pid).
func benchTempDir() (string, error) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), benchDirPrefix+"*"))
	for _, dir := range dirs {
		raw, err := os.ReadFile(filepath.Join(dir, "pid"))
		if err != nil {
			if fi, err := os.Stat(dir); err != nil || time.Since(fi.ModTime()) < time.Hour {
				continue // just being made, perhaps
			}
		} else if pid, err := strconv.Atoi(strings.TrimSpace(string(raw))); err == nil && pid > 0 {
			if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
				continue // still running
			}
		}
		_ = os.RemoveAll(dir)
	}
	dir, err := os.MkdirTemp("", benchDirPrefix)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return "", err
	}
	return dir, nil
}
