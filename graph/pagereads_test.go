package graph

import (
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
)

// What a conversations page prefetches, and whether its edges may then be
// marshaled one after the other, for the selections clients send.
func TestPageReads(t *testing.T) {
	schema := NewExecutableSchema(Config{}).Schema()
	for _, tc := range []struct {
		name, query string
		want        pageReads
	}{
		{"columns only", `{ conversations { edges { node { id kind title createdAt updatedAt __typename } } } }`,
			pageReads{}},
		{"the list's full selection", `{ conversations(first: 20) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id kind title createdAt updatedAt unreadCount participants { id username displayName avatarUrl } lastMessage { id body createdAt sender { id displayName } } } } } }`,
			pageReads{participants: true, lastMessages: true, unread: true}},
		{"read receipts", `{ conversations { edges { node { readReceipts { readAt user { id } } } } } }`,
			pageReads{participants: true}},
		{"through a fragment and the last message's conversation", `
			query { conversations { edges { node { ...C } } } }
			fragment C on Conversation { lastMessage { attachments { url } conversation { unreadCount } } }`,
			pageReads{lastMessages: true, attachments: true, unread: true}},
		{"messages are not prefetched", `{ conversations { edges { node { id messages(last: 1) { edges { node { id } } } } } } }`,
			pageReads{elsewhere: true}},
		{"nor is anything below a last message's conversation's messages", `{ conversations { edges { node { lastMessage { conversation { messages { totalCount } } } } } } }`,
			pageReads{lastMessages: true, elsewhere: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, errs := gqlparser.LoadQueryWithRules(schema, tc.query, nil) // nil: the default rules
			if errs != nil {
				t.Fatal(errs)
			}
			oc := &graphql.OperationContext{Doc: doc, Operation: doc.Operations[0], Variables: map[string]any{}}
			var conversations *ast.Field
			for _, f := range graphql.CollectFields(oc, oc.Operation.SelectionSet, nil) {
				if f.Name == "conversations" {
					conversations = f.Field
				}
			}
			fc := &graphql.FieldContext{Field: graphql.CollectedField{Field: conversations, Selections: conversations.SelectionSet}}
			if got := readsUnder(fc, oc, "edges", "node"); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
