// Package loader batches the reads a GraphQL response fans out to (users,
// participants, last messages, unread counts, attachments) into one query per
// kind. A fresh set of loaders is made for every HTTP request and for every
// subscription event, so nothing cached outlives the response it served.
package loader

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/graph-gophers/dataloader/v7"

	"github.com/parley-chat/parley/ent"
	"github.com/parley-chat/parley/ent/attachment"
	"github.com/parley-chat/parley/ent/conversation"
	"github.com/parley-chat/parley/ent/message"
	"github.com/parley-chat/parley/ent/participant"
	"github.com/parley-chat/parley/ent/user"
)

// batchWait is how long a loader collects keys before querying. gqlgen
// resolves list elements concurrently, so a list's keys arrive within
// microseconds; waiting longer would only add latency.
const batchWait = 500 * time.Microsecond

// Loaders is one response's set of loaders.
type Loaders struct {
	User         *dataloader.Loader[string, *ent.User]
	Conversation *dataloader.Loader[string, *ent.Conversation]
	Message      *dataloader.Loader[string, *ent.Message]
	Participants *dataloader.Loader[string, []*ent.Participant]
	Attachments  *dataloader.Loader[string, []*ent.Attachment]
	// Unread is keyed by UnreadKey(viewer, conversation).
	Unread *dataloader.Loader[string, int]
}

// Factory makes Loaders over one database.
type Factory struct {
	db      *ent.Client
	dialect string
}

// NewFactory returns a Factory; dialect is ent's dialect name of db.
func NewFactory(db *ent.Client, dialect string) *Factory {
	return &Factory{db: db, dialect: dialect}
}

// New returns a fresh set of loaders for one response.
func (f *Factory) New() *Loaders { return f.build(false) }

// NewShared returns loaders shared by the subscribers of one event. A batch
// runs under the context of whichever subscriber asked first, so it is
// detached from that subscriber's cancellation: one client disconnecting must
// not fail the load for all the others.
func (f *Factory) NewShared() *Loaders { return f.build(true) }

// sharedLoadTimeout bounds a detached batch load.
const sharedLoadTimeout = 10 * time.Second

func newLoader[K comparable, V any](shared bool, fn dataloader.BatchFunc[K, V]) *dataloader.Loader[K, V] {
	if shared {
		inner := fn
		fn = func(ctx context.Context, keys []K) []*dataloader.Result[V] {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedLoadTimeout)
			defer cancel()
			return inner(ctx, keys)
		}
	}
	return dataloader.NewBatchedLoader(fn,
		dataloader.WithWait[K, V](batchWait),
		dataloader.WithBatchCapacity[K, V](500),
	)
}

func (f *Factory) build(shared bool) *Loaders {
	return &Loaders{
		User: newLoader(shared, byID(func(ctx context.Context, ids []string) ([]*ent.User, error) {
			return f.db.User.Query().Where(user.IDIn(ids...)).All(ctx)
		}, func(u *ent.User) string { return u.ID })),
		Conversation: newLoader(shared, byID(func(ctx context.Context, ids []string) ([]*ent.Conversation, error) {
			return f.db.Conversation.Query().Where(conversation.IDIn(ids...)).All(ctx)
		}, func(c *ent.Conversation) string { return c.ID })),
		Message: newLoader(shared, byID(func(ctx context.Context, ids []string) ([]*ent.Message, error) {
			return f.db.Message.Query().Where(message.IDIn(ids...)).All(ctx)
		}, func(m *ent.Message) string { return m.ID })),
		Participants: newLoader(shared, groupBy(func(ctx context.Context, ids []string) ([]*ent.Participant, error) {
			return f.db.Participant.Query().Where(participant.ConversationIDIn(ids...)).
				Order(ent.Asc(participant.FieldConversationID), ent.Asc(participant.FieldJoinedAt), ent.Asc(participant.FieldID)).All(ctx)
		}, func(p *ent.Participant) string { return p.ConversationID })),
		Attachments: newLoader(shared, groupBy(func(ctx context.Context, ids []string) ([]*ent.Attachment, error) {
			return f.db.Attachment.Query().Where(attachment.MessageIDIn(ids...)).
				Order(ent.Asc(attachment.FieldCreatedAt), ent.Asc(attachment.FieldID)).All(ctx)
		}, func(a *ent.Attachment) string { return *a.MessageID })),
		Unread: newLoader(shared, f.unread),
	}
}

// byID adapts a query by primary keys to a batch function; a missing row
// yields a nil value, not an error, so callers decide what absence means.
func byID[V any](query func(context.Context, []string) ([]V, error), key func(V) string) dataloader.BatchFunc[string, V] {
	return func(ctx context.Context, keys []string) []*dataloader.Result[V] {
		rows, err := queryStorable(ctx, query, keys)
		out := make([]*dataloader.Result[V], len(keys))
		found := make(map[string]V, len(rows))
		for _, r := range rows {
			found[key(r)] = r
		}
		for i, k := range keys {
			if err != nil {
				out[i] = &dataloader.Result[V]{Error: err}
				continue
			}
			out[i] = &dataloader.Result[V]{Data: found[k]}
		}
		return out
	}
}

// queryStorable runs query for the keys a text column can hold. PostgreSQL
// fails a whole statement on a NUL character or invalid UTF-8 (SQLite takes
// them); no row has such a key, so leaving it out changes no answer, and one
// bad ID in a batch (node(id:) takes any string) does not fail the others.
func queryStorable[V any](ctx context.Context, query func(context.Context, []string) ([]V, error), keys []string) ([]V, error) {
	ok := make([]string, 0, len(keys))
	for _, k := range keys {
		if utf8.ValidString(k) && strings.IndexByte(k, 0) < 0 {
			ok = append(ok, k)
		}
	}
	if len(ok) == 0 {
		return nil, nil
	}
	return query(ctx, ok)
}

// groupBy adapts a query for the children of many parents to a batch function.
func groupBy[V any](query func(context.Context, []string) ([]V, error), parent func(V) string) dataloader.BatchFunc[string, []V] {
	return func(ctx context.Context, keys []string) []*dataloader.Result[[]V] {
		rows, err := queryStorable(ctx, query, keys)
		groups := make(map[string][]V, len(keys))
		for _, r := range rows {
			groups[parent(r)] = append(groups[parent(r)], r)
		}
		out := make([]*dataloader.Result[[]V], len(keys))
		for i, k := range keys {
			if err != nil {
				out[i] = &dataloader.Result[[]V]{Error: err}
				continue
			}
			g := groups[k]
			if g == nil {
				g = []V{}
			}
			out[i] = &dataloader.Result[[]V]{Data: g}
		}
		return out
	}
}

// UnreadKey is the Unread loader's key.
func UnreadKey(viewer, conversationID string) string { return viewer + "|" + conversationID }

// unread counts, per (viewer, conversation), the messages from others after
// the viewer's read marker, in one statement per viewer (a response has one).
func (f *Factory) unread(ctx context.Context, keys []string) []*dataloader.Result[int] {
	byViewer := map[string][]string{}
	for _, k := range keys {
		v, c, _ := strings.Cut(k, "|")
		byViewer[v] = append(byViewer[v], c)
	}
	counts := map[string]int{}
	var firstErr error
	for viewer, convs := range byViewer {
		if err := f.countUnread(ctx, viewer, convs, counts); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	out := make([]*dataloader.Result[int], len(keys))
	for i, k := range keys {
		if firstErr != nil {
			out[i] = &dataloader.Result[int]{Error: firstErr}
			continue
		}
		out[i] = &dataloader.Result[int]{Data: counts[k]}
	}
	return out
}

func (f *Factory) countUnread(ctx context.Context, viewer string, convs []string, into map[string]int) error {
	args := make([]any, 0, len(convs)+2)
	args = append(args, viewer, viewer)
	marks := make([]string, len(convs))
	for i, c := range convs {
		args = append(args, c)
		marks[i] = "?"
	}
	q := `SELECT m.conversation_id, COUNT(*) FROM messages m
JOIN participants p ON p.conversation_id = m.conversation_id AND p.user_id = ?
WHERE m.sender_id <> ? AND m.deleted_at IS NULL AND m.seq > p.last_read_seq
AND m.conversation_id IN (` + strings.Join(marks, ",") + `)
GROUP BY m.conversation_id`
	rows, err := f.db.QueryContext(ctx, Rebind(f.dialect, q), args...)
	if err != nil {
		return fmt.Errorf("count unread: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var conv string
		var n int
		if err := rows.Scan(&conv, &n); err != nil {
			return fmt.Errorf("count unread: %w", err)
		}
		into[UnreadKey(viewer, conv)] = n
	}
	return rows.Err()
}

// Rebind turns ? placeholders into PostgreSQL's $n ones when needed.
func Rebind(dialect, q string) string {
	if dialect != "postgres" {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// slot is put in the context once per response; the loaders in it are made
// on first use, or adopted from a subscription event shared by all of that
// event's subscribers.
type slot struct {
	mu      sync.Mutex
	factory *Factory
	loaders *Loaders
}

type slotKey struct{}

// WithFreshLoaders returns a context whose loaders are made on first use.
func WithFreshLoaders(ctx context.Context, f *Factory) context.Context {
	return context.WithValue(ctx, slotKey{}, &slot{factory: f})
}

// Adopt makes the response use shared loaders (a subscription event's) if it
// has not used its own yet. scope must be a *Loaders or nil.
func Adopt(ctx context.Context, scope any) {
	shared, ok := scope.(*Loaders)
	s, _ := ctx.Value(slotKey{}).(*slot)
	if !ok || s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loaders == nil {
		s.loaders = shared
	}
}

// For returns the response's loaders. It panics without WithFreshLoaders,
// which is a wiring bug that gqlgen's recover turns into an internal error.
func For(ctx context.Context) *Loaders {
	s, _ := ctx.Value(slotKey{}).(*slot)
	if s == nil {
		panic("loader: no loaders in context")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loaders == nil {
		s.loaders = s.factory.New()
	}
	return s.loaders
}
