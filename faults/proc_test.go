package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/internal/wait"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// Settings every process gets (DESIGN §8), besides the world's project,
// emulator and fake Plaid. A short lease makes a dead run block others for
// seconds, not minutes; VALIDATION_INTERVAL=0 validates every active token
// in every run, so that every run calls Plaid for every token.
const (
	leaseTTL      = 3 * time.Second
	jwtSecret     = "faults-jwt-secret-0123456789abcdef0123456789"
	operator      = "faults"
	operatorActor = "cli:" + operator
)

// envPrefixes are the variables of the test's own environment a process
// must not inherit: each process gets exactly the scenario's configuration.
var envPrefixes = []string{"GOOGLE_", "FIRESTORE_", "TOKEN_", "LEGACY_", "PLAID_", "AUTH_", "ADMIN_",
	"STALE_", "RUN_TIME_", "HTTP_RUN_", "VALIDATION_", "CLEANUP_", "LOG_", "SERVE_", "PORT=", "HOST=",
	"USER=", "USERNAME=", "PUBSUB_", "ANALYTICS_"}

// procEnv is the environment of a process of w, extra (KEY=VALUE) last.
func (w *world) procEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		inherited := true
		for _, p := range envPrefixes {
			if strings.HasPrefix(kv, p) {
				inherited = false
			}
		}
		if inherited {
			env = append(env, kv)
		}
	}
	env = append(env,
		"GOOGLE_CLOUD_PROJECT="+w.project,
		"FIRESTORE_EMULATOR_HOST="+w.procHost,
		"TOKEN_ENCRYPTION_KEY="+testenv.EncryptionKey,
		"PLAID_CLIENT_ID="+w.fake.ClientID,
		"PLAID_SECRET="+w.fake.Secret,
		"PLAID_BASE_URL="+w.fake.URL(),
		"PLAID_ENV=sandbox",
		fmt.Sprintf("STALE_DAYS=%d", staleDays),
		"VALIDATION_INTERVAL=0",
		// Plaid's pacing stays on, at a rate that does not make a few
		// hundred tokens take minutes.
		"PLAID_ITEM_GET_RPM=60000",
		"PLAID_ITEM_REMOVE_RPM=60000",
		"CLEANUP_LEASE_TTL="+leaseTTL.String(),
		"LOG_LEVEL=INFO",
		"USER="+operator,
	)
	env = append(env, w.extraEnv...)
	return append(env, extra...)
}

// proc is a binary a scenario started.
type proc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr testenv.LogBuffer
	done           chan struct{}
	code           int // exit status once done; -1 when a signal ended it
}

// start runs bin with args in env.
func (w *world) start(name, bin string, env []string, args ...string) *proc {
	w.t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		w.t.Fatalf("starting %s: %v", name, err)
	}
	w.step("started %s %v", name, args)
	go func() {
		err := p.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			p.code = ee.ExitCode()
		default:
			p.code = -2
		}
		// Logged before done is closed: the test waits for done before it
		// ends, and a test must not log after it ended.
		w.step("%s exited %d", name, p.code)
		close(p.done)
	}()
	w.mu.Lock()
	w.procs = append(w.procs, p)
	w.mu.Unlock()
	return p
}

// stopProcs ends the processes still running and, when the test failed,
// shows what each wrote. Every process is checked for data races.
func (w *world) stopProcs() {
	w.mu.Lock()
	procs := w.procs
	w.mu.Unlock()
	for _, p := range procs {
		if !p.exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if strings.Contains(p.stderr.String(), "WARNING: DATA RACE") {
			w.t.Errorf("%s: the race detector found a data race:\n%s", p.name, p.stderr.String())
		}
		if w.t.Failed() {
			w.t.Logf("%s (exit %d) stdout:\n%s\n%s stderr (last 6000 bytes):\n%s", p.name, p.code,
				oneLine(p.stdout.String()), p.name, tail(p.stderr.String(), 6000))
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for p to exit and returns its status; past within it kills p
// and fails the test.
func (p *proc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(within):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s did not exit within %s; stderr:\n%s", p.name, within, tail(p.stderr.String(), 4000))
		return 0
	}
}

// kill9 ends p with SIGKILL, as `kill -9` does, and waits for it. It may
// run on any goroutine (a fake Plaid hook).
func (p *proc) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL) // fails only if p already exited
	<-p.done
}

// cli starts manage-tokens with args.
func (w *world) cli(name string, args ...string) *proc {
	w.t.Helper()
	return w.cliWith(name, nil, args...)
}

// cliWith starts manage-tokens with args and extra settings.
func (w *world) cliWith(name string, extra []string, args ...string) *proc {
	w.t.Helper()
	_, cli := builtBinaries(w.t)
	return w.start(name, cli, w.procEnv(extra...), args...)
}

// cleanup runs `manage-tokens cleanup --days 90 --json` plus args to its
// end and returns the process.
func (w *world) cleanup(name string, within time.Duration, args ...string) *proc {
	w.t.Helper()
	p := w.cli(name, append([]string{"cleanup", "--days", fmt.Sprint(staleDays), "--json"}, args...)...)
	p.wait(w.t, within)
	return p
}

// report decodes the --json report of a cleanup that finished: exit 0, or
// 3 (DESIGN §9) exactly when it kept tokens for the next run.
func (p *proc) report(t *testing.T) lifecycle.CleanupReport {
	t.Helper()
	if p.code != 0 && p.code != 3 {
		t.Fatalf("%s exited %d, want 0 or 3; stderr:\n%s", p.name, p.code, tail(p.stderr.String(), 4000))
	}
	var r lifecycle.CleanupReport
	if err := json.Unmarshal([]byte(p.stdout.String()), &r); err != nil {
		t.Fatalf("%s: --json output is not a cleanup report: %v\n%s", p.name, err, p.stdout.String())
	}
	if leftWork := r.Statistics.Errors > 0; leftWork != (p.code == 3) {
		t.Errorf("%s exited %d with %d tokens kept for the next run: exit 3 means it left work, and only then",
			p.name, p.code, r.Statistics.Errors)
	}
	return r
}

// serve starts scripts/serve for w, extra settings last, and returns its
// base URL once it answers /healthz.
func (w *world) serve(extra ...string) (*proc, string) {
	w.t.Helper()
	serve, _ := builtBinaries(w.t)
	port := wait.Port(w.t)
	env := w.procEnv(append([]string{"HOST=127.0.0.1", "PORT=" + port, "AUTH_JWT_SECRET=" + jwtSecret,
		"ADMIN_USER_IDS=" + sample.AdminUser}, extra...)...)
	p := w.start("serve", serve, env)
	base := "http://127.0.0.1:" + port
	wait.Until(w.t, "scripts/serve to answer /healthz", 60*time.Second, func() bool {
		if p.exited() {
			w.t.Fatalf("serve exited %d during start:\n%s", p.code, p.stderr.String()+p.stdout.String())
		}
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p, base
}

// bearer is an Authorization header for user, signed as the app's backend
// signs them.
func bearer(t *testing.T, user string) string {
	t.Helper()
	return "Bearer " + testenv.SignHS256(t, jwtSecret, testenv.AccessTokenClaims(user))
}

// httpAnswer is one HTTP answer, its JSON body decoded.
type httpAnswer struct {
	status int
	body   map[string]any
	err    error
}

// call makes an HTTP request with a bound generous enough for a Plaid call
// that waits out a timeout and retries.
func call(ctx context.Context, method, url, authorization string) httpAnswer {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return httpAnswer{err: err}
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	client := &http.Client{Timeout: 3 * time.Minute}
	resp, err := client.Do(req)
	if err != nil {
		return httpAnswer{err: err}
	}
	defer resp.Body.Close()
	a := httpAnswer{status: resp.StatusCode}
	if err := json.NewDecoder(resp.Body).Decode(&a.body); err != nil {
		a.err = fmt.Errorf("HTTP %d with a body that is not JSON: %w", resp.StatusCode, err)
	}
	return a
}
