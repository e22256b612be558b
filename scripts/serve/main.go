// Command serve runs every function on one local port: the HTTP functions
// at their API paths and the CloudEvent functions at /events/<Target>. It
// serves the same handlers that are deployed, built from the same
// environment variables (DESIGN §8). A checkpointed cleanup run continues
// by posting to its own /events/DailyCleanup, and an analytics repair
// request to its own /events/WeeklyAnalytics. It keeps the analytics
// counters as TokenStats does (stats.go): from a listener on plaid_tokens,
// or, with -token-stats=trigger, from the Firestore emulator's trigger
// deliveries at /functions/projects/{project}/triggers/{trigger}.
//
//	PORT=8080 go run ./scripts/serve [-token-stats listener|trigger|off]
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
	"strings"
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
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	mode := fs.String("token-stats", statsListener,
		"where the analytics counters' changes come from: listener (a snapshot listener on plaid_tokens), "+
			"trigger (the Firestore emulator's trigger deliveries; for large collections) or off")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	statsMode, err := parseStatsMode(*mode)
	if err != nil {
		return err
	}
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
	// Continuations and repair requests come back to this server, as
	// Pub/Sub would deliver them to the deployed functions.
	server, err := functions.NewFromConfig(ctx, cfg, functions.Delivery{
		Continuer: &functions.HTTPContinuer{URL: "http://" + addr + "/events/DailyCleanup", Logger: logger},
		Repairs:   &functions.HTTPRepairRequester{URL: "http://" + addr + "/events/WeeklyAnalytics", Logger: logger},
	})
	if err != nil {
		return err
	}
	feeder := newStatsFeeder(server, logger)
	stopFeeder := feeder.start(ctx)
	defer stopFeeder()
	triggers := server.EmulatorTriggerHandler(func(ctx context.Context, c lifecycle.TokenChange) error {
		if statsMode != statsTrigger {
			return lifecycle.Errorf(lifecycle.CodeConflict,
				"serve counts token changes from its %s (-token-stats=%s); start it with -token-stats=trigger to take the emulator's deliveries", statsMode, statsMode)
		}
		return feeder.add(ctx, c)
	})
	routes := server.Routes()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, functions.PathEmulatorTriggers) {
			triggers.ServeHTTP(w, r)
			return
		}
		routes.ServeHTTP(w, r)
	})
	switch statsMode {
	case statsListener:
		client, err := lifecycle.NewFirestoreClient(ctx, cfg)
		if err != nil {
			return err
		}
		defer client.Close()
		go listen(ctx, client, server, feeder, logger)
	case statsTrigger:
		go repairUntilDone(ctx, server, logger, time.Time{})
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	events := "loopback callers only (SERVE_REMOTE_EVENTS=true opens them)"
	if cfg.ServeRemoteEvents {
		events = "any caller (SERVE_REMOTE_EVENTS=true)"
	}
	logger.Info("serving all functions", slog.String("addr", "http://"+ln.Addr().String()),
		slog.String("events", "/events/* take scheduled runs from "+events), slog.String("token_stats", statsMode))
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
