package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The security rules the module releases (firestore.rules.tftpl).
const rulesTemplate = module + "firestore.rules.tftpl"

// TestFirestoreRulesRefuseClients loads the rules the module releases into the
// Firestore emulator and asks as a client SDK would (no owner credentials):
// this service's collections are refused, with and without the app team's
// rules beside them, while the app's own collections get what its rules grant
// and the service's accounts (owner here, IAM in production) are not bound by
// rules at all.
func TestFirestoreRulesRefuseClients(t *testing.T) {
	t.Parallel()
	host := firestoreEmulator(t)

	// The app's rules as firestore_app_rules would carry them: everything
	// public, but for a wildcard guarded as docs/DEPLOY.md says.
	appRules := `    match /{collection}/{document=**} {
      allow read, write: if !isPlaidTokenCollection(collection);
    }`

	serviceCollections := []string{"plaid_tokens", "plaid_token_runs", "plaid_token_audit", "plaid_token_locks",
		"plaid_token_events", "plaid_token_analytics", "plaid_token_legacy_archive", "plaid_token_stats", "plaid_token_stats_events"}

	tests := []struct {
		name     string
		appRules string
		appOpen  bool // the app's collection "users" is readable and writable
	}{
		{name: "default", appRules: "", appOpen: false},
		{name: "app-rules", appRules: appRules, appOpen: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			project := "tfcheck-rules-" + tc.name
			loadRules(t, host, project, renderRules(t, tc.appRules))
			docs := "http://" + host + "/v1/projects/" + project + "/databases/(default)/documents/"

			paths := []string{"plaid_tokens/item-1/sub/doc-1"} // and below the documents
			for _, c := range serviceCollections {
				paths = append(paths, c+"/item-1")
			}
			for _, path := range paths {
				if code := request(t, http.MethodGet, docs+path, false); code != http.StatusForbidden {
					t.Errorf("client read of %s: HTTP %d, want 403", path, code)
				}
				if code := request(t, http.MethodPatch, docs+path, false); code != http.StatusForbidden {
					t.Errorf("client write of %s: HTTP %d, want 403", path, code)
				}
			}
			// Owner credentials stand for the service's accounts: rules do not
			// bind them (IAM does).
			if code := request(t, http.MethodPatch, docs+"plaid_token_locks/cleanup", true); code != http.StatusOK {
				t.Errorf("owner write of plaid_token_locks/cleanup: HTTP %d, want 200", code)
			}

			wantApp := http.StatusForbidden
			if tc.appOpen {
				wantApp = http.StatusOK
			}
			if code := request(t, http.MethodPatch, docs+"users/u-1", false); code != wantApp {
				t.Errorf("client write of users/u-1: HTTP %d, want %d", code, wantApp)
			}
		})
	}
}

// renderRules renders firestore.rules.tftpl as Terraform's templatefile does
// for the two directives it uses: the %{ if } block around the app's rules
// (with ~ stripping the newline after each directive) and ${app_rules}.
func renderRules(t *testing.T, appRules string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testRepoRoot(t), "terraform", rulesTemplate))
	if err != nil {
		t.Fatal(err)
	}
	src := string(data)
	const ifLine = "%{ if trimspace(app_rules) != \"\" ~}\n"
	const endLine = "%{ endif ~}\n"
	i, j := strings.Index(src, ifLine), strings.Index(src, endLine)
	if i < 0 || j < i || strings.Count(src, "%{") != 2 || strings.Count(src, "${") != 1 {
		t.Fatalf("%s changed shape: renderRules knows only one %%{ if } block around ${app_rules}", rulesTemplate)
	}
	inner := src[i+len(ifLine) : j]
	if strings.TrimSpace(appRules) == "" {
		inner = ""
	}
	out := src[:i] + strings.Replace(inner, "${app_rules}", appRules, 1) + src[j+len(endLine):]
	if strings.Contains(out, "%{") || strings.Contains(out, "${") {
		t.Fatalf("rendering %s left a template directive:\n%s", rulesTemplate, out)
	}
	return out
}

// loadRules sets the rules of one project of the emulator; a rules file that
// does not compile is an error.
func loadRules(t *testing.T, host, project, rules string) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"rules": map[string]any{"files": []map[string]string{{"name": "firestore.rules", "content": rules}}}})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, "http://"+host+"/emulator/v1/projects/"+project+":securityRules", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var msg bytes.Buffer
		msg.ReadFrom(resp.Body)
		t.Fatalf("the emulator refused the rules (HTTP %d): %s\nrules:\n%s", resp.StatusCode, msg.String(), rules)
	}
}

// request sends a Firestore REST request as a client SDK would (owner false:
// no credentials, so the rules decide) or as the emulator's owner, and
// returns the HTTP status.
func request(t *testing.T, method, url string, owner bool) int {
	t.Helper()
	var body *bytes.Reader
	if method == http.MethodPatch {
		body = bytes.NewReader([]byte(`{"fields":{"written_by":{"stringValue":"tfcheck"}}}`))
	} else {
		body = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if owner {
		req.Header.Set("Authorization", "Bearer owner")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// firestoreEmulator returns the host:port of a Firestore emulator: the one
// $FIRESTORE_EMULATOR_HOST names (scripts/test.sh starts one; rules are set
// per project, so other tests' projects are untouched), else one it starts
// for the test and stops after it, as scripts/emulator.sh does.
func firestoreEmulator(t *testing.T) string {
	t.Helper()
	if host := os.Getenv("FIRESTORE_EMULATOR_HOST"); host != "" {
		return host
	}
	for _, tool := range []string{"gcloud", "java"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPED: the Firestore rules are NOT checked: %s is not installed and FIRESTORE_EMULATOR_HOST is not set (the Firestore emulator needs gcloud and Java)", tool)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	cmd := exec.CommandContext(ctx, "gcloud", "emulators", "firestore", "start", "--host-port="+host, "--quiet")
	// Its own process group: stopping it stops the JVM gcloud forks.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting the Firestore emulator: %v", err)
	}
	var stopped bool
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cancel() // SIGKILL to the group
			<-done
		}
		cancel()
	}
	t.Cleanup(stop)

	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get("http://" + host + "/")
		if err == nil {
			sc := bufio.NewScanner(resp.Body)
			ok := sc.Scan() && strings.Contains(sc.Text(), "Ok")
			resp.Body.Close()
			if ok {
				return host
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop() // the output is complete once it has stopped
			t.Fatalf("the Firestore emulator did not answer on %s within 90 s; its output:\n%s", host, log.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
}
