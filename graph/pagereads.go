package graph

import (
	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
)

// pageReads is what the elements of a conversations page read besides the
// conversation rows, found by walking the selection under edges.node
// (fragments included), so that the resolver prefetches each kind in one
// statement. A last message's conversation is the page's conversation:
// what is selected under lastMessage.conversation counts as selected on
// the node.
type pageReads struct {
	participants, lastMessages, attachments, unread bool
	// elsewhere: something is selected that no prefetch covers (a
	// conversation's messages, or a field this walk does not know): then the
	// edges keep gqlgen's goroutine per element, so that their loads still
	// meet in batches.
	elsewhere bool
}

// In memory once the conversation or message row is: the row's own columns,
// and for a message its sender, read with it (loader.PrefetchMessages).
var (
	conversationColumns = map[string]bool{"__typename": true, "id": true, "kind": true, "title": true, "createdAt": true, "updatedAt": true}
	messageColumns      = map[string]bool{"__typename": true, "id": true, "body": true, "clientMessageId": true,
		"createdAt": true, "editedAt": true, "deletedAt": true, "sender": true}
)

func (r *pageReads) conversation(oc *graphql.OperationContext, set ast.SelectionSet, depth int) {
	if depth > maxSelectionDepth {
		r.elsewhere = true
		return
	}
	for _, f := range graphql.CollectFields(oc, set, nil) {
		switch {
		case conversationColumns[f.Name]:
		case f.Name == "participants" || f.Name == "readReceipts":
			// Users come in the same statement; User and ReadReceipt have
			// nothing else to load.
			r.participants = true
		case f.Name == "unreadCount":
			r.unread = true
		case f.Name == "lastMessage":
			r.lastMessages = true
			r.message(oc, f.Selections, depth+1)
		default:
			r.elsewhere = true
		}
	}
}

func (r *pageReads) message(oc *graphql.OperationContext, set ast.SelectionSet, depth int) {
	if depth > maxSelectionDepth {
		r.elsewhere = true
		return
	}
	for _, f := range graphql.CollectFields(oc, set, nil) {
		switch {
		case messageColumns[f.Name]:
		case f.Name == "attachments":
			r.attachments = true // Attachment has nothing else to load
		case f.Name == "conversation":
			r.conversation(oc, f.Selections, depth+1)
		default:
			r.elsewhere = true
		}
	}
}

// readsUnder returns the pageReads of the current field's selection at
// path (edges, node for a conversations page).
func readsUnder(fc *graphql.FieldContext, oc *graphql.OperationContext, path ...string) pageReads {
	var r pageReads
	if fc == nil || oc == nil {
		r.elsewhere = true
		return r
	}
	set := fc.Field.Selections
	for _, name := range path {
		var next ast.SelectionSet
		for _, f := range graphql.CollectFields(oc, set, nil) {
			if f.Name == name {
				next = append(next, f.Selections...)
			}
		}
		set = next
	}
	r.conversation(oc, set, 0)
	return r
}
