package httpapi

import (
	"context"
	"errors"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

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
	if viewer == "" || oc.Operation == nil || oc.Operation.Operation == ast.Query || onlySignIn(oc.Operation.SelectionSet) {
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

// onlySignIn: register and login ignore the caller's token (a stale one
// must not stop anyone from signing in again).
func onlySignIn(set ast.SelectionSet) bool {
	for _, sel := range set {
		f, ok := sel.(*ast.Field)
		if !ok || (f.Name != "register" && f.Name != "login" && f.Name != "__typename") {
			return false
		}
	}
	return true
}
