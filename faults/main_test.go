// Package faults is the fault-injection suite: it drives the
// built binaries, scripts/manage-tokens and scripts/serve, as processes
// configured by environment variables, against the real Firestore emulator
// and a fake Plaid run by the test process, while Plaid fails at random,
// the emulator goes away, events are redelivered, runs collide, another
// writer changes the tokens and processes are killed. After each scenario
// it checks the invariants of DESIGN §7 and §12 against Firestore and the
// fake Plaid (invariants_test.go), and the suite prints one summary line.
//
// The package holds only tests; `go test ./faults` builds the binaries
// once per test binary (with -race when the suite runs with -race).
package faults

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
)

// binaries are the built programs the scenarios run.
var binaries struct {
	dir   string
	done  chan struct{} // closed when the build ended
	err   error
	serve string // scripts/serve
	cli   string // scripts/manage-tokens
}

func TestMain(m *testing.M) {
	// The in-process service (take-over fallback) logs through slog's
	// default; the binaries' logs are kept per process and shown on failure.
	if os.Getenv("LOG_TESTS") == "" {
		slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	// The scenarios spend their time waiting on processes, Plaid timeouts,
	// an emulator's start and leases lapsing, not on this process's CPU:
	// run them all at once unless -parallel says otherwise (its default,
	// GOMAXPROCS, is 2 on CI's machine and would run them in three rounds).
	flag.Parse()
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", "6")
	}
	dir, err := os.MkdirTemp("", "faults-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
	binaries.dir, binaries.done = dir, make(chan struct{})
	// Build while the emulator starts: both take seconds.
	go func() {
		defer close(binaries.done)
		binaries.serve, binaries.cli, binaries.err = build(dir)
	}()

	code := emulator.Main(m)

	<-binaries.done
	os.RemoveAll(dir)
	fmt.Println(summary.line())
	os.Exit(code)
}

// build compiles scripts/serve and scripts/manage-tokens into dir, with the
// race detector when this test binary has it: the binaries are where the
// service's concurrency runs.
func build(dir string) (serve, cli string, err error) {
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if raceEnabled {
		args = append(args, "-race")
	}
	const module = "github.com/finwell/plaid-token-lifecycle"
	args = append(args, module+"/scripts/serve", module+"/scripts/manage-tokens")
	cmd := exec.CommandContext(context.Background(), "go", args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go %v: %v\n%s", args, err, out)
	}
	return filepath.Join(dir, "serve"), filepath.Join(dir, "manage-tokens"), nil
}

// builtBinaries waits for the build and fails the test if it failed.
func builtBinaries(t *testing.T) (serve, cli string) {
	t.Helper()
	<-binaries.done
	if binaries.err != nil {
		t.Fatalf("building the binaries: %v", binaries.err)
	}
	return binaries.serve, binaries.cli
}

// summary is what the suite did, across scenarios, for its one line.
var summary suiteSummary

type suiteSummary struct {
	scenarios     atomic.Int64
	plaidFaults   atomic.Int64 // injected by the fake Plaid at random
	infraFaults   atomic.Int64 // kills, outages, redeliveries, collisions, foreign writes
	tokensChecked atomic.Int64 // total_checked over every run record
	invariants    atomic.Int64 // checked
	held          atomic.Int64 // checked and held
}

// line is the suite's summary line, printed once by TestMain.
func (s *suiteSummary) line() string {
	return fmt.Sprintf("fault-injection: %d scenarios, %d faults injected, %d tokens checked, %d/%d invariants held",
		s.scenarios.Load(), s.plaidFaults.Load()+s.infraFaults.Load(), s.tokensChecked.Load(),
		s.held.Load(), s.invariants.Load())
}
