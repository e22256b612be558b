// Command bench measures cleanup on the Firestore emulator against a Plaid
// stand-in with latency (scripts/bench.sh drives it). Each step runs in its
// own process so that peak RSS is the cleanup's alone.
//
//	bench seed -n 2000           seeds the benchmark dataset into $GOOGLE_CLOUD_PROJECT
//	bench run -mode concurrent   runs one cleanup and prints a JSON line:
//	                             {"mode","n","seconds","peak_rss_kib","statistics"}
//
// -mode sequential runs the same rules one document and one call at a time
// (page size 1, one worker, one write per call): the baseline the
// concurrent run is compared to.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench seed|run [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	n := fs.Int("n", 2000, "tokens in the dataset")
	mode := fs.String("mode", "concurrent", "concurrent or sequential")
	pageSize := fs.Int("page-size", 0, "concurrent mode: documents per page (0: the service's default)")
	workers := fs.Int("workers", 0, "concurrent mode: tokens in flight (0: the service's default)")
	fs.Parse(os.Args[2:])

	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	cfg, err := lifecycle.LoadConfig(lifecycle.Needs{Store: true, Vault: true, Plaid: true})
	if err == nil {
		err = dispatch(ctx, cfg, os.Args[1], *n, *mode, *pageSize, *workers)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func dispatch(ctx context.Context, cfg lifecycle.Config, cmd string, n int, mode string, pageSize, workers int) error {
	client, err := lifecycle.NewFirestoreClient(ctx, cfg)
	if err != nil {
		return err
	}
	defer client.Close()
	svc, err := lifecycle.NewFirestoreService(cfg, client, nil)
	if err != nil {
		return err
	}
	switch cmd {
	case "seed":
		tokens := sample.BenchTokens(n, time.Now().UTC())
		var g errgroup.Group
		g.SetLimit(32)
		for start := 0; start < len(tokens); start += 100 {
			chunk := tokens[start:min(start+100, len(tokens))]
			g.Go(func() error { return sample.Seed(ctx, svc.Tokens, svc.Cipher, chunk) })
		}
		return g.Wait()
	case "run":
		svc.Config.CleanupPageSize, svc.Config.CleanupConcurrency = pageSize, workers
		if mode == "sequential" {
			// One document read, decided, called and written at a time.
			svc.Config.CleanupPageSize, svc.Config.CleanupConcurrency = 1, 1
			svc.Tokens = unbatched{svc.Tokens}
		}
		start := time.Now()
		res, err := svc.Cleanup(ctx, lifecycle.CleanupRequest{DaysThreshold: 90, Trigger: "benchmark", Actor: "bench"})
		if err != nil {
			return err
		}
		elapsed := time.Since(start)
		return json.NewEncoder(os.Stdout).Encode(map[string]any{
			"mode": mode, "n": n, "seconds": elapsed.Seconds(), "peak_rss_kib": peakRSS(),
			"statistics": res.Statistics,
		})
	}
	return fmt.Errorf("unknown command %q", cmd)
}

// unbatched replaces the store's BulkWriter with one call per write, as
// the baseline writes.
type unbatched struct{ lifecycle.TokenStore }

func (u unbatched) Apply(ctx context.Context, writes []lifecycle.Write) []error {
	errs := make([]error, len(writes))
	for i, w := range writes {
		if w.Delete {
			errs[i] = u.Delete(ctx, w.ItemID, w.IfVersion)
		} else {
			_, errs[i] = u.Update(ctx, w.ItemID, w.Patch, w.IfVersion)
		}
	}
	return errs
}

// peakRSS is the process's peak resident set (VmHWM) in KiB.
func peakRSS() int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kib, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kib
		}
	}
	return -1
}
