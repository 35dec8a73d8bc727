package e2e

// The hot queries use indexes: on a seeded database (a million messages on
// PostgreSQL by default), every operation clients run often is driven
// through the API as clients drive it, every SELECT, UPDATE and DELETE the
// replica sent meanwhile is explained, and no plan may read all of
// messages, participants, conversations or message_events.
//
// Run it by hand with:
//
//	CI=true PARLEY_TEST_DATABASE=postgres go test -run TestHotQueriesUseIndexes -v ./e2e/
//
// PARLEY_PLAN_MESSAGES sets the number of messages seeded (users and
// conversations follow seed.Defaults' proportions: one user per 100
// messages, one conversation per 10). On SQLite (PARLEY_TEST_DATABASE unset)
// the default is 20,000, whose plans are those of a million, and EXPLAIN
// QUERY PLAN is checked the same way. PARLEY_PLAN_JSON=1 logs every
// PostgreSQL plan in full.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/apptest"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/database"
	"github.com/parley-chat/parley/internal/plancheck"
	"github.com/parley-chat/parley/internal/seed"
)

// planTables may never be read whole by a hot query.
var planTables = []string{"messages", "participants", "conversations", "message_events"}

const (
	planConversationsQ = `query($n: Int, $after: String) { conversations(first: $n, after: $after) { totalCount
	pageInfo { hasNextPage endCursor }
	edges { cursor node { id kind title updatedAt
		participants { id username displayName avatarUrl }
		lastMessage { id body createdAt sender { id username displayName } }
		unreadCount
		readReceipts { lastReadMessageId readAt user { id username } } } } } }`
	planMessagesQ = `query($c: ID!, $first: Int, $after: String, $last: Int, $before: String) { conversation(id: $c) {
	id title messages(first: $first, after: $after, last: $last, before: $before) { totalCount
		pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
		edges { cursor node { id body createdAt editedAt deletedAt clientMessageId
			sender { id username displayName avatarUrl }
			attachments { id filename contentType size url } } } } } }`
	planNodeQ = `query($id: ID!) { node(id: $id) { id
	... on Message { body sender { id username } conversation { id } attachments { id } }
	... on Conversation { title updatedAt participants { id } }
	... on Attachment { filename url }
	... on User { username } } }`
	planStatsQ  = `{ messagingStats { conversationCount unreadConversationCount unreadMessageCount sentMessageCount } }`
	planSendQ   = `mutation($in: SendMessageInput!) { sendMessage(input: $in) { id body clientMessageId createdAt sender { id } attachments { id } } }`
	planEventsQ = `subscription($c: ID!, $after: String) { messageEvents(conversationId: $c, after: $after) {
	type cursor message { id body editedAt deletedAt sender { id username } attachments { id url } conversation { id } } } }`
	planInboxQ = `subscription { inbox { type conversation { id title updatedAt unreadCount lastMessage { id } }
	message { id body sender { id username } } user { id } } }`
)

// planSizes returns the seed sizes: PARLEY_PLAN_MESSAGES messages (a
// million on PostgreSQL, 20,000 on SQLite by default), with users and
// conversations in seed.Defaults' proportions.
func planSizes(t *testing.T, postgres bool) seed.Options {
	t.Helper()
	o := seed.Defaults()
	n := o.Messages
	if !postgres {
		n = 20000
	}
	if v := os.Getenv("PARLEY_PLAN_MESSAGES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1000 {
			t.Fatalf("PARLEY_PLAN_MESSAGES=%q: want a number of at least 1000", v)
		}
	}
	d := seed.Defaults()
	o.Messages = n
	o.Users = max(n*d.Users/d.Messages, 20)
	o.Conversations = max(n*d.Conversations/d.Messages, 100)
	o.Logger = slog.New(slog.DiscardHandler)
	return o
}

// planPicks are the users and conversation the operations run as and on.
type planPicks struct {
	busyUser, busyUserConvs   string // most conversations: lists and stats
	conv                      string // most messages
	convMessages, convLastSeq int64
	alice, bob                string // two members of conv
}

func TestHotQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	kind := os.Getenv("PARLEY_TEST_DATABASE")
	postgres := kind == "postgres" || kind == "postgresql"
	ctx := context.Background()

	// A seeded database.
	url := apptest.TestDatabaseURL(t)
	db, err := database.Open(ctx, url, database.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ApplyMigrations(ctx, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	o := planSizes(t, postgres)
	res, err := seed.Run(ctx, db, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded %s (%s): %d users, %d conversations, %d participants, %d messages, %d attachments in %s",
		db.Dialect, map[bool]string{true: "PostgreSQL", false: "SQLite"}[postgres],
		res.Users, res.Conversations, res.Participants, res.Messages, res.Attachments, res.Took.Round(time.Millisecond))
	p := planPick(t, db)
	t.Logf("busy user %s (%s conversations); busy conversation %s (%d messages, last seq %d) of %s and %s",
		p.busyUser, p.busyUserConvs, p.conv, p.convMessages, p.convLastSeq, p.alice, p.bob)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s := apptest.Start(t, "DATABASE_URL="+url, "RESYNC_INTERVAL=1h")
	login := func(name string) apptest.User {
		var out struct {
			Login struct {
				Token string
				User  struct{ ID string }
			}
		}
		s.Post("", `mutation($u: String!) { login(username: $u, password: "password-123") { token user { id } } }`,
			map[string]any{"u": name}).Decode(t, &out)
		return apptest.User{ID: out.Login.User.ID, Username: name, Token: out.Login.Token}
	}

	// Record every statement from here on.
	rec := &planRecorder{}
	s.App.DB.Statements.Record(rec.record)
	stopped := false
	stop := func() {
		if !stopped {
			s.App.DB.Statements.Record(nil)
			stopped = true
		}
	}
	defer stop()

	busy, alice, bob := login(p.busyUser), login(p.alice), login(p.bob)

	// The conversation list, two pages, for the busiest user and for alice.
	for _, u := range []apptest.User{busy, alice} {
		var list struct {
			Conversations struct {
				TotalCount int
				PageInfo   struct {
					HasNextPage bool
					EndCursor   *string
				}
			}
		}
		s.Post(u.Token, planConversationsQ, map[string]any{"n": 20}).Decode(t, &list)
		if list.Conversations.PageInfo.EndCursor != nil {
			s.Post(u.Token, planConversationsQ, map[string]any{"n": 20, "after": *list.Conversations.PageInfo.EndCursor}).Decode(t, &list)
		}
		planPost(t, s, u, planStatsQ, nil)
	}

	// The busy conversation's messages: oldest first and newest first, two
	// pages each.
	type page struct {
		Conversation struct {
			Messages struct {
				TotalCount int
				PageInfo   struct{ StartCursor, EndCursor *string }
				Edges      []struct{ Node struct{ ID string } }
			}
		}
	}
	var pg page
	s.Post(alice.Token, planMessagesQ, map[string]any{"c": p.conv, "first": 50}).Decode(t, &pg)
	if got := pg.Conversation.Messages.TotalCount; int64(got) != p.convMessages || len(pg.Conversation.Messages.Edges) == 0 {
		t.Fatalf("messages(first: 50): totalCount %d, %d edges; want %d messages", got, len(pg.Conversation.Messages.Edges), p.convMessages)
	}
	s.Post(alice.Token, planMessagesQ, map[string]any{"c": p.conv, "first": 50, "after": *pg.Conversation.Messages.PageInfo.EndCursor}).Decode(t, &pg)
	s.Post(alice.Token, planMessagesQ, map[string]any{"c": p.conv, "last": 50}).Decode(t, &pg)
	oldMessage := pg.Conversation.Messages.Edges[0].Node.ID
	s.Post(alice.Token, planMessagesQ, map[string]any{"c": p.conv, "last": 50, "before": *pg.Conversation.Messages.PageInfo.StartCursor}).Decode(t, &pg)

	// node(id) of each kind, me, and a user search (users may be scanned).
	planPost(t, s, alice, planNodeQ, map[string]any{"id": oldMessage})
	planPost(t, s, alice, planNodeQ, map[string]any{"id": p.conv})
	planPost(t, s, alice, planNodeQ, map[string]any{"id": bob.ID})
	planPost(t, s, alice, `{ me { id username } }`, nil)
	planPost(t, s, alice, `{ users(search: "user1", first: 20) { id username } }`, nil)

	// Subscriptions: alice's inbox, and the conversation's events replayed
	// from five events back, then live.
	c := s.ConnectAs(alice)
	c.Subscribe("in", planInboxQ, nil)
	c.Subscribe("ev", planEventsQ, map[string]any{"c": p.conv, "after": chat.EventCursor(p.conv, p.convLastSeq-5)})
	for range 5 {
		planNextEvent(t, c)
	}
	send := func(u apptest.User, in map[string]any) string {
		in["conversationId"] = p.conv
		var out struct{ SendMessage struct{ ID string } }
		s.Post(u.Token, planSendQ, map[string]any{"in": in}).Decode(t, &out)
		return out.SendMessage.ID
	}
	// Bob sends (with an idempotency key) until alice's inbox, subscribed
	// concurrently, has one event.
	var sent, first string
	for i := 0; ; i++ {
		sent = send(bob, map[string]any{"body": fmt.Sprintf("plan %d", i), "clientMessageId": fmt.Sprintf("plan-%d", i)})
		if ev := planNextEvent(t, c); ev.Message.ID != sent {
			t.Fatalf("messageEvents: got %+v, want message %s", ev, sent)
		}
		if first == "" {
			first = sent
		}
		if m, err := c.RecvOp("in", 200*time.Millisecond); err == nil {
			if m.Type != "next" || len(m.Errors()) > 0 {
				t.Fatalf("inbox: %s %s", m.Type, m.Payload)
			}
			break
		}
		if i == 50 {
			t.Fatal("alice's inbox received nothing")
		}
		// The same key again: the first message, and no event.
		if again := send(bob, map[string]any{"body": "again", "clientMessageId": fmt.Sprintf("plan-%d", i)}); again != sent {
			t.Fatalf("repeated clientMessageId: got message %s, want %s", again, sent)
		}
	}
	if again := send(bob, map[string]any{"body": "again", "clientMessageId": "plan-0"}); again != first {
		t.Fatalf("repeated clientMessageId: got message %s, want %s", again, first)
	}
	// An attachment: upload, send, node, download.
	att := htUploadOK(t, s, bob, p.conv, htFile{Name: "plan.txt", ContentType: "text/plain", Data: []byte("plan")})
	withAtt := send(bob, map[string]any{"body": "with attachment", "attachmentIds": []string{att.ID}})
	if ev := planNextEvent(t, c); ev.Message.ID != withAtt {
		t.Fatalf("messageEvents: got %+v, want message %s", ev, withAtt)
	}
	planPost(t, s, alice, planNodeQ, map[string]any{"id": att.ID})
	if status, _, _ := htDownload(t, s, alice.Token, att.URL); status != 200 {
		t.Fatalf("download: status %d", status)
	}
	// Edit, delete, read, typing.
	planPost(t, s, bob, `mutation($id: ID!) { editMessage(id: $id, body: "edited") { id body editedAt } }`, map[string]any{"id": sent})
	if ev := planNextEvent(t, c); ev.Type != "EDITED" {
		t.Fatalf("messageEvents: got %+v, want EDITED", ev)
	}
	planPost(t, s, bob, `mutation($id: ID!) { deleteMessage(id: $id) { id deletedAt } }`, map[string]any{"id": sent})
	if ev := planNextEvent(t, c); ev.Type != "DELETED" {
		t.Fatalf("messageEvents: got %+v, want DELETED", ev)
	}
	planPost(t, s, alice, `mutation($c: ID!) { markConversationRead(conversationId: $c) { id unreadCount } }`, map[string]any{"c": p.conv})
	planPost(t, s, alice, `mutation($c: ID!) { setTyping(conversationId: $c, typing: true) }`, map[string]any{"c": p.conv})
	planPost(t, s, alice, planStatsQ, nil)
	// The hub's resync of watched conversations (every RESYNC_INTERVAL).
	s.App.Hub.RequestResync()
	for deadline := time.Now().Add(10 * time.Second); !rec.saw("conversations.last_seq FROM conversations"); {
		if time.Now().After(deadline) {
			t.Fatal("the hub's resync sent no statement")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	c.Close()

	planExplainAll(t, s.App.DB, rec.statements())
}

// planPick finds the busiest user, the busiest conversation and two of its
// members.
func planPick(t *testing.T, db *database.DB) planPicks {
	t.Helper()
	ctx := context.Background()
	q := func(query string, args []any, dest ...any) {
		t.Helper()
		if err := db.SQL.QueryRowContext(ctx, database.Rebind(db.Dialect, query), args...).Scan(dest...); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
	}
	var p planPicks
	q(`SELECT u.username, COUNT(*) FROM participants p JOIN users u ON u.id = p.user_id
GROUP BY u.username ORDER BY COUNT(*) DESC, u.username LIMIT 1`, nil, &p.busyUser, &p.busyUserConvs)
	q(`SELECT id, message_count, last_seq FROM conversations ORDER BY message_count DESC, id LIMIT 1`, nil,
		&p.conv, &p.convMessages, &p.convLastSeq)
	q(`SELECT MIN(u.username), MAX(u.username) FROM participants p JOIN users u ON u.id = p.user_id
WHERE p.conversation_id = ?`, []any{p.conv}, &p.alice, &p.bob)
	if p.convLastSeq < 5 || p.alice == p.bob {
		t.Fatalf("the busiest conversation is too small: %+v", p)
	}
	return p
}

func planPost(t *testing.T, s *apptest.Server, u apptest.User, query string, vars map[string]any) {
	t.Helper()
	if r := s.Post(u.Token, query, vars); len(r.Errors) > 0 || r.Status != 200 {
		t.Fatalf("%.60s: status %d, errors %+v", query, r.Status, r.Errors)
	}
}

type planEvent struct {
	Type    string
	Message struct{ ID string }
}

func planNextEvent(t *testing.T, c *apptest.Client) planEvent {
	t.Helper()
	var d struct{ MessageEvents planEvent }
	c.NextOp("ev", 20*time.Second, &d)
	return d.MessageEvents
}

// planUnquoted is a query without identifier quotes (PostgreSQL's double
// quotes, SQLite's backquotes).
var planUnquoted = strings.NewReplacer(`"`, "", "`", "")

// planRecorder keeps the statements the replica sends, in order.
type planRecorder struct {
	mu   sync.Mutex
	list []planStatement
}

type planStatement struct {
	query string
	args  []any
}

func (r *planRecorder) record(query string, args []driver.NamedValue) {
	vals := make([]any, len(args))
	for i, a := range args {
		vals[i] = a.Value
		if a.Name != "" {
			vals[i] = sql.Named(a.Name, a.Value)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, planStatement{query, vals})
}

// saw reports whether a statement containing fragment (without identifier
// quotes) was sent.
func (r *planRecorder) saw(fragment string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.list, func(s planStatement) bool {
		return strings.Contains(planUnquoted.Replace(s.query), fragment)
	})
}

func (r *planRecorder) statements() []planStatement {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.list)
}

// planVerbRE finds a statement's verb (after any opening parentheses).
var planVerbRE = regexp.MustCompile(`^[\s(]*([A-Za-z]+)`)

// planExplainAll explains each distinct SELECT, UPDATE and DELETE (with up
// to planArgSets of the argument lists it was sent with), logs its plan and
// fails on a plan that reads a whole table of planTables.
func planExplainAll(t *testing.T, db *database.DB, stmts []planStatement) {
	t.Helper()
	const planArgSets = 3
	type group struct {
		query string
		args  [][]any
		seen  map[string]bool
		count int
	}
	var groups []*group
	byQuery := map[string]*group{}
	skipped := map[string]int{}
	for _, st := range stmts {
		m := planVerbRE.FindStringSubmatch(st.query)
		verb := ""
		if m != nil {
			verb = strings.ToUpper(m[1])
		}
		if (verb != "SELECT" && verb != "UPDATE" && verb != "DELETE" && verb != "WITH") ||
			strings.Contains(st.query, "pg_catalog") || strings.Contains(st.query, "atlas_schema_revisions") {
			skipped[verb]++
			continue
		}
		g := byQuery[st.query]
		if g == nil {
			g = &group{query: st.query, seen: map[string]bool{}}
			byQuery[st.query] = g
			groups = append(groups, g)
		}
		g.count++
		if key := fmt.Sprintf("%#v", st.args); !g.seen[key] && len(g.args) < planArgSets {
			g.seen[key] = true
			g.args = append(g.args, st.args)
		}
	}
	t.Logf("%d statements recorded: %d distinct SELECT/UPDATE/DELETE explained; not explained: %v", len(stmts), len(groups), skipped)
	if len(groups) < 15 {
		t.Errorf("only %d distinct statements recorded: the operations did not run as expected", len(groups))
	}

	ctx := context.Background()
	var notes []string
	for i, g := range groups {
		var summaries []string
		for _, args := range g.args {
			var sum string
			var seq, full []plancheck.Problem
			if db.Dialect == "postgres" {
				sum, seq, full = planPostgres(t, ctx, db.SQL, g.query, args)
				// After five runs of a prepared statement (pgx prepares
				// each one), PostgreSQL may switch to a generic plan, made
				// without the arguments. It does so only when that plan's
				// estimate is no worse than the custom plans', so a generic
				// plan reading a whole table is noted, not failed.
				gsum, gseq, gfull, err := planPostgresGeneric(ctx, db.SQL, g.query, args)
				switch {
				case err != nil:
					notes = append(notes, fmt.Sprintf("statement %d: no generic plan: %v", i+1, err))
				case gsum != sum && !slices.Contains(summaries, "generic: "+gsum):
					summaries = append(summaries, "generic: "+gsum)
				}
				for _, p := range append(gseq, gfull...) {
					if n := fmt.Sprintf("statement %d, generic plan: %s", i+1, p); !slices.Contains(notes, n) {
						notes = append(notes, n)
					}
				}
			} else {
				sum, seq, full = planSQLite(t, ctx, db.SQL, g.query, args)
			}
			if !slices.Contains(summaries, sum) {
				summaries = append(summaries, sum)
			}
			for _, p := range seq {
				t.Errorf("statement %d reads a whole table: %s\n  query: %s\n  args: %v\n  plan: %s", i+1, p, g.query, args, sum)
			}
			for _, p := range full {
				if n := fmt.Sprintf("statement %d: %s (bounded only by a LIMIT, if any)", i+1, p); !slices.Contains(notes, n) {
					notes = append(notes, n)
				}
			}
		}
		t.Logf("#%d (×%d) %s\n    plan: %s", i+1, g.count, planShort(g.query), strings.Join(summaries, "\n    plan: "))
	}
	for _, n := range notes {
		t.Logf("note: %s", n)
	}
}

// planPostgres explains query with args: its plan's summary and problems.
func planPostgres(t *testing.T, ctx context.Context, db *sql.DB, query string, args []any) (string, []plancheck.Problem, []plancheck.Problem) {
	t.Helper()
	var raw []byte
	if err := db.QueryRowContext(ctx, "EXPLAIN (FORMAT JSON) "+query, args...).Scan(&raw); err != nil {
		t.Fatalf("explain %s: %v", query, err)
	}
	root, err := plancheck.ParsePostgres(raw)
	if err != nil {
		t.Fatal(err)
	}
	seq, full := plancheck.PostgresProblems(root, planTables...)
	sum := plancheck.Summary(root)
	if os.Getenv("PARLEY_PLAN_JSON") != "" {
		var pretty json.RawMessage = raw
		t.Logf("%s\n%s", query, pretty)
	}
	return sum, seq, full
}

// planPostgresGeneric explains the generic plan of query: prepared, with
// plan_cache_mode = force_generic_plan, and executed with args as literals.
func planPostgresGeneric(ctx context.Context, db *sql.DB, query string, args []any) (_ string, seq, full []plancheck.Problem, err error) {
	lits := make([]string, len(args))
	for i, a := range args {
		if lits[i], err = planLiteral(a); err != nil {
			return "", nil, nil, err
		}
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return "", nil, nil, err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		return "", nil, nil, err
	}
	defer conn.ExecContext(ctx, "RESET plan_cache_mode")
	if _, err := conn.ExecContext(ctx, "PREPARE plancheck AS "+query); err != nil {
		return "", nil, nil, err
	}
	defer conn.ExecContext(ctx, "DEALLOCATE plancheck")
	explain := "EXPLAIN (FORMAT JSON) EXECUTE plancheck"
	if len(lits) > 0 {
		explain += "(" + strings.Join(lits, ", ") + ")"
	}
	var raw []byte
	if err := conn.QueryRowContext(ctx, explain).Scan(&raw); err != nil {
		return "", nil, nil, err
	}
	root, err := plancheck.ParsePostgres(raw)
	if err != nil {
		return "", nil, nil, err
	}
	seq, full = plancheck.PostgresProblems(root, planTables...)
	return plancheck.Summary(root), seq, full, nil
}

// planLiteral writes an argument as an SQL literal of unknown type, which
// PostgreSQL casts to the parameter's type.
func planLiteral(v any) (string, error) {
	quote := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	switch v := v.(type) {
	case nil:
		return "NULL", nil
	case string:
		return quote(v), nil
	case time.Time:
		return quote(v.Format(time.RFC3339Nano)), nil
	case bool:
		return strconv.FormatBool(v), nil
	case int:
		return strconv.Itoa(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	}
	return "", fmt.Errorf("no literal for %T", v)
}

// planSQLite explains query with args: its plan's summary and problems.
func planSQLite(t *testing.T, ctx context.Context, db *sql.DB, query string, args []any) (string, []plancheck.Problem, []plancheck.Problem) {
	t.Helper()
	rows, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatalf("explain %s: %v", query, err)
	}
	defer rows.Close()
	var details []string
	for rows.Next() {
		var id, parent, notUsed int
		var detail string
		if err := rows.Scan(&id, &parent, &notUsed, &detail); err != nil {
			t.Fatal(err)
		}
		details = append(details, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	seq, full := plancheck.SQLiteProblems(query, details, planTables...)
	return strings.Join(details, "; "), seq, full
}

var (
	planColumnsRE = regexp.MustCompile(`^SELECT (.{60,}?) FROM `)
	planListRE    = regexp.MustCompile(`\((\$\d+|\?),(?:\s*(?:\$\d+|\?),){2,}\s*(\$\d+|\?)\)`)
)

// planShort is a query on one line, with a long column list and long IN
// lists elided.
func planShort(q string) string {
	q = strings.Join(strings.Fields(q), " ")
	q = planColumnsRE.ReplaceAllString(q, "SELECT … FROM ")
	q = planListRE.ReplaceAllString(q, "($1, …, $2)")
	if len(q) > 400 {
		q = q[:400] + "…"
	}
	return q
}
