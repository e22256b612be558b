// Command serve runs every function on one local port: the HTTP functions
// at their API paths and the CloudEvent functions at /events/<Target>. It
// serves the same handlers that are deployed, built from the same
// environment variables (DESIGN §8). A checkpointed cleanup run continues
// by posting to its own /events/DailyCleanup.
//
//	PORT=8080 go run ./scripts/serve
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
	"time"

	"github.com/finwell/plaid-token-lifecycle/functions"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := lifecycle.LoadConfig(lifecycle.NeedsAll)
	if err != nil {
		return err
	}
	logger := lifecycle.NewJSONLogger(os.Stdout, cfg.LogLevel)
	slog.SetDefault(logger) // every line JSON, libraries' included
	// HOST defaults to 127.0.0.1: local development never listens on every
	// interface unless told to.
	addr := net.JoinHostPort(cfg.Host, cfg.Port)
	continuer := &functions.HTTPContinuer{URL: "http://" + addr + "/events/DailyCleanup", Logger: logger}

	server, err := functions.NewFromConfig(ctx, cfg, continuer)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           server.Routes(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	events := "loopback callers only (SERVE_REMOTE_EVENTS=true opens them)"
	if cfg.ServeRemoteEvents {
		events = "any caller (SERVE_REMOTE_EVENTS=true)"
	}
	logger.Info("serving all functions", slog.String("addr", "http://"+ln.Addr().String()),
		slog.String("events", "/events/* take scheduled runs from "+events))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
