package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// HTTP under load (issue 10's load test, issue 13 point 3, issue 23): users
// revoking their items while admins poll analytics, PLAID_ITEM_REMOVE_RPM
// at Plaid's production per-client limit so that hundreds of revocations
// saturate it, a Plaid stand-in answering in 20 ms. Two measurements:
//
//   - deployed (deployedCmd): each function in a process of its own, as
//     Cloud Functions runs them (the buildpack-built binary, FUNCTION_TARGET
//     and only the target's variables), against the endpoint's floor (the
//     plainest handler doing the same work) under the same load, on the
//     same emulator, measured in the same run;
//   - serve (loadCmd): every function in scripts/serve, the way a developer
//     runs them, keeping the analytics counters itself (its default).
//
// After each, Firestore is checked: every revocation that answered 200 left
// its token revoked, with plaid_removed true exactly for the Items the
// stand-in removed, and one audit entry when it revoked a token that was
// not revoked yet (the service audits what it changed; revoking a revoked
// token again changes nothing, and the floor audits every request).

// loadOptions are the load both measurements apply.
type loadOptions struct {
	loadBin            string
	users, perUser     int
	admins             int
	adminEvery         time.Duration
	removeRPM          int
	latency, duration  time.Duration
	logDir, jwtSecret  string
	serveURL, statsURL string // where revocations and analytics requests go
}

func (o *loadOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.loadBin, "loadtest", "", "the built scripts/loadtest")
	fs.IntVar(&o.users, "users", 400, "users revoking their items")
	fs.IntVar(&o.perUser, "revokes-per-user", 3, "items each user revokes, one after another")
	fs.IntVar(&o.admins, "admins", 50, "admins polling analytics")
	fs.DurationVar(&o.adminEvery, "admin-interval", time.Second, "an admin's pause between two analytics requests")
	fs.IntVar(&o.removeRPM, "remove-rpm", lifecycle.DefaultItemRemoveRPM, "PLAID_ITEM_REMOVE_RPM of the service")
	fs.DurationVar(&o.duration, "duration", 90*time.Second, "the load test's bound in time")
	fs.DurationVar(&o.latency, "latency", 20*time.Millisecond, "the Plaid stand-in's latency")
	fs.StringVar(&o.logDir, "logs", os.TempDir(), "where the servers' logs go")
}

// revocations is one measurement's data: the users' tokens, seeded in a
// project of their own, the stand-in that knows them, and the analytics
// counters backfilled (as deployed after the first backfill, analytics
// reads the counters).
type revocations struct {
	prod   *production
	fake   *plaidfake.Server
	tokens []sample.Token
}

func prepareRevocations(ctx context.Context, cfg lifecycle.Config, o loadOptions) (*revocations, error) {
	fake := plaidfake.NewServer(cfg.PlaidClientID, cfg.PlaidSecret, plaidfake.WithLatency(o.latency))
	tokens := sample.BenchTokens(o.perUser*o.users, time.Now().UTC())
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
	r := &revocations{prod: prod, fake: fake, tokens: tokens}
	svc, err := prod.service()
	if err == nil {
		err = seedTokens(ctx, client, prod.deps.Cipher, tokens)
	}
	if err == nil {
		_, err = svc.ExactAnalytics(ctx, lifecycle.ExactOptions{Repair: true, Trigger: "cli"})
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *revocations) Close() {
	r.prod.Close()
	r.fake.Close()
}

// loadTestReport is what scripts/loadtest -json prints.
type loadTestReport struct {
	Seconds           float64
	Revoke, Analytics struct {
		Requests                int
		PerSecond, P50MS, P99MS float64
		MaxMS                   float64
		Statuses                map[string]int
	}
	ServerErrors, NoAnswer int
	Stopped                string
}

// runLoad runs scripts/loadtest with o and reads its report; the item ids
// whose revocation answered 200 go to revokedPath.
func runLoad(ctx context.Context, o loadOptions, revokedPath string) (*loadTestReport, error) {
	lt := exec.CommandContext(ctx, o.loadBin, "-url", o.serveURL, "-analytics-url", cmp.Or(o.statsURL, o.serveURL),
		"-jwt-secret", o.jwtSecret, "-users", fmt.Sprint(o.users), "-revokes-per-user", fmt.Sprint(o.perUser),
		"-admins", fmt.Sprint(o.admins), "-admin-interval", o.adminEvery.String(), "-duration", o.duration.String(),
		"-json", "-revoked-out", revokedPath)
	var out bytes.Buffer
	lt.Stdout, lt.Stderr = &out, os.Stderr
	ltErr := lt.Run() // a 5xx makes it fail; the figures are still printed
	var rep loadTestReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		return nil, fmt.Errorf("scripts/loadtest: %v; output: %s", errors.Join(ltErr, err), out.String())
	}
	return &rep, nil
}

// check reads back every revocation that answered 200 (revokedPath) and
// returns what it found, the load test's figures included.
func (r *revocations) check(ctx context.Context, o loadOptions, rep *loadTestReport, revokedPath string) (Result, error) {
	b, err := os.ReadFile(revokedPath)
	if err != nil {
		return nil, err
	}
	plaintext, wasRevoked := map[string]string{}, map[string]bool{}
	for _, t := range r.tokens {
		plaintext[t.ItemID] = t.Plaintext
		wasRevoked[t.ItemID] = t.Status == lifecycle.StatusRevoked
	}
	// Plaid answered a removal for these: removed, or ITEM_NOT_FOUND for
	// an Item already gone there; either way plaid_removed must say true.
	answered := map[string]bool{}
	var removals []time.Time
	for _, c := range r.fake.Calls() {
		if c.Path == plaidfake.PathItemRemove && !c.RateLimited {
			answered[c.AccessToken] = true
			removals = append(removals, c.Time)
		}
	}
	audits, err := r.prod.client.Collection(lifecycle.AuditCollection).Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("reading the audit entries: %w", err)
	}
	audited := map[string]int{}
	for _, a := range audits {
		var e lifecycle.AuditEntry
		if err := a.DataTo(&e); err == nil && e.Reason == lifecycle.ReasonUserRevoked {
			audited[e.ItemID]++
		}
	}
	var checked, removedAtPlaid, local, wrong, unaudited int
	for _, item := range strings.Fields(string(b)) {
		checked++
		tok, err := r.prod.deps.Tokens.Get(ctx, item)
		if err != nil {
			return nil, fmt.Errorf("reading revoked item %s: %w", item, err)
		}
		removed := answered[plaintext[item]]
		switch {
		case tok.Status != lifecycle.StatusRevoked || tok.PlaidRemoved != removed:
			wrong++
			progressf("item %s: status %s, plaid_removed %v, removed at Plaid %v", item, tok.Status, tok.PlaidRemoved, removed)
		case removed:
			removedAtPlaid++
		default:
			local++
		}
		if audited[item] != 1 && !wasRevoked[item] {
			unaudited++
			progressf("item %s: %d audit entries, want 1", item, audited[item])
		}
	}
	w := windows(removals)
	return Result{
		"users": o.users, "admins": o.admins, "admin_interval": o.adminEvery.String(), "remove_rpm": o.removeRPM, "seconds": rep.Seconds,
		"revoke_requests": rep.Revoke.Requests, "revoke_rps": rep.Revoke.PerSecond,
		"revoke_p50_ms": rep.Revoke.P50MS, "revoke_p99_ms": rep.Revoke.P99MS, "revoke_max_ms": rep.Revoke.MaxMS,
		"revoke_statuses":    rep.Revoke.Statuses,
		"analytics_requests": rep.Analytics.Requests, "analytics_rps": rep.Analytics.PerSecond,
		"analytics_p50_ms": rep.Analytics.P50MS, "analytics_p99_ms": rep.Analytics.P99MS, "analytics_max_ms": rep.Analytics.MaxMS,
		"analytics_statuses": rep.Analytics.Statuses,
		"server_errors":      rep.ServerErrors, "no_answer": rep.NoAnswer, "stopped": rep.Stopped,
		"verified": checked, "removed_at_plaid": removedAtPlaid, "revoked_locally": local, "wrong": wrong,
		"unaudited": unaudited, "removals_max_60s": w.max,
		"pass": rep.ServerErrors == 0 && rep.NoAnswer == 0 && wrong == 0 && unaudited == 0 && checked == o.users*o.perUser,
	}, nil
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
	if *serveBin == "" || o.loadBin == "" {
		return errors.New("-serve and -loadtest are required (the built binaries)")
	}
	cfg, err := lifecycle.LoadConfig(lifecycle.Needs{Store: true, Vault: true, Plaid: true})
	if err != nil {
		return err
	}
	data, err := prepareRevocations(ctx, cfg, o)
	if err != nil {
		return err
	}
	defer data.Close()
	o.jwtSecret = "bench-jwt-secret-" + fmt.Sprint(time.Now().UnixNano())
	env := append(os.Environ(), "PLAID_BASE_URL="+data.fake.URL(), "HOST=127.0.0.1",
		"AUTH_JWT_SECRET="+o.jwtSecret, "ADMIN_USER_IDS="+sample.AdminUser, fmt.Sprintf("PLAID_ITEM_REMOVE_RPM=%d", o.removeRPM))
	serve, err := startServer(filepath.Join(o.logDir, "serve-load.log"), env, "/api/v1/plaid/tokens/analytics", *serveBin, strings.Fields(*serveFlags)...)
	if err != nil {
		return err
	}
	defer serve.stop()
	o.serveURL = serve.url

	progressf("%d users revoking %d items each through scripts/serve %s while %d admins poll analytics every %v (PLAID_ITEM_REMOVE_RPM=%d, Plaid %v)",
		o.users, o.perUser, *serveFlags, o.admins, o.adminEvery, o.removeRPM, o.latency)
	revokedPath := filepath.Join(o.logDir, "revoked-items.txt")
	rep, err := runLoad(ctx, o, revokedPath)
	if err != nil {
		return err
	}
	res, err := data.check(ctx, o, rep, revokedPath)
	if err != nil {
		return err
	}
	res["section"], res["serve_flags"] = "load", *serveFlags
	return emit(res)
}

// server is a process serving HTTP on a loopback port.
type server struct {
	cmd *exec.Cmd
	url string
	log *os.File
}

// startServer starts name with args and env (PORT chosen here), its
// output to logPath, and waits until it answers at probePath.
func startServer(logPath string, env []string, probePath, name string, args ...string) (*server, error) {
	port, err := freePort()
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

func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
	s.log.Close()
}

// freePort returns a loopback port nothing listens on now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

// waitAnswering polls url until it answers anything, within d.
func waitAnswering(url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer at %s within %v: %w", url, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
