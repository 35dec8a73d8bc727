package chat

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-chat/parley/ent"
	"github.com/parley-chat/parley/ent/messageevent"
	"github.com/parley-chat/parley/internal/events"
)

// replayBatch is how many events one replay query reads.
const replayBatch = 100

// MessageEventItem is one event of messageEvents, or the error that ends the
// stream (Err set, the rest empty).
type MessageEventItem struct {
	Type      string
	Seq       int64
	Cursor    string
	MessageID string
	// Scope is shared by every item delivered from the same database read
	// or broker event (see events.Delivery.Scope).
	Scope any
	Err   error
	Live
}

// MessageEvents streams a conversation's message events in sequence order,
// each once. With after, it replays every stored event after that cursor and
// then continues live.
//
// It subscribes to the hub before reading the database, so an event
// committed during the replay is either read by the replay or buffered by
// the hub; events at or below the last sequence sent are skipped, and a jump
// in the sequence is filled from the database. That is what makes the seam
// free of gaps and duplicates, and also what recovers events a broker lost.
func (s *Service) MessageEvents(ctx context.Context, viewer, conversationID string, after *string) (<-chan MessageEventItem, error) {
	var from int64
	if after != nil {
		var err error
		if from, err = decodeEventCursor("after", conversationID, *after); err != nil {
			return nil, err
		}
	}
	c, err := s.Conversation(ctx, viewer, conversationID)
	if err != nil {
		return nil, err
	}
	sub := s.hub.SubscribeConversation(conversationID, events.KindMessage, events.KindConversation)
	if after == nil {
		// Live only: start from the sequence as it is now, read after
		// subscribing so nothing committed from here on is missed.
		cur, err := s.db.Conversation.Get(ctx, c.ID)
		if err != nil {
			sub.Close()
			return nil, fmt.Errorf("messageEvents: %w", err)
		}
		from = cur.LastSeq
	}
	out := make(chan MessageEventItem)
	go func() {
		defer close(out)
		defer sub.Close()
		st := &eventStream{s: s, ctx: ctx, conversationID: conversationID, last: from, out: out}
		if after != nil && !st.fill(0) {
			return
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-sub.Lagged():
				st.fail(&Error{Kind: ErrLagged, Msg: "subscriber fell behind; resubscribe with `after` set to the last cursor received"})
				return
			case d := <-sub.C():
				if d.Kind == events.KindConversation {
					if s.lostAccess(ctx, viewer, d) {
						st.fail(notFound("conversation"))
						return
					}
					continue
				}
				if d.Seq <= st.last {
					continue
				}
				if d.IsSequenceOnly() {
					if !st.fill(d.Seq + 1) {
						return
					}
					continue
				}
				if d.Seq > st.last+1 && !st.fill(d.Seq) {
					return
				}
				if d.Seq <= st.last { // the fill already covered it
					continue
				}
				if !st.send(MessageEventItem{Type: d.Type, Seq: d.Seq, Cursor: EventCursor(conversationID, d.Seq),
					MessageID: d.MessageID, Scope: d.Scope(), Live: live(d)}) {
					return
				}
				st.last = d.Seq
			}
		}
	}()
	return out, nil
}

// lostAccess reports whether a conversation event took the viewer out of
// the conversation; a stream of a conversation the viewer left must end.
func (s *Service) lostAccess(ctx context.Context, viewer string, d *events.Delivery) bool {
	if d.Type != InboxParticipantsChanged || d.UserID != viewer {
		return false
	}
	ok, err := isMember(ctx, s.db.Participant, viewer, d.ConversationID)
	return err != nil || !ok
}

type eventStream struct {
	s              *Service
	ctx            context.Context
	conversationID string
	last           int64
	out            chan<- MessageEventItem
}

func (st *eventStream) send(it MessageEventItem) bool {
	select {
	case st.out <- it:
		return true
	case <-st.ctx.Done():
		return false
	}
}

func (st *eventStream) fail(err error) {
	st.send(MessageEventItem{Err: err})
}

// fill sends the stored events after st.last, up to but excluding until
// (0: all of them), in batches.
func (st *eventStream) fill(until int64) bool {
	for {
		q := st.s.db.MessageEvent.Query().Where(messageevent.ConversationID(st.conversationID), messageevent.SeqGT(st.last))
		if until > 0 {
			q = q.Where(messageevent.SeqLT(until))
		}
		rows, err := q.Order(ent.Asc(messageevent.FieldSeq)).Limit(replayBatch).All(st.ctx)
		if err != nil {
			if st.ctx.Err() == nil {
				st.s.log.ErrorContext(st.ctx, "replay events", "conversation", st.conversationID, "err", err)
				st.fail(fmt.Errorf("replay events: %w", err))
			}
			return false
		}
		scope := st.s.newScope()
		for _, e := range rows {
			if !st.send(MessageEventItem{Type: string(e.Type), Seq: e.Seq, Cursor: EventCursor(st.conversationID, e.Seq),
				MessageID: e.MessageID, Scope: scope}) {
				return false
			}
			st.last = e.Seq
		}
		if len(rows) < replayBatch {
			return true
		}
	}
}

// InboxItem is one inbox event.
type InboxItem struct {
	Type           string // an InboxEventType name
	ConversationID string
	MessageID      string
	UserID         string
	Scope          any
	Err            error
	Live
}

var inboxTypes = map[string]string{
	EventCreated: "MESSAGE_CREATED",
	EventEdited:  "MESSAGE_EDITED",
	EventDeleted: "MESSAGE_DELETED",
}

// Inbox streams one event per change in every conversation the viewer takes
// part in, the viewer's own changes included.
func (s *Service) Inbox(ctx context.Context, viewer string) (<-chan InboxItem, error) {
	sub := s.hub.SubscribeInbox(viewer)
	out := make(chan InboxItem)
	go func() {
		defer close(out)
		defer sub.Close()
		send := func(it InboxItem) bool {
			select {
			case out <- it:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-sub.Lagged():
				send(InboxItem{Err: &Error{Kind: ErrLagged, Msg: "subscriber fell behind; resubscribe and refetch conversations"}})
				return
			case d := <-sub.C():
				typ := d.Type
				if d.Kind == events.KindMessage {
					typ = inboxTypes[d.Type]
				}
				it := InboxItem{Type: typ, ConversationID: d.ConversationID, MessageID: d.MessageID, Scope: d.Scope(), Live: live(d)}
				if d.Kind == events.KindConversation {
					it.UserID = d.UserID
				}
				if !send(it) {
					return
				}
			}
		}
	}()
	return out, nil
}

// TypingItem is one typing state change of another participant.
type TypingItem struct {
	ConversationID string
	UserID         string
	Typing         bool
	Err            error
	Live
}

// Typing streams typing states of the other participants of a conversation.
// A typing state that is not refreshed within TypingTTL ends by itself with
// a typing=false item.
func (s *Service) Typing(ctx context.Context, viewer, conversationID string) (<-chan TypingItem, error) {
	if err := requireMember(ctx, s.db.Participant, viewer, conversationID); err != nil {
		return nil, err
	}
	sub := s.hub.SubscribeConversation(conversationID, events.KindTyping, events.KindConversation)
	out := make(chan TypingItem)
	go func() {
		defer close(out)
		defer sub.Close()
		expires := map[string]time.Time{}
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		rearm := func() {
			next := time.Time{}
			for _, t := range expires {
				if next.IsZero() || t.Before(next) {
					next = t
				}
			}
			timer.Stop()
			if !next.IsZero() {
				timer.Reset(time.Until(next))
			}
		}
		send := func(it TypingItem) bool {
			select {
			case out <- it:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-sub.Lagged():
				return
			case <-timer.C:
				nowT := time.Now()
				for u, t := range expires {
					if !t.After(nowT) {
						delete(expires, u)
						if !send(TypingItem{ConversationID: conversationID, UserID: u}) {
							return
						}
					}
				}
				rearm()
			case d := <-sub.C():
				if d.Kind == events.KindConversation {
					if s.lostAccess(ctx, viewer, d) {
						send(TypingItem{Err: notFound("conversation")})
						return
					}
					continue
				}
				if d.UserID == viewer {
					continue
				}
				_, wasTyping := expires[d.UserID]
				if d.Typing {
					expires[d.UserID] = time.Now().Add(s.limits.TypingTTL)
				} else {
					delete(expires, d.UserID)
				}
				rearm()
				if d.Typing == wasTyping && d.Typing {
					continue // a refresh: nothing changed for the client
				}
				if !send(TypingItem{ConversationID: conversationID, UserID: d.UserID, Typing: d.Typing, Live: live(d)}) {
					return
				}
			}
		}
	}()
	return out, nil
}
