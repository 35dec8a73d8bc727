package chat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/sql"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/parley-chat/parley/ent"
	"github.com/parley-chat/parley/ent/attachment"
	"github.com/parley-chat/parley/ent/conversation"
	"github.com/parley-chat/parley/ent/message"
	"github.com/parley-chat/parley/ent/messageevent"
	"github.com/parley-chat/parley/ent/participant"
	"github.com/parley-chat/parley/internal/database"
	"github.com/parley-chat/parley/internal/events"
)

// Message event types, as stored and as published.
const (
	EventCreated = "CREATED"
	EventEdited  = "EDITED"
	EventDeleted = "DELETED"
)

// Message returns a message of one of the viewer's conversations, or NOT_FOUND.
func (s *Service) Message(ctx context.Context, viewer, id string) (*ent.Message, error) {
	if !storable(id) {
		return nil, notFound("message")
	}
	m, err := s.db.Message.Query().
		Where(message.ID(id), message.HasConversationWith(conversation.HasParticipantsWith(participant.UserID(viewer)))).
		Only(ctx)
	if ent.IsNotFound(err) {
		return nil, notFound("message")
	}
	if err != nil {
		return nil, fmt.Errorf("message: %w", err)
	}
	return m, nil
}

func (s *Service) checkBody(field, body string) (string, error) {
	body = strings.TrimSpace(body)
	if n := utf8.RuneCountInString(body); n < 1 || n > s.limits.MaxBodyChars {
		return "", invalidf(field, "body must be 1 to %d characters after trimming", s.limits.MaxBodyChars)
	}
	if !storable(body) {
		return "", invalidf(field, "body must be UTF-8 without NUL characters")
	}
	return body, nil
}

// SendInput is what sendMessage takes.
type SendInput struct {
	ConversationID  string
	Body            string
	ClientMessageID *string
	AttachmentIDs   []string
}

// nextSeq takes the conversation's next sequence number. The UPDATE holds the
// conversation's row lock until commit, so writers of one conversation are
// serialised and sequence numbers commit in order.
func nextSeq(ctx context.Context, tx *ent.Tx, conversationID string, newMessage *ent.Message) (int64, error) {
	u := tx.Conversation.UpdateOneID(conversationID).AddLastSeq(1)
	if newMessage != nil {
		u = u.SetUpdatedAt(newMessage.CreatedAt).SetLastMessageID(newMessage.ID).AddMessageCount(1)
	}
	c, err := u.Select(conversation.FieldLastSeq).Save(ctx)
	if err != nil {
		return 0, fmt.Errorf("next sequence: %w", err)
	}
	return c.LastSeq, nil
}

// SendMessage stores a message and tells the conversation's subscribers.
// A clientMessageId already used by the viewer in the conversation returns
// the first message, and nothing is stored or published again.
func (s *Service) SendMessage(ctx context.Context, viewer string, in SendInput) (*ent.Message, error) {
	body, err := s.checkBody("body", in.Body)
	if err != nil {
		return nil, err
	}
	if in.ClientMessageID != nil && (*in.ClientMessageID == "" || len(*in.ClientMessageID) > 128 || !storable(*in.ClientMessageID)) {
		return nil, invalidf("clientMessageId", "clientMessageId must be 1 to 128 bytes, without NUL characters")
	}
	attIDs, err := s.checkIDs("attachmentIds", in.AttachmentIDs)
	if err != nil {
		return nil, err
	}
	errAttachments := invalidf("attachmentIds", "attachmentIds must name your own unsent uploads to this conversation")
	if !allStorable(attIDs) {
		return nil, errAttachments
	}
	if !storable(in.ConversationID) {
		return nil, s.notMember(ctx, viewer)
	}
	// A retried clientMessageId is looked up before the write transaction,
	// which on SQLite holds the database's one write lock: reads that can
	// run beside other writers do. A concurrent retry that passes this too
	// fails on the unique index and is answered below.
	if in.ClientMessageID != nil {
		prev, err := s.db.Message.Query().Where(message.SenderID(viewer),
			message.ConversationID(in.ConversationID), message.ClientMessageID(*in.ClientMessageID)).Only(ctx)
		if err == nil {
			return s.duplicateSend(ctx, viewer, prev)
		}
		if !ent.IsNotFound(err) {
			return nil, fmt.Errorf("idempotency check: %w", err)
		}
	}
	m := &ent.Message{ID: message.DefaultID(), CreatedAt: now()}
	switch {
	case s.dialect == dialect.Postgres && len(attIDs) == 0:
		m.ConversationID, m.SenderID, m.Body, m.ClientMessageID = in.ConversationID, viewer, body, in.ClientMessageID
		err = s.sendPostgres(ctx, m)
	case s.dialect == dialect.SQLite && len(attIDs) == 0:
		err = s.sendSQLite(ctx, viewer, in, body, m)
	default:
		err = s.withTx(ctx, func(tx *ent.Tx) error {
			return s.sendTx(ctx, tx, viewer, in, body, attIDs, m)
		})
	}
	if errors.Is(err, errNotMember) {
		return nil, s.notMember(ctx, viewer)
	}
	if (ent.IsConstraintError(err) || isUniqueViolation(err)) && in.ClientMessageID != nil {
		// A concurrent send with the same clientMessageId won the race.
		prev, qerr := s.db.Message.Query().Where(message.SenderID(viewer),
			message.ConversationID(in.ConversationID), message.ClientMessageID(*in.ClientMessageID)).Only(ctx)
		if qerr == nil {
			return prev, nil
		}
	}
	if err != nil {
		return nil, err
	}
	s.publish(ctx, events.Event{Kind: events.KindMessage, Type: EventCreated, ConversationID: m.ConversationID,
		Seq: m.Seq, MessageID: m.ID, UserID: viewer})
	return m, nil
}

// sendPostgres stores the new message m (ID, conversation, sender, body,
// clientMessageId and time set; Seq is filled in) on PostgreSQL in one
// statement, which is atomic by itself: the sequence number as in
// nextSeqAsMember, the message and its CREATED event. One round trip
// instead of five (BEGIN, UPDATE, two INSERTs, COMMIT). errNotMember if
// the sender is not a participant.
func (s *Service) sendPostgres(ctx context.Context, m *ent.Message) error {
	const q = `WITH c AS (
	UPDATE conversations SET last_seq = last_seq + 1, message_count = message_count + 1, updated_at = $1, last_message_id = $2
	WHERE id = $3 AND EXISTS (SELECT 1 FROM participants WHERE participants.conversation_id = $3 AND participants.user_id = $4)
	RETURNING last_seq
), m AS (
	INSERT INTO messages (id, conversation_id, sender_id, seq, body, client_message_id, created_at)
	SELECT $2, $3, $4, c.last_seq, $5, $6, $1 FROM c
	RETURNING seq
)
INSERT INTO message_events (conversation_id, seq, type, message_id, created_at)
SELECT $3, m.seq, $7, $2, $1 FROM m
RETURNING seq`
	rows, err := s.db.QueryContext(ctx, q, m.CreatedAt, m.ID, m.ConversationID, m.SenderID, m.Body, m.ClientMessageID, EventCreated)
	if err != nil {
		return fmt.Errorf("send message: %w", err)
	}
	defer rows.Close()
	ok := rows.Next()
	if ok {
		if err := rows.Scan(&m.Seq); err != nil {
			return fmt.Errorf("send message: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("send message: %w", err)
	}
	if !ok {
		return errNotMember
	}
	return nil
}

// isUniqueViolation reports a PostgreSQL unique_violation from raw SQL
// (ent reports its own as ent.ConstraintError).
func isUniqueViolation(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "23505"
}

// sendTx stores the new message m (ID and time set) in tx: the sequence
// number, the message, its event and its attachments.
func (s *Service) sendTx(ctx context.Context, tx *ent.Tx, viewer string, in SendInput, body string, attIDs []string, m *ent.Message) error {
	errAttachments := invalidf("attachmentIds", "attachmentIds must name your own unsent uploads to this conversation")
	if len(attIDs) > 0 {
		// An outsider learns nothing about the attachments: membership first.
		if ok, err := isMember(ctx, tx.Participant, viewer, in.ConversationID); err != nil || !ok {
			if err == nil {
				err = errNotMember
			}
			return err
		}
		n, err := tx.Attachment.Query().Where(attachment.IDIn(attIDs...), attachment.ConversationID(in.ConversationID),
			attachment.UploaderID(viewer), attachment.MessageIDIsNil()).Count(ctx)
		if err != nil {
			return fmt.Errorf("check attachments: %w", err)
		}
		if n != len(attIDs) {
			return errAttachments
		}
	}
	// The membership check is part of the statement that takes the
	// sequence number: one statement, and no window between them.
	seq, ok, err := s.nextSeqAsMember(ctx, tx, in.ConversationID, viewer, m)
	if err != nil {
		return err
	}
	if !ok {
		return errNotMember
	}
	saved, err := tx.Message.Create().SetID(m.ID).SetConversationID(in.ConversationID).SetSenderID(viewer).
		SetSeq(seq).SetBody(body).SetNillableClientMessageID(in.ClientMessageID).SetCreatedAt(m.CreatedAt).Save(ctx)
	if err != nil {
		return fmt.Errorf("insert message: %w", err)
	}
	*m = *saved
	if err := recordEvent(ctx, tx, m, seq, EventCreated); err != nil {
		return err
	}
	if len(attIDs) > 0 {
		// Still unsent: a concurrent send may have claimed an upload
		// since the check above (PostgreSQL re-checks the condition
		// once that send commits); then this send fails instead.
		n, err := tx.Attachment.Update().Where(attachment.IDIn(attIDs...), attachment.MessageIDIsNil()).
			SetMessageID(m.ID).Save(ctx)
		if err != nil {
			return fmt.Errorf("attach: %w", err)
		}
		if n != len(attIDs) {
			return errAttachments
		}
	}
	return nil
}

// errNotMember ends a send's transaction when the viewer is not a
// participant; the caller reports it with notMember.
var errNotMember = errors.New("not a participant")

// notMember is the error for a send into a conversation the viewer is not
// in: NOT_FOUND, or UNAUTHENTICATED when the viewer's user row is gone
// (sendMessage checks that itself, see httpapi's liveViewer: a user with
// participant rows cannot be deleted, so a member always exists).
func (s *Service) notMember(ctx context.Context, viewer string) error {
	if _, err := s.Me(ctx, viewer); err != nil {
		if errors.Is(err, ErrUnauthenticated) {
			return unauthenticated("the token's user no longer exists: sign in again")
		}
		return err
	}
	return notFound("conversation")
}

// duplicateSend answers a retried clientMessageId with the first message,
// if the viewer is still a participant of its conversation.
func (s *Service) duplicateSend(ctx context.Context, viewer string, prev *ent.Message) (*ent.Message, error) {
	ok, err := isMember(ctx, s.db.Participant, viewer, prev.ConversationID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, s.notMember(ctx, viewer)
	}
	return prev, nil
}

// nextSeqAsMember takes the conversation's next sequence number for a new
// message m, in one statement that also checks that viewer is a
// participant; ok is false (and nothing changed) if not. Like nextSeq, the
// UPDATE holds the conversation's row lock until commit.
func (s *Service) nextSeqAsMember(ctx context.Context, tx *ent.Tx, conversationID, viewer string, m *ent.Message) (seq int64, ok bool, err error) {
	const q = `UPDATE conversations SET last_seq = last_seq + 1, message_count = message_count + 1,
updated_at = ?, last_message_id = ?
WHERE id = ? AND EXISTS (SELECT 1 FROM participants WHERE participants.conversation_id = ? AND participants.user_id = ?)
RETURNING last_seq`
	rows, err := tx.QueryContext(ctx, database.Rebind(s.dialect, q), m.CreatedAt, m.ID, conversationID, conversationID, viewer)
	if err != nil {
		return 0, false, fmt.Errorf("next sequence: %w", err)
	}
	defer rows.Close()
	if rows.Next() {
		if err := rows.Scan(&seq); err != nil {
			return 0, false, fmt.Errorf("next sequence: %w", err)
		}
		ok = true
	}
	if err := rows.Err(); err != nil {
		return 0, false, fmt.Errorf("next sequence: %w", err)
	}
	return seq, ok, nil
}

func recordEvent(ctx context.Context, tx *ent.Tx, m *ent.Message, seq int64, typ string) error {
	err := tx.MessageEvent.Create().SetConversationID(m.ConversationID).SetSeq(seq).
		SetType(messageevent.Type(typ)).SetMessageID(m.ID).SetCreatedAt(now()).Exec(ctx)
	if err != nil {
		return fmt.Errorf("record %s event: %w", typ, err)
	}
	return nil
}

// EditMessage changes the body of one of the viewer's messages.
func (s *Service) EditMessage(ctx context.Context, viewer, id, body string) (*ent.Message, error) {
	body, err := s.checkBody("body", body)
	if err != nil {
		return nil, err
	}
	return s.changeMessage(ctx, viewer, id, EventEdited, func(u *ent.MessageUpdateOne, m *ent.Message, at time.Time) (*ent.MessageUpdateOne, error) {
		if m.DeletedAt != nil {
			return nil, invalidf("id", "a deleted message cannot be edited")
		}
		return u.SetBody(body).SetEditedAt(at), nil
	})
}

// DeleteMessage turns one of the viewer's messages into a tombstone.
// Deleting a tombstone again changes nothing.
func (s *Service) DeleteMessage(ctx context.Context, viewer, id string) (*ent.Message, error) {
	return s.changeMessage(ctx, viewer, id, EventDeleted, func(u *ent.MessageUpdateOne, m *ent.Message, at time.Time) (*ent.MessageUpdateOne, error) {
		if m.DeletedAt != nil {
			return nil, nil
		}
		return u.SetBody("").SetDeletedAt(at), nil
	})
}

// changeMessage is the shared path of edit and delete: access check, next
// sequence number, update, event row, publish. change returns a nil update
// when there is nothing to do.
func (s *Service) changeMessage(ctx context.Context, viewer, id, typ string,
	change func(*ent.MessageUpdateOne, *ent.Message, time.Time) (*ent.MessageUpdateOne, error)) (*ent.Message, error) {
	m, err := s.Message(ctx, viewer, id)
	if err != nil {
		return nil, err
	}
	if m.SenderID != viewer {
		return nil, forbidden("only the sender may change a message")
	}
	var seq int64
	err = s.withTx(ctx, func(tx *ent.Tx) error {
		// Re-read inside the transaction: a concurrent delete must win
		// cleanly. SQLite transactions take the write lock up front, so the
		// read is current; on PostgreSQL the row is locked until commit, so
		// a concurrent edit or delete of it waits and then reads this one's
		// result.
		q := tx.Message.Query().Where(message.ID(id))
		if s.dialect == dialect.Postgres {
			q.Modify(func(sel *sql.Selector) { sel.For(sql.LockNoKeyUpdate) })
		}
		cur, err := q.Only(ctx)
		if err != nil {
			return fmt.Errorf("reload message: %w", err)
		}
		u, err := change(tx.Message.UpdateOne(cur), cur, now())
		if err != nil || u == nil {
			m = cur
			return err
		}
		if seq, err = nextSeq(ctx, tx, cur.ConversationID, nil); err != nil {
			return err
		}
		if m, err = u.Save(ctx); err != nil {
			return fmt.Errorf("update message: %w", err)
		}
		return recordEvent(ctx, tx, m, seq, typ)
	})
	if err != nil {
		return nil, err
	}
	if seq > 0 {
		s.publish(ctx, events.Event{Kind: events.KindMessage, Type: typ, ConversationID: m.ConversationID,
			Seq: seq, MessageID: m.ID, UserID: viewer})
	}
	return m, nil
}

// MessagePage is one page of a conversation's messages, oldest first.
type MessagePage struct {
	Messages    []*ent.Message
	HasNext     bool
	HasPrevious bool
}

// ListMessages pages through a conversation's messages; the caller has
// already checked that the viewer may see the conversation.
func (s *Service) ListMessages(ctx context.Context, conversationID string, first *int, after *string, last *int, before *string) (*MessagePage, error) {
	if first != nil && last != nil {
		return nil, invalidf("first", "pass first or last, not both")
	}
	backward := last != nil || (before != nil && first == nil)
	q := s.db.Message.Query().Where(message.ConversationID(conversationID))
	var afterSeq, beforeSeq int64
	var err error
	if after != nil {
		if afterSeq, err = decodeMessageCursor("after", *after); err != nil {
			return nil, err
		}
		q = q.Where(message.SeqGT(afterSeq))
	}
	if before != nil {
		if beforeSeq, err = decodeMessageCursor("before", *before); err != nil {
			return nil, err
		}
		q = q.Where(message.SeqLT(beforeSeq))
	}
	page := &MessagePage{}
	if !backward {
		n, err := s.pageSize("first", first)
		if err != nil {
			return nil, err
		}
		rows, err := q.Order(ent.Asc(message.FieldSeq)).Limit(n + 1).All(ctx)
		if err != nil {
			return nil, fmt.Errorf("list messages: %w", err)
		}
		if len(rows) > n {
			rows, page.HasNext = rows[:n], true
		}
		// Every conversation's first event creates its first message, so
		// messages exist before any valid cursor.
		page.Messages, page.HasPrevious = rows, afterSeq > 0
		return page, nil
	}
	n, err := s.pageSize("last", last)
	if err != nil {
		return nil, err
	}
	rows, err := q.Order(ent.Desc(message.FieldSeq)).Limit(n + 1).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("list messages: %w", err)
	}
	if len(rows) > n {
		rows, page.HasPrevious = rows[:n], true
	}
	slices.Reverse(rows)
	page.Messages, page.HasNext = rows, before != nil
	return page, nil
}
