package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// User is an account that can sign in and take part in conversations.
type User struct{ ent.Schema }

func (User) Fields() []ent.Field {
	return []ent.Field{
		field.String("id").DefaultFunc(newID(PrefixUser)).Immutable().MaxLen(32),
		// Stored lower-cased so uniqueness is case-insensitive on every database.
		field.String("username").MaxLen(32).Immutable(),
		field.String("display_name").MaxLen(64),
		field.String("password_hash").Sensitive(),
		field.String("avatar_url").Optional().Nillable(),
		field.Time("created_at").Default(nowUTC).Immutable(),
	}
}

func (User) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("memberships", Participant.Type),
		edge.To("messages", Message.Type),
	}
}

func (User) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("username").Unique(),
	}
}
