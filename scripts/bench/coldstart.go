package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/finwell/plaid-token-lifecycle/functions"
	"github.com/finwell/plaid-token-lifecycle/internal/buildpack"
	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/wait"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// coldStartCmd measures each deployed function's cold start the way Cloud
// Functions starts it: the binary Google's Go buildpack builds
// (internal/buildpack: a generated main importing the module root and
// calling funcframework.Start), one process per target chosen by
// FUNCTION_TARGET, configured with only the variables Terraform gives that
// target (functions.TargetNeeds). From process start it sends the target's
// first request as soon as the port accepts, and times: start to listening,
// start to the first answer (the cold start), the first request alone, and
// a second, warm one. The first request pays for what the function builds
// lazily (Firestore client, vault keys by PBKDF2, JWT verifier); the
// difference between first and warm requests says how much.
func coldStartCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("coldstart", flag.ExitOnError)
	starts := fs.Int("starts", 3, "starts per target (the median is reported)")
	bin := fs.String("bin", "", "the buildpack-built binary (default: build it now)")
	fs.Parse(args)

	root, err := buildpack.ModuleRoot()
	if err != nil {
		return err
	}
	if *bin == "" {
		dir, err := os.MkdirTemp("", "bench-buildpack-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		*bin = filepath.Join(dir, "function")
		t0 := time.Now()
		if err := buildpack.Build(ctx, root, *bin); err != nil {
			return err
		}
		progressf("built the functions as the buildpack does in %.0f s", time.Since(t0).Seconds())
	}
	targets, err := registeredTargets(filepath.Join(root, "function.go"))
	if err != nil {
		return err
	}

	cfg, err := lifecycle.LoadConfig(lifecycle.Needs{Store: true, Vault: true, Plaid: true})
	if err != nil {
		return err
	}
	fake := plaidfake.NewServer(cfg.PlaidClientID, cfg.PlaidSecret, plaidfake.WithLatency(20*time.Millisecond))
	defer fake.Close()
	sampleTokens := sample.Tokens(time.Now().UTC())
	sample.Register(fake, sampleTokens)
	client, err := lifecycle.NewFirestoreClient(ctx, cfg)
	if err != nil {
		return err
	}
	prod, err := newProduction(cfg, client)
	if err != nil {
		return err
	}
	svc, err := prod.service()
	if err == nil {
		err = seedTokens(ctx, client, prod.deps.Cipher, sampleTokens)
	}
	if err == nil {
		// As deployed after the first backfill: the counters initialized,
		// so TokenAnalytics reads them rather than recounting (and asking
		// for a repair on a Pub/Sub this benchmark does not run).
		_, err = svc.ExactAnalytics(ctx, lifecycle.ExactOptions{Repair: true, Trigger: "cli"})
	}
	prod.Close()
	if err != nil {
		return err
	}

	// What key derivation alone costs here: a new password, so nothing is
	// cached.
	t0 := time.Now()
	if _, err := lifecycle.NewVault(fmt.Sprintf("bench-derivation-%d-0123456789abcdef", time.Now().UnixNano()), nil, ""); err != nil {
		return err
	}
	deriveMS := ms(time.Since(t0))
	if err := emit(Result{"section": "coldstart_derive", "derive_ms": deriveMS}); err != nil {
		return err
	}

	jwtSecret := "bench-coldstart-jwt-secret-0123456789"
	for _, target := range targets {
		env := targetEnv(target.name, cfg, fake.URL(), jwtSecret)
		var runs []startTimes
		for i := range *starts {
			req, err := firstRequest(target.name, jwtSecret, i)
			if err != nil {
				return err
			}
			st, err := startOnce(ctx, *bin, target.name, env, req)
			if err != nil {
				return fmt.Errorf("%s: %w", target.name, err)
			}
			runs = append(runs, st)
		}
		med := func(f func(startTimes) float64) float64 {
			v := make([]float64, len(runs))
			for i, r := range runs {
				v[i] = f(r)
			}
			sort.Float64s(v)
			return v[len(v)/2]
		}
		needs := functions.TargetNeeds[target.name]
		if err := emit(Result{
			"section": "coldstart", "target": target.name, "kind": target.kind, "starts": len(runs),
			"listen_ms": med(func(s startTimes) float64 { return s.listen }),
			"cold_ms":   med(func(s startTimes) float64 { return s.answered }),
			"first_ms":  med(func(s startTimes) float64 { return s.first }),
			"warm_ms":   med(func(s startTimes) float64 { return s.warm }),
			"status":    runs[0].status, "derives_keys": needs.Vault,
		}); err != nil {
			return err
		}
	}
	return nil
}

type target struct{ name, kind string }

// registeredTargets reads the targets function.go registers, so that a
// target added there (TokenStats) is measured without a change here.
func registeredTargets(path string) ([]target, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []target
	for _, m := range regexp.MustCompile(`ff\.(HTTP|CloudEvent)\("(\w+)"`).FindAllStringSubmatch(string(src), -1) {
		out = append(out, target{name: m[2], kind: m[1]})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no ff.HTTP or ff.CloudEvent registration in %s", path)
	}
	return out, nil
}

// targetEnv is what Terraform gives target: its needs' variables only.
func targetEnv(target string, cfg lifecycle.Config, plaidURL, jwtSecret string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"FIRESTORE_EMULATOR_HOST=" + os.Getenv("FIRESTORE_EMULATOR_HOST"), "GOOGLE_CLOUD_PROJECT=" + cfg.Project}
	needs, ok := functions.TargetNeeds[target]
	if !ok {
		needs = lifecycle.NeedsAll
	}
	if needs.Vault {
		env = append(env, "TOKEN_ENCRYPTION_KEY="+cfg.EncryptionKey)
	}
	if needs.Plaid {
		env = append(env, "PLAID_CLIENT_ID="+cfg.PlaidClientID, "PLAID_SECRET="+cfg.PlaidSecret, "PLAID_ENV="+cfg.PlaidEnv, "PLAID_BASE_URL="+plaidURL)
	}
	if needs.Auth {
		env = append(env, "AUTH_JWT_SECRET="+jwtSecret, "ADMIN_USER_IDS="+sample.AdminUser)
	}
	return env
}

// firstRequest is a request each target answers in production: an admin's
// dry-run cleanup, a user revoking an item (not theirs: 404) or all their
// tokens, analytics, an unsigned webhook (401), a scheduled dry-run
// cleanup, the weekly analytics, a token write (TokenStats).
func firstRequest(target, jwtSecret string, i int) (*http.Request, error) {
	bearer := func(sub string, admin bool) string {
		c := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix(), "type": "access_token"}
		if admin {
			c["admin"] = true
		}
		s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(jwtSecret))
		return "Bearer " + s
	}
	pubsub := func(msg string) []byte {
		b, _ := json.Marshal(map[string]any{"message": map[string]any{"data": []byte(msg), "messageId": fmt.Sprint(i)}, "subscription": "s"})
		return b
	}
	var method, path, auth, ceType string
	var body []byte
	switch target {
	case "TokenCleanup":
		method, path, auth = http.MethodDelete, "/?dry_run=true&days_threshold=90", bearer(sample.AdminUser, true)
	case "RevokeAllTokens":
		method, path, auth = http.MethodDelete, "/", bearer("coldstart-user-without-tokens", false)
	case "TokenAnalytics":
		method, path, auth = http.MethodGet, "/", bearer(sample.AdminUser, true)
	case "RevokeItem":
		method, path, auth = http.MethodDelete, "/item-bob-chase", bearer(sample.Alice, false)
	case "PlaidWebhook":
		method, path = http.MethodPost, "/"
		body = []byte(`{"webhook_type":"ITEM","webhook_code":"PENDING_EXPIRATION","item_id":"item-bob-chase","environment":"sandbox"}`)
	case "DailyCleanup":
		method, path, ceType = http.MethodPost, "/", functions.PubSubEventType
		body = pubsub(`{"days_threshold":90,"dry_run":true}`)
	case "WeeklyAnalytics":
		method, path, ceType = http.MethodPost, "/", functions.PubSubEventType
		body = pubsub(`{}`)
	case "TokenStats":
		// An Eventarc Firestore event in its JSON form: a token's update.
		method, path, ceType = http.MethodPost, "/", "google.cloud.firestore.document.v1.written"
		doc := func(status string) map[string]any {
			return map[string]any{"name": "projects/p/databases/(default)/documents/plaid_tokens/item-coldstart",
				"fields":     map[string]any{"status": map[string]any{"stringValue": status}, "user_id": map[string]any{"stringValue": "coldstart-user"}},
				"createTime": "2026-01-01T00:00:00Z", "updateTime": time.Now().UTC().Format(time.RFC3339Nano)}
		}
		body, _ = json.Marshal(map[string]any{"oldValue": doc("active"), "value": doc("revoked"), "updateMask": map[string]any{"fieldPaths": []string{"status"}}})
	default:
		return nil, fmt.Errorf("no first request known for target %s: add one to coldstart.go", target)
	}
	req, err := http.NewRequest(method, "http://placeholder"+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if ceType != "" {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Ce-Specversion", "1.0")
		req.Header.Set("Ce-Id", fmt.Sprintf("coldstart-%s-%d-%d", target, i, time.Now().UnixNano()))
		req.Header.Set("Ce-Type", ceType)
		req.Header.Set("Ce-Source", "//bench/coldstart")
		if target == "TokenStats" {
			req.Header.Set("Ce-Subject", "documents/plaid_tokens/item-coldstart")
		}
	}
	return req, nil
}

// startTimes are one start's figures, in milliseconds from process start.
type startTimes struct {
	listen, answered, first, warm float64
	status                        int
}

// startOnce starts one process of target and times its first and second
// answers to req.
func startOnce(ctx context.Context, bin, target string, env []string, req *http.Request) (startTimes, error) {
	var st startTimes
	port, err := wait.FreePort()
	if err != nil {
		return st, err
	}
	body, _ := io.ReadAll(req.Body)
	cmd := exec.Command(bin)
	cmd.Env = append(slices.Clone(env), "FUNCTION_TARGET="+target, "PORT="+port)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return st, err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	addr := "127.0.0.1:" + port
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Since(t0) > 30*time.Second {
			return st, fmt.Errorf("not listening within 30 s: %s", logs.String())
		}
		time.Sleep(time.Millisecond)
	}
	st.listen = ms(time.Since(t0))
	client := &http.Client{Timeout: 60 * time.Second}
	send := func() (int, error) {
		r := req.Clone(ctx)
		r.URL.Host = addr
		r.Host = addr
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.Header.Set("Ce-Id", req.Header.Get("Ce-Id")+fmt.Sprint(time.Now().UnixNano()))
		resp, err := client.Do(r)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	t1 := time.Now()
	status, err := send()
	if err != nil {
		return st, err
	}
	st.answered, st.first, st.status = ms(time.Since(t0)), ms(time.Since(t1)), status
	if status >= 500 {
		return st, fmt.Errorf("first request answered %d: %s", status, logs.String())
	}
	t2 := time.Now()
	if _, err := send(); err != nil {
		return st, errors.Join(errors.New("second request"), err)
	}
	st.warm = ms(time.Since(t2))
	return st, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
