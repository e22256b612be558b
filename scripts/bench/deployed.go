package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/finwell/plaid-token-lifecycle/internal/buildpack"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// A floorBench measures an HTTP endpoint as deployed against its floor:
// the plainest handler that does the same work (floor.go's idea, for one
// request), served by `bench floor-serve` in a process of its own, on the
// same emulator and Plaid stand-in, under the same load. The endpoint's
// extra cost over the floor is what its guarantees cost.
//
// ExchangePublicToken's comparison (issue 23 point 2) is one more entry
// once that endpoint is on main: its floor handler (verify the JWT,
// /item/public_token/exchange, the institution, encrypt, store the token),
// the stand-in answering those two calls (internal/plaidfake), a loadtest
// mode whose users each post a public_token, its data (public tokens the
// stand-in knows) and its check (one stored, encrypted token per 201).
// prepareRevocations and revocations.check are this entry's data and check.
type floorBench struct {
	target string // the deployed function (FUNCTION_TARGET)
	// handler builds the floor's HTTP handler from the deployed
	// function's configuration (floor-serve).
	handler func(ctx context.Context, cfg lifecycle.Config) (floorHandler, error)
}

var floorBenches = map[string]floorBench{
	"revoke": {target: "RevokeItem", handler: newRevokeFloor},
}

// deployedCmd measures an endpoint as deployed against its floor (issue
// 23): a revocation's function and TokenAnalytics each in a process of its
// own, the buildpack-built binary as Cloud Functions runs it, under
// scripts/loadtest (users revoking their items, admins polling
// analytics); then the same load with the floor in place of the
// revocation's function, TokenAnalytics the same. The JVM emulator warms up
// first on a run of both, not reported; then rounds alternate floor and
// service (and which goes first), each on fresh data in a project of its
// own, so that what the emulator carries over, and the machine's load,
// fall on both.
func deployedCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("deployed", flag.ExitOnError)
	var o loadOptions
	o.flags(fs)
	functionsBin := fs.String("functions", "", "the buildpack-built functions binary (bench buildpack)")
	endpoint := fs.String("endpoint", "revoke", "the endpoint measured (floorBenches)")
	rounds := fs.Int("rounds", 3, "measurements of each, alternating")
	warmUsers := fs.Int("warmup-users", -1, "users of the warm-up run of each (0: none; default: -users, the JVM then compiles what the rounds run)")
	fs.Parse(args)
	bench, ok := floorBenches[*endpoint]
	if !ok {
		return fmt.Errorf("no floor for endpoint %q", *endpoint)
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
		pcfg.Project = fmt.Sprintf("%s-%s-%s-%d", cfg.Project, *endpoint, impl, round)
		defer clearEmulator(pcfg.Project)
		data, err := prepareRevocations(ctx, pcfg, o)
		if err != nil {
			return nil, err
		}
		defer data.Close()
		logs := func(name string) string {
			return filepath.Join(o.logDir, fmt.Sprintf("deployed-%s-%s-%d-%s.log", *endpoint, impl, round, name))
		}
		stats, err := startServer(logs("TokenAnalytics"), append(targetEnv("TokenAnalytics", pcfg, data.fake.URL(), o.jwtSecret),
			"FUNCTION_TARGET=TokenAnalytics"), "/", *functionsBin)
		if err != nil {
			return nil, err
		}
		defer stats.stop()
		env := append(targetEnv(bench.target, pcfg, data.fake.URL(), o.jwtSecret), fmt.Sprintf("PLAID_ITEM_REMOVE_RPM=%d", o.removeRPM))
		var srv *server
		switch impl {
		case "service":
			srv, err = startServer(logs(bench.target), append(env, "FUNCTION_TARGET="+bench.target), "/", *functionsBin)
		default:
			// The floor has no quota: its Plaid client's limiter is lifted.
			srv, err = startServer(logs("floor"), append(env, "PLAID_ITEM_REMOVE_RPM=10000000", "PLAID_ITEM_GET_RPM=10000000"),
				"/", self, "floor-serve", "-endpoint", *endpoint)
		}
		if err != nil {
			return nil, err
		}
		defer srv.stop()
		// One request each first, so that neither side's first users pay
		// for its connections to the emulator (a function builds its
		// server, keys included, on the start probe's request).
		if err := firstAnswers(ctx, o.jwtSecret, srv.url+"/api/v1/plaid/items/bench-warm-missing", stats.url+"/api/v1/plaid/tokens/analytics"); err != nil {
			return nil, err
		}
		o.serveURL, o.statsURL = srv.url, stats.url
		revokedPath := logs("revoked")
		rep, err := runLoad(ctx, o, revokedPath)
		if err != nil {
			return nil, err
		}
		res, err := data.check(ctx, o, rep, revokedPath)
		if err != nil {
			return nil, err
		}
		res["section"], res["endpoint"], res["impl"], res["round"] = "deployed", *endpoint, impl, round
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
			progressf("round %d: %s (%s): %d users revoking %d items each while %d admins poll analytics every %v (PLAID_ITEM_REMOVE_RPM=%d, Plaid %v)",
				round, impl, bench.target, o.users, o.perUser, o.admins, o.adminEvery, o.removeRPM, o.latency)
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

// firstAnswers sends one revocation of a missing item (404) and one
// analytics request (200), and fails unless each got its answer.
func firstAnswers(ctx context.Context, jwtSecret, revokeURL, analyticsURL string) error {
	for _, r := range []struct {
		method, url string
		claims      jwt.MapClaims
		want        int
	}{
		{http.MethodDelete, revokeURL, jwt.MapClaims{"sub": "bench-warm-user"}, http.StatusNotFound},
		{http.MethodGet, analyticsURL, jwt.MapClaims{"sub": sample.AdminUser, "admin": true}, http.StatusOK},
	} {
		r.claims["exp"], r.claims["type"] = time.Now().Add(time.Hour).Unix(), "access_token"
		bearer, err := jwt.NewWithClaims(jwt.SigningMethodHS256, r.claims).SignedString([]byte(jwtSecret))
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, r.method, r.url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != r.want {
			return fmt.Errorf("%s %s: %s, want %d", r.method, r.url, resp.Status, r.want)
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
