package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/redis/go-redis/v9"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// APQCache keeps automatic persisted queries: query text by its SHA-256.
type APQCache = graphql.Cache[string]

// maxPersistedQueryBytes: longer queries run but are not persisted (their
// clients keep sending them in full).
const maxPersistedQueryBytes = 64 << 10

// persistedQueries is gqlgen's AutomaticPersistedQuery extension, with one
// change: a query is persisted only once it has parsed, validated and passed
// every limit, so anonymous clients cannot fill the cache (or Redis) with
// junk that merely hashes right. Persisted queries live in a process-local
// LRU, in front of shared (Redis) when there is one, so that a query
// registered through one replica is found by hash on every other.
type persistedQueries struct {
	apq   extension.AutomaticPersistedQuery
	store graphql.Cache[string]
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
	graphql.OperationInterceptor
} = persistedQueries{}

func newPersistedQueries(shared APQCache) persistedQueries {
	store := tieredCache{local: lru.New[string](1000), shared: shared}
	return persistedQueries{apq: extension.AutomaticPersistedQuery{Cache: lookupOnly{store}}, store: store}
}

func (persistedQueries) ExtensionName() string                       { return "AutomaticPersistedQuery" }
func (p persistedQueries) Validate(s graphql.ExecutableSchema) error { return p.apq.Validate(s) }

func (p persistedQueries) MutateOperationParameters(ctx context.Context, raw *graphql.RawParams) *gqlerror.Error {
	return p.apq.MutateOperationParameters(ctx, raw)
}

// InterceptOperation runs only for operations that passed every check.
func (p persistedQueries) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	if st := extension.GetApqStats(ctx); st != nil && st.SentQuery {
		if oc := graphql.GetOperationContext(ctx); len(oc.RawQuery) <= maxPersistedQueryBytes {
			p.store.Add(ctx, st.Hash, oc.RawQuery)
		}
	}
	return next(ctx)
}

// lookupOnly hides Add from gqlgen's extension, which would store queries
// before they are parsed.
type lookupOnly struct{ graphql.Cache[string] }

func (lookupOnly) Add(context.Context, string, string) {}

type tieredCache struct {
	local  graphql.Cache[string]
	shared graphql.Cache[string] // nil: local only
}

func (t tieredCache) Get(ctx context.Context, key string) (string, bool) {
	if v, ok := t.local.Get(ctx, key); ok {
		return v, true
	}
	if t.shared == nil {
		return "", false
	}
	v, ok := t.shared.Get(ctx, key)
	if ok {
		t.local.Add(ctx, key, v)
	}
	return v, ok
}

func (t tieredCache) Add(ctx context.Context, key, v string) {
	t.local.Add(ctx, key, v)
	if t.shared != nil {
		t.shared.Add(ctx, key, v)
	}
}

// RedisAPQCache keeps persisted queries in Redis under
// <prefix>:apq:<sha256>, each for ttl after it was registered. A failing
// Redis is a cache miss (clients then send the full query), never an error.
type RedisAPQCache struct {
	client redis.UniversalClient
	prefix string
	ttl    time.Duration
	log    *slog.Logger
}

var _ APQCache = (*RedisAPQCache)(nil)

// NewRedisAPQCache returns the Redis tier of the persisted-query cache.
func NewRedisAPQCache(client redis.UniversalClient, prefix string, ttl time.Duration, log *slog.Logger) *RedisAPQCache {
	return &RedisAPQCache{client: client, prefix: prefix, ttl: ttl, log: log}
}

func (c *RedisAPQCache) key(hash string) string { return c.prefix + ":apq:" + hash }

// A SHA-256 in hex is 64 characters: anything else is not looked up.
func validHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := range len(h) {
		if b := h[i]; (b < '0' || b > '9') && (b < 'a' || b > 'f') && (b < 'A' || b > 'F') {
			return false
		}
	}
	return true
}

// Get returns the query registered under hash.
func (c *RedisAPQCache) Get(ctx context.Context, hash string) (string, bool) {
	if !validHash(hash) {
		return "", false
	}
	v, err := c.client.Get(ctx, c.key(hash)).Result()
	if err != nil {
		if !errors.Is(err, redis.Nil) && ctx.Err() == nil {
			c.log.WarnContext(ctx, "persisted query lookup failed; treating as unknown", "err", err)
		}
		return "", false
	}
	return v, true
}

// Add registers query under hash for the cache's TTL.
func (c *RedisAPQCache) Add(ctx context.Context, hash, query string) {
	if !validHash(hash) {
		return
	}
	if err := c.client.Set(ctx, c.key(hash), query, c.ttl).Err(); err != nil && ctx.Err() == nil {
		c.log.WarnContext(ctx, "persisted query not stored in Redis", "err", err)
	}
}
