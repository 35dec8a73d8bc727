package graph

import (
	"context"
	"log/slog"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/parley-chat/parley/internal/metrics"
)

// streamStarted counts a running subscription by its root field; call the
// returned func when it ends.
func streamStarted(ctx context.Context) (ended func()) {
	field := ""
	if fc := graphql.GetFieldContext(ctx); fc != nil && fc.Field.Field != nil {
		field = fc.Field.Name
	}
	return metrics.FromContext(ctx).SubscriptionStarted(field)
}

// streamFailed counts the error that ends a subscription (it reaches the
// client without passing through gqlgen's response interceptors).
func streamFailed(ctx context.Context, err *gqlerror.Error) {
	name, typ := OperationInfo(ctx)
	code, _ := err.Extensions["code"].(string)
	metrics.FromContext(ctx).OperationError(name, typ, code)
}

// OperationInfo returns the name and type (query, mutation, subscription)
// of ctx's GraphQL operation, as far as they are known.
func OperationInfo(ctx context.Context) (name, typ string) {
	if !graphql.HasOperationContext(ctx) {
		return "", ""
	}
	oc := graphql.GetOperationContext(ctx)
	name = oc.OperationName
	if oc.Operation != nil {
		if name == "" {
			name = oc.Operation.Name
		}
		typ = string(oc.Operation.Operation)
	}
	return name, typ
}

// logOperation is the operation's name and type for a log line (inlined:
// "operation" and "operation_type"); the request ID comes from the logger's
// handler.
func logOperation(ctx context.Context) slog.Attr {
	name, typ := OperationInfo(ctx)
	if len(name) > 100 {
		name = name[:100]
	}
	return slog.Group("", slog.String("operation", name), slog.String("operation_type", typ))
}
