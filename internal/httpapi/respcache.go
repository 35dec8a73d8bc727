package httpapi

import (
	"bytes"
	"context"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/parley-chat/parley/graph"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/viewcache"
)

// responseCache answers a query that reads only the viewer's conversations
// from internal/viewcache, and stores what it executes. Clients refetch
// their conversation list on every start, reconnect and focus; between two
// changes to the viewer's conversations the answer is the same bytes.
//
// Only documents whose root fields are all in cachedFields take part: what
// they read changes only through changes the service reports
// (chat.ChangeListener). Everything before execution still applies to a
// hit: authentication, rate limits, operation limits, metrics and logs.
type responseCache struct{ cache *viewcache.Cache }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
} = responseCache{}

// cachedFields: root fields whose answer depends only on the viewer's
// conversations (their rows, members, messages, attachments and read
// state), all of which change only through chat.Service's reported writes.
// Users are immutable once registered. Not `me` or `users` (a new account
// changes a search), nor `node` (any type), nor `messagingStats`.
var cachedFields = map[string]bool{"conversations": true, "conversation": true}

func (responseCache) ExtensionName() string                   { return "ResponseCache" }
func (responseCache) Validate(graphql.ExecutableSchema) error { return nil }

func (rc responseCache) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	viewer := auth.Viewer(ctx)
	oc := graphql.GetOperationContext(ctx)
	if viewer == "" || oc == nil || oc.Operation == nil || oc.Operation.Operation != ast.Query ||
		!onlyFields(oc.Operation.SelectionSet, cachedFields) {
		return next(ctx)
	}
	key, ok := graph.OperationKey(oc)
	if !ok {
		return next(ctx)
	}
	if data, ok := rc.cache.Get(viewer, key); ok {
		return graphql.OneShot(&graphql.Response{Data: data})
	}
	ticket := rc.cache.Begin(viewer)
	responses := next(ctx)
	return func(ctx context.Context) *graphql.Response {
		r := responses(ctx)
		// Only a whole, clean answer: errors can be transient (a timeout),
		// extensions are per request, and an incremental one is partial.
		if r != nil && r.Data != nil && len(r.Errors) == 0 && len(r.Extensions) == 0 && r.HasNext == nil && ctx.Err() == nil {
			rc.cache.Put(ctx, ticket, key, bytes.Clone(r.Data))
		}
		return r
	}
}
