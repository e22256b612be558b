package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/finwell/plaid-token-lifecycle/internal/buildpack"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// A floorBench measures an HTTP endpoint as deployed against its floor:
// the plainest handler that does the same work (floor.go's idea, for one
// request), served by `bench floor-serve` in a process of its own, on the
// same emulator and Plaid stand-in, under the same load (its workload).
// The endpoint's extra cost over the floor is what its guarantees cost.
type floorBench struct {
	target string // the deployed function (FUNCTION_TARGET)
	// handler builds the floor's HTTP handler from the deployed
	// function's configuration (floor-serve).
	handler func(ctx context.Context, cfg lifecycle.Config) (floorHandler, error)
	// prepare builds one measurement's workload in cfg's project.
	prepare func(ctx context.Context, cfg lifecycle.Config, o loadOptions) (workload, error)
	// columns are the workload's figures the report shows for each round,
	// and guarantees its verdict over the service's rounds (report.go).
	columns    []column
	guarantees func(service []Result) row
}

var floorBenches = map[string]floorBench{
	"revoke": {target: "RevokeItem", handler: newRevokeFloor, prepare: prepareRevocations,
		columns: revokeColumns, guarantees: revokeGuarantees},
	"exchange": {target: "ExchangePublicToken", handler: newExchangeFloor, prepare: prepareExchanges,
		columns: exchangeColumns, guarantees: exchangeGuarantees},
}

// deployedCmd measures an endpoint as deployed against its floor: the
// endpoint's function and TokenAnalytics each in a process of its
// own, the buildpack-built binary as Cloud Functions runs it, under
// scripts/loadtest (users doing the endpoint's work, admins polling
// analytics); then the same load with the floor in place of the
// endpoint's function, TokenAnalytics the same. The JVM emulator warms up
// first on a run of both, not reported; then rounds alternate floor and
// service (and which goes first), each on fresh data in a project of its
// own, so that what the emulator carries over, and the machine's load,
// fall on both.
func deployedCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("deployed", flag.ExitOnError)
	var o loadOptions
	o.flags(fs)
	functionsBin := fs.String("functions", "", "the buildpack-built functions binary (bench buildpack)")
	rounds := fs.Int("rounds", 3, "measurements of each, alternating")
	warmUsers := fs.Int("warmup-users", -1, "users of the warm-up run of each (0: none; default: -users, the JVM then compiles what the rounds run)")
	fs.Parse(args)
	bench, ok := floorBenches[o.endpoint]
	if !ok {
		return fmt.Errorf("no floor for endpoint %q", o.endpoint)
	}
	if *functionsBin == "" || o.loadBin == "" {
		return errors.New("-functions and -loadtest are required (the built binaries)")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cfg, err := lifecycle.LoadConfig(lifecycle.Needs{Store: true, Vault: true, Plaid: true})
	if err != nil {
		return err
	}
	o.jwtSecret = "bench-jwt-secret-" + fmt.Sprint(time.Now().UnixNano())

	measure := func(impl string, round int, o loadOptions) (Result, error) {
		pcfg := cfg
		pcfg.Project = fmt.Sprintf("%s-%s-%s-%d", cfg.Project, o.endpoint, impl, round)
		defer clearEmulator(pcfg.Project)
		data, err := bench.prepare(ctx, pcfg, o)
		if err != nil {
			return nil, err
		}
		defer data.Close()
		logs := func(name string) string {
			return filepath.Join(o.logDir, fmt.Sprintf("deployed-%s-%s-%d-%s.log", o.endpoint, impl, round, name))
		}
		stats, err := startServer(logs("TokenAnalytics"), append(targetEnv("TokenAnalytics", pcfg, data.plaidURL(), o.jwtSecret),
			"FUNCTION_TARGET=TokenAnalytics"), "/", *functionsBin)
		if err != nil {
			return nil, err
		}
		defer stats.stop()
		env := append(targetEnv(bench.target, pcfg, data.plaidURL(), o.jwtSecret), o.rateEnv()...)
		var srv *server
		switch impl {
		case "service":
			srv, err = startServer(logs(bench.target), append(env, "FUNCTION_TARGET="+bench.target), "/", *functionsBin)
		default:
			// The floor has no quota: its Plaid client's limiter is lifted.
			srv, err = startServer(logs("floor"), append(env, "PLAID_ITEM_REMOVE_RPM=10000000", "PLAID_ITEM_GET_RPM=10000000"),
				"/", self, "floor-serve", "-endpoint", o.endpoint)
		}
		if err != nil {
			return nil, err
		}
		defer srv.stop()
		// One request each first, so that neither side's first users pay
		// for its connections to the emulator and to Plaid.
		if err := data.warm(ctx, srv.url, o.jwtSecret); err != nil {
			return nil, fmt.Errorf("warming %s up: %w", impl, err)
		}
		if _, err := requestAs(ctx, o.jwtSecret, sample.AdminUser, true, http.MethodGet, stats.url+"/api/v1/plaid/tokens/analytics", nil, http.StatusOK); err != nil {
			return nil, fmt.Errorf("warming TokenAnalytics up: %w", err)
		}
		o.serveURL, o.statsURL = srv.url, stats.url
		outPath := logs("done")
		rep, res, err := runLoad(ctx, o, data, outPath)
		if err != nil {
			return nil, err
		}
		// The outcome is read once both are stopped: nothing they still
		// do can change it under the check.
		srv.stop()
		stats.stop()
		checked, err := data.check(ctx, o, rep, outPath)
		if err != nil {
			return nil, err
		}
		maps.Copy(res, checked)
		res["section"], res["impl"], res["round"] = "deployed", impl, round
		return res, nil
	}

	if *warmUsers < 0 {
		*warmUsers = o.users
	}
	if *warmUsers > 0 {
		warm := o
		warm.users = *warmUsers
		for _, impl := range []string{"floor", "service"} {
			progressf("warming the emulator up: %s with %d users, not reported", impl, warm.users)
			if _, err := measure(impl, 0, warm); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
		}
	}
	for round := 1; round <= *rounds; round++ {
		// Each goes first every other round, so that neither always
		// follows the other's traffic and clean-up on the emulator.
		order := []string{"floor", "service"}
		if round%2 == 0 {
			order = []string{"service", "floor"}
		}
		for _, impl := range order {
			progressf("round %d: %s (%s): %d users (%s) while %d admins poll analytics every %v (PLAID_ITEM_REMOVE_RPM=%d, PLAID_ITEM_GET_RPM=%d, Plaid %v)",
				round, impl, bench.target, o.users, o.endpoint, o.admins, o.adminEvery, o.removeRPM, o.getRPM, o.latency)
			res, err := measure(impl, round, o)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", impl, round, err)
			}
			if err := emit(res); err != nil {
				return err
			}
		}
	}
	return nil
}

// buildpackCmd builds the functions as Google's Go buildpack builds them
// (internal/buildpack), once for every measurement that runs them.
func buildpackCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("buildpack", flag.ExitOnError)
	out := fs.String("out", "", "the binary to write")
	fs.Parse(args)
	if *out == "" {
		return errors.New("-out is required")
	}
	root, err := buildpack.ModuleRoot()
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := buildpack.Build(ctx, root, *out); err != nil {
		return err
	}
	progressf("built the functions as the buildpack does in %.0f s", time.Since(t0).Seconds())
	return nil
}
