package emulator

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/finwell/plaid-token-lifecycle/internal/wait"
)

// The Firestore emulator that triggers functions: it delivers an
// Eventarc-shaped event of every write matching a registered trigger to the
// host its --functions_emulator flag names (scripts/serve's
// /functions/projects/{project}/triggers/{trigger}). The gcloud wrapper does
// not pass that flag on, so it starts through the SDK's own launcher.

// Launcher is the gcloud SDK's
// platform/cloud-firestore-emulator/cloud_firestore_emulator.
func Launcher() (string, error) {
	gcloud, err := exec.LookPath("gcloud")
	if err != nil {
		return "", errors.New("gcloud is not installed")
	}
	if gcloud, err = filepath.EvalSymlinks(gcloud); err != nil {
		return "", err
	}
	launcher := filepath.Join(filepath.Dir(filepath.Dir(gcloud)), "platform", "cloud-firestore-emulator", "cloud_firestore_emulator")
	if _, err := os.Stat(launcher); err != nil {
		return "", fmt.Errorf("the Firestore emulator is not installed (%w)", err)
	}
	return launcher, nil
}

// StartTriggering starts a Firestore emulator delivering its triggers'
// events to functionsHost, in a process group of its own, logging to
// logPath, and waits until it answers. stop stops it (its process group).
func StartTriggering(functionsHost, logPath string) (host string, stop func(), err error) {
	launcher, err := Launcher()
	if err != nil {
		return "", nil, err
	}
	port, err := wait.FreePort()
	if err != nil {
		return "", nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(launcher, "start", "--host=127.0.0.1", "--port="+port, "--functions_emulator="+functionsHost)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the JVM it forks too
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return "", nil, fmt.Errorf("starting the triggering emulator: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop = func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		logFile.Close()
	}
	host = "127.0.0.1:" + port
	if err := waitAnswering(host, exited); err != nil {
		stop()
		return "", nil, fmt.Errorf("the triggering emulator: %w (its log: %s)", err, logPath)
	}
	return host, stop, nil
}

// Triggering is StartTriggering for a test, which stops it at its end.
// Without the SDK's emulator the test is skipped, saying so, or fails
// under REQUIRE_FIRESTORE_EMULATOR.
func Triggering(t testing.TB, functionsHost string) string {
	t.Helper()
	if _, err := Launcher(); err != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("no Firestore emulator launcher: %v", err)
		}
		t.Skipf("SKIPPED: no Firestore emulator launcher (%v)", err)
	}
	host, stop, err := StartTriggering(functionsHost, filepath.Join(t.TempDir(), "triggering-emulator.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return host
}

// RegisterTokenStatsTrigger registers TokenStats' trigger (every write to
// plaid_tokens/{item_id}) with the emulator at host for project, as
// Terraform's Eventarc trigger is in the cloud.
func RegisterTokenStatsTrigger(host, project string) error {
	body := `{"eventType":"google.cloud.firestore.document.v1.written","database":"(default)","namespace":"(default)",` +
		`"document":{"value":"plaid_tokens/{item_id}","matchType":"PATH_PATTERN"}}`
	url := "http://" + host + "/emulator/v1/projects/" + project + "/eventarcTrigger?eventarcTriggerId=us-central1-TokenStats"
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("registering the TokenStats trigger: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("registering the TokenStats trigger: HTTP %d %s", resp.StatusCode, msg)
	}
	return nil
}
