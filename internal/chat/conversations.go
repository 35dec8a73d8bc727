package chat

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"entgo.io/ent/dialect/sql"

	"github.com/parley-chat/parley/ent"
	"github.com/parley-chat/parley/ent/conversation"
	"github.com/parley-chat/parley/ent/message"
	"github.com/parley-chat/parley/ent/participant"
	"github.com/parley-chat/parley/ent/predicate"
	"github.com/parley-chat/parley/ent/user"
	"github.com/parley-chat/parley/internal/database"
	"github.com/parley-chat/parley/internal/events"
)

// Inbox event types of conversation events.
const (
	InboxConversationCreated = "CONVERSATION_CREATED"
	InboxParticipantsChanged = "PARTICIPANTS_CHANGED"
	InboxRead                = "READ"
)

// Conversation returns a conversation of the viewer, or NOT_FOUND.
func (s *Service) Conversation(ctx context.Context, viewer, id string) (*ent.Conversation, error) {
	if !storable(id) {
		return nil, notFound("conversation")
	}
	c, err := s.db.Conversation.Query().
		Where(conversation.ID(id), conversation.HasParticipantsWith(participant.UserID(viewer))).
		Only(ctx)
	if ent.IsNotFound(err) {
		return nil, notFound("conversation")
	}
	if err != nil {
		return nil, fmt.Errorf("conversation: %w", err)
	}
	return c, nil
}

// CreateConversation starts a conversation, or returns the existing DIRECT
// conversation of the two when there is exactly one other participant and
// no title.
func (s *Service) CreateConversation(ctx context.Context, viewer string, participantIDs []string, title *string) (*ent.Conversation, error) {
	ids, err := s.checkIDs("participantIds", participantIDs)
	if err != nil {
		return nil, err
	}
	others := slices.DeleteFunc(ids, func(id string) bool { return id == viewer })
	if title != nil {
		t := strings.TrimSpace(*title)
		if n := utf8.RuneCountInString(t); n > 200 || !storable(t) {
			return nil, invalidf("title", "title must be at most 200 characters")
		}
		title = &t
		if t == "" {
			title = nil
		}
	}
	if err := s.requireUsers(ctx, "participantIds", others); err != nil {
		return nil, err
	}
	if len(others) == 1 && title == nil {
		return s.directConversation(ctx, viewer, others[0])
	}
	var c *ent.Conversation
	err = s.withTx(ctx, func(tx *ent.Tx) error {
		t := now()
		c, err = tx.Conversation.Create().SetKind(conversation.KindGROUP).SetNillableTitle(title).
			SetCreatedAt(t).SetUpdatedAt(t).Save(ctx)
		if err != nil {
			return fmt.Errorf("create conversation: %w", err)
		}
		return addMembers(ctx, tx, c.ID, append([]string{viewer}, others...), t)
	})
	if err != nil {
		return nil, err
	}
	s.publish(ctx, events.Event{Kind: events.KindConversation, Type: InboxConversationCreated, ConversationID: c.ID, UserID: viewer}, others...)
	return c, nil
}

func (s *Service) directConversation(ctx context.Context, viewer, other string) (*ent.Conversation, error) {
	a, b := viewer, other
	if b < a {
		a, b = b, a
	}
	key := a + ":" + b
	find := func() (*ent.Conversation, error) {
		c, err := s.db.Conversation.Query().Where(conversation.DirectKey(key)).Only(ctx)
		if ent.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("find direct conversation: %w", err)
		}
		return c, nil
	}
	if c, err := find(); c != nil || err != nil {
		return c, err
	}
	var c *ent.Conversation
	err := s.withTx(ctx, func(tx *ent.Tx) error {
		t := now()
		var err error
		c, err = tx.Conversation.Create().SetKind(conversation.KindDIRECT).SetDirectKey(key).
			SetCreatedAt(t).SetUpdatedAt(t).Save(ctx)
		if err != nil {
			return fmt.Errorf("create direct conversation: %w", err)
		}
		return addMembers(ctx, tx, c.ID, []string{viewer, other}, t)
	})
	if ent.IsConstraintError(err) {
		// Another request created the same pair first: theirs is the one.
		return find()
	}
	if err != nil {
		return nil, err
	}
	s.publish(ctx, events.Event{Kind: events.KindConversation, Type: InboxConversationCreated, ConversationID: c.ID, UserID: viewer}, other)
	return c, nil
}

func addMembers(ctx context.Context, tx *ent.Tx, conversationID string, userIDs []string, at time.Time) error {
	builders := make([]*ent.ParticipantCreate, len(userIDs))
	for i, u := range userIDs {
		builders[i] = tx.Participant.Create().SetConversationID(conversationID).SetUserID(u).SetJoinedAt(at)
	}
	for chunk := range slices.Chunk(builders, 500) {
		if err := tx.Participant.CreateBulk(chunk...).Exec(ctx); err != nil {
			return fmt.Errorf("add participants: %w", err)
		}
	}
	return nil
}

// requireUsers fails with BAD_USER_INPUT unless every ID names a user.
func (s *Service) requireUsers(ctx context.Context, field string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	for _, id := range ids {
		if !storable(id) {
			return invalidf(field, "%s names an unknown user: %q", field, id)
		}
	}
	found := make([]string, 0, len(ids))
	for chunk := range slices.Chunk(ids, 500) {
		got, err := s.db.User.Query().Where(user.IDIn(chunk...)).IDs(ctx)
		if err != nil {
			return fmt.Errorf("look up users: %w", err)
		}
		found = append(found, got...)
	}
	if len(found) == len(ids) {
		return nil
	}
	for _, id := range ids {
		if !slices.Contains(found, id) {
			return invalidf(field, "%s names an unknown user: %q", field, id)
		}
	}
	return nil
}

// AddParticipants adds users to a GROUP conversation of the viewer.
func (s *Service) AddParticipants(ctx context.Context, viewer, conversationID string, userIDs []string) (*ent.Conversation, error) {
	ids, err := s.checkIDs("userIds", userIDs)
	if err != nil {
		return nil, err
	}
	c, err := s.Conversation(ctx, viewer, conversationID)
	if err != nil {
		return nil, err
	}
	if c.Kind != conversation.KindGROUP {
		return nil, invalidf("conversationId", "participants can only be added to a GROUP conversation")
	}
	if err := s.requireUsers(ctx, "userIds", ids); err != nil {
		return nil, err
	}
	var added []string
	add := func(tx *ent.Tx) error {
		present, err := tx.Participant.Query().
			Where(participant.ConversationID(c.ID), participant.UserIDIn(ids...)).
			Select(participant.FieldUserID).Strings(ctx)
		if err != nil {
			return fmt.Errorf("participants: %w", err)
		}
		added = slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return slices.Contains(present, id) })
		return addMembers(ctx, tx, c.ID, added, now())
	}
	// A concurrent request may add one of the same users between the check
	// and the insert (SQLite's single writer rules that out, PostgreSQL's
	// row locks do not): its insert wins, and ours looks again.
	for attempt := 1; ; attempt++ {
		err = s.withTx(ctx, add)
		if !ent.IsConstraintError(err) || attempt == 3 {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	for _, u := range added {
		s.publish(ctx, events.Event{Kind: events.KindConversation, Type: InboxParticipantsChanged, ConversationID: c.ID, UserID: u})
	}
	return c, nil
}

// LeaveConversation removes the viewer from a GROUP conversation.
func (s *Service) LeaveConversation(ctx context.Context, viewer, conversationID string) error {
	c, err := s.Conversation(ctx, viewer, conversationID)
	if err != nil {
		return err
	}
	if c.Kind != conversation.KindGROUP {
		return invalidf("conversationId", "a DIRECT conversation cannot be left")
	}
	n, err := s.db.Participant.Delete().
		Where(participant.ConversationID(c.ID), participant.UserID(viewer)).Exec(ctx)
	if err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	if n > 0 {
		s.publish(ctx, events.Event{Kind: events.KindConversation, Type: InboxParticipantsChanged,
			ConversationID: c.ID, UserID: viewer, Notify: []string{viewer}})
	}
	return nil
}

// inConversationsOf selects the viewer's conversations as
// `id IN (SELECT conversation_id FROM participants WHERE user_id = ?)`. ent's
// edge predicate is a correlated EXISTS, which SQLite plans as a walk of the
// whole (updated_at, id) index probing participants for every conversation:
// 50–190 ms a page at a million messages, against well under a millisecond
// this way. PostgreSQL plans both the same.
func inConversationsOf(viewer string) predicate.Conversation {
	return func(s *sql.Selector) {
		t := sql.Table(participant.Table)
		s.Where(sql.In(s.C(conversation.FieldID),
			sql.Select(t.C(participant.FieldConversationID)).From(t).Where(sql.EQ(t.C(participant.FieldUserID), viewer))))
	}
}

// ConversationPage is one page of the viewer's conversations.
type ConversationPage struct {
	Conversations []*ent.Conversation
	HasNext       bool
	HasPrevious   bool
}

// ListConversations pages through the viewer's conversations, newest
// activity first.
func (s *Service) ListConversations(ctx context.Context, viewer string, first *int, after *string) (*ConversationPage, error) {
	n, err := s.pageSize("first", first)
	if err != nil {
		return nil, err
	}
	q := s.db.Conversation.Query().
		Where(inConversationsOf(viewer))
	if after != nil {
		at, id, err := decodeConversationCursor("after", *after)
		if err != nil {
			return nil, err
		}
		q = q.Where(conversation.Or(
			conversation.UpdatedAtLT(at),
			conversation.And(conversation.UpdatedAt(at), conversation.IDLT(id)),
		))
	}
	rows, err := q.Order(ent.Desc(conversation.FieldUpdatedAt), ent.Desc(conversation.FieldID)).
		Limit(n + 1).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("list conversations: %w", err)
	}
	page := &ConversationPage{HasPrevious: after != nil}
	if len(rows) > n {
		rows, page.HasNext = rows[:n], true
	}
	page.Conversations = rows
	return page, nil
}

// CountConversations counts the viewer's conversations.
func (s *Service) CountConversations(ctx context.Context, viewer string) (int, error) {
	n, err := s.db.Participant.Query().Where(participant.UserID(viewer)).Count(ctx)
	if err != nil {
		return 0, fmt.Errorf("count conversations: %w", err)
	}
	return n, nil
}

func (s *Service) pageSize(field string, n *int) (int, error) {
	if n == nil {
		return s.limits.DefaultPageSize, nil
	}
	if *n < 0 || *n > s.limits.MaxPageSize {
		return 0, invalidf(field, "%s must be between 0 and %d", field, s.limits.MaxPageSize)
	}
	return *n, nil
}

// Stats are counters over the viewer's conversations.
type Stats struct {
	Conversations, UnreadConversations, UnreadMessages, SentMessages int
}

// MessagingStats counts the viewer's conversations and messages.
func (s *Service) MessagingStats(ctx context.Context, viewer string) (*Stats, error) {
	var st Stats
	var err error
	if st.Conversations, err = s.CountConversations(ctx, viewer); err != nil {
		return nil, err
	}
	q := `SELECT COUNT(*), COUNT(DISTINCT m.conversation_id) FROM participants p
JOIN messages m ON m.conversation_id = p.conversation_id AND m.seq > p.last_read_seq
WHERE p.user_id = ? AND m.sender_id <> ? AND m.deleted_at IS NULL`
	rows, err := s.db.QueryContext(ctx, database.Rebind(s.dialect, q), viewer, viewer)
	if err != nil {
		return nil, fmt.Errorf("unread stats: %w", err)
	}
	defer rows.Close()
	if rows.Next() {
		if err := rows.Scan(&st.UnreadMessages, &st.UnreadConversations); err != nil {
			return nil, fmt.Errorf("unread stats: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("unread stats: %w", err)
	}
	if st.SentMessages, err = s.db.Message.Query().
		Where(message.SenderID(viewer), message.DeletedAtIsNil()).Count(ctx); err != nil {
		return nil, fmt.Errorf("sent count: %w", err)
	}
	return &st, nil
}

// MarkConversationRead moves the viewer's read marker forward to upTo (or
// the newest message). It never moves back.
func (s *Service) MarkConversationRead(ctx context.Context, viewer, conversationID string, upTo *string) (*ent.Conversation, error) {
	c, err := s.Conversation(ctx, viewer, conversationID)
	if err != nil {
		return nil, err
	}
	target := c.LastMessageID
	if upTo != nil {
		target = upTo
	}
	if target == nil {
		return c, nil
	}
	if !storable(*target) {
		return nil, invalidf("upToMessageId", "upToMessageId is not a message of this conversation")
	}
	m, err := s.db.Message.Query().Where(message.ID(*target), message.ConversationID(c.ID)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, invalidf("upToMessageId", "upToMessageId is not a message of this conversation")
	}
	if err != nil {
		return nil, fmt.Errorf("mark read: %w", err)
	}
	n, err := s.db.Participant.Update().
		Where(participant.ConversationID(c.ID), participant.UserID(viewer), participant.LastReadSeqLT(m.Seq)).
		SetLastReadSeq(m.Seq).SetLastReadMessageID(m.ID).SetReadAt(now()).Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("mark read: %w", err)
	}
	if n > 0 {
		s.publish(ctx, events.Event{Kind: events.KindConversation, Type: InboxRead, ConversationID: c.ID, UserID: viewer, MessageID: m.ID})
	}
	return c, nil
}

// SetTyping tells the other participants that the viewer is (not) typing.
func (s *Service) SetTyping(ctx context.Context, viewer, conversationID string, typing bool) error {
	if err := requireMember(ctx, s.db.Participant, viewer, conversationID); err != nil {
		return err
	}
	s.publish(ctx, events.Event{Kind: events.KindTyping, ConversationID: conversationID, UserID: viewer, Typing: typing})
	return nil
}
