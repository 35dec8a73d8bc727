// Package model holds the GraphQL types that are not stored rows; stored
// rows are ent's types, bound in gqlgen.yml.
package model

import "time"

// Node is deliberately empty: the implementors are ent's generated types,
// which cannot carry hand-written methods, and gqlgen resolves the concrete
// type with a type switch either way.
type Node any

// ReadReceipt is one participant's read marker.
type ReadReceipt struct {
	UserID            string
	LastReadMessageID *string
	ReadAt            *time.Time
}

// InboxEvent names what changed; the resolvers load the rows through the
// request's dataloaders.
type InboxEvent struct {
	Type           InboxEventType
	ConversationID string
	MessageID      string
	UserID         string
	// Scope holds loaders shared by every subscriber of the same event.
	Scope any
}

// TypingEvent is an ephemeral typing state.
type TypingEvent struct {
	ConversationID string
	UserID         string
	Typing         bool
}

// MessageEvent is one entry of a conversation's event sequence.
type MessageEvent struct {
	Type      MessageEventType
	Cursor    string
	MessageID string
	// Scope holds loaders shared by every subscriber of the same event.
	Scope any
}

// ConversationConnection is a page of the viewer's conversations; its
// totalCount is only counted when selected.
type ConversationConnection struct {
	Edges    []*ConversationEdge
	PageInfo *PageInfo
	ViewerID string
	// Prefetched: everything the selection reads under the edges is in
	// memory, so they may be marshaled one after the other.
	Prefetched bool
}

// ElementsInMemory tells the list marshaler (graph.marshalSliceInline)
// whether the edges may be marshaled without a goroutine each.
func (c *ConversationConnection) ElementsInMemory() bool { return c.Prefetched }

// MessageConnection is a page of a conversation's messages.
type MessageConnection struct {
	Edges    []*MessageEdge
	PageInfo *PageInfo
	// TotalCount is the conversation's message counter: no COUNT query.
	TotalCount int
}
