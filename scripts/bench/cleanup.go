package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// cleanupCmd runs one cleanup of the seeded dataset and prints its figures:
// wall time, peak RSS, CPU of this process, of the emulator and of the
// Plaid stand-in, time per kind of call (stages), and the rate over each
// tenth of the tokens.
//
// Modes: cleanup is the service's (svc.Cleanup: lease, run record,
// preconditions, re-read, audit), floor the plain concurrent floor
// (floor.go), sequential the old algorithm: the same rules one document and
// one call at a time (page size 1, one worker, one write per call).
func cleanupCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cleanup", flag.ExitOnError)
	mode := fs.String("mode", "cleanup", "cleanup, floor or sequential")
	n := fs.Int("n", 10000, "tokens in the seeded dataset (checked against the run's total)")
	pageSize := fs.Int("page-size", 0, "documents per page (0: the service's default)")
	workers := fs.Int("workers", 0, "tokens in flight (0: the service's default)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run here")
	label := fs.String("label", "", "a label for the result line (default: the mode)")
	budget := fs.Duration("budget", 0, "stop the run after this long (it checkpoints); the figures are then its rate over what it checked")
	fs.Parse(args)

	prod, err := openProduction(ctx, lifecycle.Needs{Store: true, Vault: true, Plaid: true})
	if err != nil {
		return err
	}
	defer prod.Close()
	st := newStages()
	prod.deps.Tokens = timedTokens{prod.deps.Tokens, st}
	prod.deps.Runs = timedRuns{prod.deps.Runs, st}
	prod.deps.Plaid = timedPlaid{prod.deps.Plaid, st}
	prod.cfg.CleanupPageSize = cmp.Or(*pageSize, prod.cfg.CleanupPageSize, lifecycle.DefaultCleanupPageSize)
	prod.cfg.CleanupConcurrency = cmp.Or(*workers, prod.cfg.CleanupConcurrency, lifecycle.DefaultCleanupWorkers)
	if *mode == "sequential" {
		prod.cfg.CleanupPageSize, prod.cfg.CleanupConcurrency = 1, 1
		prod.deps.Tokens = unbatched{prod.deps.Tokens}
	}
	svc, err := prod.service()
	if err != nil {
		return err
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	const days = 90
	tl := &timeline{start: time.Now()}
	cpu := startCPUMeter()
	var stats lifecycle.Statistics
	partial := false
	switch *mode {
	case "cleanup", "sequential":
		res, err := svc.Cleanup(ctx, lifecycle.CleanupRequest{DaysThreshold: days, Trigger: "benchmark", Actor: "bench",
			Budget: *budget, Progress: func(s lifecycle.Statistics) { tl.mark(s.TotalChecked) }})
		if err != nil {
			return err
		}
		stats, partial = res.Statistics, !res.Done
	case "floor":
		stats, err = floorRun(ctx, prod, days*24*time.Hour, tl, st)
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown mode %q", *mode)
	}
	elapsed := time.Since(tl.start)
	selfS, emuS, fakeS := cpu.stop()
	if (stats.TotalChecked != *n && !partial) || stats.Errors != 0 {
		return fmt.Errorf("%s over %d tokens: checked %d with %d errors; the dataset was not what was seeded, or the run failed",
			*mode, *n, stats.TotalChecked, stats.Errors)
	}
	return emit(Result{
		"section": "cleanup", "mode": *mode, "label": cmp.Or(*label, *mode), "n": *n,
		"checked": stats.TotalChecked, "partial": partial, "seconds": elapsed.Seconds(), "peak_rss_kib": peakRSSKiB(),
		"cpu_s": selfS, "emulator_cpu_s": emuS, "plaid_cpu_s": fakeS,
		"statistics": stats, "stages": st.snapshot(), "rate_by_tenth": tl.tenths(*n),
	})
}

// unbatched sends one write per call, as the old algorithm wrote: each
// delete with its audit entry in a commit of its own, each patch alone.
type unbatched struct{ lifecycle.TokenStore }

func (u unbatched) Apply(ctx context.Context, writes []lifecycle.Write) []error {
	errs := make([]error, len(writes))
	for i, w := range writes {
		errs[i] = u.TokenStore.Apply(ctx, []lifecycle.Write{w})[0]
	}
	return errs
}
