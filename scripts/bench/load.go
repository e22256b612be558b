package main

import (
	"bytes"
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

// loadCmd measures HTTP under load through scripts/serve (issue 13 point
// 3, issue 10's load test): it seeds the users' items, starts scripts/serve
// against a Plaid stand-in answering in 20 ms, with PLAID_ITEM_REMOVE_RPM
// at Plaid's production per-client limit so that hundreds of revocations
// saturate it, runs scripts/loadtest against it, and then checks in
// Firestore that every revocation that answered 200 left its token
// revoked, with plaid_removed true exactly for the Items the stand-in
// removed.
func loadCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	serveBin := fs.String("serve", "", "the built scripts/serve")
	loadBin := fs.String("loadtest", "", "the built scripts/loadtest")
	users := fs.Int("users", 400, "users revoking their items")
	perUser := fs.Int("revokes-per-user", 3, "items each user revokes, one after another")
	admins := fs.Int("admins", 50, "admins polling analytics")
	adminEvery := fs.Duration("admin-interval", time.Second, "an admin's pause between two analytics requests")
	removeRPM := fs.Int("remove-rpm", lifecycle.DefaultItemRemoveRPM, "PLAID_ITEM_REMOVE_RPM of the server")
	dur := fs.Duration("duration", 90*time.Second, "the load test's bound in time")
	latency := fs.Duration("latency", 20*time.Millisecond, "the Plaid stand-in's latency")
	logDir := fs.String("logs", os.TempDir(), "where the server's log goes")
	serveFlags := fs.String("serve-flags", "", "flags for scripts/serve, space-separated (e.g. -token-stats=off)")
	fs.Parse(args)
	if *serveBin == "" || *loadBin == "" {
		return errors.New("-serve and -loadtest are required (the built binaries)")
	}

	cfg, err := lifecycle.LoadConfig(lifecycle.Needs{Store: true, Vault: true, Plaid: true})
	if err != nil {
		return err
	}
	fake := plaidfake.NewServer(cfg.PlaidClientID, cfg.PlaidSecret, plaidfake.WithLatency(*latency))
	defer fake.Close()
	tokens := sample.BenchTokens(3**users, time.Now().UTC())
	sample.Register(fake, tokens)
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
	// As deployed after the first backfill: analytics reads the counters.
	if _, err := svc.ExactAnalytics(ctx, lifecycle.ExactOptions{Repair: true, Trigger: "cli"}); err != nil {
		return err
	}

	port, err := freePort()
	if err != nil {
		return err
	}
	secret := "bench-jwt-secret-" + fmt.Sprint(time.Now().UnixNano())
	logPath := filepath.Join(*logDir, "serve-load.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	serve := exec.Command(*serveBin, strings.Fields(*serveFlags)...)
	serve.Env = append(os.Environ(), "PLAID_BASE_URL="+fake.URL(), "HOST=127.0.0.1", "PORT="+port,
		"AUTH_JWT_SECRET="+secret, "ADMIN_USER_IDS="+sample.AdminUser,
		fmt.Sprintf("PLAID_ITEM_REMOVE_RPM=%d", *removeRPM))
	serve.Stdout, serve.Stderr = logFile, logFile
	if err := serve.Start(); err != nil {
		return err
	}
	defer func() {
		serve.Process.Signal(syscall.SIGTERM)
		serve.Wait()
	}()
	base := "http://127.0.0.1:" + port
	if err := waitAnswering(base+"/api/v1/plaid/tokens/analytics", 30*time.Second); err != nil {
		return fmt.Errorf("scripts/serve: %w (its log: %s)", err, logPath)
	}

	revokedPath := filepath.Join(*logDir, "revoked-items.txt")
	progressf("%d users revoking %d items each while %d admins poll analytics every %v (PLAID_ITEM_REMOVE_RPM=%d, Plaid %v)",
		*users, *perUser, *admins, *adminEvery, *removeRPM, *latency)
	lt := exec.CommandContext(ctx, *loadBin, "-url", base, "-jwt-secret", secret, "-users", fmt.Sprint(*users),
		"-revokes-per-user", fmt.Sprint(*perUser), "-admins", fmt.Sprint(*admins), "-admin-interval", adminEvery.String(), "-duration", dur.String(),
		"-json", "-revoked-out", revokedPath)
	var out bytes.Buffer
	lt.Stdout, lt.Stderr = &out, os.Stderr
	ltErr := lt.Run() // a 5xx makes it fail; the figures are still printed
	var rep struct {
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
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		return fmt.Errorf("scripts/loadtest: %v; output: %s", errors.Join(ltErr, err), out.String())
	}

	// Every 200 revocation left a revoked token; plaid_removed says
	// whether the stand-in removed the Item.
	b, err := os.ReadFile(revokedPath)
	if err != nil {
		return err
	}
	plaintext := map[string]string{}
	for _, t := range tokens {
		plaintext[t.ItemID] = t.Plaintext
	}
	// Plaid answered a removal for these: removed, or ITEM_NOT_FOUND for
	// an Item already gone there; either way plaid_removed must say true.
	answered := map[string]bool{}
	for _, c := range fake.Calls() {
		if c.Path == plaidfake.PathItemRemove && !c.RateLimited {
			answered[c.AccessToken] = true
		}
	}
	var checked, removedAtPlaid, local, wrong int
	for _, item := range strings.Fields(string(b)) {
		checked++
		tok, err := prod.deps.Tokens.Get(ctx, item)
		if err != nil {
			return fmt.Errorf("reading revoked item %s: %w", item, err)
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
	}
	return emit(Result{
		"section": "load", "serve_flags": *serveFlags, "users": *users, "admins": *admins, "admin_interval": adminEvery.String(), "remove_rpm": *removeRPM, "seconds": rep.Seconds,
		"revoke_requests": rep.Revoke.Requests, "revoke_rps": rep.Revoke.PerSecond,
		"revoke_p50_ms": rep.Revoke.P50MS, "revoke_p99_ms": rep.Revoke.P99MS, "revoke_max_ms": rep.Revoke.MaxMS,
		"revoke_statuses":    rep.Revoke.Statuses,
		"analytics_requests": rep.Analytics.Requests, "analytics_rps": rep.Analytics.PerSecond,
		"analytics_p50_ms": rep.Analytics.P50MS, "analytics_p99_ms": rep.Analytics.P99MS, "analytics_max_ms": rep.Analytics.MaxMS,
		"analytics_statuses": rep.Analytics.Statuses,
		"server_errors":      rep.ServerErrors, "no_answer": rep.NoAnswer, "stopped": rep.Stopped,
		"verified": checked, "removed_at_plaid": removedAtPlaid, "revoked_locally": local, "wrong": wrong,
		"pass": rep.ServerErrors == 0 && rep.NoAnswer == 0 && wrong == 0 && checked == *users**perUser,
	})
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
