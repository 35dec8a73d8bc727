// Package seed fills a database with realistic data for benchmarks and
// query-plan checks: users, DIRECT and GROUP conversations, and messages
// skewed towards busy conversations, with their events, sequence numbers and
// read markers exactly as the service would have written them. It writes
// with multi-row INSERTs in large transactions, which is what makes a
// million messages take seconds rather than hours.
package seed

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/parley-chat/parley/ent/attachment"
	"github.com/parley-chat/parley/ent/conversation"
	"github.com/parley-chat/parley/ent/message"
	"github.com/parley-chat/parley/ent/user"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/database"
)

// Options size the data set.
type Options struct {
	Users, Conversations, Messages int
	// GroupShare is the share of GROUP conversations (the rest are DIRECT).
	GroupShare float64
	// AttachmentShare is the share of messages with an attachment row.
	AttachmentShare float64
	// Password is every seeded user's password (users are user1…userN).
	Password string
	Seed     uint64
	Logger   *slog.Logger
}

// Defaults are the sizes of the benchmarks.
func Defaults() Options {
	return Options{Users: 10000, Conversations: 100000, Messages: 1000000, GroupShare: 0.2,
		AttachmentShare: 0.02, Password: "password-123", Seed: 1}
}

// Result says what was written.
type Result struct {
	Users, Conversations, Participants, Messages, Attachments int
	Took                                                      time.Duration
}

type writer struct {
	db      *database.DB
	log     *slog.Logger
	started time.Time
}

// rowsPerStatement keeps every INSERT under SQLite's and PostgreSQL's bind
// parameter limits (32766 and 65535) for tables of up to 9 columns.
const rowsPerStatement = 500

// insert writes rows into table in one transaction, rowsPerStatement at a time.
func (w *writer) insert(ctx context.Context, table string, cols []string, rows [][]any) error {
	tx, err := w.db.SQL.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("seed %s: %w", table, err)
	}
	defer func() { _ = tx.Rollback() }()
	for start := 0; start < len(rows); start += rowsPerStatement {
		chunk := rows[start:min(start+rowsPerStatement, len(rows))]
		var b strings.Builder
		fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES ", table, strings.Join(cols, ", "))
		args := make([]any, 0, len(chunk)*len(cols))
		for i, r := range chunk {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('(')
			for j := range cols {
				if j > 0 {
					b.WriteString(", ")
				}
				if w.db.Dialect == "postgres" {
					fmt.Fprintf(&b, "$%d", len(args)+j+1)
				} else {
					b.WriteByte('?')
				}
			}
			b.WriteByte(')')
			args = append(args, r...)
		}
		if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
			return fmt.Errorf("seed %s: %w", table, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("seed %s: %w", table, err)
	}
	return nil
}

func (w *writer) progress(what string, done, total int) {
	el := time.Since(w.started)
	w.log.Info("seeding", "table", what, "done", done, "of", total,
		"elapsed", el.Round(time.Millisecond).String())
}

// Run writes the data set into an empty, migrated database.
func Run(ctx context.Context, db *database.DB, o Options) (*Result, error) {
	if o.Users < 2 || o.Conversations < 1 || o.Messages < 0 {
		return nil, fmt.Errorf("seed: need at least 2 users and 1 conversation")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	n, err := db.Client.User.Query().Count(ctx)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	if n > 0 {
		return nil, fmt.Errorf("seed: the database already has %d users; seed an empty one", n)
	}
	w := &writer{db: db, log: o.Logger, started: time.Now()}
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	res := &Result{}
	hash, err := auth.HashPassword(o.Password)
	if err != nil {
		return nil, err
	}
	epoch := time.Now().UTC().Add(-90 * 24 * time.Hour).Truncate(time.Microsecond)

	// Users.
	userIDs := make([]string, o.Users)
	var rows [][]any
	for i := range o.Users {
		userIDs[i] = user.DefaultID()
		name := fmt.Sprintf("user%d", i+1)
		rows = append(rows, []any{userIDs[i], name, fmt.Sprintf("User %d", i+1), hash, epoch})
		if len(rows) == 20000 || i == o.Users-1 {
			if err := w.insert(ctx, "users", []string{"id", "username", "display_name", "password_hash", "created_at"}, rows); err != nil {
				return nil, err
			}
			rows = rows[:0]
			w.progress("users", i+1, o.Users)
		}
	}
	res.Users = o.Users

	// Conversations and their members. DIRECT pairs are distinct; every
	// user takes part in something.
	type conv struct {
		id      string
		members []int
		msgs    int
	}
	convs := make([]conv, o.Conversations)
	pairs := map[[2]int]bool{}
	for i := range convs {
		convs[i].id = conversation.DefaultID()
		if rng.Float64() < o.GroupShare || len(pairs) >= o.Users*(o.Users-1)/2 {
			size := 3 + rng.IntN(10)
			seen := map[int]bool{}
			for len(convs[i].members) < min(size, o.Users) {
				u := rng.IntN(o.Users)
				if !seen[u] {
					seen[u] = true
					convs[i].members = append(convs[i].members, u)
				}
			}
			continue
		}
		for {
			a, b := (i+rng.IntN(o.Users))%o.Users, rng.IntN(o.Users)
			if a == b {
				continue
			}
			if a > b {
				a, b = b, a
			}
			if !pairs[[2]int{a, b}] {
				pairs[[2]int{a, b}] = true
				convs[i].members = []int{a, b}
				break
			}
		}
	}
	// Messages go mostly to busy conversations (a power law).
	for range o.Messages {
		r := rng.Float64()
		convs[int(float64(o.Conversations)*r*r*r)].msgs++
	}

	// Conversations, messages, events, participants, written conversation by
	// conversation in batches.
	var convRows, msgRows, evRows, partRows, attRows [][]any
	flush := func(last bool) error {
		if len(msgRows) < 20000 && len(convRows) < 20000 && !last {
			return nil
		}
		for _, t := range []struct {
			table string
			cols  []string
			rows  *[][]any
		}{
			{"conversations", []string{"id", "kind", "title", "direct_key", "last_seq", "message_count", "last_message_id", "created_at", "updated_at"}, &convRows},
			{"participants", []string{"conversation_id", "user_id", "joined_at", "last_read_seq", "last_read_message_id", "read_at"}, &partRows},
			{"messages", []string{"id", "conversation_id", "sender_id", "seq", "body", "created_at"}, &msgRows},
			{"message_events", []string{"conversation_id", "seq", "type", "message_id", "created_at"}, &evRows},
			{"attachments", []string{"id", "conversation_id", "uploader_id", "message_id", "filename", "content_type", "size", "created_at"}, &attRows},
		} {
			if len(*t.rows) == 0 {
				continue
			}
			if err := w.insert(ctx, t.table, t.cols, *t.rows); err != nil {
				return err
			}
			*t.rows = (*t.rows)[:0]
		}
		w.progress("messages", res.Messages, o.Messages)
		return nil
	}
	span := time.Since(epoch)
	for _, c := range convs {
		created := epoch.Add(time.Duration(rng.Int64N(int64(span / 2))))
		step := (time.Since(created) - time.Minute) / time.Duration(c.msgs+1)
		at := created
		var lastMsg any
		msgIDs := make([]string, c.msgs)
		for s := range c.msgs {
			at = at.Add(time.Duration(rng.Int64N(int64(step)) + 1))
			id := message.DefaultID()
			msgIDs[s] = id
			sender := userIDs[c.members[rng.IntN(len(c.members))]]
			msgRows = append(msgRows, []any{id, c.id, sender, int64(s + 1), body(rng), at})
			evRows = append(evRows, []any{c.id, int64(s + 1), "CREATED", id, at})
			if rng.Float64() < o.AttachmentShare {
				attRows = append(attRows, []any{attachment.DefaultID(), c.id, sender, id, "photo.jpg", "image/jpeg", int64(1000 + rng.IntN(500000)), at})
				res.Attachments++
			}
			lastMsg = id
		}
		res.Messages += c.msgs
		kind, title, key := "GROUP", any(fmt.Sprintf("Group %s", c.id[len(c.id)-6:])), any(nil)
		if len(c.members) == 2 {
			a, b := userIDs[c.members[0]], userIDs[c.members[1]]
			if b < a {
				a, b = b, a
			}
			kind, title, key = "DIRECT", nil, a+":"+b
		}
		convRows = append(convRows, []any{c.id, kind, title, key, int64(c.msgs), int64(c.msgs), lastMsg, created, at})
		for _, m := range c.members {
			read := 0
			if c.msgs > 0 {
				read = c.msgs - rng.IntN(min(c.msgs, 5)+1) // most read nearly everything
			}
			var readID, readAt any
			if read > 0 {
				readID, readAt = msgIDs[read-1], at
			}
			partRows = append(partRows, []any{c.id, userIDs[m], created, int64(read), readID, readAt})
			res.Participants++
		}
		res.Conversations++
		if err := flush(false); err != nil {
			return nil, err
		}
	}
	if err := flush(true); err != nil {
		return nil, err
	}
	// Fresh statistics, so query plans are those of a database in use.
	if _, err := db.SQL.ExecContext(ctx, "ANALYZE"); err != nil {
		return nil, fmt.Errorf("seed: analyze: %w", err)
	}
	res.Took = time.Since(w.started)
	return res, nil
}

var words = strings.Fields(`the a to and of in is it you that for on was with as have but be they at one
this from or had by hot word what some we can out other were all there when up use your how said an each she
which do their time if will way about many then them write would like so these her long make thing see him two
has look more day could go come did number sound no most people my over know water than call first who may down
side been now find any new work part take get place made live where after back little only round man year came
show every good me give our under name very through just form great think say help low line differ turn cause
much mean before move right boy old too same tell does set three want air well also play small end put home read
hand port large spell add even land here must big high such follow act why ask men change went light kind off
need house picture try us again animal point mother world near build self earth father lunch meeting tomorrow`)

func body(rng *rand.Rand) string {
	n := 3 + rng.IntN(30)
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[rng.IntN(len(words))])
	}
	return b.String()
}
