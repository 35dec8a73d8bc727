// Package httpapi is the HTTP surface: /graphql with every transport of
// API.md, GraphiQL at /, health, readiness, metrics and attachment downloads.
package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/parley-chat/parley/graph"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/loader"
	"github.com/parley-chat/parley/internal/metrics"
	"github.com/parley-chat/parley/internal/viewcache"
)

// CloseForbidden is the WebSocket close code for a missing or bad token in
// connection_init (graphql-transport-ws).
const CloseForbidden = 4403

// GraphQLOptions configure the GraphQL handler.
type GraphQLOptions struct {
	MaxUploadBytes int64
	MaxComplexity  int
	MaxDepth       int
	// DefaultPage prices paginated fields that omit first/last.
	DefaultPage    int
	WSInitTimeout  time.Duration
	WSPingInterval time.Duration
	Limits         RateLimits
	// Operation limits of limits.go and the persisted-query store of apq.go.
	MaxAliases           int
	MaxFields            int
	MaxTokens            int
	DisableIntrospection bool
	APQCache             APQCache // shared (Redis) tier; nil: in-process only
	// WebSocket hygiene of websocket.go.
	WSWriteTimeout    time.Duration
	WSMaxConnsPerUser int
	AllowedOrigins    []string
	// Metrics of observe.go; nil counts nothing.
	Metrics *metrics.Metrics
	// Hijacked counts open graphql-transport-ws connections, for a
	// shutdown to wait on; nil counts nothing.
	Hijacked *Hijacked
	// ResponseCache, if set, answers queries of the viewer's conversations
	// (respcache.go); the service must report its changes to it.
	ResponseCache *viewcache.Cache
	// WSGoroutinePerConn serves each graphql-transport-ws connection with a
	// reading goroutine of its own instead of the poller (as on platforms
	// without one): an escape hatch, and the path the tests compare.
	WSGoroutinePerConn bool
}

// NewGraphQL builds the gqlgen server with explicit transports. SSE comes
// before POST: both accept a JSON POST, and SSE must claim the ones that ask
// for text/event-stream.
func NewGraphQL(svc *chat.Service, loaders *loader.Factory, log *slog.Logger, opt GraphQLOptions) *handler.Server {
	srv := handler.New(graph.NewExecutableSchema(graph.Config{
		Resolvers:  graph.NewResolver(svc, log),
		Complexity: graph.Complexity(opt.DefaultPage),
	}))
	check := wsInitCheck(svc, opt.Limits)
	srv.AddTransport(newWebSocket(log, opt, check, transport.Websocket{ // websocket.go, wsconn.go
		InitFunc:              wsInit(check),
		InitTimeout:           opt.WSInitTimeout,
		KeepAlivePingInterval: opt.WSPingInterval, // legacy graphql-ws "ka"
		PingPongInterval:      opt.WSPingInterval, // graphql-transport-ws ping/pong
	}))
	srv.AddTransport(transport.Options{})
	srv.AddTransport(sseTransport{writeTimeout: opt.WSWriteTimeout, log: log}) // sse.go
	srv.AddTransport(transport.GET{})
	srv.AddTransport(postTransport{})                                                                                             // post.go
	srv.AddTransport(guardTransport(log, transport.MultipartForm{MaxUploadSize: opt.MaxUploadBytes + 1<<20, MaxMemory: 1 << 20})) // transport_guard.go
	// First, so that its parameter hook sees even documents a later one refuses.
	srv.Use(newObserver(opt.Metrics)) // metrics, log fields, spans (observe.go)
	srv.Use(newPersistedQueries(opt.APQCache))
	useOperationLimits(srv, svc, opt) // query cache, tokens, fields, aliases, introspection… (limits.go)
	srv.Use(depthLimit{max: opt.MaxDepth})
	srv.Use(&complexityLimit{max: opt.MaxComplexity}) // depth.go
	if opt.ResponseCache != nil {
		srv.Use(responseCache{cache: opt.ResponseCache}) // respcache.go: after every limit
	}
	srv.SetErrorPresenter(graph.ErrorPresenter(log))
	srv.SetRecoverFunc(graph.Recover(log))
	srv.AroundOperations(graph.StreamEnds) // a stream's last error, from the reading goroutine
	// Fresh loaders for every response: one per HTTP request, and one per
	// event of a subscription, so nothing cached outlives what it served.
	srv.AroundResponses(func(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
		return next(loader.WithFreshLoaders(ctx, loaders))
	})
	// Mutation fields run one after another and each may change what the
	// previous one loaded: give each its own loaders, so a later field never
	// reads an earlier field's cached rows.
	srv.AroundRootFields(func(ctx context.Context, next graphql.RootResolver) graphql.Marshaler {
		if oc := graphql.GetOperationContext(ctx); oc != nil && oc.Operation != nil && oc.Operation.Operation == ast.Mutation {
			ctx = loader.WithFreshLoaders(ctx, loaders)
		}
		return next(ctx)
	})
	srv.AroundRootFields(opt.Limits.limitMutations)
	return srv
}

// initRefusal is why a connection_init was refused, with the close code
// and reason to answer it with.
type initRefusal struct {
	code   int
	reason string
	err    error
}

func (e *initRefusal) Error() string { return e.err.Error() }
func (e *initRefusal) Unwrap() error { return e.err }

// initCheck authenticates a WebSocket from its connection_init payload and
// applies the new-connection rate limit; it returns an *initRefusal when
// the socket must close.
type initCheck func(ctx context.Context, p transport.InitPayload) (context.Context, error)

// wsInitCheck is the initCheck of the service: a subscription never starts
// unauthenticated; a missing or bad token closes the socket with 4403.
func wsInitCheck(svc *chat.Service, limits RateLimits) initCheck {
	return func(ctx context.Context, p transport.InitPayload) (context.Context, error) {
		token := p.Authorization()
		for _, k := range []string{"authToken", "token"} {
			if token == "" {
				token = p.GetString(k)
			}
		}
		userID, err := svc.Authenticate(ctx, token)
		if err != nil {
			return ctx, &initRefusal{code: CloseForbidden, reason: "Forbidden", err: err}
		}
		if d, ok := limits.allow(ctx, "ws:"+userID, limits.Connections); !ok {
			return ctx, &initRefusal{code: CloseRateLimited, reason: "Too many connections: retry after " + retryHint(d.RetryAfter),
				err: rateLimited("new connections", d)}
		}
		return auth.WithViewer(ctx, userID), nil
	}
}

// wsInit adapts check to gqlgen's transport (the legacy protocol).
func wsInit(check initCheck) transport.WebsocketInitFunc {
	return func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
		next, err := check(ctx, p)
		var refused *initRefusal
		if errors.As(err, &refused) {
			ctx = transport.WithWebsocketCloseCode(ctx, refused.code)
			return transport.AppendCloseReason(ctx, refused.reason), nil, err
		}
		if err != nil {
			return ctx, nil, err
		}
		return next, nil, nil
	}
}
