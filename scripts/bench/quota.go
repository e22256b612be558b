package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// One Plaid quota, many instances. quotaCmd starts a
// Plaid stand-in enforcing ONE per-client limit on /item/get (a sliding
// 60 s window, 429 RATE_LIMIT_EXCEEDED past it) and several processes
// calling it at once as batch work, each configured with
// PLAID_ITEM_GET_RPM equal to the limit, twice at the same time, each time
// with its own stand-in:
//
//   - shared: each process builds the production service
//     (lifecycle.NewFirestoreDeps), whose SharedPacer takes slots of each
//     window's cap in Firestore (the emulator);
//   - local: each process paces itself alone (lifecycle.NewPlaidClient's
//     LocalPacer), the baseline that overshoots.
//
// It prints, per mode, the 429s the stand-in answered and the aggregate
// rate of calls it accepted and received, in 60 s windows.
func quotaCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("quota", flag.ExitOnError)
	limit := fs.Int("limit", 600, "the per-client limit, calls a minute; also each process's PLAID_ITEM_GET_RPM")
	procs := fs.Int("procs", 3, "processes calling Plaid at once")
	dur := fs.Duration("for", 70*time.Second, "how long they call")
	latency := fs.Duration("latency", 20*time.Millisecond, "the Plaid stand-in's latency")
	fs.Parse(args)

	cfg, err := lifecycle.LoadConfig(lifecycle.Needs{Store: true, Plaid: true})
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	const tokens = 2000
	type outcome struct {
		mode    string
		fake    *plaidfake.Server
		callers []Result
		errs    []error
	}
	modes := []string{"shared", "local"}
	outs := make([]*outcome, len(modes))
	var wg sync.WaitGroup
	for i, mode := range modes {
		fake := plaidfake.NewServer(cfg.PlaidClientID, cfg.PlaidSecret, plaidfake.WithLatency(*latency),
			plaidfake.WithClientRateLimit(plaidfake.PathItemGet, *limit))
		defer fake.Close()
		sample.Register(fake, sample.BenchTokens(tokens, time.Now().UTC()))
		o := &outcome{mode: mode, fake: fake, callers: make([]Result, *procs), errs: make([]error, *procs)}
		outs[i] = o
		// Each mode's processes share a project: the SharedPacer's counters.
		project := fmt.Sprintf("%s-quota-%s-%d", cfg.Project, mode, time.Now().UnixNano()%1e6)
		for p := range *procs {
			wg.Go(func() {
				cmd := exec.CommandContext(ctx, self, "quota-caller", "-mode", mode, "-for", dur.String(), "-tokens", fmt.Sprint(tokens))
				cmd.Env = append(os.Environ(), "GOOGLE_CLOUD_PROJECT="+project, "PLAID_BASE_URL="+fake.URL(),
					fmt.Sprintf("PLAID_ITEM_GET_RPM=%d", *limit))
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, os.Stderr
				if err := cmd.Run(); err != nil {
					o.errs[p] = fmt.Errorf("%s caller %d: %w", mode, p, err)
					return
				}
				o.errs[p] = json.Unmarshal(out.Bytes(), &o.callers[p])
			})
		}
	}
	progressf("%d processes per mode calling /item/get for %v against one per-client limit of %d/min (shared and local at once)", *procs, *dur, *limit)
	wg.Wait()

	for _, o := range outs {
		var accepted, all []time.Time
		for _, c := range o.fake.Calls() {
			if c.Path != plaidfake.PathItemGet {
				continue
			}
			all = append(all, c.Time)
			if !c.RateLimited {
				accepted = append(accepted, c.Time)
			}
		}
		a, r := windows(accepted), windows(all)
		var failed, limitedCalls float64
		for _, c := range o.callers {
			failed += c.num("failed")
			limitedCalls += c.num("rate_limited")
		}
		if err := emit(Result{
			"section": "quota", "mode": o.mode, "procs": *procs, "limit": *limit, "seconds": dur.Seconds(),
			"rate_limited":          o.fake.RateLimited(plaidfake.PathItemGet),
			"accepted_first_minute": a.first, "accepted_max_60s": a.max,
			"received_max_60s": r.max, "received_rate_per_min": r.rate,
			"calls_rate_limited": limitedCalls, "calls_failed": failed,
			"pass": o.fake.RateLimited(plaidfake.PathItemGet) == 0 && r.max <= *limit,
		}); err != nil {
			return err
		}
	}
	var errs []error
	for _, o := range outs {
		errs = append(errs, o.errs...)
	}
	return errors.Join(errs...)
}

// numbers are what differs between two messages of the same failure.
var numbers = regexp.MustCompile(`[0-9][0-9.]*(ns|µs|ms|s)?`)

// quotaCallerCmd is one instance calling /item/get as batch work, as fast
// as its pacer lets it, for a while, with 32 calls in flight.
func quotaCallerCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("quota-caller", flag.ExitOnError)
	mode := fs.String("mode", "shared", "shared (SharedPacer over Firestore) or local (LocalPacer)")
	dur := fs.Duration("for", 70*time.Second, "how long to call")
	n := fs.Int("tokens", 2000, "tokens of the benchmark dataset to call with")
	fs.Parse(args)

	cfg, err := lifecycle.LoadConfig(lifecycle.Needs{Store: true, Plaid: true})
	if err != nil {
		return err
	}
	var plaid lifecycle.PlaidAPI
	switch *mode {
	case "shared":
		client, err := lifecycle.NewFirestoreClient(ctx, cfg)
		if err != nil {
			return err
		}
		prod, err := newProduction(cfg, client)
		if err != nil {
			return err
		}
		defer prod.Close()
		plaid = prod.deps.Plaid
	case "local":
		plaid, err = lifecycle.NewPlaidClient(lifecycle.PlaidClientConfig{PlaidSettings: cfg.PlaidSettings})
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown mode %q", *mode)
	}

	tokens := sample.BenchTokens(*n, time.Now().UTC())
	ctx, cancel := context.WithTimeout(lifecycle.WithPlaidPriority(ctx, lifecycle.PriorityBatch), *dur)
	defer cancel()
	var next, calls, rateLimited, failed atomic.Int64
	var mu sync.Mutex
	failures := map[string]int{}
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for ctx.Err() == nil {
				t := tokens[int(next.Add(1))%len(tokens)]
				_, err := plaid.GetItem(ctx, t.Plaintext)
				if ctx.Err() != nil {
					return
				}
				calls.Add(1)
				var pe *lifecycle.PlaidError
				switch {
				case err == nil, errors.As(err, &pe) && pe.Class != lifecycle.ClassTransient:
				case pe != nil && pe.Status == 429:
					rateLimited.Add(1) // still 429 after its retries
				default:
					failed.Add(1)
					mu.Lock()
					failures[numbers.ReplaceAllString(err.Error(), "N")]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for msg, n := range failures {
		fmt.Fprintf(os.Stderr, "    quota-caller (%s): %d calls failed: %s\n", *mode, n, msg)
	}
	return emit(Result{"mode": *mode, "calls": calls.Load(), "rate_limited": rateLimited.Load(), "failed": failed.Load()})
}
