// Package loader batches the reads a GraphQL response fans out to (users,
// participants, last messages, unread counts, attachments) into one query per
// kind. A fresh set of loaders is made for every HTTP request and for every
// subscription event, so nothing cached outlives the response it served.
package loader

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/graph-gophers/dataloader/v7"

	"github.com/parley-chat/parley/ent"
	"github.com/parley-chat/parley/ent/attachment"
	"github.com/parley-chat/parley/ent/conversation"
	"github.com/parley-chat/parley/ent/user"
	"github.com/parley-chat/parley/internal/database"
)

// batchWait is how long a loader collects keys before querying. gqlgen
// resolves list elements concurrently, so a list's keys arrive within
// microseconds; waiting longer would only add latency.
const batchWait = 500 * time.Microsecond

// Loaders is one response's set of loaders. Rows they read alongside
// others carry the columns the API shows and no more: participants their
// conversation, user and read marker (no ID, joined_at or last_read_seq),
// users joined to participants or messages no created_at or password hash.
type Loaders struct {
	User         *dataloader.Loader[string, *ent.User]
	Conversation *dataloader.Loader[string, *ent.Conversation]
	Message      *dataloader.Loader[string, *ent.Message]
	Participants *dataloader.Loader[string, []*ent.Participant]
	Attachments  *dataloader.Loader[string, []*ent.Attachment]
	// Unread is keyed by UnreadKey(viewer, conversation).
	Unread *dataloader.Loader[string, int]

	// The batch functions behind the loaders, for prefetching.
	users        dataloader.BatchFunc[string, *ent.User]
	messages     func(context.Context, []string) ([]*ent.Message, error)
	participants func(context.Context, []string) ([]*ent.Participant, error)
	attachments  dataloader.BatchFunc[string, []*ent.Attachment]
	unread       dataloader.BatchFunc[string, int]
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
	l := &Loaders{}
	// Participants and messages come with their users in the same
	// statement, which primes the user loader: a list that shows
	// participants and last-message senders costs no extra user query.
	l.participants = func(ctx context.Context, ids []string) ([]*ent.Participant, error) {
		return f.participantsWithUsers(ctx, l, ids)
	}
	l.messages = func(ctx context.Context, ids []string) ([]*ent.Message, error) {
		return f.messagesWithSenders(ctx, l, ids)
	}
	l.users = byID(func(ctx context.Context, ids []string) ([]*ent.User, error) {
		return f.db.User.Query().Where(user.IDIn(ids...)).All(ctx)
	}, func(u *ent.User) string { return u.ID })
	l.attachments = groupBy(func(ctx context.Context, ids []string) ([]*ent.Attachment, error) {
		return f.db.Attachment.Query().Where(attachment.MessageIDIn(ids...)).
			Order(ent.Asc(attachment.FieldCreatedAt), ent.Asc(attachment.FieldID)).All(ctx)
	}, func(a *ent.Attachment) string { return *a.MessageID })
	l.unread = f.unread

	l.User = newLoader(shared, l.users)
	l.Conversation = newLoader(shared, byID(func(ctx context.Context, ids []string) ([]*ent.Conversation, error) {
		return f.db.Conversation.Query().Where(conversation.IDIn(ids...)).All(ctx)
	}, func(c *ent.Conversation) string { return c.ID }))
	l.Message = newLoader(shared, byID(l.messages, func(m *ent.Message) string { return m.ID }))
	l.Participants = newLoader(shared, groupBy(l.participants, func(p *ent.Participant) string { return p.ConversationID }))
	l.Attachments = newLoader(shared, l.attachments)
	l.Unread = newLoader(shared, l.unread)
	return l
}

// prefetch loads keys in one batch now and primes the loader with the
// results, so that the elements of a list find them cached: a list costs
// one statement per kind whatever its length, without depending on how
// many keys arrive within a batching window.
func prefetch[V any](ctx context.Context, ld *dataloader.Loader[string, V], fn dataloader.BatchFunc[string, V], keys []string) error {
	keys = unique(keys)
	if len(keys) == 0 {
		return nil
	}
	for i, r := range fn(ctx, keys) {
		if r.Error != nil {
			return r.Error
		}
		ld.Prime(ctx, keys[i], r.Data)
	}
	return nil
}

func unique(keys []string) []string {
	seen := make(map[string]bool, len(keys))
	out := keys[:0:0]
	for _, k := range keys {
		if k != "" && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// PrefetchParticipants loads the participants (and their users) of
// conversations in one statement.
func (l *Loaders) PrefetchParticipants(ctx context.Context, conversationIDs []string) error {
	return prefetch(ctx, l.Participants, groupBy(l.participants, func(p *ent.Participant) string { return p.ConversationID }), conversationIDs)
}

// PrefetchMessages loads messages (and their senders) in one statement.
func (l *Loaders) PrefetchMessages(ctx context.Context, ids []string) error {
	return prefetch(ctx, l.Message, byID(l.messages, func(m *ent.Message) string { return m.ID }), ids)
}

// PrefetchUsers loads users in one statement.
func (l *Loaders) PrefetchUsers(ctx context.Context, ids []string) error {
	return prefetch(ctx, l.User, l.users, ids)
}

// PrefetchAttachments loads the attachments of messages in one statement.
func (l *Loaders) PrefetchAttachments(ctx context.Context, messageIDs []string) error {
	return prefetch(ctx, l.Attachments, l.attachments, messageIDs)
}

// PrefetchUnread counts the viewer's unread messages of conversations in
// one statement.
func (l *Loaders) PrefetchUnread(ctx context.Context, viewer string, conversationIDs []string) error {
	keys := make([]string, len(conversationIDs))
	for i, c := range conversationIDs {
		keys[i] = UnreadKey(viewer, c)
	}
	return prefetch(ctx, l.Unread, l.unread, keys)
}

// ParticipantUsers returns the users of participants loaded with them (by
// the Participants loader), in order, and whether every one was: then no
// user loader round (a goroutine and channel per key) is needed.
func ParticipantUsers(ps []*ent.Participant) ([]*ent.User, bool) {
	out := make([]*ent.User, len(ps))
	for i, p := range ps {
		if p.Edges.User == nil {
			return nil, false
		}
		out[i] = p.Edges.User
	}
	return out, true
}

// placeholders returns "?, ?, …" for n values.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func (f *Factory) participantsWithUsers(ctx context.Context, l *Loaders, conversationIDs []string) ([]*ent.Participant, error) {
	args := make([]any, len(conversationIDs))
	for i, id := range conversationIDs {
		args[i] = id
	}
	join := "JOIN users u ON u.id = p.user_id"
	if f.dialect == "postgres" {
		// A page's few hundred participants are best joined by primary key,
		// but at the default random_page_cost PostgreSQL prefers hashing a
		// scan of every user (5.7 ms against 0.3 ms with 10,000 users). A
		// LATERAL subquery with OFFSET 0 cannot be flattened, so each
		// participant is a users_pkey lookup whatever the planner settings.
		join = "CROSS JOIN LATERAL (SELECT username, display_name, avatar_url FROM users WHERE users.id = p.user_id OFFSET 0) u"
	}
	// Only the columns the API shows (see Loaders): a page reads a few
	// hundred of these rows, and each column costs (a time column on SQLite
	// is parsed from text, twice).
	q := `SELECT p.conversation_id, p.user_id, p.last_read_message_id, p.read_at,
u.username, u.display_name, u.avatar_url
FROM participants p ` + join + `
WHERE p.conversation_id IN (` + placeholders(len(args)) + `)
ORDER BY p.conversation_id, p.joined_at, p.id`
	rows, err := f.db.QueryContext(ctx, database.Rebind(f.dialect, q), args...)
	if err != nil {
		return nil, fmt.Errorf("participants: %w", err)
	}
	defer rows.Close()
	var out []*ent.Participant
	users := map[string]*ent.User{}
	for rows.Next() {
		p, u := &ent.Participant{}, &ent.User{}
		var readID, avatar sql.NullString
		var readAt sql.NullTime
		if err := rows.Scan(&p.ConversationID, &p.UserID, &readID, &readAt,
			&u.Username, &u.DisplayName, &avatar); err != nil {
			return nil, fmt.Errorf("participants: %w", err)
		}
		p.LastReadMessageID, p.ReadAt, u.AvatarURL = nullString(readID), nullTime(readAt), nullString(avatar)
		u.ID = p.UserID
		if prev := users[u.ID]; prev != nil {
			u = prev // one *User per user within a batch
		}
		users[u.ID] = u
		p.Edges.User = u
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("participants: %w", err)
	}
	for id, u := range users {
		l.User.Prime(ctx, id, u)
	}
	return out, nil
}

func (f *Factory) messagesWithSenders(ctx context.Context, l *Loaders, ids []string) ([]*ent.Message, error) {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	q := `SELECT m.id, m.conversation_id, m.sender_id, m.seq, m.body, m.client_message_id, m.created_at, m.edited_at, m.deleted_at,
u.username, u.display_name, u.avatar_url
FROM messages m JOIN users u ON u.id = m.sender_id
WHERE m.id IN (` + placeholders(len(args)) + `)`
	rows, err := f.db.QueryContext(ctx, database.Rebind(f.dialect, q), args...)
	if err != nil {
		return nil, fmt.Errorf("messages: %w", err)
	}
	defer rows.Close()
	var out []*ent.Message
	for rows.Next() {
		m, u := &ent.Message{}, &ent.User{}
		var cmid, avatar sql.NullString
		var edited, deleted sql.NullTime
		if err := rows.Scan(&m.ID, &m.ConversationID, &m.SenderID, &m.Seq, &m.Body, &cmid, &m.CreatedAt, &edited, &deleted,
			&u.Username, &u.DisplayName, &avatar); err != nil {
			return nil, fmt.Errorf("messages: %w", err)
		}
		m.ClientMessageID, m.EditedAt, m.DeletedAt, u.AvatarURL = nullString(cmid), nullTime(edited), nullTime(deleted), nullString(avatar)
		u.ID = m.SenderID
		l.User.Prime(ctx, u.ID, u)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("messages: %w", err)
	}
	return out, nil
}

func nullString(s sql.NullString) *string {
	if !s.Valid {
		return nil
	}
	return &s.String
}

func nullTime(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	v := t.Time.UTC()
	return &v
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
	rows, err := f.db.QueryContext(ctx, database.Rebind(f.dialect, q), args...)
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
