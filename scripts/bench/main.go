// Command bench is the measurement side of scripts/bench.sh, the one
// benchmark command: everything runs on the Firestore emulator
// the script starts, against Plaid stand-ins on loopback. Each subcommand
// is one measurement in its own process (peak RSS is then the
// measurement's alone) and prints one JSON line per result; `bench report`
// turns the lines of a run into the final table.
//
//	bench machine                        the machine's description (cores, CPU, date, load)
//	bench seed -n N                      seeds the benchmark dataset (internal/sample.BenchTokens)
//	bench cleanup -mode M -n N           one cleanup of the seeded dataset; M is
//	                                     cleanup (the service's), floor (the plain concurrent
//	                                     floor of floor.go) or sequential (the old algorithm)
//	bench pacing -rpm 600 -for 70s       a cleanup's achieved /item/get rate under PLAID_ITEM_GET_RPM
//	bench quota -limit 600 -procs 3      one Plaid per-client limit, several processes calling it
//	bench buildpack -out BIN             the functions built as Google's Go buildpack builds them
//	bench coldstart -starts 3 -bin BIN   process start to first answer, per deployed target
//	bench deployed -functions BIN        an endpoint as deployed (-endpoint revoke: RevokeItem, exchange:
//	                                     ExchangePublicToken; TokenAnalytics beside it, a process each)
//	                                     against its floor (floor-serve), under scripts/loadtest
//	bench load -users 400 -admins 50     scripts/serve under scripts/loadtest, then a check in Firestore
//	bench report FILE                    the final table of a run's results
//
// It is a Go module of its own (go.mod here, the root module replaced by
// this checkout), so that what only the measurements need stays out of the
// functions' go.mod; it may still import the root module's internal/
// packages (its import path lies below the root's). Build it from here:
// `go build .` (scripts/bench.sh does); `go vet ./...` at the root does not
// see it, scripts/test.sh vets it on its own.
//
// The environment is the service's own (DESIGN §8): GOOGLE_CLOUD_PROJECT,
// FIRESTORE_EMULATOR_HOST, TOKEN_ENCRYPTION_KEY, PLAID_* (scripts/bench.sh
// sets them). BENCH_EMULATOR_PGID, when set, is the emulator's process
// group, whose CPU time each cleanup reports.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// commands are the subcommands, each reading its own flags from args.
var commands = map[string]func(ctx context.Context, args []string) error{
	"machine":      machineCmd,
	"seed":         seedCmd,
	"cleanup":      cleanupCmd,
	"paging":       pagingCmd,
	"pacing":       pacingCmd,
	"quota":        quotaCmd,
	"quota-caller": quotaCallerCmd,
	"coldstart":    coldStartCmd,
	"buildpack":    buildpackCmd,
	"deployed":     deployedCmd,
	"floor-serve":  floorServeCmd,
	"load":         loadCmd,
	"report":       reportCmd,
}

func main() {
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		fmt.Fprintln(os.Stderr, "usage: bench machine|seed|cleanup|paging|pacing|quota|buildpack|coldstart|deployed|load|report [flags] (see the package doc)")
		os.Exit(2)
	}
	// The service logs every token it touches; a benchmark keeps quiet.
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := commands[os.Args[1]](ctx, os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// Result is one line of a run's results file. Section says which part of
// the report it belongs to; the other fields are the section's own.
type Result map[string]any

// emit prints r as one JSON line on stdout (scripts/bench.sh collects them).
func emit(r Result) error {
	return json.NewEncoder(os.Stdout).Encode(r)
}

// progressf tells the person watching what is happening (stderr).
func progressf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "    "+format+"\n", args...)
}
