package chat

import (
	"time"

	"github.com/parley-chat/parley/internal/events"
)

// Live describes the broker event a streamed item was made from, for
// delivery metrics. It is zero for items read from the database (replays and
// gap fills) and for items the stream made itself (a typing state expiring).
type Live struct {
	Kind        events.Kind
	PublishedAt time.Time
}

// LiveEvent returns l; every stream item embeds a Live.
func (l Live) LiveEvent() Live { return l }

func live(d *events.Delivery) Live { return Live{Kind: d.Kind, PublishedAt: d.PublishedAt} }

// Failure is the error that ends the stream an item is the last of.
func (it MessageEventItem) Failure() error { return it.Err }

// Failure is the error that ends the stream an item is the last of.
func (it InboxItem) Failure() error { return it.Err }

// Failure is the error that ends the stream an item is the last of.
func (it TypingItem) Failure() error { return it.Err }
