// Command parley is a real-time messaging backend: a GraphQL API for
// conversations and messages with subscriptions over WebSocket and SSE.
//
//	go run .            serve (SQLite under ./data by default)
//	go run . migrate    bring the database schema up to date and exit
//	go run . seed       fill an empty database with realistic data (see -h)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/parley-chat/parley/internal/app"
	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/database"
	"github.com/parley-chat/parley/internal/seed"
	"github.com/parley-chat/parley/internal/tracing"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "parley:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	cfg, err := config.FromEnv()
	if err != nil {
		return err
	}
	log := app.NewLogger(os.Stderr, cfg)
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "serve":
		return serve(ctx, cfg, log)
	case "migrate":
		a, err := app.New(ctx, cfg, log)
		if err != nil {
			return err
		}
		a.Close()
		return nil
	case "seed":
		return runSeed(ctx, cfg, log, args[1:])
	default:
		return fmt.Errorf("unknown command %q (want serve, migrate or seed)", cmd)
	}
}

func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	stopTracing, err := tracing.Setup(ctx) // OTEL_* variables; off without them
	if err != nil {
		return err
	}
	defer func() {
		flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stopTracing(flushCtx); err != nil {
			log.Warn("flush traces", "err", err)
		}
	}()
	if tracing.Enabled() {
		log.Info("tracing: exporting spans over OTLP/HTTP")
	}
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if cfg.DebugAddr != "" {
		dln, err := net.Listen("tcp", cfg.DebugAddr)
		if err != nil {
			return fmt.Errorf("listen (DEBUG_ADDR): %w", err)
		}
		go func() {
			if err := a.ServeDebug(ctx, dln); err != nil {
				log.Error("debug listener", "err", err)
			}
		}()
	}
	base := "http://" + displayAddr(ln.Addr())
	log.Info("serving",
		"graphql", base+"/graphql", "graphiql", base+"/", "subscriptions", "ws"+base[4:]+"/graphql",
		"app", base+"/app/", "schema", base+"/graphql/schema.graphql",
		"healthz", base+"/healthz", "readyz", base+"/readyz", "metrics", base+"/metrics")
	err = a.Serve(ctx, ln)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	log.Info("stopped")
	return err
}

func displayAddr(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || tcp.IP.IsUnspecified() {
		if ok {
			return fmt.Sprintf("localhost:%d", tcp.Port)
		}
	}
	return addr.String()
}

func runSeed(ctx context.Context, cfg *config.Config, log *slog.Logger, args []string) error {
	o := seed.Defaults()
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	fs.IntVar(&o.Users, "users", o.Users, "users to create (user1…userN)")
	fs.IntVar(&o.Conversations, "conversations", o.Conversations, "conversations to create")
	fs.IntVar(&o.Messages, "messages", o.Messages, "messages to create")
	fs.Float64Var(&o.GroupShare, "groups", o.GroupShare, "share of GROUP conversations")
	fs.StringVar(&o.Password, "password", o.Password, "every user's password")
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "random seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	db, err := database.Open(ctx, cfg.DatabaseURL, database.Options{MaxOpenConns: cfg.DBMaxOpenConns})
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ApplyMigrations(ctx, log); err != nil {
		return err
	}
	o.Logger = log
	res, err := seed.Run(ctx, db, o)
	if err != nil {
		return err
	}
	log.Info("seeded", "users", res.Users, "conversations", res.Conversations, "participants", res.Participants,
		"messages", res.Messages, "attachments", res.Attachments, "took", res.Took.Round(time.Millisecond).String(),
		"messages_per_second", int(float64(res.Messages)/res.Took.Seconds()))
	return nil
}
