package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeGcloud writes a gcloud stand-in into a temporary directory and
// returns its path. `gcloud secrets versions access VERSION --secret=S
// --project=P` prints secrets[S+"@"+VERSION], or fails as gcloud does for a
// disabled version ("disabled" as the value) or a missing one; `gcloud auth
// print-access-token` prints test-token. Every call is appended to calls.
func fakeGcloud(t *testing.T, secrets map[string]string) (path, calls string) {
	t.Helper()
	dir := t.TempDir()
	calls = filepath.Join(dir, "calls")
	for name, value := range secrets {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	script := `#!/bin/sh
echo "$*" >> "` + calls + `"
case "$1 $2 $3" in
"secrets versions access")
  f="` + dir + `/${5#--secret=}@$4"
  [ "${6#--project=}" = finwell-lifecycle ] || { echo "ERROR: (gcloud.secrets.versions.access) PERMISSION_DENIED" >&2; exit 1; }
  [ -f "$f" ] || { echo "ERROR: (gcloud.secrets.versions.access) NOT_FOUND: Secret Version [${5#--secret=}/$4] not found." >&2; exit 1; }
  if [ "$(cat "$f")" = disabled ]; then
    echo "ERROR: (gcloud.secrets.versions.access) FAILED_PRECONDITION: Secret Version [${5#--secret=}/$4] is in DISABLED state." >&2; exit 1
  fi
  cat "$f" ;;
"auth print-access-token ") echo test-token ;;
*) echo "unexpected: $*" >&2; exit 2 ;;
esac
`
	path = filepath.Join(dir, "gcloud")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, calls
}

func callsOf(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// The environment Terraform gives four of the functions (output
// function_environment, as `terraform output -json` prints it): enough to
// cover every kind of need.
func outputsJSON(t *testing.T, keyVersion string) string {
	t.Helper()
	common := map[string]string{"GOOGLE_CLOUD_PROJECT": "finwell-lifecycle", "FIRESTORE_DATABASE": "(default)"}
	service := map[string]string{"PLAID_CLIENT_ID": "client-id", "PLAID_ENV": "production", "ADMIN_USER_IDS": "ops"}
	env := func(parts ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, p := range parts {
			for k, v := range p {
				out[k] = v
			}
		}
		return out
	}
	plaid := secretPinned{"plaid-secret", "3"}
	key := secretPinned{"plaid-token-encryption-key", keyVersion}
	jwt := secretPinned{"plaid-auth-jwt-secret", "1"}
	fe := map[string]any{
		"project": "finwell-lifecycle",
		"functions": map[string]any{
			"RevokeItem":     map[string]any{"env": env(common, service), "secrets": map[string]secretPinned{"PLAID_SECRET": plaid, "TOKEN_ENCRYPTION_KEY": key, "AUTH_JWT_SECRET": jwt}},
			"DailyCleanup":   map[string]any{"env": env(common, service), "secrets": map[string]secretPinned{"PLAID_SECRET": plaid, "TOKEN_ENCRYPTION_KEY": key}},
			"TokenAnalytics": map[string]any{"env": env(common, service), "secrets": map[string]secretPinned{"AUTH_JWT_SECRET": jwt}},
			"TokenStats":     map[string]any{"env": common, "secrets": map[string]secretPinned{}},
		},
	}
	b, err := json.Marshal(map[string]any{
		"function_environment": map[string]any{"sensitive": false, "type": "object", "value": fe},
		"dashboard_id":         map[string]any{"sensitive": false, "type": "string", "value": "projects/1/dashboards/x"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const (
	goodKey    = "a-long-enough-password-of-48-bytes-0123456789abc"
	goodJWT    = "an-hs256-secret-of-at-least-32-bytes-000"
	plaidValue = "plaid-secret-value-9f8e7d"
)

func runTool(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCheckConfigPasses(t *testing.T) {
	t.Parallel()
	gcloud, calls := fakeGcloud(t, map[string]string{
		"plaid-secret@3": plaidValue, "plaid-token-encryption-key@2": goodKey, "plaid-auth-jwt-secret@1": goodJWT,
	})
	code, stdout, stderr := runTool(t, outputsJSON(t, "2"), "-gcloud", gcloud, "check-config")
	if code != exitOK {
		t.Fatalf("exit %d, want 0; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	want := "DailyCleanup: ok\nRevokeItem: ok\nTokenAnalytics: ok\nTokenStats: ok\n"
	if diff := cmp.Diff(want, stdout); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
	// Each pinned version read once, however many functions it goes to.
	wantCalls := []string{
		"secrets versions access 1 --secret=plaid-auth-jwt-secret --project=finwell-lifecycle",
		"secrets versions access 2 --secret=plaid-token-encryption-key --project=finwell-lifecycle",
		"secrets versions access 3 --secret=plaid-secret --project=finwell-lifecycle",
	}
	got := callsOf(t, calls)
	slices.Sort(got)
	if diff := cmp.Diff(wantCalls, got); diff != "" {
		t.Errorf("gcloud calls (-want +got):\n%s", diff)
	}
}

func TestCheckConfigRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		secrets  map[string]string
		version  string
		failing  []string // functions that FAIL, with what each line must say
		reason   string
		okAnyway []string
	}{
		{
			name:     "a 16-byte encryption key",
			secrets:  map[string]string{"plaid-secret@3": plaidValue, "plaid-token-encryption-key@2": "only-16-bytes-xx", "plaid-auth-jwt-secret@1": goodJWT},
			version:  "2",
			failing:  []string{"DailyCleanup", "RevokeItem"},
			reason:   "TOKEN_ENCRYPTION_KEY must be at least 32 bytes",
			okAnyway: []string{"TokenAnalytics", "TokenStats"},
		},
		{
			name:     "a disabled version",
			secrets:  map[string]string{"plaid-secret@3": plaidValue, "plaid-token-encryption-key@2": "disabled", "plaid-auth-jwt-secret@1": goodJWT},
			version:  "2",
			failing:  []string{"DailyCleanup", "RevokeItem"},
			reason:   "secret plaid-token-encryption-key version 2 cannot be read: ERROR: (gcloud.secrets.versions.access) FAILED_PRECONDITION: Secret Version [plaid-token-encryption-key/2] is in DISABLED state.",
			okAnyway: []string{"TokenAnalytics", "TokenStats"},
		},
		{
			// Planned but not applied yet (manage_secret_values creates the
			// version): the latest one is read.
			name:     "a short JWT secret, latest version",
			secrets:  map[string]string{"plaid-secret@3": plaidValue, "plaid-token-encryption-key@latest": goodKey, "plaid-auth-jwt-secret@1": "q7Z-too-short"},
			version:  "",
			failing:  []string{"RevokeItem", "TokenAnalytics"},
			reason:   "AUTH_JWT_SECRET must be at least 32 bytes",
			okAnyway: []string{"DailyCleanup", "TokenStats"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gcloud, _ := fakeGcloud(t, tc.secrets)
			code, stdout, stderr := runTool(t, outputsJSON(t, tc.version), "-gcloud", gcloud, "check-config")
			if code != exitFailure {
				t.Fatalf("exit %d, want 1; stdout:\n%s", code, stdout)
			}
			for _, fn := range tc.failing {
				if !regexp.MustCompile(`(?m)^` + fn + `: FAILS: .*` + regexp.QuoteMeta(tc.reason)).MatchString(stdout) {
					t.Errorf("no line says %s fails for %q:\n%s", fn, tc.reason, stdout)
				}
			}
			for _, fn := range tc.okAnyway {
				if !strings.Contains(stdout, fn+": ok\n") {
					t.Errorf("%s does not read the broken secret but is not ok:\n%s", fn, stdout)
				}
			}
			if !strings.Contains(stderr, "2 of 4 functions would refuse to start") {
				t.Errorf("stderr = %q", stderr)
			}
			for name, value := range tc.secrets {
				if value != "disabled" && (strings.Contains(stdout, value) || strings.Contains(stderr, value)) {
					t.Errorf("the value of %s was printed", name)
				}
			}
		})
	}
}

// `terraform show -json tfplan`: what the apply will deploy, before it does.
func TestCheckConfigReadsAPlan(t *testing.T) {
	t.Parallel()
	var outputs map[string]any
	if err := json.Unmarshal([]byte(outputsJSON(t, "2")), &outputs); err != nil {
		t.Fatal(err)
	}
	plan, err := json.Marshal(map[string]any{"format_version": "1.2", "planned_values": map[string]any{"outputs": outputs}})
	if err != nil {
		t.Fatal(err)
	}
	gcloud, _ := fakeGcloud(t, map[string]string{
		"plaid-secret@3": plaidValue, "plaid-token-encryption-key@2": "only-16-bytes-xx", "plaid-auth-jwt-secret@1": goodJWT,
	})
	code, stdout, _ := runTool(t, string(plan), "-gcloud", gcloud, "check-config")
	if code != exitFailure || !strings.Contains(stdout, "RevokeItem: FAILS: TOKEN_ENCRYPTION_KEY must be at least 32 bytes") {
		t.Errorf("exit %d, stdout:\n%s", code, stdout)
	}
}

func TestCheckConfigWithoutTheOutput(t *testing.T) {
	t.Parallel()
	gcloud, calls := fakeGcloud(t, nil)
	code, _, stderr := runTool(t, `{"dashboard_id": {"value": "x"}}`, "-gcloud", gcloud, "check-config")
	if code != exitFailure || !strings.Contains(stderr, `no output "function_environment"`) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if got := callsOf(t, calls); len(got) != 0 {
		t.Errorf("gcloud called: %v", got)
	}
}

// rulesFake is the Firebase Rules API's release methods, recording every
// request.
type rulesFake struct {
	mu       sync.Mutex
	releases map[string]release
	requests []string
	failWith int
}

func (f *rulesFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	f.requests = append(f.requests, strings.TrimSpace(r.Method+" "+r.URL.Path+" "+string(body)))
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bearer test-token" || r.Header.Get("X-Goog-User-Project") != "finwell-lifecycle" {
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error": {"code": 403, "message": "no quota project"}}`)
		return
	}
	if f.failWith != 0 {
		w.WriteHeader(f.failWith)
		io.WriteString(w, `{"error": {"code": 500, "message": "backend error"}}`)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/v1/")
	switch r.Method {
	case http.MethodGet:
		rel, ok := f.releases[name]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error": {"code": 404, "message": "not found"}}`)
			return
		}
		json.NewEncoder(w).Encode(rel)
	case http.MethodPatch:
		var req struct{ Release release }
		json.Unmarshal(body, &req)
		f.releases[name] = req.Release
		json.NewEncoder(w).Encode(req.Release)
	case http.MethodPost:
		var rel release
		json.Unmarshal(body, &rel)
		f.releases[rel.Name] = rel
		json.NewEncoder(w).Encode(rel)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func rulesOutputs(t *testing.T, value any) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"firestore_rules_release": map[string]any{"value": value}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReleaseRules(t *testing.T) {
	t.Parallel()
	const rel = "projects/finwell-lifecycle/releases/cloud.firestore/plaid"
	want := map[string]string{"release": rel, "ruleset": "projects/finwell-lifecycle/rulesets/new-id"}
	tests := []struct {
		name     string
		existing map[string]release
		requests []string
		stdout   string
	}{
		{
			name:     "moves the release in place",
			existing: map[string]release{rel: {Name: rel, RulesetName: "projects/finwell-lifecycle/rulesets/old-id"}},
			requests: []string{
				"GET /v1/" + rel,
				`PATCH /v1/` + rel + ` {"release":{"name":"` + rel + `","rulesetName":"projects/finwell-lifecycle/rulesets/new-id"}}`,
			},
			stdout: "Firestore rules: " + rel + " moved from projects/finwell-lifecycle/rulesets/old-id to projects/finwell-lifecycle/rulesets/new-id\n",
		},
		{
			name:     "already released",
			existing: map[string]release{rel: {Name: rel, RulesetName: "projects/finwell-lifecycle/rulesets/new-id"}},
			requests: []string{"GET /v1/" + rel},
			stdout:   "Firestore rules: " + rel + " already releases projects/finwell-lifecycle/rulesets/new-id\n",
		},
		{
			name:     "creates a missing release",
			existing: map[string]release{},
			requests: []string{
				"GET /v1/" + rel,
				`POST /v1/projects/finwell-lifecycle/releases {"name":"` + rel + `","rulesetName":"projects/finwell-lifecycle/rulesets/new-id"}`,
			},
			stdout: "Firestore rules: " + rel + " created, releasing projects/finwell-lifecycle/rulesets/new-id\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := &rulesFake{releases: tc.existing}
			srv := httptest.NewServer(fake)
			t.Cleanup(srv.Close)
			gcloud, _ := fakeGcloud(t, nil)
			code, stdout, stderr := runTool(t, rulesOutputs(t, want), "-gcloud", gcloud, "release-rules", "-endpoint", srv.URL)
			if code != exitOK {
				t.Fatalf("exit %d; stderr %s", code, stderr)
			}
			if diff := cmp.Diff(tc.stdout, stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			// Never a DELETE: the database always has a release.
			if diff := cmp.Diff(tc.requests, fake.requests); diff != "" {
				t.Errorf("requests (-want +got):\n%s", diff)
			}
			if got := fake.releases[rel].RulesetName; got != want["ruleset"] {
				t.Errorf("the release points at %q, want %q", got, want["ruleset"])
			}
		})
	}
}

func TestReleaseRulesFailures(t *testing.T) {
	t.Parallel()
	gcloud, _ := fakeGcloud(t, nil)

	t.Run("rules not managed", func(t *testing.T) {
		t.Parallel()
		code, stdout, _ := runTool(t, rulesOutputs(t, nil), "-gcloud", gcloud, "release-rules", "-endpoint", "http://127.0.0.1:1")
		if code != exitOK || !strings.Contains(stdout, "manage_firestore_rules = false") {
			t.Errorf("exit %d, stdout %q", code, stdout)
		}
	})

	t.Run("API error", func(t *testing.T) {
		t.Parallel()
		fake := &rulesFake{releases: map[string]release{}, failWith: http.StatusInternalServerError}
		srv := httptest.NewServer(fake)
		t.Cleanup(srv.Close)
		code, _, stderr := runTool(t, rulesOutputs(t, map[string]string{
			"release": "projects/finwell-lifecycle/releases/cloud.firestore", "ruleset": "projects/finwell-lifecycle/rulesets/x",
		}), "-gcloud", gcloud, "release-rules", "-endpoint", srv.URL)
		if code != exitFailure || !strings.Contains(stderr, "HTTP 500: backend error") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})

	t.Run("ruleset of another project", func(t *testing.T) {
		t.Parallel()
		code, _, stderr := runTool(t, rulesOutputs(t, map[string]string{
			"release": "projects/finwell-lifecycle/releases/cloud.firestore", "ruleset": "projects/elsewhere/rulesets/x",
		}), "-gcloud", gcloud, "release-rules", "-endpoint", "http://127.0.0.1:1")
		if code != exitFailure || !strings.Contains(stderr, "not a release and a ruleset of one project") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
}

func TestUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{nil, {"deploy"}, {"check-config", "extra"}, {"release-rules", "-bogus"}} {
		if code, _, stderr := runTool(t, "{}", args...); code != exitUsage || !strings.Contains(stderr, "usage:") {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr)
		}
	}
}
