// Package events defines what replicas tell each other (Event), the Broker
// that carries it between replicas, and the Hub that fans events out to the
// subscriptions of this replica.
//
// An Event is a doorbell, not the record: the database holds every message
// change under a per-conversation sequence number, and a subscriber that sees
// a jump in that sequence fills the gap from the database. So a Broker may be
// at-most-once without any subscriber missing a message event.
package events

import (
	"context"
	"time"
)

// Kind says which subscriptions an event is for.
type Kind string

const (
	// KindMessage is a change to a conversation's messages; it carries Seq.
	KindMessage Kind = "message"
	// KindConversation is a change to a conversation itself (created,
	// participants changed, read); it only feeds inboxes.
	KindConversation Kind = "conversation"
	// KindTyping is an ephemeral typing state; it is never stored.
	KindTyping Kind = "typing"
)

// Event is what a replica publishes after a change has been committed.
type Event struct {
	Kind           Kind   `json:"k"`
	ConversationID string `json:"c"`
	// Type is the MessageEventType (CREATED, EDITED, DELETED) of a message
	// event, or the InboxEventType of a conversation event.
	Type      string `json:"t,omitempty"`
	Seq       int64  `json:"s,omitempty"`
	MessageID string `json:"m,omitempty"`
	// UserID is who acted: the sender, reader, joiner, leaver or typist.
	UserID string `json:"u,omitempty"`
	Typing bool   `json:"y,omitempty"`
	// Notify names inbox recipients who are no longer participants, such as
	// a user who just left, so their other devices still hear of it.
	Notify      []string  `json:"n,omitempty"`
	PublishedAt time.Time `json:"p"`
}

// IsSequenceOnly reports whether e only says "the conversation has reached
// Seq" (a resync) rather than describing one change: a message stream that
// is behind reads everything up to Seq from the database.
func (e Event) IsSequenceOnly() bool { return e.Kind == KindMessage && e.MessageID == "" }

// Broker carries events between replicas, this one included. Delivery is at
// most once and, per publisher, in order; consumers recover completeness from
// the database.
type Broker interface {
	// Publish hands e to every replica's subscriber. It must not block on
	// slow consumers.
	Publish(ctx context.Context, e Event) error
	// Subscribe calls deliver for every event published by any replica until
	// ctx ends. deliver must return quickly.
	Subscribe(ctx context.Context, deliver func(Event)) error
}
