package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Message is one message of a conversation. Deleting keeps the row as a
// tombstone (empty body, deleted_at set) so sequences and cursors stay valid.
type Message struct{ ent.Schema }

func (Message) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").DefaultFunc(newID(PrefixMessage)).Immutable().MaxLen(32),
		field.String("conversation_id").Immutable(),
		field.String("sender_id").Immutable(),
		// The conversation sequence number taken when the message was created;
		// message pages are ordered and paginated by it.
		field.Int64("seq").Immutable(),
		field.Text("body"),
		field.String("client_message_id").Optional().Nillable().Immutable().MaxLen(128),
		field.Time("created_at").Default(nowUTC).Immutable(),
		field.Time("edited_at").Optional().Nillable(),
		field.Time("deleted_at").Optional().Nillable(),
	}
}

func (Message) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("conversation", Conversation.Type).Ref("messages").
			Field("conversation_id").Unique().Required().Immutable(),
		edge.From("sender", User.Type).Ref("messages").
			Field("sender_id").Unique().Required().Immutable(),
		edge.To("attachments", Attachment.Type),
	}
}

func (Message) Indexes() []ent.Index {
	return []ent.Index{
		// Message pages, unread counts and gap fills read by (conversation, seq).
		index.Fields("conversation_id", "seq").Unique(),
		// Idempotent sends; rows without a client_message_id never collide (NULLs are distinct).
		index.Fields("sender_id", "conversation_id", "client_message_id").Unique(),
	}
}
