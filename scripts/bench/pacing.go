package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"time"

	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// pacingCmd runs a cleanup under PLAID_ITEM_GET_RPM=rpm for a while and
// counts its /item/get calls where Plaid would: at the Plaid stand-in
// (here, in this process). The service is the production one
// (NewFirestoreDeps: the SharedPacer over Firestore), on a dataset large
// enough that the cleanup never runs out of tokens to validate.
func pacingCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("pacing", flag.ExitOnError)
	rpm := fs.Int("rpm", 600, "PLAID_ITEM_GET_RPM")
	dur := fs.Duration("for", 70*time.Second, "how long to let the cleanup run")
	latency := fs.Duration("latency", 20*time.Millisecond, "the Plaid stand-in's latency")
	fs.Parse(args)
	// 3 in 4 tokens of the dataset are validated; leave a margin.
	n := int(float64(*rpm)*dur.Minutes()/0.75*1.5) + 100

	cfg, err := lifecycle.LoadConfig(lifecycle.Needs{Store: true, Vault: true, Plaid: true})
	if err != nil {
		return err
	}
	fake := plaidfake.NewServer(cfg.PlaidClientID, cfg.PlaidSecret, plaidfake.WithLatency(*latency))
	defer fake.Close()
	tokens := sample.BenchTokens(n, time.Now().UTC())
	sample.Register(fake, tokens)
	cfg.PlaidBaseURL, cfg.ItemGetRPM = fake.URL(), *rpm

	client, err := lifecycle.NewFirestoreClient(ctx, cfg)
	if err != nil {
		return err
	}
	prod, err := newProduction(cfg, client)
	if err != nil {
		return err
	}
	defer prod.Close()
	svc, err := prod.service()
	if err != nil {
		return err
	}
	if err := seedTokens(ctx, client, prod.deps.Cipher, tokens); err != nil {
		return err
	}
	progressf("cleanup of %d tokens under PLAID_ITEM_GET_RPM=%d for %v", n, *rpm, *dur)
	runCtx, cancel := context.WithTimeout(ctx, *dur)
	defer cancel()
	res, err := svc.Cleanup(runCtx, lifecycle.CleanupRequest{DaysThreshold: 90, Trigger: "benchmark", Actor: "bench"})
	if err != nil && runCtx.Err() == nil {
		return err // it should still be running when stopped
	}
	// The tokens in flight when the run was stopped (at most
	// CLEANUP_CONCURRENCY) count as errors: their calls were cancelled,
	// and they are kept for the next run.
	var stats lifecycle.Statistics
	if res != nil {
		stats = res.Statistics
	}

	var gets []time.Time
	for _, c := range fake.Calls() {
		if c.Path == plaidfake.PathItemGet {
			gets = append(gets, c.Time)
		}
	}
	w := windows(gets)
	if w.first == 0 {
		return fmt.Errorf("no /item/get call reached the Plaid stand-in")
	}
	return emit(Result{
		"section": "pacing", "rpm": *rpm, "seconds": dur.Seconds(), "calls": len(gets),
		"first_minute": w.first, "max_60s": w.max, "rate_per_min": w.rate,
		"checked": stats.TotalChecked, "errors": stats.Errors,
		"pass": float64(w.first) >= 0.9*float64(*rpm) && w.max <= *rpm,
	})
}

// windowStats are calls counted over 60-second windows.
type windowStats struct {
	first int     // calls in the 60 s from the first call
	max   int     // the most calls in any 60 s window
	rate  float64 // calls a minute from the first call to the last
}

func windows(times []time.Time) windowStats {
	if len(times) == 0 {
		return windowStats{}
	}
	ts := append([]time.Time(nil), times...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	var w windowStats
	// Any 60 s window holds the most calls when it starts at a call.
	j := 0
	for i := range ts {
		for j < len(ts) && ts[j].Sub(ts[i]) < time.Minute {
			j++
		}
		if i == 0 {
			w.first = j
		}
		w.max = max(w.max, j-i)
	}
	if span := ts[len(ts)-1].Sub(ts[0]); span > 0 {
		w.rate = float64(len(ts)-1) / span.Minutes()
	}
	return w
}
