package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/finwell/plaid-token-lifecycle/internal/buildpack"
	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/internal/wait"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	os.Exit(emulator.Main(m))
}

// The walk-through scripts/dev-walkthrough.sh prints runs as printed,
// against this stand-in and the scripts/serve binary as scripts/dev.sh
// starts them: every step answers what its comment says, and the Item
// ends stored, repaired and verified.
func TestDevWalkthroughRunsAsPrinted(t *testing.T) {
	emulator.Host(t)
	project := emulator.ProjectID(t)
	root, err := buildpack.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	for _, pkg := range []string{"fakeplaid", "serve"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(bin, pkg), filepath.Join(root, "scripts", pkg)).CombinedOutput()
		if err != nil {
			t.Fatalf("go build scripts/%s: %v\n%s", pkg, err, out)
		}
	}

	plaidAddr, controlAddr, apiPort := freeAddr(t), freeAddr(t), freeAddr(t)
	start(t, filepath.Join(bin, "fakeplaid"), nil, "-addr", plaidAddr, "-sign-addr", controlAddr)
	waitListening(t, controlAddr)
	const jwtSecret = "walkthrough-jwt-secret-0123456789abcdef"
	_, port, _ := net.SplitHostPort(apiPort)
	start(t, filepath.Join(bin, "serve"), []string{
		"PORT=" + port, "GOOGLE_CLOUD_PROJECT=" + project, "TOKEN_ENCRYPTION_KEY=" + testenv.EncryptionKey,
		"PLAID_CLIENT_ID=local-client-id", "PLAID_SECRET=local-secret", "PLAID_ENV=sandbox",
		"PLAID_BASE_URL=http://" + plaidAddr, "AUTH_JWT_SECRET=" + jwtSecret,
	})
	api := "http://" + apiPort
	waitHealthy(t, api+"/healthz")

	jwt := testenv.SignHS256(t, jwtSecret, testenv.AccessTokenClaims(sample.Alice))
	script := exec.Command("bash", filepath.Join(root, "scripts", "dev-walkthrough.sh"), api, jwt, "http://"+plaidAddr, "http://"+controlAddr)
	printed, err := script.Output()
	if err != nil {
		t.Fatalf("dev-walkthrough.sh: %v", err)
	}
	run := exec.Command("bash", "-euo", "pipefail", "-c", string(printed))
	run.Env = os.Environ()
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("running the walk-through: %v\n%s", err, out)
	}

	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{
		`^\{"link_token":"link-sandbox-[0-9a-f-]+","expiration":"[0-9T:Z-]+","mode":"create"\}$`,
		`^public-sandbox-[0-9a-f-]+$`,
		`^\{"item_id":"[A-Za-z0-9]+","institution_id":"ins_109508","institution_name":"First Platypus Bank","status":"active"\}$`,
		`^\{"detail":"public_token is expired, already exchanged or invalid; open Link again for a new one","code":"invalid_argument"\}$`,
		`^\{"items":\[\{"item_id":"[A-Za-z0-9]+","institution_id":"ins_109508",.*"status":"active","error_code":null,"needs_repair":false,`,
		`^\{"reset_login":true\}$`,
		`^\{"item_id":"[A-Za-z0-9]+","status":"active","error_code":"ITEM_LOGIN_REQUIRED","needs_repair":true\}$`,
		`^\{"repaired":true\}$`,
		`^\{"item_id":"[A-Za-z0-9]+","status":"active","error_code":null,"needs_repair":false\}$`,
	}
	if len(lines) != len(want) {
		t.Fatalf("the walk-through printed %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		if !regexp.MustCompile(w).MatchString(lines[i]) {
			t.Errorf("step line %d = %s\nwant it to match %s", i+1, lines[i], w)
		}
	}

	// What Firestore holds: Alice's one Item, repaired and verified.
	tokens, err := lifecycle.NewFirestoreTokenStore(emulator.NewClientFor(t, project)).ListByUser(t.Context(), sample.Alice)
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 1 || tokens[0].Status != lifecycle.StatusActive || tokens[0].ErrorCode != "" ||
		tokens[0].LastValidatedAt.IsZero() || tokens[0].InstitutionName != "First Platypus Bank" {
		t.Errorf("Alice's tokens after the walk-through: %+v", tokens)
	}
}

// start runs a binary until the test ends.
func start(t *testing.T, bin string, env []string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(os.Environ(), env...)
	logs := &testenv.LogBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), logs.String())
		}
	})
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return "127.0.0.1:" + wait.Port(t)
}

// waitListening waits for addr to accept connections: a process starting.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	wait.Until(t, addr+" to listen", 60*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// waitHealthy waits for url to answer 200: scripts/serve ready.
func waitHealthy(t *testing.T, url string) {
	t.Helper()
	wait.Until(t, url+" to answer 200", 90*time.Second, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
