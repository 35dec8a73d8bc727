// Package chat is the messaging service: access rules, validation, sequence
// numbers, idempotency and subscriptions. It knows nothing of GraphQL or HTTP,
// so resolvers, HTTP handlers, commands and tests share one set of rules.
package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/parley-chat/parley/ent"
	"github.com/parley-chat/parley/ent/conversation"
	"github.com/parley-chat/parley/ent/participant"
	"github.com/parley-chat/parley/ent/user"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/events"
)

// Limits bound what a client may ask for.
type Limits struct {
	MaxBodyChars    int           // message body, after trimming
	DefaultPageSize int           // when first/last are omitted
	MaxPageSize     int           // first/last above it are rejected
	MaxUploadBytes  int64         // one attachment
	MaxIDsPerCall   int           // participantIds / userIds / attachmentIds
	TypingTTL       time.Duration // a typing state expires without a refresh
}

// DefaultLimits are the limits of API.md.
func DefaultLimits() Limits {
	return Limits{
		MaxBodyChars:    4000,
		DefaultPageSize: 20,
		MaxPageSize:     100,
		MaxUploadBytes:  10 << 20,
		MaxIDsPerCall:   1000,
		TypingTTL:       6 * time.Second,
	}
}

// Config wires a Service.
type Config struct {
	DB *ent.Client
	// Writer runs the service's transactions (database.DB.Writer); nil: DB.
	Writer  *ent.Client
	Dialect string // ent dialect name: "sqlite3" or "postgres"
	Broker  events.Broker
	Hub     *events.Hub
	Tokens  *auth.Tokens
	Files   *FileStore
	Limits  Limits
	Logger  *slog.Logger
	// NewScope makes the value shared by everything delivered from one
	// database read (see events.Delivery.Scope).
	NewScope func() any
	// Changes, if set, learns of every committed change to a conversation
	// before the mutation that made it returns.
	Changes ChangeListener
}

// ChangeListener is told of committed changes synchronously (unlike the
// broker's subscribers), so that nothing derived from the old state (a
// cached response) is served after the mutation has returned.
type ChangeListener interface {
	// Changed names the conversation that changed and the users whose
	// membership of it changed (added, removed, or members of a new one).
	Changed(conversationID string, users []string)
}

// Service implements every operation of the API.
type Service struct {
	db       *ent.Client
	writer   *ent.Client
	dialect  string
	broker   events.Broker
	hub      *events.Hub
	tokens   *auth.Tokens
	files    *FileStore
	limits   Limits
	log      *slog.Logger
	newScope func() any
	changes  ChangeListener
	sends    sendBatcher // SQLite sends (sendbatch.go)
}

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NewScope == nil {
		cfg.NewScope = func() any { return nil }
	}
	if cfg.Writer == nil {
		cfg.Writer = cfg.DB
	}
	return &Service{
		db: cfg.DB, writer: cfg.Writer, dialect: cfg.Dialect, broker: cfg.Broker, hub: cfg.Hub,
		tokens: cfg.Tokens, files: cfg.Files, limits: cfg.Limits, log: cfg.Logger,
		newScope: cfg.NewScope, changes: cfg.Changes,
	}
}

// Limits returns the service's limits.
func (s *Service) Limits() Limits { return s.limits }

// now is the service's clock, at the microsecond precision of PostgreSQL's
// timestamptz: a time a mutation returns must equal the one later read back.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// publish tells every replica about a committed change. A failed publish
// loses no message event (subscribers fill gaps from the database), so it is
// logged rather than failing the already-committed operation. members are
// users whose membership the change made (a new conversation's), besides
// the event's own UserID and Notify.
func (s *Service) publish(ctx context.Context, e events.Event, members ...string) {
	if s.changes != nil && e.Kind != events.KindTyping {
		users := slices.Concat(members, e.Notify)
		if e.UserID != "" {
			users = append(users, e.UserID)
		}
		s.changes.Changed(e.ConversationID, users)
	}
	e.PublishedAt = now()
	if err := s.broker.Publish(context.WithoutCancel(ctx), e); err != nil {
		s.log.WarnContext(ctx, "publish failed", "kind", e.Kind, "conversation", e.ConversationID, "seq", e.Seq, "err", err)
	}
}

// withTx runs fn in a transaction, rolling back on error or panic.
func (s *Service) withTx(ctx context.Context, fn func(tx *ent.Tx) error) (err error) {
	tx, err := s.writer.Tx(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if v := recover(); v != nil {
			_ = tx.Rollback()
			panic(v)
		}
	}()
	if err := fn(tx); err != nil {
		if rerr := tx.Rollback(); rerr != nil {
			return errors.Join(err, fmt.Errorf("rollback: %w", rerr))
		}
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

var usernamePattern = regexp.MustCompile(`^[a-z0-9_.-]{3,32}$`)

// Register creates an account and returns a token for it.
func (s *Service) Register(ctx context.Context, username, password string, displayName *string) (string, *ent.User, error) {
	username = strings.ToLower(strings.TrimSpace(username))
	if !usernamePattern.MatchString(username) {
		return "", nil, invalidf("username", "username must be 3 to 32 characters: letters, digits, '_', '.' or '-'")
	}
	if len(password) < 8 || len(password) > 72 {
		return "", nil, invalidf("password", "password must be 8 to 72 bytes long")
	}
	name := username
	if displayName != nil {
		name = strings.TrimSpace(*displayName)
		if n := utf8.RuneCountInString(name); n < 1 || n > 64 || !storable(name) {
			return "", nil, invalidf("displayName", "displayName must be 1 to 64 characters")
		}
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return "", nil, err
	}
	u, err := s.db.User.Create().SetUsername(username).SetDisplayName(name).SetPasswordHash(hash).Save(ctx)
	if ent.IsConstraintError(err) {
		return "", nil, invalidf("username", "username %q is taken", username)
	}
	if err != nil {
		return "", nil, fmt.Errorf("register: %w", err)
	}
	tok, err := s.tokens.Issue(u.ID)
	if err != nil {
		return "", nil, err
	}
	return tok, u, nil
}

// Login checks a password and returns a token.
func (s *Service) Login(ctx context.Context, username, password string) (string, *ent.User, error) {
	username = strings.ToLower(strings.TrimSpace(username))
	var u *ent.User
	if storable(username) {
		var err error
		u, err = s.db.User.Query().Where(user.Username(username)).Only(ctx)
		if err != nil && !ent.IsNotFound(err) {
			return "", nil, fmt.Errorf("login: %w", err)
		}
	}
	hash := ""
	if u != nil {
		hash = u.PasswordHash
	}
	if !auth.CheckPassword(hash, password) {
		return "", nil, unauthenticated("wrong username or password")
	}
	tok, err := s.tokens.Issue(u.ID)
	if err != nil {
		return "", nil, err
	}
	return tok, u, nil
}

// Authenticate turns a token into the ID of an existing user.
func (s *Service) Authenticate(ctx context.Context, token string) (string, error) {
	id, err := s.tokens.Verify(token)
	if err != nil {
		return "", unauthenticated(err.Error())
	}
	ok, err := s.db.User.Query().Where(user.ID(id)).Exist(ctx)
	if err != nil {
		return "", fmt.Errorf("authenticate: %w", err)
	}
	if !ok {
		return "", unauthenticated("the token's user no longer exists")
	}
	return id, nil
}

// Me returns the viewer.
func (s *Service) Me(ctx context.Context, viewer string) (*ent.User, error) {
	u, err := s.db.User.Get(ctx, viewer)
	if ent.IsNotFound(err) {
		return nil, unauthenticated("the token's user no longer exists")
	}
	if err != nil {
		return nil, fmt.Errorf("me: %w", err)
	}
	return u, nil
}

// SearchUsers lists users whose username or display name contains search.
func (s *Service) SearchUsers(ctx context.Context, search string, first int) ([]*ent.User, error) {
	if first < 0 || first > s.limits.MaxPageSize {
		return nil, invalidf("first", "first must be between 0 and %d", s.limits.MaxPageSize)
	}
	search = strings.TrimSpace(search)
	if !storable(search) {
		return []*ent.User{}, nil // no name contains it
	}
	q := s.db.User.Query()
	if search != "" {
		q = q.Where(user.Or(user.UsernameContainsFold(search), user.DisplayNameContainsFold(search)))
	}
	users, err := q.Order(ent.Asc(user.FieldUsername)).Limit(first).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("search users: %w", err)
	}
	return users, nil
}

// isMember reports whether userID takes part in the conversation.
func isMember(ctx context.Context, db *ent.ParticipantClient, userID, conversationID string) (bool, error) {
	if !storable(userID) || !storable(conversationID) {
		return false, nil
	}
	ok, err := db.Query().Where(participant.UserID(userID), participant.ConversationID(conversationID)).Exist(ctx)
	if err != nil {
		return false, fmt.Errorf("check membership: %w", err)
	}
	return ok, nil
}

// requireMember fails with NOT_FOUND unless the viewer is a participant: a
// conversation the viewer is not in behaves as if it did not exist.
func requireMember(ctx context.Context, db *ent.ParticipantClient, viewer, conversationID string) error {
	ok, err := isMember(ctx, db, viewer, conversationID)
	if err != nil {
		return err
	}
	if !ok {
		return notFound("conversation")
	}
	return nil
}

// MemberOf returns the IDs of every conversation the viewer takes part in.
func (s *Service) MemberOf(ctx context.Context, viewer string) ([]string, error) {
	ids, err := s.db.Participant.Query().Where(participant.UserID(viewer)).
		Select(participant.FieldConversationID).Strings(ctx)
	if err != nil {
		return nil, fmt.Errorf("memberships: %w", err)
	}
	return ids, nil
}

// LastSeqs returns the current sequence number of each conversation.
func (s *Service) LastSeqs(ctx context.Context, conversationIDs []string) (map[string]int64, error) {
	out := make(map[string]int64, len(conversationIDs))
	for chunk := range slices.Chunk(conversationIDs, 500) {
		rows, err := s.db.Conversation.Query().Where(conversation.IDIn(chunk...)).
			Select(conversation.FieldID, conversation.FieldLastSeq).All(ctx)
		if err != nil {
			return nil, fmt.Errorf("last sequences: %w", err)
		}
		for _, c := range rows {
			out[c.ID] = c.LastSeq
		}
	}
	return out, nil
}

// ParticipantIDs lists the IDs of a conversation's participants.
func (s *Service) ParticipantIDs(ctx context.Context, conversationID string) ([]string, error) {
	ids, err := s.db.Participant.Query().Where(participant.ConversationID(conversationID)).
		Select(participant.FieldUserID).Strings(ctx)
	if err != nil {
		return nil, fmt.Errorf("participants of %s: %w", conversationID, err)
	}
	return ids, nil
}

func (s *Service) checkIDs(field string, ids []string) ([]string, error) {
	if len(ids) > s.limits.MaxIDsPerCall {
		return nil, invalidf(field, "%s may name at most %d IDs", field, s.limits.MaxIDsPerCall)
	}
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

// AttachHub gives the service the hub its subscriptions register with. The
// hub needs the service (for inbox recipients) and the service needs the
// hub, so one of them is attached after both exist.
func (s *Service) AttachHub(h *events.Hub) { s.hub = h }
