// Package config reads the server's configuration from environment
// variables, with defaults that are safe for a single local replica.
package config

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/internal/ratelimit"
)

// Config is everything the server reads from its environment.
type Config struct {
	Addr          string
	DebugAddr     string
	DatabaseURL   string
	RedisURL      string
	JWTSecret     []byte
	JWTSecretSet  bool // false: random per process, single replica only
	AttachmentDir string
	TokenTTL      time.Duration

	MaxBodyChars    int
	MaxPageSize     int
	MaxUploadBytes  int64
	MaxRequestBytes int64
	MaxComplexity   int
	MaxDepth        int
	MaxAliases      int
	MaxFields       int
	MaxTokens       int
	Introspection   bool
	APQTTL          time.Duration

	TypingTTL       time.Duration
	WSInitTimeout   time.Duration
	WSPingInterval  time.Duration
	ShutdownTimeout time.Duration
	ShutdownDelay   time.Duration

	WSWriteTimeout    time.Duration
	WSMaxConnsPerUser int
	WSPoll            bool     // graphql-transport-ws without a goroutine per connection (Linux)
	AllowedOrigins    []string // cross origins allowed (CORS, WebSocket); "*" any

	DBMaxOpenConns    int
	DBMaxIdleConns    int
	DBConnMaxLifetime time.Duration
	DBConnMaxIdleTime time.Duration

	RedisPrefix       string
	RedisPoolSize     int
	RedisDialTimeout  time.Duration
	RedisReadTimeout  time.Duration
	RedisWriteTimeout time.Duration
	ResyncInterval    time.Duration

	ResponseCache      string // auto, on or off
	ResponseCacheBytes int64
	ResponseCacheTTL   time.Duration

	RateMutations   ratelimit.Rate
	RateConnections ratelimit.Rate
	RateAuth        ratelimit.Rate
	TrustForwarded  bool

	LogLevel  slog.Level
	LogFormat string
}

// Var documents one environment variable; the README's table is made from
// the same list.
type Var struct{ Name, Default, Meaning string }

// Vars lists every variable the server reads.
var Vars = []Var{
	{"ADDR", ":8080", "listen address"},
	{"DEBUG_ADDR", "empty: off", "a second listener serving Go's pprof profiles at /debug/pprof/ (e.g. `127.0.0.1:6060`); keep it off public networks"},
	{"DATABASE_URL", "./data/parley.db (SQLite)", "a SQLite file path (or `sqlite://path`), or `postgres://…` for PostgreSQL"},
	{"REDIS_URL", "empty: in-process pub/sub", "`redis://…` (or `rediss://…`) bridges replicas through Redis and shares rate limits"},
	{"JWT_SECRET", "random per process, with a warning", "shared HS256 signing secret (at least 32 bytes); every replica needs the same"},
	{"ATTACHMENT_DIR", "./data/attachments", "where uploads are kept"},
	{"TOKEN_TTL", "24h", "how long a token from register/login stays valid"},
	{"MAX_MESSAGE_CHARS", "4000", "longest message body, in characters after trimming"},
	{"MAX_PAGE_SIZE", "100", "largest first/last of a page"},
	{"MAX_UPLOAD_BYTES", "10485760", "largest attachment"},
	{"MAX_REQUEST_BYTES", "1048576", "largest JSON request body"},
	{"MAX_COMPLEXITY", "10000", "largest query complexity: each field costs 1, paginated fields multiply their selection by the page size"},
	{"MAX_DEPTH", "12", "deepest field nesting of an operation (introspection exempt)"},
	{"MAX_ALIASES", "50", "most aliased fields (`a: me`) in one operation, fragments counted at every spread"},
	{"MAX_FIELDS", "1000", "most fields a GraphQL document expands to, fragments counted at every spread, checked before validation"},
	{"MAX_TOKENS", "10000", "most lexical tokens in one GraphQL document (names, punctuation, values), checked while parsing"},
	{"INTROSPECTION", "true", "answer `__schema` and `__type` (GraphiQL's docs need it) and serve /graphql/schema.graphql; `false` refuses them and the \"did you mean\" hints, recommended in production"},
	{"APQ_TTL", "24h", "how long Redis keeps an automatic persisted query after it was registered (without Redis: an in-process LRU of 1000)"},
	{"TYPING_TTL", "6s", "a typing state ends by itself when not refreshed for this long"},
	{"WS_INIT_TIMEOUT", "10s", "time a WebSocket client has to send connection_init"},
	{"WS_PING_INTERVAL", "25s", "keep-alive interval on WebSockets (ping / ka)"},
	{"WS_WRITE_TIMEOUT", "10s", "a WebSocket write blocked this long (the client stopped reading) closes the socket with 1013; an SSE stream's ends the stream"},
	{"WS_MAX_CONNECTIONS_PER_USER", "20", "open WebSockets per user (per replica); over it connection_init is answered by closing with 4429"},
	{"WS_POLL", "true", "serve graphql-transport-ws connections without a goroutine each (Linux: epoll tells which sockets have something to read); `false`: one reading goroutine per connection, as on other platforms"},
	{"SHUTDOWN_TIMEOUT", "15s", "how long SIGTERM waits for in-flight requests"},
	{"SHUTDOWN_DELAY", "0s", "on SIGTERM, how long /readyz fails while everything else still serves, before the listener closes (give load balancers time to notice)"},
	{"DB_MAX_OPEN_CONNS", "16", "database connection pool size (per replica)"},
	{"DB_MAX_IDLE_CONNS", "16", "idle connections kept in the pool"},
	{"DB_CONN_MAX_LIFETIME", "30m", "a pooled connection is replaced after this long"},
	{"DB_CONN_MAX_IDLE_TIME", "5m", "an idle pooled connection is closed after this long"},
	{"REDIS_PREFIX", "parley", "prefix of every Redis key and channel (pub/sub ignores the database number, so deployments sharing a Redis need different prefixes)"},
	{"REDIS_POOL_SIZE", "20", "Redis connections per replica, besides the one pub/sub connection"},
	{"REDIS_DIAL_TIMEOUT", "2s", "Redis connect timeout"},
	{"REDIS_READ_TIMEOUT", "1s", "Redis read timeout"},
	{"REDIS_WRITE_TIMEOUT", "1s", "Redis write timeout"},
	{"RESYNC_INTERVAL", "10s", "how often each replica compares its watched conversations with the database, recovering events a broker lost"},
	{"RESPONSE_CACHE", "auto", "keep each viewer's answers to queries of their conversations (`conversations`, `conversation`) until one of those conversations changes; `auto` turns it on when this process sees every write (SQLite without REDIS_URL), `on` also with PostgreSQL (only for a single replica: other replicas' writes are not seen), `off` never"},
	{"RESPONSE_CACHE_BYTES", "33554432", "most bytes of cached answers per replica; the viewers cached longest ago go first"},
	{"RESPONSE_CACHE_TTL", "30s", "a cached answer is served at most this long, which bounds what a write made outside the server (by hand, another process) leaves behind"},
	{"RATE_LIMIT_MUTATIONS", "30/s", "mutations per signed-in user (N/s, N/m or N/h; off disables); shared through Redis when configured"},
	{"RATE_LIMIT_MUTATIONS_BURST", "60", "mutations a user may send at once"},
	{"RATE_LIMIT_CONNECTIONS", "1/s", "new WebSocket connections per user"},
	{"RATE_LIMIT_CONNECTIONS_BURST", "20", "new WebSocket connections a user may open at once"},
	{"RATE_LIMIT_AUTH", "20/m", "register and login mutations per client IP"},
	{"RATE_LIMIT_AUTH_BURST", "20", "register and login mutations an IP may send at once"},
	{"TRUST_FORWARDED_FOR", "false", "take the client IP from X-Forwarded-For (only behind a proxy that sets it)"},
	{"ALLOWED_ORIGINS", "empty: same origin only", "comma-separated browser origins allowed cross-origin (CORS and WebSocket upgrades): `https://app.example.com`, host patterns such as `*.example.com` or `localhost:*`, or `*` for any; clients that send no Origin are always served"},
	{"LOG_LEVEL", "info", "debug, info, warn or error"},
	{"LOG_FORMAT", "json", "json or text"},
}

// Load reads the environment. lookup is os.LookupEnv outside tests.
func Load(lookup func(string) (string, bool)) (*Config, error) {
	get := func(name, def string) string {
		if v, ok := lookup(name); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
		return def
	}
	var errs []string
	dur := func(name, def string) time.Duration {
		d, err := time.ParseDuration(get(name, def))
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Sprintf("%s: want a positive duration such as %s", name, def))
		}
		return d
	}
	durOrZero := func(name, def string) time.Duration {
		d, err := time.ParseDuration(get(name, def))
		if err != nil || d < 0 {
			errs = append(errs, fmt.Sprintf("%s: want a duration such as 5s (0 for none)", name))
		}
		return d
	}
	num := func(name, def string) int64 {
		n, err := strconv.ParseInt(get(name, def), 10, 64)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Sprintf("%s: want a positive whole number such as %s", name, def))
		}
		return n
	}
	c := &Config{
		Addr:               get("ADDR", ":8080"),
		DebugAddr:          get("DEBUG_ADDR", ""),
		DatabaseURL:        get("DATABASE_URL", "./data/parley.db"),
		RedisURL:           get("REDIS_URL", ""),
		AttachmentDir:      get("ATTACHMENT_DIR", "./data/attachments"),
		TokenTTL:           dur("TOKEN_TTL", "24h"),
		MaxBodyChars:       int(num("MAX_MESSAGE_CHARS", "4000")),
		MaxPageSize:        int(num("MAX_PAGE_SIZE", "100")),
		MaxUploadBytes:     num("MAX_UPLOAD_BYTES", "10485760"),
		MaxRequestBytes:    num("MAX_REQUEST_BYTES", "1048576"),
		MaxComplexity:      int(num("MAX_COMPLEXITY", "10000")),
		MaxDepth:           int(num("MAX_DEPTH", "12")),
		MaxAliases:         int(num("MAX_ALIASES", "50")),
		MaxFields:          int(num("MAX_FIELDS", "1000")),
		MaxTokens:          int(num("MAX_TOKENS", "10000")),
		APQTTL:             dur("APQ_TTL", "24h"),
		TypingTTL:          dur("TYPING_TTL", "6s"),
		WSInitTimeout:      dur("WS_INIT_TIMEOUT", "10s"),
		WSPingInterval:     dur("WS_PING_INTERVAL", "25s"),
		WSWriteTimeout:     dur("WS_WRITE_TIMEOUT", "10s"),
		WSMaxConnsPerUser:  int(num("WS_MAX_CONNECTIONS_PER_USER", "20")),
		ShutdownTimeout:    dur("SHUTDOWN_TIMEOUT", "15s"),
		ShutdownDelay:      durOrZero("SHUTDOWN_DELAY", "0s"),
		DBMaxOpenConns:     int(num("DB_MAX_OPEN_CONNS", "16")),
		DBMaxIdleConns:     int(num("DB_MAX_IDLE_CONNS", "16")),
		DBConnMaxLifetime:  dur("DB_CONN_MAX_LIFETIME", "30m"),
		DBConnMaxIdleTime:  dur("DB_CONN_MAX_IDLE_TIME", "5m"),
		RedisPrefix:        get("REDIS_PREFIX", "parley"),
		RedisPoolSize:      int(num("REDIS_POOL_SIZE", "20")),
		RedisDialTimeout:   dur("REDIS_DIAL_TIMEOUT", "2s"),
		RedisReadTimeout:   dur("REDIS_READ_TIMEOUT", "1s"),
		RedisWriteTimeout:  dur("REDIS_WRITE_TIMEOUT", "1s"),
		ResyncInterval:     dur("RESYNC_INTERVAL", "10s"),
		ResponseCache:      get("RESPONSE_CACHE", "auto"),
		ResponseCacheBytes: num("RESPONSE_CACHE_BYTES", "33554432"),
		ResponseCacheTTL:   dur("RESPONSE_CACHE_TTL", "30s"),
		LogFormat:          get("LOG_FORMAT", "json"),
	}
	rate := func(name, def, burstName, burstDef string) ratelimit.Rate {
		r, err := ratelimit.ParseRate(get(name, def), int(num(burstName, burstDef)))
		if err != nil {
			errs = append(errs, name+": "+err.Error())
		}
		return r
	}
	c.RateMutations = rate("RATE_LIMIT_MUTATIONS", "30/s", "RATE_LIMIT_MUTATIONS_BURST", "60")
	c.RateConnections = rate("RATE_LIMIT_CONNECTIONS", "1/s", "RATE_LIMIT_CONNECTIONS_BURST", "20")
	c.RateAuth = rate("RATE_LIMIT_AUTH", "20/m", "RATE_LIMIT_AUTH_BURST", "20")
	switch v := get("TRUST_FORWARDED_FOR", "false"); v {
	case "true", "false":
		c.TrustForwarded = v == "true"
	default:
		errs = append(errs, "TRUST_FORWARDED_FOR: want true or false")
	}
	for _, o := range strings.Split(get("ALLOWED_ORIGINS", ""), ",") {
		o = strings.TrimSuffix(strings.TrimSpace(o), "/")
		if o == "" {
			continue
		}
		host := o
		if _, h, ok := strings.Cut(o, "://"); ok {
			host = h
		}
		if _, err := path.Match(o, ""); err != nil || host == "" || strings.Contains(host, "/") {
			errs = append(errs, fmt.Sprintf("ALLOWED_ORIGINS: %q: want an origin such as https://app.example.com, a host pattern such as *.example.com, or *", o))
		} else {
			c.AllowedOrigins = append(c.AllowedOrigins, o)
		}
	}
	switch v := get("WS_POLL", "true"); v {
	case "true", "false":
		c.WSPoll = v == "true"
	default:
		errs = append(errs, "WS_POLL: want true or false")
	}
	switch c.ResponseCache {
	case "auto", "on", "off":
	default:
		errs = append(errs, "RESPONSE_CACHE: want auto, on or off")
	}
	switch v := get("INTROSPECTION", "true"); v {
	case "true", "false":
		c.Introspection = v == "true"
	default:
		errs = append(errs, "INTROSPECTION: want true or false")
	}
	if err := c.LogLevel.UnmarshalText([]byte(get("LOG_LEVEL", "info"))); err != nil {
		errs = append(errs, "LOG_LEVEL: want debug, info, warn or error")
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, "LOG_FORMAT: want json or text")
	}
	if s := get("JWT_SECRET", ""); s != "" {
		if len(s) < 32 {
			errs = append(errs, "JWT_SECRET: must be at least 32 bytes")
		}
		c.JWTSecret, c.JWTSecretSet = []byte(s), true
	} else {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("random JWT secret: %w", err)
		}
		c.JWTSecret = []byte(hex.EncodeToString(b))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("configuration: %s", strings.Join(errs, "; "))
	}
	return c, nil
}

// FromEnv reads the process environment.
func FromEnv() (*Config, error) { return Load(os.LookupEnv) }
