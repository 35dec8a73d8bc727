// Command parley is a real-time messaging backend: a GraphQL API for
// conversations and messages with subscriptions over WebSocket and SSE.
//
//	go run .            serve (SQLite under ./data by default)
//	go run . migrate    bring the database schema up to date and exit
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/parley-chat/parley/internal/app"
	"github.com/parley-chat/parley/internal/config"
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
	default:
		return fmt.Errorf("unknown command %q (want serve or migrate)", cmd)
	}
}

func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	base := "http://" + displayAddr(ln.Addr())
	log.Info("serving",
		"graphql", base+"/graphql", "graphiql", base+"/", "subscriptions", "ws"+base[4:]+"/graphql",
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
