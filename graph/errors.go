package graph

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/parley-chat/parley/internal/chat"
)

// Codes of extensions.code, as listed in API.md.
const (
	CodeUnauthenticated  = "UNAUTHENTICATED"
	CodeForbidden        = "FORBIDDEN"
	CodeNotFound         = "NOT_FOUND"
	CodeBadUserInput     = "BAD_USER_INPUT"
	CodeRateLimited      = "RATE_LIMITED"
	CodeValidationFailed = "GRAPHQL_VALIDATION_FAILED"
	CodeInternal         = "INTERNAL_SERVER_ERROR"
	// CodeSlowConsumer ends a subscription whose client fell behind; it
	// resumes with `after`.
	CodeSlowConsumer = "SLOW_CONSUMER"
)

var codes = []struct {
	kind error
	code string
}{
	{chat.ErrUnauthenticated, CodeUnauthenticated},
	{chat.ErrForbidden, CodeForbidden},
	{chat.ErrNotFound, CodeNotFound},
	{chat.ErrInvalid, CodeBadUserInput},
	{chat.ErrRateLimited, CodeRateLimited},
	{chat.ErrLagged, CodeSlowConsumer},
}

func isNotFound(err error) bool { return errors.Is(err, chat.ErrNotFound) }

// ErrorPresenter maps the service's errors to extensions.code once, for
// every transport. Errors gqlgen made itself (parsing, validation, argument
// coercion) keep their code; anything else is logged and masked.
func ErrorPresenter(log *slog.Logger) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		gqlErr := graphql.DefaultErrorPresenter(ctx, err)
		for _, c := range codes {
			if errors.Is(err, c.kind) {
				gqlErr.Message = publicMessage(err)
				setCode(gqlErr, c.code)
				var e *chat.Error
				if errors.As(err, &e) {
					for k, v := range e.Details {
						gqlErr.Extensions[k] = v
					}
				}
				return gqlErr
			}
		}
		var unwrapped *gqlerror.Error
		if errors.As(err, &unwrapped) && unwrapped.Err == nil {
			// Made by gqlgen or gqlparser: its message is meant for clients.
			switch gqlErr.Extensions["code"] {
			case nil:
				setCode(gqlErr, CodeBadUserInput)
			case errcode.ParseFailed, "COMPLEXITY_LIMIT_EXCEEDED":
				// API.md's vocabulary has one code for documents the server
				// will not run; the specific reason stays alongside it.
				gqlErr.Extensions["reason"] = gqlErr.Extensions["code"]
				if strings.HasPrefix(gqlErr.Message, "exceeded token limit") { // MAX_TOKENS
					gqlErr.Extensions["reason"] = "TOKEN_LIMIT_EXCEEDED"
				}
				setCode(gqlErr, CodeValidationFailed)
			}
			return gqlErr
		}
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			// The client went away mid-request: nothing failed on our side,
			// and nobody reads the answer.
			log.InfoContext(ctx, "request cancelled by the client", "err", err, "path", gqlErr.Path.String(), logOperation(ctx))
		} else {
			log.ErrorContext(ctx, "internal error", "err", err, "path", gqlErr.Path.String(), logOperation(ctx))
		}
		gqlErr.Message = "internal server error"
		gqlErr.Extensions = map[string]any{"code": CodeInternal}
		return gqlErr
	}
}

func publicMessage(err error) string {
	var e *chat.Error
	if errors.As(err, &e) {
		return e.Msg
	}
	return err.Error()
}

func setCode(e *gqlerror.Error, code string) {
	if e.Extensions == nil {
		e.Extensions = map[string]any{}
	}
	e.Extensions["code"] = code
}

// Recover turns a panic in a resolver into a masked internal error.
func Recover(log *slog.Logger) graphql.RecoverFunc {
	return func(ctx context.Context, v any) error {
		log.ErrorContext(ctx, "panic in resolver", "panic", fmt.Sprint(v), "stack", string(debug.Stack()), logOperation(ctx))
		return errors.New("internal panic")
	}
}
