package events

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Delivery is one event as handed to local subscriptions. All subscriptions
// that receive the same event share one Delivery, and so one Scope: per-event
// work (loading the message, its sender…) is done once, not per subscriber.
type Delivery struct {
	Event
	scope func() any
}

// Scope returns the value shared by every subscriber of this event, made on
// first use by the Hub's scope factory.
func (d *Delivery) Scope() any {
	if d.scope == nil {
		return nil
	}
	return d.scope()
}

// MembersFunc returns the IDs of a conversation's participants.
type MembersFunc func(ctx context.Context, conversationID string) ([]string, error)

// HubConfig configures a Hub.
type HubConfig struct {
	// Members finds inbox recipients of a conversation event.
	Members MembersFunc
	// NewScope makes the per-event shared value of a Delivery (see Scope).
	NewScope func() any
	// Buffer is the capacity of each subscription's queue; a subscription
	// whose queue is full is cut off as lagging (it resumes with `after`).
	Buffer int
	// Queue is the capacity of the hub's inbound queue from the broker.
	Queue int
	// LastSeqs returns the current sequence number of each conversation.
	// With it the hub resyncs: it compares them with the last sequence it
	// saw and rings the bell for conversations that moved on without it
	// (a lost broker message, a Redis outage, a full inbound queue).
	LastSeqs func(ctx context.Context, conversationIDs []string) (map[string]int64, error)
	// ResyncInterval is how often the hub resyncs by itself; 0 only on request.
	ResyncInterval time.Duration
	Logger         *slog.Logger
}

// Hub fans events out to this replica's subscriptions. It never blocks on a
// subscriber: a full subscription queue ends that subscription.
type Hub struct {
	cfg     HubConfig
	inbound chan Event
	dropped atomic.Int64
	lagging atomic.Int64 // events not offered to lagging subscriptions
	resync  chan struct{}
	// seen is the highest message sequence dispatched per conversation;
	// only the dispatch goroutine touches it.
	seen map[string]int64

	mu    sync.RWMutex
	convs map[string]map[*Subscription]struct{}
	users map[string]map[*Subscription]struct{}
}

// NewHub returns a Hub; call Start to start it.
func NewHub(cfg HubConfig) *Hub {
	if cfg.Buffer <= 0 {
		cfg.Buffer = 256
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 8192
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Hub{
		cfg:     cfg,
		inbound: make(chan Event, cfg.Queue),
		resync:  make(chan struct{}, 1),
		seen:    map[string]int64{},
		convs:   map[string]map[*Subscription]struct{}{},
		users:   map[string]map[*Subscription]struct{}{},
	}
}

// Start subscribes to the broker, so that nothing published after Start
// returns is missed, and dispatches in the background until ctx ends. The
// returned channel is closed when dispatching has stopped.
func (h *Hub) Start(ctx context.Context, b Broker) (<-chan struct{}, error) {
	if err := b.Subscribe(ctx, h.enqueue); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var tick <-chan time.Time
		if h.cfg.ResyncInterval > 0 {
			t := time.NewTicker(h.cfg.ResyncInterval)
			defer t.Stop()
			tick = t.C
		}
		for {
			select {
			case <-ctx.Done():
				return
			case e := <-h.inbound:
				h.dispatch(ctx, e)
			case <-h.resync:
				h.resyncNow(ctx)
			case <-tick:
				h.resyncNow(ctx)
			}
		}
	}()
	return done, nil
}

// RequestResync asks the hub to compare its conversations with the
// database soon (the Redis broker calls it after every reconnect).
func (h *Hub) RequestResync() {
	select {
	case h.resync <- struct{}{}:
	default: // one is pending already
	}
}

// resyncNow rings the bell, with a sequence-only event, for every locally
// watched conversation whose stored sequence is ahead of what the hub saw.
// Message subscribers then fill the gap from the database.
func (h *Hub) resyncNow(ctx context.Context) {
	if h.cfg.LastSeqs == nil {
		return
	}
	h.mu.RLock()
	ids := make([]string, 0, len(h.convs))
	for id := range h.convs {
		ids = append(ids, id)
	}
	for id := range h.seen {
		if _, watched := h.convs[id]; !watched {
			delete(h.seen, id)
		}
	}
	h.mu.RUnlock()
	if len(ids) == 0 {
		return
	}
	seqs, err := h.cfg.LastSeqs(ctx, ids)
	if err != nil {
		h.cfg.Logger.Warn("resync", "err", err)
		return
	}
	for id, seq := range seqs {
		if seq > h.seen[id] {
			h.dispatch(ctx, Event{Kind: KindMessage, ConversationID: id, Seq: seq})
		}
	}
}

// Dropped reports how many events the hub discarded because its inbound
// queue was full (message subscribers recover them from the database).
func (h *Hub) Dropped() int64 { return h.dropped.Load() }

// LaggingDrops reports how many deliveries were skipped because the
// subscription's queue was full (the subscription is then cut off).
func (h *Hub) LaggingDrops() int64 { return h.lagging.Load() }

func (h *Hub) enqueue(e Event) {
	select {
	case h.inbound <- e:
	default:
		h.dropped.Add(1)
		h.cfg.Logger.Warn("hub queue full; event dropped", "conversation", e.ConversationID, "kind", e.Kind, "seq", e.Seq)
	}
}

func (h *Hub) dispatch(ctx context.Context, e Event) {
	if e.Kind == KindMessage && e.Seq > h.seen[e.ConversationID] {
		h.seen[e.ConversationID] = e.Seq
	}
	d := &Delivery{Event: e}
	if h.cfg.NewScope != nil {
		d.scope = sync.OnceValue(h.cfg.NewScope)
	}
	h.mu.RLock()
	bit := kindBit(e.Kind)
	for s := range h.convs[e.ConversationID] {
		if s.kinds&bit != 0 {
			s.offer(d)
		}
	}
	// Sequence-only events (resync) concern message streams alone.
	wantInbox := len(h.users) > 0 && e.Kind != KindTyping && !e.IsSequenceOnly()
	h.mu.RUnlock()
	if !wantInbox {
		return
	}
	recipients := e.Notify
	if h.cfg.Members != nil {
		members, err := h.cfg.Members(ctx, e.ConversationID)
		if err != nil {
			h.cfg.Logger.Error("inbox recipients", "conversation", e.ConversationID, "err", err)
		}
		recipients = append(members, e.Notify...)
	}
	seen := make(map[string]bool, len(recipients))
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, u := range recipients {
		if seen[u] {
			continue
		}
		seen[u] = true
		for s := range h.users[u] {
			s.offer(d)
		}
	}
}

// SubscribeConversation returns a subscription to events of the given kinds
// in one conversation.
func (h *Hub) SubscribeConversation(conversationID string, kinds ...Kind) *Subscription {
	s := h.newSubscription(kinds)
	s.key, s.index = conversationID, h.convs
	h.add(s)
	return s
}

// SubscribeInbox returns a subscription to every message and conversation
// event of the conversations userID takes part in.
func (h *Hub) SubscribeInbox(userID string) *Subscription {
	s := h.newSubscription([]Kind{KindMessage, KindConversation})
	s.key, s.index = userID, h.users
	h.add(s)
	return s
}

func (h *Hub) newSubscription(kinds []Kind) *Subscription {
	s := &Subscription{
		hub:    h,
		limit:  h.cfg.Buffer,
		wake:   make(chan struct{}, 1),
		lagged: make(chan struct{}),
	}
	for _, k := range kinds {
		s.kinds |= kindBit(k)
	}
	return s
}

// kindSet is a set of Kinds, one bit each.
type kindSet uint8

func kindBit(k Kind) kindSet {
	switch k {
	case KindMessage:
		return 1
	case KindConversation:
		return 2
	case KindTyping:
		return 4
	}
	return 0
}

func (h *Hub) add(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := s.index[s.key]
	if set == nil {
		set = map[*Subscription]struct{}{}
		s.index[s.key] = set
	}
	set[s] = struct{}{}
}

func (h *Hub) remove(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if set := s.index[s.key]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(s.index, s.key)
		}
	}
}

// Subscription is one local consumer's queue. The queue is a slice that
// exists only while events wait in it: tens of thousands of idle
// subscriptions cost a few words each, not a channel buffer each.
type Subscription struct {
	hub   *Hub
	key   string
	index map[string]map[*Subscription]struct{}
	kinds kindSet
	limit int

	mu    sync.Mutex
	queue []*Delivery
	// inline backs queue while it holds one event, the usual case: no
	// allocation per delivery.
	inline [1]*Delivery
	// wake holds a token while something may be ready: for consumers
	// that wait in a select.
	wake       chan struct{}
	lagged     chan struct{}
	lagOnce    sync.Once
	removeOnce sync.Once
	notify     atomic.Pointer[func()]
}

// Pop returns the oldest queued event, if any.
func (s *Subscription) Pop() (*Delivery, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return nil, false
	}
	d := s.queue[0]
	s.queue[0] = nil
	s.queue = s.queue[1:]
	if len(s.queue) == 0 {
		s.queue = s.inline[:0] // let a grown backing array go while idle
	}
	return d, true
}

// Wait returns a channel that receives after an event was queued or the
// subscription lagged; then Pop (or Lagged) has something. A receive may
// find nothing new: consumers loop.
func (s *Subscription) Wait() <-chan struct{} { return s.wake }

// Lagged is closed when the subscription fell so far behind that its queue
// filled up; it receives nothing more and its consumer should end it.
func (s *Subscription) Lagged() <-chan struct{} { return s.lagged }

// IsLagged reports whether Lagged is closed.
func (s *Subscription) IsLagged() bool {
	select {
	case <-s.lagged:
		return true
	default:
		return false
	}
}

// OnReady registers f to be called after every event queued for the
// subscription, and once when it lags. It is called by the hub's dispatch,
// so it must return at once (start a goroutine, say); with it a consumer
// needs no goroutine of its own waiting.
func (s *Subscription) OnReady(f func()) { s.notify.Store(&f) }

// Ready reports whether Pop has an event or the subscription lagged.
func (s *Subscription) Ready() bool {
	s.mu.Lock()
	n := len(s.queue)
	s.mu.Unlock()
	return n > 0 || s.IsLagged()
}

// Close stops delivery to the subscription.
func (s *Subscription) Close() {
	s.removeOnce.Do(func() { s.hub.remove(s) })
}

// offer is called with the hub's read lock held, so it must not block.
func (s *Subscription) offer(d *Delivery) {
	s.mu.Lock()
	full := len(s.queue) >= s.limit
	if !full {
		if s.queue == nil {
			s.queue = s.inline[:0]
		}
		s.queue = append(s.queue, d)
	}
	s.mu.Unlock()
	if full {
		s.hub.lagging.Add(1)
		s.lagOnce.Do(func() {
			close(s.lagged)
			// Removing takes the write lock: do it outside the dispatch.
			go s.Close()
			s.ring()
		})
		return
	}
	s.ring()
}

func (s *Subscription) ring() {
	select {
	case s.wake <- struct{}{}:
	default: // a token is there already
	}
	if f := s.notify.Load(); f != nil {
		(*f)()
	}
}
