// Package app wires the service together from a Config: database, broker,
// hub, service, GraphQL handler and HTTP server. The server command and the
// end-to-end tests build the same App.
package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/graph"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/database"
	"github.com/parley-chat/parley/internal/events"
	"github.com/parley-chat/parley/internal/events/redisbroker"
	"github.com/parley-chat/parley/internal/httpapi"
	"github.com/parley-chat/parley/internal/loader"
	"github.com/parley-chat/parley/internal/metrics"
	"github.com/parley-chat/parley/internal/ratelimit"
	"github.com/parley-chat/parley/internal/viewcache"
)

// App is one running replica.
type App struct {
	Config  *config.Config
	DB      *database.DB
	Chat    *chat.Service
	Hub     *events.Hub
	Handler http.Handler
	// Hijacked counts the open graphql-transport-ws connections, which
	// Serve waits for on shutdown.
	Hijacked *httpapi.Hijacked

	log      *slog.Logger
	draining atomic.Bool
	cancel   context.CancelFunc
	hubDone  <-chan struct{}
	closers  []func() error
}

// NewLogger returns the structured logger the configuration asks for.
func NewLogger(w io.Writer, cfg *config.Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func newRedis(cfg *config.Config) (*redis.Client, error) {
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	opt.PoolSize = cfg.RedisPoolSize
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = cfg.RedisDialTimeout, cfg.RedisReadTimeout, cfg.RedisWriteTimeout
	return redis.NewClient(opt), nil
}

// Option changes how New wires the App.
type Option func(*options)

type options struct {
	broker events.Broker
}

// WithBroker replaces the in-process broker (tests use it to lose events on
// purpose; the Redis broker plugs in here).
func WithBroker(b events.Broker) Option { return func(o *options) { o.broker = b } }

// New opens the database, migrates it and starts the hub.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...Option) (*App, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	log = httpapi.ContextLogger(log) // request_id (and trace_id) on request-scoped lines
	if !cfg.JWTSecretSet {
		log.Warn("JWT_SECRET is not set: using a random secret; tokens die with this process and other replicas cannot verify them")
	}
	db, err := database.Open(ctx, cfg.DatabaseURL, database.Options{
		MaxOpenConns: cfg.DBMaxOpenConns, MaxIdleConns: cfg.DBMaxIdleConns,
		ConnMaxLifetime: cfg.DBConnMaxLifetime, ConnMaxIdleTime: cfg.DBConnMaxIdleTime,
	})
	if err != nil {
		return nil, err
	}
	if _, err := db.ApplyMigrations(ctx, log); err != nil {
		_ = db.Close()
		return nil, err
	}
	a := &App{Config: cfg, DB: db, log: log, Hijacked: &httpapi.Hijacked{}}
	files, err := chat.NewFileStore(cfg.AttachmentDir)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	loaders := loader.NewFactory(db.Client, db.Dialect)
	newScope := func() any { return graph.NewEventScope(loaders.NewShared()) }
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	db.Statements.Time(m.SQL)
	checks := []httpapi.Check{{Name: "database", Fn: db.Ping}}
	var (
		hub     *events.Hub
		broker  events.Broker       = events.NewMemoryBroker()
		limiter httpapi.RateLimiter = ratelimit.NewMemory()
		apq     httpapi.APQCache    // nil: persisted queries stay in process
	)
	if cfg.RedisURL != "" {
		rdb, err := newRedis(cfg)
		if err != nil {
			_ = db.Close()
			return nil, err
		}
		a.closers = append(a.closers, rdb.Close)
		rb := redisbroker.New(redisbroker.Config{
			Client: rdb, Prefix: cfg.RedisPrefix, Logger: log,
			// Events published by other replicas while this one was
			// disconnected are recovered from the database.
			OnConnect: func() { hub.RequestResync() },
		})
		broker, limiter = rb, ratelimit.NewRedis(rdb, cfg.RedisPrefix)
		apq = httpapi.NewRedisAPQCache(rdb, cfg.RedisPrefix, cfg.APQTTL, log)
		checks = append(checks, httpapi.Check{Name: "redis", Fn: rb.Check})
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "parley_redis_reconnects_total", Help: "Times the Redis subscription was re-established.",
			}, func() float64 { return float64(rb.Stats().Reconnects) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "parley_redis_publish_errors_total", Help: "Events Redis refused to publish.",
			}, func() float64 { return float64(rb.Stats().PublishErrors) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "parley_redis_publish_skipped_total", Help: "Events not sent to Redis while it was down (other replicas resync from the database).",
			}, func() float64 { return float64(rb.Stats().PublishSkipped) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "parley_redis_connected", Help: "1 while the Redis subscription is up.",
			}, func() float64 {
				if rb.Connected() {
					return 1
				}
				return 0
			}),
		)
	}
	if o.broker != nil {
		broker = o.broker
	}
	limits := chat.DefaultLimits()
	limits.MaxBodyChars, limits.MaxPageSize, limits.MaxUploadBytes = cfg.MaxBodyChars, cfg.MaxPageSize, cfg.MaxUploadBytes
	limits.TypingTTL = cfg.TypingTTL
	if limits.DefaultPageSize > limits.MaxPageSize {
		limits.DefaultPageSize = limits.MaxPageSize
	}
	tokens := auth.NewTokens(cfg.JWTSecret, cfg.TokenTTL)

	var svc *chat.Service
	var views *viewcache.Cache
	var changes chat.ChangeListener
	// Only where every write goes through this process: another replica's
	// changes reach it through Redis, which loses them while it reconnects.
	if cfg.ResponseCache == "on" || cfg.ResponseCache == "auto" && db.Dialect == "sqlite3" && cfg.RedisURL == "" && o.broker == nil {
		views = viewcache.New(viewcache.Config{
			MaxBytes: int(cfg.ResponseCacheBytes), TTL: cfg.ResponseCacheTTL,
			Memberships: func(ctx context.Context, viewer string) ([]string, error) { return svc.MemberOf(ctx, viewer) },
		})
		changes = views
		m.WatchResponseCache(views)
		log.Info("response cache on", "setting", cfg.ResponseCache, "max_bytes", cfg.ResponseCacheBytes, "ttl", cfg.ResponseCacheTTL.String())
	} else if cfg.ResponseCache == "auto" {
		log.Info("response cache off: other processes may write to this database (RESPONSE_CACHE=on turns it on for a single replica)")
	}
	svc = chat.New(chat.Config{
		DB: db.Client, Writer: db.Writer, Dialect: db.Dialect, Broker: m.Broker(broker), Tokens: tokens, Files: files,
		Limits: limits, Logger: log, NewScope: newScope, Changes: changes,
	})
	hub = events.NewHub(events.HubConfig{
		Members: svc.ParticipantIDs, LastSeqs: svc.LastSeqs, ResyncInterval: cfg.ResyncInterval,
		NewScope: newScope, Logger: log,
	})
	svc.AttachHub(hub)
	a.Chat, a.Hub = svc, hub
	m.WatchHub(hub)

	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "parley_sql_statements_total",
		Help: "SQL statements sent to the database, as its server logs them (queries, execs, BEGIN, COMMIT, ROLLBACK).",
	}, func() float64 { return float64(db.Statements.Load()) }))
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "parley_hub_dropped_events_total",
			Help: "Events the hub discarded because its inbound queue was full (recovered from the database).",
		}, func() float64 { return float64(hub.Dropped()) }))

	gql := httpapi.NewGraphQL(svc, loaders, log, httpapi.GraphQLOptions{
		MaxUploadBytes: cfg.MaxUploadBytes, MaxComplexity: cfg.MaxComplexity, MaxDepth: cfg.MaxDepth,
		DefaultPage:   limits.DefaultPageSize,
		WSInitTimeout: cfg.WSInitTimeout, WSPingInterval: cfg.WSPingInterval, Hijacked: a.Hijacked,
		WSGoroutinePerConn: !cfg.WSPoll,
		WSWriteTimeout:     cfg.WSWriteTimeout, WSMaxConnsPerUser: cfg.WSMaxConnsPerUser, AllowedOrigins: cfg.AllowedOrigins,
		MaxAliases: cfg.MaxAliases, MaxFields: cfg.MaxFields, MaxTokens: cfg.MaxTokens, DisableIntrospection: !cfg.Introspection, APQCache: apq,
		Limits: httpapi.RateLimits{
			Limiter: limiter, Mutations: cfg.RateMutations, Connections: cfg.RateConnections, Auth: cfg.RateAuth, Logger: log, Metrics: m,
		},
		Metrics: m, ResponseCache: views,
	})
	a.Handler = httpapi.New(httpapi.Config{
		GraphQL: gql, Chat: svc, Tokens: tokens, Registry: reg, Logger: log,
		MaxRequestBytes: cfg.MaxRequestBytes, Draining: &a.draining, TrustForwarded: cfg.TrustForwarded,
		Checks: checks, AllowedOrigins: cfg.AllowedOrigins, HideSchema: !cfg.Introspection,
	})

	hubCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done, err := hub.Start(hubCtx, broker)
	if err != nil {
		cancel()
		_ = db.Close()
		return nil, fmt.Errorf("start hub: %w", err)
	}
	a.cancel, a.hubDone = cancel, done
	return a, nil
}

// Serve serves HTTP on ln until ctx ends, then shuts down: /readyz fails
// first, in-flight requests get up to ShutdownTimeout, and WebSocket and SSE
// streams are closed.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	streams, closeStreams := context.WithCancelCause(context.Background())
	defer closeStreams(httpapi.ErrShuttingDown)
	srv := &http.Server{
		Handler:           a.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return httpapi.StreamsContext(streams) },
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	a.log.Info("shutting down", "delay", a.Config.ShutdownDelay.String(), "timeout", a.Config.ShutdownTimeout.String())
	// /readyz fails first, while everything else still serves, so load
	// balancers stop sending new clients before the listener closes.
	a.draining.Store(true)
	if d := a.Config.ShutdownDelay; d > 0 {
		select {
		case err := <-errc:
			return err
		case <-time.After(d):
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.Config.ShutdownTimeout)
	defer cancel()
	// Long-lived streams never finish by themselves: end them so that
	// Shutdown only waits for ordinary requests.
	closeStreams(httpapi.ErrShuttingDown)
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	// WebSockets were told 1012; give their close handshakes the rest of
	// the timeout, so the frame is not cut off by the process exiting.
	if err := a.Hijacked.Wait(shutdownCtx); err != nil {
		a.log.Warn("shutdown: WebSockets still open", "open", a.Hijacked.Open())
	}
	return http.ErrServerClosed
}

// Close stops the hub and closes the database.
func (a *App) Close() {
	if a.cancel != nil {
		a.cancel()
		<-a.hubDone
	}
	for _, c := range a.closers {
		_ = c()
	}
	_ = a.DB.Close()
}
