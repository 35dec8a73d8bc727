package httpapi

import (
	"context"
	"errors"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/parley-chat/parley/graph"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
)

// liveViewer refuses mutations and subscriptions whose token belongs to a
// user who no longer exists (a token stays valid until it expires; the row
// may be gone): UNAUTHENTICATED, before any resolver runs, so nothing is
// written. It costs one primary-key lookup per mutation or subscription
// operation. Queries are not checked (their statement budgets stay as
// they are): `me` fails with UNAUTHENTICATED by itself, and everything else
// answers as for a user in no conversation. Register and login need no
// viewer and are not affected. A failing database lets the operation
// through, to fail (or not) on its own.
type liveViewer struct{ svc *chat.Service }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationInterceptor
} = liveViewer{}

func (liveViewer) ExtensionName() string                   { return "LiveViewer" }
func (liveViewer) Validate(graphql.ExecutableSchema) error { return nil }

func (l liveViewer) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	viewer := auth.Viewer(ctx)
	oc := graphql.GetOperationContext(ctx)
	if viewer == "" || oc.Operation == nil || oc.Operation.Operation == ast.Query || graph.Reexecuting(ctx) ||
		onlyFields(oc.Operation.SelectionSet, signIn) || onlyFields(oc.Operation.SelectionSet, checksViewer) {
		return next(ctx)
	}
	if _, err := l.svc.Me(ctx, viewer); errors.Is(err, chat.ErrUnauthenticated) {
		return graphql.OneShot(&graphql.Response{Errors: gqlerror.List{{
			Message:    "the token's user no longer exists: sign in again",
			Extensions: map[string]any{"code": "UNAUTHENTICATED"},
		}}})
	}
	return next(ctx)
}

// signIn: register and login ignore the caller's token (a stale one must
// not stop anyone from signing in again).
var signIn = map[string]bool{"register": true, "login": true}

// checksViewer are the mutations that answer a deleted viewer with
// UNAUTHENTICATED by themselves, at no cost on their success path:
// sendMessage checks membership in the statement that writes, and a
// participant's user row cannot be deleted, so only a failed membership
// check needs the user lookup (chat.Service.SendMessage). Skipping the
// check here saves the busiest mutation one statement.
var checksViewer = map[string]bool{"sendMessage": true}

// onlyFields reports whether every root field of set (besides __typename)
// is one of names.
func onlyFields(set ast.SelectionSet, names map[string]bool) bool {
	for _, sel := range set {
		f, ok := sel.(*ast.Field)
		if !ok || (!names[f.Name] && f.Name != "__typename") {
			return false
		}
	}
	return true
}
