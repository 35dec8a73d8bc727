package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/metrics"
	"github.com/parley-chat/parley/internal/ratelimit"
)

// CloseRateLimited is the WebSocket close code for a user over the new
// connection rate.
const CloseRateLimited = 4429

// RateLimiter counts events per key (in process, or shared through Redis).
type RateLimiter interface {
	Allow(ctx context.Context, key string, r ratelimit.Rate) (ratelimit.Decision, error)
}

// RateLimits are the per-user and per-IP limits.
type RateLimits struct {
	Limiter     RateLimiter
	Mutations   ratelimit.Rate // per signed-in user
	Connections ratelimit.Rate // new WebSockets per user
	Auth        ratelimit.Rate // register and login per client IP
	Logger      *slog.Logger
	Metrics     *metrics.Metrics // nil: not counted
}

// allow counts one event. A limiter that fails (Redis down) lets the event
// through: losing rate limiting for a while beats refusing every request.
func (l RateLimits) allow(ctx context.Context, key string, r ratelimit.Rate) (ratelimit.Decision, bool) {
	if l.Limiter == nil || r.Disabled() {
		return ratelimit.Decision{Allowed: true}, true
	}
	d, err := l.Limiter.Allow(ctx, key, r)
	if err != nil {
		l.Logger.WarnContext(ctx, "rate limiter unavailable; allowing", "err", err)
		l.Metrics.RateLimiterError()
		return ratelimit.Decision{Allowed: true}, true
	}
	if !d.Allowed {
		l.Metrics.RateLimited(limitName(key))
	}
	return d, d.Allowed
}

// limitName names the limit a key counts against, for metrics.
func limitName(key string) string {
	switch prefix, _, _ := strings.Cut(key, ":"); prefix {
	case "mut":
		return "mutations"
	case "auth":
		return "auth"
	case "ws":
		return "connections"
	}
	return "other"
}

func rateLimited(what string, d ratelimit.Decision) error {
	secs := math.Ceil(d.RetryAfter.Seconds()*10) / 10
	return &chat.Error{
		Kind:    chat.ErrRateLimited,
		Msg:     fmt.Sprintf("too many %s: retry after %.1f s", what, secs),
		Details: map[string]any{"retryAfter": secs},
	}
}

// limitMutations counts every mutation field: against the viewer, or for
// register and login against the client's IP.
func (l RateLimits) limitMutations(ctx context.Context, next graphql.RootResolver) graphql.Marshaler {
	oc := graphql.GetOperationContext(ctx)
	if oc == nil || oc.Operation == nil || oc.Operation.Operation != "mutation" {
		return next(ctx)
	}
	field := graphql.GetRootFieldContext(ctx)
	key, rate, what := "", l.Mutations, "mutations"
	switch {
	case field == nil:
		return next(ctx)
	case field.Field.Name == "register" || field.Field.Name == "login":
		key, rate, what = "auth:"+clientIP(ctx), l.Auth, "sign-in attempts"
	case auth.Viewer(ctx) != "":
		key = "mut:" + auth.Viewer(ctx)
	default:
		return next(ctx) // fails as UNAUTHENTICATED anyway
	}
	if d, ok := l.allow(ctx, key, rate); !ok {
		err := rateLimited(what, d)
		// No field context exists yet at this level: name the path here.
		graphql.AddError(ctx, &gqlerror.Error{Err: err, Message: err.Error(), Path: ast.Path{ast.PathName(field.Field.Alias)}})
		return graphql.Null
	}
	return next(ctx)
}

type clientIPKey struct{}

func clientIP(ctx context.Context) string {
	ip, _ := ctx.Value(clientIPKey{}).(string)
	return ip
}

// withClientIP records the client's address; behind a proxy that sets
// X-Forwarded-For (and only then: it is trivially forged) its first entry.
func withClientIP(trustForwarded bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			ip = r.RemoteAddr
		}
		if trustForwarded {
			if f := r.Header.Get("X-Forwarded-For"); f != "" {
				first, _, _ := strings.Cut(f, ",")
				ip = strings.TrimSpace(first)
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientIPKey{}, ip)))
	})
}

// retryHint is for logs and close reasons.
func retryHint(d time.Duration) string { return fmt.Sprintf("%.1f s", math.Ceil(d.Seconds()*10)/10) }
