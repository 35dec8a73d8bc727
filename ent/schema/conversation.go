package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Conversation is a DIRECT (two people) or GROUP conversation.
type Conversation struct{ ent.Schema }

func (Conversation) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").DefaultFunc(newID(PrefixConversation)).Immutable().MaxLen(32),
		field.Enum("kind").Values("DIRECT", "GROUP").Immutable(),
		field.String("title").Optional().Nillable().MaxLen(200),
		// "<smaller user id>:<larger user id>" for DIRECT conversations; a unique
		// index on it makes the DIRECT dedupe race-free across replicas.
		field.String("direct_key").Optional().Nillable().Immutable(),
		// The sequence of the conversation's last message event. Taking the next
		// number is an UPDATE of this row, which also serialises writers of one
		// conversation.
		field.Int64("last_seq").Default(0),
		// Messages ever created (tombstones included): the totalCount of a
		// message page without a COUNT over the conversation's messages.
		field.Int64("message_count").Default(0),
		// Denormalised so the conversation list can load last messages by primary key.
		field.String("last_message_id").Optional().Nillable(),
		field.Time("created_at").Default(nowUTC).Immutable(),
		field.Time("updated_at").Default(nowUTC),
	}
}

func (Conversation) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("participants", Participant.Type),
		edge.To("messages", Message.Type),
		edge.To("events", MessageEvent.Type),
		edge.To("attachments", Attachment.Type),
	}
}

func (Conversation) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("direct_key").Unique(),
		// Conversation lists are ordered by (updated_at, id) descending.
		index.Fields("updated_at", "id"),
	}
}
