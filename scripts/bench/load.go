package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/wait"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// HTTP under load: users acting at once through one endpoint while admins poll
// analytics, the service's Plaid rates at Plaid's production per-client
// limits so that hundreds of users saturate them, a Plaid stand-in
// answering in 20 ms. What the users do is the endpoint's workload
// (floorBenches): revocations of their items, or exchanges of Link's public
// tokens for new Items. Two measurements:
//
//   - deployed (deployedCmd): each function in a process of its own, as
//     Cloud Functions runs them (the buildpack-built binary, FUNCTION_TARGET
//     and only the target's variables), against the endpoint's floor (the
//     plainest handler doing the same work) under the same load, on the
//     same emulator, measured in the same run;
//   - serve (loadCmd): every function in scripts/serve, the way a developer
//     runs them, keeping the analytics counters itself (its default).
//
// After each, the workload checks the outcome in Firestore and at the Plaid
// stand-in (revocations.check, exchanges.check).

// loadOptions are the load both measurements apply.
type loadOptions struct {
	loadBin                          string
	users, admins                    int
	revokesPerUser, exchangesPerUser int // each user's requests, one after another
	adminEvery                       time.Duration
	removeRPM, getRPM                int
	latency, duration                time.Duration
	logDir, jwtSecret                string
	serveURL, statsURL               string // where the users' and the admins' requests go
	endpoint                         string // the workload's name in floorBenches
}

func (o *loadOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.loadBin, "loadtest", "", "the built scripts/loadtest")
	fs.StringVar(&o.endpoint, "endpoint", "revoke", "what the users do (floorBenches): revoke or exchange")
	fs.IntVar(&o.users, "users", 400, "users acting at once")
	fs.IntVar(&o.revokesPerUser, "revokes-per-user", 3, "revoke: items each user revokes, one after another (the dataset has as many)")
	fs.IntVar(&o.exchangesPerUser, "exchanges-per-user", 1, "exchange: Items each user links, one after another")
	fs.IntVar(&o.admins, "admins", 50, "admins polling analytics")
	fs.DurationVar(&o.adminEvery, "admin-interval", time.Second, "an admin's pause between two analytics requests")
	fs.IntVar(&o.removeRPM, "remove-rpm", lifecycle.DefaultItemRemoveRPM, "PLAID_ITEM_REMOVE_RPM of the service")
	fs.IntVar(&o.getRPM, "get-rpm", lifecycle.DefaultItemGetRPM, "PLAID_ITEM_GET_RPM of the service")
	fs.DurationVar(&o.duration, "duration", 90*time.Second, "the load test's bound in time")
	fs.DurationVar(&o.latency, "latency", 20*time.Millisecond, "the Plaid stand-in's latency")
	fs.StringVar(&o.logDir, "logs", os.TempDir(), "where the servers' logs go")
}

// rateEnv is the service's Plaid rates; the floor has no quota and runs
// with these lifted.
func (o loadOptions) rateEnv() []string {
	return []string{fmt.Sprintf("PLAID_ITEM_REMOVE_RPM=%d", o.removeRPM), fmt.Sprintf("PLAID_ITEM_GET_RPM=%d", o.getRPM)}
}

// A workload is what one endpoint's users do under load (a mode of
// scripts/loadtest), the data they do it on, prepared before the timed
// part in a project of its own, and the check of the outcome afterwards,
// in Firestore and at the Plaid stand-in. The service and its floor run
// the same workload, so they do the same work and pass the same check.
type workload interface {
	// plaidURL is the Plaid stand-in's, which knows the workload's data.
	plaidURL() string
	// loadFlags are scripts/loadtest's flags that set its users to work.
	loadFlags(o loadOptions) []string
	// warm sends baseURL one request of the workload's kind and fails
	// unless it got its answer: neither side's first users then pay for
	// its connections (a function builds its server, keys included, on
	// its first request).
	warm(ctx context.Context, baseURL, jwtSecret string) error
	// check reads back what the load test reports as done (outPath:
	// "user_id item_id" lines) and returns its figures, "pass" among them.
	check(ctx context.Context, o loadOptions, rep *loadTestReport, outPath string) (Result, error)
	Close()
}

// dataset is what every workload starts from: the benchmark dataset
// (o.users × o.revokesPerUser tokens) seeded encrypted in cfg's project, a Plaid
// stand-in that knows its Items, and the analytics counters backfilled
// (as deployed after the first backfill, analytics reads the counters).
type dataset struct {
	prod   *production
	fake   *plaidfake.Server
	tokens []sample.Token
}

func prepareDataset(ctx context.Context, cfg lifecycle.Config, o loadOptions) (*dataset, error) {
	fake := plaidfake.NewServer(cfg.PlaidClientID, cfg.PlaidSecret, plaidfake.WithLatency(o.latency))
	tokens := sample.BenchTokens(o.revokesPerUser*o.users, time.Now().UTC())
	sample.Register(fake, tokens)
	client, err := lifecycle.NewFirestoreClient(ctx, cfg)
	if err != nil {
		fake.Close()
		return nil, err
	}
	prod, err := newProduction(cfg, client)
	if err != nil {
		fake.Close()
		return nil, err
	}
	d := &dataset{prod: prod, fake: fake, tokens: tokens}
	svc, err := prod.service()
	if err == nil {
		err = seedTokens(ctx, client, prod.deps.Cipher, tokens)
	}
	if err == nil {
		_, err = svc.ExactAnalytics(ctx, lifecycle.ExactOptions{Repair: true, Trigger: "cli"})
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (d *dataset) plaidURL() string { return d.fake.URL() }

func (d *dataset) Close() {
	d.prod.Close()
	d.fake.Close()
}

// loadTestReport is what scripts/loadtest -json prints.
type loadTestReport struct {
	Mode                    string
	Seconds                 float64
	UserRequests, Analytics struct {
		Requests                int
		PerSecond, P50MS, P99MS float64
		MaxMS                   float64
		Statuses                map[string]int
	}
	ServerErrors, NoAnswer int
	Stopped                string
}

// runLoad runs scripts/loadtest with o and w's users and reads its report;
// what succeeded goes to outPath. It returns the load's figures, which
// every workload's result carries.
func runLoad(ctx context.Context, o loadOptions, w workload, outPath string) (*loadTestReport, Result, error) {
	args := append([]string{"-url", o.serveURL, "-analytics-url", cmp.Or(o.statsURL, o.serveURL),
		"-jwt-secret", o.jwtSecret, "-users", fmt.Sprint(o.users), "-admins", fmt.Sprint(o.admins),
		"-admin-interval", o.adminEvery.String(), "-duration", o.duration.String(), "-json", "-out", outPath},
		w.loadFlags(o)...)
	lt := exec.CommandContext(ctx, o.loadBin, args...)
	var out bytes.Buffer
	lt.Stdout, lt.Stderr = &out, os.Stderr
	ltErr := lt.Run() // a 5xx makes it fail; the figures are still printed
	var rep loadTestReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		return nil, nil, fmt.Errorf("scripts/loadtest: %v; output: %s", errors.Join(ltErr, err), out.String())
	}
	u, a := rep.UserRequests, rep.Analytics
	return &rep, Result{
		"endpoint": o.endpoint, "users": o.users, "admins": o.admins, "admin_interval": o.adminEvery.String(),
		"remove_rpm": o.removeRPM, "get_rpm": o.getRPM, "seconds": rep.Seconds,
		"requests": u.Requests, "rps": u.PerSecond, "p50_ms": u.P50MS, "p99_ms": u.P99MS, "max_ms": u.MaxMS, "statuses": u.Statuses,
		"analytics_requests": a.Requests, "analytics_rps": a.PerSecond,
		"analytics_p50_ms": a.P50MS, "analytics_p99_ms": a.P99MS, "analytics_max_ms": a.MaxMS, "analytics_statuses": a.Statuses,
		"server_errors": rep.ServerErrors, "no_answer": rep.NoAnswer, "stopped": rep.Stopped,
	}, nil
}

// readDone reads the load test's -out file: the item of each request that
// succeeded, and the user it succeeded for.
func readDone(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	done := map[string]string{}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("%s: %q is not a \"user_id item_id\" line", path, line)
		}
		if _, twice := done[f[1]]; twice {
			return nil, fmt.Errorf("%s: item %s succeeded twice", path, f[1])
		}
		done[f[1]] = f[0]
	}
	return done, nil
}

// requestAs sends one request signed for sub (an admin when admin is set)
// and fails unless it answered want.
func requestAs(ctx context.Context, jwtSecret, sub string, admin bool, method, url string, body []byte, want int) ([]byte, error) {
	claims := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix(), "type": "access_token"}
	if admin {
		claims["admin"] = true
	}
	bearer, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(jwtSecret))
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %s, want %d: %s", method, url, resp.Status, want, answer)
	}
	return answer, nil
}

// loadCmd measures every function in one scripts/serve process, the way a
// developer runs them, with serve's flags (-token-stats=listener, its
// default, keeps the analytics counters in the same process).
func loadCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	var o loadOptions
	o.flags(fs)
	serveBin := fs.String("serve", "", "the built scripts/serve")
	serveFlags := fs.String("serve-flags", "", "flags for scripts/serve, space-separated (e.g. -token-stats=off)")
	fs.Parse(args)
	bench, ok := floorBenches[o.endpoint]
	if !ok {
		return fmt.Errorf("no workload for endpoint %q", o.endpoint)
	}
	if *serveBin == "" || o.loadBin == "" {
		return errors.New("-serve and -loadtest are required (the built binaries)")
	}
	cfg, err := lifecycle.LoadConfig(lifecycle.Needs{Store: true, Vault: true, Plaid: true})
	if err != nil {
		return err
	}
	data, err := bench.prepare(ctx, cfg, o)
	if err != nil {
		return err
	}
	defer data.Close()
	o.jwtSecret = "bench-jwt-secret-" + fmt.Sprint(time.Now().UnixNano())
	env := append(os.Environ(), "PLAID_BASE_URL="+data.plaidURL(), "HOST=127.0.0.1",
		"AUTH_JWT_SECRET="+o.jwtSecret, "ADMIN_USER_IDS="+sample.AdminUser)
	serve, err := startServer(filepath.Join(o.logDir, "serve-load.log"), append(env, o.rateEnv()...),
		"/api/v1/plaid/tokens/analytics", *serveBin, strings.Fields(*serveFlags)...)
	if err != nil {
		return err
	}
	defer serve.stop()
	o.serveURL = serve.url

	progressf("%d users (%s) through scripts/serve %s while %d admins poll analytics every %v (PLAID_ITEM_REMOVE_RPM=%d, PLAID_ITEM_GET_RPM=%d, Plaid %v)",
		o.users, o.endpoint, *serveFlags, o.admins, o.adminEvery, o.removeRPM, o.getRPM, o.latency)
	outPath := filepath.Join(o.logDir, "load-"+o.endpoint+"-done.txt")
	rep, res, err := runLoad(ctx, o, data, outPath)
	if err != nil {
		return err
	}
	// The outcome is read once serve is stopped: work it goes on with
	// after the answers (the early removals it queues and delivers to
	// itself for revocations that went local) either landed or never
	// started, so Firestore and the stand-in's calls agree.
	serve.stop()
	checked, err := data.check(ctx, o, rep, outPath)
	if err != nil {
		return err
	}
	maps.Copy(res, checked)
	res["section"], res["serve_flags"] = "load", *serveFlags
	return emit(res)
}

// server is a process serving HTTP on a loopback port.
type server struct {
	cmd  *exec.Cmd
	url  string
	log  *os.File
	once sync.Once
}

// startServer starts name with args and env (PORT chosen here), its
// output to logPath, and waits until it answers at probePath.
func startServer(logPath string, env []string, probePath, name string, args ...string) (*server, error) {
	port, err := wait.FreePort()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(env, "PORT="+port)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	s := &server{cmd: cmd, url: "http://127.0.0.1:" + port, log: logFile}
	if err := waitAnswering(s.url+probePath, 30*time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("%s: %w (its log: %s)", filepath.Base(name), err, logPath)
	}
	return s, nil
}

// stop ends the process and waits for it: a graceful shutdown, so that
// what it was doing is done (or never started) when stop returns. Only the
// first call does anything.
func (s *server) stop() {
	s.once.Do(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		s.cmd.Wait()
		s.log.Close()
	})
}

// waitAnswering polls url until it answers anything, within d.
func waitAnswering(url string, d time.Duration) error {
	var err error
	if wait.Poll(d, func() bool {
		var resp *http.Response
		if resp, err = http.Get(url); err != nil {
			return false
		}
		resp.Body.Close()
		return true
	}) {
		return nil
	}
	return fmt.Errorf("no answer at %s within %v: %w", url, d, err)
}
