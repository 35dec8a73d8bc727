package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Attachment is an uploaded file. It belongs to a conversation from upload
// and to a message once sendMessage names it.
type Attachment struct{ ent.Schema }

func (Attachment) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").DefaultFunc(newID(PrefixAttachment)).Immutable().MaxLen(32),
		field.String("conversation_id").Immutable(),
		field.String("uploader_id").Immutable(),
		field.String("message_id").Optional().Nillable(),
		field.String("filename").MaxLen(255),
		field.String("content_type").MaxLen(255),
		field.Int64("size"),
		field.Time("created_at").Default(nowUTC).Immutable(),
	}
}

func (Attachment) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("conversation", Conversation.Type).Ref("attachments").
			Field("conversation_id").Unique().Required().Immutable(),
		edge.From("message", Message.Type).Ref("attachments").
			Field("message_id").Unique(),
	}
}

func (Attachment) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("message_id"),
		index.Fields("conversation_id"),
	}
}
