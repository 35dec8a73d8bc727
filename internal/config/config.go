// Package config reads the server's configuration from environment
// variables, with defaults that are safe for a single local replica.
package config

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config is everything the server reads from its environment.
type Config struct {
	Addr          string
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

	TypingTTL       time.Duration
	WSInitTimeout   time.Duration
	WSPingInterval  time.Duration
	ShutdownTimeout time.Duration

	DBMaxOpenConns int
	LogLevel       slog.Level
	LogFormat      string
}

// Var documents one environment variable; the README's table is made from
// the same list.
type Var struct{ Name, Default, Meaning string }

// Vars lists every variable the server reads.
var Vars = []Var{
	{"ADDR", ":8080", "listen address"},
	{"DATABASE_URL", "./data/parley.db (SQLite)", "a SQLite file path (or `sqlite://path`), or `postgres://…` for PostgreSQL"},
	{"REDIS_URL", "empty: in-process pub/sub", "`redis://…` bridges replicas through Redis"},
	{"JWT_SECRET", "random per process, with a warning", "shared HS256 signing secret (at least 32 bytes); every replica needs the same"},
	{"ATTACHMENT_DIR", "./data/attachments", "where uploads are kept"},
	{"TOKEN_TTL", "24h", "how long a token from register/login stays valid"},
	{"MAX_MESSAGE_CHARS", "4000", "longest message body, in characters after trimming"},
	{"MAX_PAGE_SIZE", "100", "largest first/last of a page"},
	{"MAX_UPLOAD_BYTES", "10485760", "largest attachment"},
	{"MAX_REQUEST_BYTES", "1048576", "largest JSON request body"},
	{"MAX_COMPLEXITY", "10000", "largest query complexity: each field costs 1, paginated fields multiply their selection by the page size"},
	{"MAX_DEPTH", "12", "deepest field nesting of an operation (introspection exempt)"},
	{"TYPING_TTL", "6s", "a typing state ends by itself when not refreshed for this long"},
	{"WS_INIT_TIMEOUT", "10s", "time a WebSocket client has to send connection_init"},
	{"WS_PING_INTERVAL", "25s", "keep-alive interval on WebSockets (ping / ka)"},
	{"SHUTDOWN_TIMEOUT", "15s", "how long SIGTERM waits for in-flight requests"},
	{"DB_MAX_OPEN_CONNS", "16", "database connection pool size"},
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
	num := func(name, def string) int64 {
		n, err := strconv.ParseInt(get(name, def), 10, 64)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Sprintf("%s: want a positive whole number such as %s", name, def))
		}
		return n
	}
	c := &Config{
		Addr:            get("ADDR", ":8080"),
		DatabaseURL:     get("DATABASE_URL", "./data/parley.db"),
		RedisURL:        get("REDIS_URL", ""),
		AttachmentDir:   get("ATTACHMENT_DIR", "./data/attachments"),
		TokenTTL:        dur("TOKEN_TTL", "24h"),
		MaxBodyChars:    int(num("MAX_MESSAGE_CHARS", "4000")),
		MaxPageSize:     int(num("MAX_PAGE_SIZE", "100")),
		MaxUploadBytes:  num("MAX_UPLOAD_BYTES", "10485760"),
		MaxRequestBytes: num("MAX_REQUEST_BYTES", "1048576"),
		MaxComplexity:   int(num("MAX_COMPLEXITY", "10000")),
		MaxDepth:        int(num("MAX_DEPTH", "12")),
		TypingTTL:       dur("TYPING_TTL", "6s"),
		WSInitTimeout:   dur("WS_INIT_TIMEOUT", "10s"),
		WSPingInterval:  dur("WS_PING_INTERVAL", "25s"),
		ShutdownTimeout: dur("SHUTDOWN_TIMEOUT", "15s"),
		DBMaxOpenConns:  int(num("DB_MAX_OPEN_CONNS", "16")),
		LogFormat:       get("LOG_FORMAT", "json"),
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
