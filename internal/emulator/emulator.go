// Package emulator gives tests Google's real Firestore and Pub/Sub
// emulators. scripts/test.sh starts each once and exports
// FIRESTORE_EMULATOR_HOST and PUBSUB_EMULATOR_HOST; a plain `go test`
// without them starts them itself, once per test binary, when gcloud is
// installed (Main, from each package's TestMain), and says loudly when it
// cannot. Tests are isolated from each other by a project id of their own.
package emulator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/finwell/plaid-token-lifecycle/internal/wait"
)

// Environment variables: the emulators' addresses (honoured by the Cloud
// client libraries), and REQUIRE_FIRESTORE_EMULATOR, which turns a missing
// emulator from a loud skip into a failure (scripts/test.sh sets it: CI
// must never pass by skipping storage tests).
const (
	FirestoreHostEnv = "FIRESTORE_EMULATOR_HOST"
	PubSubHostEnv    = "PUBSUB_EMULATOR_HOST"
	RequireEnv       = "REQUIRE_FIRESTORE_EMULATOR"
)

// startTimeout bounds an emulator's start: a JVM on a loaded two-core
// machine takes 10 to 30 seconds.
const startTimeout = 90 * time.Second

// started are the emulators this test binary started, stopped by Main.
var started struct {
	mu     sync.Mutex
	procs  []*exec.Cmd
	pubsub struct {
		once sync.Once
		err  error
	}
	firestoreErr error // why Firestore could not be started, for Host's message
}

// Main runs a package's tests with a Firestore emulator: the one named by
// FIRESTORE_EMULATOR_HOST, else one it starts (and stops) when gcloud is
// installed. Use it as `func TestMain(m *testing.M) { os.Exit(emulator.Main(m)) }`.
func Main(m *testing.M) int {
	if os.Getenv(FirestoreHostEnv) == "" {
		host, err := start("firestore", []string{"emulators", "firestore", "start"})
		if err != nil {
			started.firestoreErr = err
			fmt.Fprintf(os.Stderr, "\n"+
				"*****************************************************************\n"+
				"* No Firestore emulator: %v\n"+
				"* Every storage test of this package is SKIPPED.\n"+
				"* Run scripts/test.sh, or install the gcloud SDK's emulators.\n"+
				"*****************************************************************\n\n", err)
		} else {
			os.Setenv(FirestoreHostEnv, host)
		}
	}
	code := m.Run()
	stopAll()
	return code
}

// Host returns FIRESTORE_EMULATOR_HOST. Without an emulator the test is
// skipped, saying why, unless REQUIRE_FIRESTORE_EMULATOR is set, in which
// case it fails.
func Host(t testing.TB) string {
	t.Helper()
	host := os.Getenv(FirestoreHostEnv)
	if host == "" {
		why := "FIRESTORE_EMULATOR_HOST is not set and this test binary did not start an emulator (no emulator.Main in TestMain?)"
		if started.firestoreErr != nil {
			why = started.firestoreErr.Error()
		}
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("no Firestore emulator: %s; run the tests through scripts/test.sh", why)
		}
		t.Skipf("SKIPPED: no Firestore emulator (%s); run scripts/test.sh", why)
	}
	return host
}

// PubSubHost returns PUBSUB_EMULATOR_HOST, starting a Pub/Sub emulator for
// this test binary on first use when it is unset (Main stops it). Without
// one the test is skipped, or fails under REQUIRE_FIRESTORE_EMULATOR.
func PubSubHost(t testing.TB) string {
	t.Helper()
	if host := os.Getenv(PubSubHostEnv); host != "" {
		return host
	}
	started.pubsub.once.Do(func() {
		var host string
		host, started.pubsub.err = start("pubsub", []string{"beta", "emulators", "pubsub", "start"})
		if started.pubsub.err == nil {
			os.Setenv(PubSubHostEnv, host)
		}
	})
	if err := started.pubsub.err; err != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("no Pub/Sub emulator: %v; run the tests through scripts/test.sh", err)
		}
		t.Skipf("SKIPPED: no Pub/Sub emulator (%v); run scripts/test.sh", err)
	}
	return os.Getenv(PubSubHostEnv)
}

// ProjectID returns a fresh project id: the emulators keep each project's
// data apart, so tests using different ids can run in parallel.
func ProjectID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-", " ", "-").Replace(t.Name()))
	if len(name) > 16 {
		name = name[:16]
	}
	return "test-" + strings.Trim(name, "-") + "-" + hex.EncodeToString(b)
}

// NewClient returns a Firestore emulator client in a fresh project, closed
// when the test ends.
func NewClient(t testing.TB) *firestore.Client {
	t.Helper()
	Host(t)
	return NewClientFor(t, ProjectID(t))
}

// NewClientFor returns an emulator client for project, closed when the test
// ends.
func NewClientFor(t testing.TB, project string) *firestore.Client {
	t.Helper()
	Host(t)
	client, err := firestore.NewClient(context.Background(), project)
	if err != nil {
		t.Fatalf("firestore.NewClient: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// start runs `gcloud <args> --host-port=127.0.0.1:PORT` in a process group
// of its own and waits until it answers Ok.
func start(name string, args []string) (string, error) {
	gcloud, err := exec.LookPath("gcloud")
	if err != nil {
		return "", fmt.Errorf("gcloud is not installed, so no %s emulator can be started", name)
	}
	if _, err := exec.LookPath("java"); err != nil {
		return "", fmt.Errorf("java is not installed: the %s emulator needs it", name)
	}
	port, err := wait.FreePort()
	if err != nil {
		return "", err
	}
	host := net.JoinHostPort("127.0.0.1", port)
	logPath := filepath.Join(os.TempDir(), fmt.Sprintf("%s-emulator-%s.log", name, port))
	logFile, err := os.Create(logPath)
	if err != nil {
		return "", err
	}
	defer logFile.Close()
	cmd := exec.Command(gcloud, append(args, "--host-port="+host, "--quiet")...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // stop the JVM it forks too
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("starting the %s emulator: %w", name, err)
	}
	started.mu.Lock()
	started.procs = append(started.procs, cmd)
	started.mu.Unlock()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	fmt.Fprintf(os.Stderr, "emulator: starting the %s emulator on %s (log %s)\n", name, host, logPath)
	if err := waitAnswering(host, exited); err != nil {
		return "", fmt.Errorf("the %s emulator %w; see %s", name, err, logPath)
	}
	return host, nil
}

// waitAnswering waits until the emulator at host answers 200 at /, for at
// most startTimeout; exited closes when its process has ended.
func waitAnswering(host string, exited <-chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://" + host + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("exited during start")
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("did not answer on %s within %s", host, startTimeout)
}

// stopAll stops every emulator this binary started, by process group.
func stopAll() {
	started.mu.Lock()
	defer started.mu.Unlock()
	for _, cmd := range started.procs {
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, cmd := range started.procs {
		for cmd.Process != nil && syscall.Kill(-cmd.Process.Pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	started.procs = nil
}
