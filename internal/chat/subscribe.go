package chat

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
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
	Type           string
	ConversationID string
	Seq            int64
	MessageID      string
	// Scope is shared by every item delivered from the same database read
	// or broker event (see events.Delivery.Scope).
	Scope any
	Err   error
	Live
}

// Cursor is the item's resume cursor (for `after`). It is made on demand:
// subscribers that reuse an encoded payload never need it.
func (it MessageEventItem) Cursor() string { return EventCursor(it.ConversationID, it.Seq) }

// Stream is a subscription's items, pulled one at a time by the goroutine
// that writes them to the client. There is no goroutine per subscription in
// between: an idle subscription costs its hub queue and little else, and an
// event reaches the writer with one hand-over fewer.
type Stream[T any] interface {
	// Next blocks for the next item. It returns false once the stream is
	// over: ctx ended, or the previous item carried the error ending it.
	Next(ctx context.Context) (T, bool)
	// Close releases the stream; it may be called more than once, and
	// concurrently with Next.
	Close()
}

// ReadyStream is a Stream that can say whether Next would block and call
// back when that changes, so that no goroutine needs to wait in Next: an
// idle subscription then costs no goroutine at all.
type ReadyStream[T any] interface {
	Stream[T]
	// Ready reports whether Next would return without waiting for an event
	// (it may still read the database).
	Ready() bool
	// OnReady registers f, called (from the hub's goroutine: it must not
	// block) whenever Ready may have become true.
	OnReady(f func())
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
func (s *Service) MessageEvents(ctx context.Context, viewer, conversationID string, after *string) (Stream[MessageEventItem], error) {
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
	st := &eventStream{s: s, viewer: viewer, conversationID: conversationID, sub: sub, last: from, filling: after != nil}
	return st, nil
}

// eventStream is a MessageEvents stream. Only the reading goroutine calls
// Next, so its fields need no lock.
type eventStream struct {
	s              *Service
	viewer         string
	conversationID string
	sub            *events.Subscription
	// last is the sequence of the last item handed out.
	last    int64
	pending []MessageEventItem // from head on
	head    int
	// filling: stored events after last are being read, up to but
	// excluding fillUntil (0: all of them); then held, if any, follows.
	filling   bool
	fillUntil int64
	held      *MessageEventItem
	// popped: a delivery Ready took from the hub for Next to handle.
	popped *events.Delivery
	done   bool
}

func (st *eventStream) Close() { st.sub.Close() }

// Ready drops deliveries that would give nothing (a sequence already handed
// out, which a resync rings every subscriber with after a restart; a change
// to the conversation that cannot have cost this viewer access): a
// transport that took its word would park a goroutine in Next, for every
// idle subscription, until the conversation's next event.
func (st *eventStream) Ready() bool {
	for st.popped == nil && st.head == len(st.pending) && !st.done && !st.filling {
		if st.sub.IsLagged() {
			return true
		}
		d, ok := st.sub.Pop()
		if !ok {
			return false
		}
		if st.givesNothing(d) {
			continue
		}
		st.popped = d
	}
	return true
}

func (st *eventStream) OnReady(f func()) { st.sub.OnReady(f) }

func (st *eventStream) Next(ctx context.Context) (MessageEventItem, bool) {
	for {
		if st.head < len(st.pending) {
			it := st.pending[st.head]
			st.pending[st.head] = MessageEventItem{}
			if st.head++; st.head == len(st.pending) {
				// Keep a small array for the next live event (no
				// allocation per delivery); let a replay's big one go.
				st.pending, st.head = st.pending[:0], 0
				if cap(st.pending) > 4 {
					st.pending = nil
				}
			}
			if it.Err != nil {
				st.done = true
			} else {
				st.last = it.Seq
			}
			return it, true
		}
		if st.done {
			return MessageEventItem{}, false
		}
		if st.filling {
			st.fillBatch(ctx)
			continue
		}
		if st.sub.IsLagged() {
			st.done = true
			return MessageEventItem{Err: &Error{Kind: ErrLagged, Msg: "subscriber fell behind; resubscribe with `after` set to the last cursor received"}}, true
		}
		if d := st.popped; d != nil {
			st.popped = nil
			st.take(ctx, d)
			continue
		}
		if d, ok := st.sub.Pop(); ok {
			st.take(ctx, d)
			continue
		}
		select {
		case <-ctx.Done():
			st.done = true
			return MessageEventItem{}, false
		case <-st.sub.Wait():
		}
	}
}

// givesNothing reports whether a delivery means nothing to the stream, as
// far as can be told without the database: a sequence already handed out,
// or a change to the conversation that cannot have cost the viewer access.
func (st *eventStream) givesNothing(d *events.Delivery) bool {
	if d.Kind == events.KindConversation {
		return !mayLoseAccess(st.viewer, d)
	}
	return d.Seq <= st.last
}

// take queues what a hub delivery means for the stream.
func (st *eventStream) take(ctx context.Context, d *events.Delivery) {
	switch {
	case st.givesNothing(d):
	case d.Kind == events.KindConversation:
		if st.s.lostAccess(ctx, st.viewer, d) {
			st.pending = append(st.pending, MessageEventItem{Err: notFound("conversation")})
		}
	case d.IsSequenceOnly():
		st.filling, st.fillUntil = true, d.Seq+1
	default:
		it := MessageEventItem{Type: d.Type, ConversationID: st.conversationID, Seq: d.Seq,
			MessageID: d.MessageID, Scope: d.Scope(), Live: live(d)}
		if d.Seq > st.last+1 {
			held := it // not &it: that would put every item on the heap
			st.filling, st.fillUntil, st.held = true, d.Seq, &held
			return
		}
		st.pending = append(st.pending, it)
	}
}

// fillBatch reads the next batch of stored events after last (below
// fillUntil) into pending; after the final batch the held live item
// follows, unless the fill covered it.
func (st *eventStream) fillBatch(ctx context.Context) {
	q := st.s.db.MessageEvent.Query().Where(messageevent.ConversationID(st.conversationID), messageevent.SeqGT(st.last))
	if st.fillUntil > 0 {
		q = q.Where(messageevent.SeqLT(st.fillUntil))
	}
	rows, err := q.Order(ent.Asc(messageevent.FieldSeq)).Limit(replayBatch).All(ctx)
	if err != nil {
		st.filling, st.held = false, nil
		if ctx.Err() != nil {
			st.done = true
			return
		}
		st.s.log.ErrorContext(ctx, "replay events", "conversation", st.conversationID, "err", err)
		st.pending = append(st.pending, MessageEventItem{Err: fmt.Errorf("replay events: %w", err)})
		return
	}
	scope := st.s.newScope()
	upTo := st.last
	for _, e := range rows {
		st.pending = append(st.pending, MessageEventItem{Type: string(e.Type), ConversationID: st.conversationID, Seq: e.Seq,
			MessageID: e.MessageID, Scope: scope})
		upTo = e.Seq
	}
	if len(rows) == replayBatch {
		// More to read once these are handed out (the next query starts
		// after the last of them).
		return
	}
	st.filling, st.fillUntil = false, 0
	if st.held != nil && st.held.Seq > upTo {
		st.pending = append(st.pending, *st.held)
	}
	st.held = nil
}

// lostAccess reports whether a conversation event took the viewer out of
// the conversation; a stream of a conversation the viewer left must end.
func (s *Service) lostAccess(ctx context.Context, viewer string, d *events.Delivery) bool {
	if !mayLoseAccess(viewer, d) {
		return false
	}
	ok, err := isMember(ctx, s.db.Participant, viewer, d.ConversationID)
	return err != nil || !ok
}

// mayLoseAccess reports whether a conversation event can have taken the
// conversation away from viewer: only a participants change naming them.
func mayLoseAccess(viewer string, d *events.Delivery) bool {
	return d.Type == InboxParticipantsChanged && d.UserID == viewer
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
func (s *Service) Inbox(ctx context.Context, viewer string) (Stream[InboxItem], error) {
	return &inboxStream{sub: s.hub.SubscribeInbox(viewer)}, nil
}

type inboxStream struct {
	sub  *events.Subscription
	done bool
}

func (st *inboxStream) Close() { st.sub.Close() }

func (st *inboxStream) Ready() bool { return st.done || st.sub.Ready() }

func (st *inboxStream) OnReady(f func()) { st.sub.OnReady(f) }

func (st *inboxStream) Next(ctx context.Context) (InboxItem, bool) {
	for {
		if st.done {
			return InboxItem{}, false
		}
		if st.sub.IsLagged() {
			st.done = true
			return InboxItem{Err: &Error{Kind: ErrLagged, Msg: "subscriber fell behind; resubscribe and refetch conversations"}}, true
		}
		d, ok := st.sub.Pop()
		if !ok {
			select {
			case <-ctx.Done():
				st.done = true
				return InboxItem{}, false
			case <-st.sub.Wait():
			}
			continue
		}
		typ := d.Type
		if d.Kind == events.KindMessage {
			typ = inboxTypes[d.Type]
		}
		it := InboxItem{Type: typ, ConversationID: d.ConversationID, MessageID: d.MessageID, Scope: d.Scope(), Live: live(d)}
		if d.Kind == events.KindConversation {
			it.UserID = d.UserID
		}
		return it, true
	}
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
//
// Like MessageEvents it has no goroutine of its own: the consumer pulls, and
// the expiry timer only flags and rings (an idle typing subscription is a
// hub queue and, while someone types, a timer).
func (s *Service) Typing(ctx context.Context, viewer, conversationID string) (ReadyStream[TypingItem], error) {
	if err := requireMember(ctx, s.db.Participant, viewer, conversationID); err != nil {
		return nil, err
	}
	return &typingStream{s: s, viewer: viewer, conversationID: conversationID,
		sub:  s.hub.SubscribeConversation(conversationID, events.KindTyping, events.KindConversation),
		wake: make(chan struct{}, 1)}, nil
}

// typingStream is a Typing stream. Its consumer (one goroutine at a time)
// calls Ready and Next and owns every field but the last group.
type typingStream struct {
	s                      *Service
	viewer, conversationID string
	sub                    *events.Subscription
	expires                map[string]time.Time // who types, until when
	pending                []TypingItem
	// check: a change to the conversation that may have cost the viewer
	// access; Next asks the database (Ready has no context).
	check *events.Delivery
	done  bool

	expired atomic.Bool            // the timer fired since the consumer looked
	wake    chan struct{}          // rung with expired, for a consumer waiting in Next
	notify  atomic.Pointer[func()] // OnReady's callback
	mu      sync.Mutex             // guards timer (Close may come from another goroutine)
	timer   *time.Timer
}

func (st *typingStream) OnReady(f func()) {
	st.notify.Store(&f)
	st.sub.OnReady(f)
}

func (st *typingStream) Close() {
	st.sub.Close()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.timer != nil {
		st.timer.Stop()
	}
}

func (st *typingStream) Ready() bool {
	st.collect()
	return len(st.pending) > 0 || st.check != nil || st.done || st.sub.IsLagged()
}

func (st *typingStream) Next(ctx context.Context) (TypingItem, bool) {
	for {
		if len(st.pending) > 0 {
			it := st.pending[0]
			st.pending = st.pending[1:]
			if it.Err != nil {
				st.done = true
			}
			return it, true
		}
		if st.done {
			return TypingItem{}, false
		}
		if d := st.check; d != nil {
			st.check = nil
			if st.s.lostAccess(ctx, st.viewer, d) {
				st.pending = append(st.pending, TypingItem{Err: notFound("conversation")})
			}
			continue
		}
		if st.sub.IsLagged() {
			st.done = true // typing states are ephemeral: the stream just ends
			return TypingItem{}, false
		}
		st.collect()
		if len(st.pending) > 0 || st.check != nil {
			continue
		}
		select {
		case <-ctx.Done():
			st.done = true
			return TypingItem{}, false
		case <-st.sub.Wait():
		case <-st.wake:
		}
	}
}

// collect turns what the hub queued, and states that expired, into
// pending items; it stops at a conversation change that needs checking, so
// that items keep their order.
func (st *typingStream) collect() {
	if st.expired.Swap(false) {
		now := time.Now()
		for u, t := range st.expires {
			if !t.After(now) {
				delete(st.expires, u)
				st.pending = append(st.pending, TypingItem{ConversationID: st.conversationID, UserID: u})
			}
		}
		st.rearm()
	}
	for st.check == nil {
		d, ok := st.sub.Pop()
		if !ok {
			return
		}
		if d.Kind == events.KindConversation {
			if mayLoseAccess(st.viewer, d) {
				st.check = d
			}
			continue
		}
		if d.UserID == st.viewer {
			continue
		}
		_, wasTyping := st.expires[d.UserID]
		if d.Typing {
			if st.expires == nil {
				st.expires = map[string]time.Time{}
			}
			st.expires[d.UserID] = time.Now().Add(st.s.limits.TypingTTL)
		} else {
			delete(st.expires, d.UserID)
		}
		st.rearm()
		if d.Typing == wasTyping && d.Typing {
			continue // a refresh: nothing changed for the client
		}
		st.pending = append(st.pending, TypingItem{ConversationID: st.conversationID, UserID: d.UserID, Typing: d.Typing, Live: live(d)})
	}
}

// rearm sets the timer for the earliest expiry, or stops it.
func (st *typingStream) rearm() {
	var next time.Time
	for _, t := range st.expires {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case next.IsZero():
		if st.timer != nil {
			st.timer.Stop()
		}
	case st.timer == nil:
		st.timer = time.AfterFunc(time.Until(next), st.onExpire)
	default:
		st.timer.Reset(time.Until(next))
	}
}

// onExpire runs on the timer's goroutine: it only flags and rings.
func (st *typingStream) onExpire() {
	st.expired.Store(true)
	select {
	case st.wake <- struct{}{}:
	default:
	}
	if f := st.notify.Load(); f != nil {
		(*f)()
	}
}
