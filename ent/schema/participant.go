package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Participant is a user's membership of a conversation, with the user's read
// marker in it.
type Participant struct{ ent.Schema }

func (Participant) Fields() []ent.Field {
	return []ent.Field{
		field.String("conversation_id").Immutable(),
		field.String("user_id").Immutable(),
		field.Time("joined_at").Default(nowUTC).Immutable(),
		// Sequence of the last message read; messages from others above it are unread.
		field.Int64("last_read_seq").Default(0),
		field.String("last_read_message_id").Optional().Nillable(),
		field.Time("read_at").Optional().Nillable(),
	}
}

func (Participant) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("conversation", Conversation.Type).Ref("participants").
			Field("conversation_id").Unique().Required().Immutable(),
		edge.From("user", User.Type).Ref("memberships").
			Field("user_id").Unique().Required().Immutable(),
	}
}

func (Participant) Indexes() []ent.Index {
	return []ent.Index{
		// Membership checks and "my conversations" start from the user.
		index.Fields("user_id", "conversation_id").Unique(),
		// Participants of a conversation (lists, fan-out).
		index.Fields("conversation_id", "user_id"),
	}
}
