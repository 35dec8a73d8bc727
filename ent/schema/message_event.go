package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// MessageEvent records every change to a conversation's messages under the
// conversation's next sequence number. It is the source of truth that
// subscriptions replay from and fill gaps with; the broker only rings the bell.
type MessageEvent struct{ ent.Schema }

func (MessageEvent) Fields() []ent.Field {
	return []ent.Field{
		field.String("conversation_id").Immutable(),
		field.Int64("seq").Immutable(),
		field.Enum("type").Values("CREATED", "EDITED", "DELETED").Immutable(),
		field.String("message_id").Immutable(),
		field.Time("created_at").Default(nowUTC).Immutable(),
	}
}

func (MessageEvent) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("conversation", Conversation.Type).Ref("events").
			Field("conversation_id").Unique().Required().Immutable(),
	}
}

func (MessageEvent) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("conversation_id", "seq").Unique(),
	}
}
