package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"

	"io"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spf13/pflag"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// cliEnv is a test environment with the sample set seeded relative to the
// system clock (the CLI runs on it, not on testenv's fixed clock), and the
// environment variables the CLI reads to reach it.
type cliEnv struct {
	*testenv.Env
	vars map[string]string
}

func newCLIEnv(t *testing.T, seedSample bool) *cliEnv {
	t.Helper()
	env := testenv.New(t)
	if seedSample {
		env.Seed(t, sample.Tokens(time.Now().UTC())...)
	}
	return &cliEnv{Env: env, vars: map[string]string{
		"GOOGLE_CLOUD_PROJECT":  env.Project,
		"TOKEN_ENCRYPTION_KEY":  testenv.EncryptionKey,
		"PLAID_CLIENT_ID":       env.Plaid.ClientID,
		"PLAID_SECRET":          env.Plaid.Secret,
		"PLAID_ENV":             "sandbox",
		"PLAID_BASE_URL":        env.Plaid.URL(),
		"PLAID_ITEM_GET_RPM":    "600000",
		"PLAID_ITEM_REMOVE_RPM": "600000",
		"USER":                  "ops-tester",
	}}
}

func (e *cliEnv) getenv(k string) (string, bool) {
	v, ok := e.vars[k]
	return v, ok
}

type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs the CLI with stderr a pipe (not a terminal).
func runCLI(t *testing.T, getenv func(string) (string, bool), args ...string) result {
	t.Helper()
	return runCLIOn(t, false, getenv, args...)
}

// runCLIOn runs the CLI with stderr a terminal or not.
func runCLIOn(t *testing.T, terminal bool, getenv func(string) (string, bool), args ...string) result {
	t.Helper()
	if getenv == nil {
		getenv = func(string) (string, bool) { return "", false }
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, console{stdout: &stdout, stderr: &stderr, terminal: terminal}, getenv)
	return result{code, stdout.String(), stderr.String()}
}

func (r result) mustSucceed(t *testing.T) {
	t.Helper()
	if r.code != exitOK {
		t.Fatalf("exit %d, want 0; stderr:\n%s", r.code, r.stderr)
	}
}

const cleanupBlock = `🚀 Personal Wealth Management - Token Management
==================================================
🧹 Token Cleanup Results:
   Total tokens checked: 15
   Expired tokens removed: 3
   Stale tokens removed: 2
   Invalid tokens marked: 1
   Revoked tokens removed: 1
   Total cleaned: 6
`

var sampleStatistics = testenv.SampleStatistics

// runIDLine is the cleanup report's run id line; withRunID replaces the id
// with RUN so that reports compare whole.
var runIDLine = regexp.MustCompile(`(?m)^   Run id: [0-9a-f-]{36}$`)

func withRunID(out string) string { return runIDLine.ReplaceAllString(out, "   Run id: RUN") }

// cleanupReport is the sample set's cleanup report, as printed.
const cleanupReport = cleanupBlock + "   Run id: RUN\n"

func TestCleanup(t *testing.T) {
	t.Parallel()
	env := newCLIEnv(t, true)
	res := runCLI(t, env.getenv, "cleanup", "--days", "90")
	res.mustSucceed(t)
	if diff := cmp.Diff(cleanupReport, withRunID(res.stdout)); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
	// The rules ran for real: dead and stale tokens are gone, the invalid
	// one marked, and the run is recorded as the CLI's.
	for _, id := range []string{"item-alice-old", "item-bob-old", "item-erin-old", "item-dave-revoked", "item-carol-boa", "item-erin-wells"} {
		if env.Doc(t, id) != nil {
			t.Errorf("%s not removed", id)
		}
	}
	if tok := env.Doc(t, "item-dave-citi"); tok == nil || tok.Status != lifecycle.StatusExpired {
		t.Errorf("item-dave-citi = %+v, want expired", tok)
	}
	runs := env.CleanupRuns(t)
	if len(runs) != 1 {
		t.Fatalf("run records: %v", runs)
	}
	if runs[0].Trigger != lifecycle.TriggerCLI || runs[0].Actor != "cli:ops-tester" || runs[0].DaysThreshold != 90 {
		t.Errorf("run record trigger %q actor %q days %d", runs[0].Trigger, runs[0].Actor, runs[0].DaysThreshold)
	}
}

func TestCleanupDryRun(t *testing.T) {
	t.Parallel()
	env := newCLIEnv(t, true)
	before := env.Doc(t, "item-carol-boa")
	// The default threshold is STALE_DAYS (90).
	res := runCLI(t, env.getenv, "cleanup", "--dry-run")
	res.mustSucceed(t)
	want := cleanupReport + "   (dry run: nothing was changed)\n"
	if diff := cmp.Diff(want, withRunID(res.stdout)); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
	if after := env.Doc(t, "item-carol-boa"); after == nil || !after.Version.Equal(before.Version) {
		t.Error("dry run changed a document")
	}
	if n := env.Plaid.CallCount("/item/remove"); n != 0 {
		t.Errorf("dry run called /item/remove %d times", n)
	}
}

func TestCleanupJSON(t *testing.T) {
	t.Parallel()
	env := newCLIEnv(t, true)
	// Logs at INFO go to stderr; stdout stays one JSON object.
	env.vars["LOG_LEVEL"] = "info"
	res := runCLI(t, env.getenv, "cleanup", "--days=90", "--json", "--dry-run")
	res.mustSucceed(t)
	var body struct {
		Message    string               `json:"message"`
		DryRun     bool                 `json:"dry_run"`
		RunID      string               `json:"run_id"`
		Statistics lifecycle.Statistics `json:"statistics"`
	}
	dec := json.NewDecoder(strings.NewReader(res.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("stdout is not the cleanup body: %v\n%s", err, res.stdout)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		t.Errorf("more than one JSON value on stdout:\n%s", res.stdout)
	}
	if diff := cmp.Diff(sampleStatistics, body.Statistics); diff != "" {
		t.Errorf("statistics (-want +got):\n%s", diff)
	}
	if !body.DryRun || body.RunID == "" || body.Message != "Token cleanup dry run completed" {
		t.Errorf("body = %+v", body)
	}
	if !strings.Contains(res.stderr, `"severity":"INFO"`) || !strings.Contains(res.stderr, "cleanup run finished") {
		t.Errorf("stderr has no INFO log lines:\n%s", res.stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want string // the error line; "" for the global usage
	}{
		{nil, ""},
		{[]string{"frobnicate"}, `manage-tokens: unknown command "frobnicate"`},
		{[]string{"help", "frobnicate"}, `manage-tokens: unknown command "frobnicate"`},
		{[]string{"--json", "cleanup"}, "manage-tokens: unknown flag --json: flags follow the command"},
		{[]string{"cleanup", "--days"}, "manage-tokens cleanup: --days needs a value"},
		{[]string{"cleanup", "--days", "0"}, `manage-tokens cleanup: --days must be an integer from 1 to 3650, got "0"`},
		{[]string{"cleanup", "--days", "3651"}, `manage-tokens cleanup: --days must be an integer from 1 to 3650, got "3651"`},
		{[]string{"cleanup", "--days", "ninety"}, `manage-tokens cleanup: --days must be an integer from 1 to 3650, got "ninety"`},
		{[]string{"cleanup", "-days=-1"}, `manage-tokens cleanup: --days must be an integer from 1 to 3650, got "-1"`},
		{[]string{"cleanup", "--frobnicate"}, "manage-tokens cleanup: unknown flag --frobnicate"},
		{[]string{"cleanup", "-frobnicate"}, "manage-tokens cleanup: unknown flag --frobnicate"},
		{[]string{"cleanup", "--json=maybe"}, `manage-tokens cleanup: --json takes no value, got "maybe"`},
		{[]string{"cleanup", "--days", "90", "extra"}, `manage-tokens cleanup: unexpected argument "extra"`},
		{[]string{"analytics", "--dry-run"}, "manage-tokens analytics: unknown flag --dry-run"},
		{[]string{"revoke"}, "manage-tokens revoke: missing <user_id>"},
		{[]string{"revoke", "--dry-run"}, "manage-tokens revoke: missing <user_id>"},
		{[]string{"revoke", "user-a", "user-b"}, `manage-tokens revoke: unexpected argument "user-b"`},
		{[]string{"revoke", " "}, "manage-tokens revoke: <user_id> is empty"},
		{[]string{"migrate-legacy", "now"}, `manage-tokens migrate-legacy: unexpected argument "now"`},
		{[]string{"reencrypt", "--days", "3"}, "manage-tokens reencrypt: unknown flag --days"},
		{[]string{"version", "--short"}, "manage-tokens version: unknown flag --short"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			res := runCLI(t, nil, tc.args...)
			if res.code != exitUsage {
				t.Errorf("exit %d, want %d", res.code, exitUsage)
			}
			if res.stdout != "" {
				t.Errorf("stdout = %q, want nothing", res.stdout)
			}
			if !strings.Contains(res.stderr, "usage: manage-tokens") {
				t.Errorf("stderr has no usage:\n%s", res.stderr)
			}
			if tc.want == "" {
				return
			}
			if first, _, _ := strings.Cut(res.stderr, "\n"); first != tc.want {
				t.Errorf("error line = %q, want %q", first, tc.want)
			}
			// The pointer to the help: the command's own when there is one.
			help := "Run 'manage-tokens --help'"
			if cmd, ok := lookupCommand(tc.args[0]); ok {
				help = "Run 'manage-tokens " + cmd.name + " --help'"
			}
			if !strings.Contains(res.stderr, help) {
				t.Errorf("stderr does not say %q:\n%s", help, res.stderr)
			}
			if m := singleDashFlag.FindString(res.stderr); m != "" {
				t.Errorf("stderr names a flag with one dash (%q):\n%s", m, res.stderr)
			}
		})
	}
}

// singleDashFlag matches a flag named the flag package's way, -days, which
// the CLI's help and errors never use (-h aside).
var singleDashFlag = regexp.MustCompile(`(^|[\s\[(])-[a-gi-z][a-z-]*`)

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}, {"-help"}} {
		res := runCLI(t, nil, args...)
		if res.code != exitOK || res.stderr != "" || res.stdout != globalUsage() {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want the global usage", args, res.code, res.stdout, res.stderr)
		}
	}
	usage := globalUsage()
	for _, cmd := range commands {
		if !strings.Contains(usage, "\n  "+cmd.name+" ") {
			t.Errorf("the global usage does not list %s:\n%s", cmd.name, usage)
		}
	}
}

// TestCommandHelp: every command's --help is its own: synopsis, what it
// does, its arguments and every flag, named as they are typed.
func TestCommandHelp(t *testing.T) {
	t.Parallel()
	for _, cmd := range commands {
		t.Run(cmd.name, func(t *testing.T) {
			t.Parallel()
			want := cmd.help()
			for _, args := range [][]string{{cmd.name, "--help"}, {cmd.name, "-h"}, {cmd.name, "-help"}, {"help", cmd.name}} {
				res := runCLI(t, nil, args...)
				if res.code != exitOK || res.stderr != "" {
					t.Errorf("%v: exit %d, stderr %q", args, res.code, res.stderr)
				}
				if res.stdout != want {
					t.Errorf("%v: stdout (-want +got):\n%s", args, cmp.Diff(want, res.stdout))
				}
			}
			if !strings.HasPrefix(want, "usage: manage-tokens "+cmd.name) || !strings.Contains(want, "\n  -h, --help") {
				t.Errorf("help:\n%s", want)
			}
			var inv invocation
			cmd.flagSet(&inv).VisitAll(func(f *pflag.Flag) {
				if !strings.Contains(want, "\n  --"+f.Name) || !strings.Contains(want, "[--"+f.Name) {
					t.Errorf("help does not show --%s:\n%s", f.Name, want)
				}
			})
			for _, a := range cmd.args {
				if !strings.Contains(want, "\n  <"+a.name+">") {
					t.Errorf("help does not explain <%s>:\n%s", a.name, want)
				}
			}
			if m := singleDashFlag.FindString(want); m != "" {
				t.Errorf("help names a flag with one dash (%q):\n%s", m, want)
			}
		})
	}
	// One example in full, as an operator sees it.
	cleanup, _ := lookupCommand("cleanup")
	for _, line := range []string{
		"usage: manage-tokens cleanup [--days N] [--dry-run] [--force] [--json] [--take-over RUN_ID]\n",
		"  --days N             an active token unused for more than N days is stale; N is 1 to 3650\n",
		"                       (default: STALE_DAYS, or 90)\n",
		"  --dry-run            report what would be done, change nothing\n",
		"  --take-over RUN_ID   take the cleanup lease from the dead run RUN_ID, which is marked abandoned\n",
	} {
		if !strings.Contains(cleanup.help(), line) {
			t.Errorf("cleanup help has no line %q:\n%s", line, cleanup.help())
		}
	}
	revoke, _ := lookupCommand("revoke")
	if got, want := revoke.usageLine(), "usage: manage-tokens revoke [--dry-run] [--json] <user_id>"; got != want {
		t.Errorf("revoke usage = %q, want %q", got, want)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		res := runCLI(t, nil, args...)
		if res.code != exitOK || res.stderr != "" || !strings.HasPrefix(res.stdout, "manage-tokens ") ||
			!strings.Contains(res.stdout, "\ngo:       go1.") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, res.code, res.stdout, res.stderr)
		}
	}
}

func TestVersionText(t *testing.T) {
	t.Parallel()
	main := debug.Module{Path: "github.com/finwell/plaid-token-lifecycle", Version: "v0.0.0-20261130011105-8ef1056aa1b2+dirty"}
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{"go build in a checkout with changes", &debug.BuildInfo{GoVersion: "go1.26.8", Main: main, Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "8ef1056aa1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"},
			{Key: "vcs.time", Value: "2026-11-30T01:11:05Z"}, {Key: "vcs.modified", Value: "true"},
		}}, true, `manage-tokens v0.0.0-20261130011105-8ef1056aa1b2+dirty
module:   github.com/finwell/plaid-token-lifecycle
revision: 8ef1056aa1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6 (with uncommitted changes)
time:     2026-11-30T01:11:05Z
go:       go1.26.8
`},
		{"go run", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: main.Path, Version: "(devel)"}}, true,
			`manage-tokens (devel)
module:   github.com/finwell/plaid-token-lifecycle
revision: unknown (go run and go build -buildvcs=false do not record it)
go:       go1.26.8
`},
		{"no build information", nil, false, "manage-tokens (no build information: built without module support)\n"},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, versionText(tc.bi, tc.ok)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

// TestFailures: configuration and Firestore failures exit 1 with one line
// on stderr.
func TestMissingConfiguration(t *testing.T) {
	t.Parallel()
	res := runCLI(t, nil, "cleanup", "--days", "90")
	if res.code != exitFailure {
		t.Errorf("exit %d, want 1", res.code)
	}
	for _, v := range []string{"GOOGLE_CLOUD_PROJECT", "TOKEN_ENCRYPTION_KEY", "PLAID_CLIENT_ID", "PLAID_SECRET"} {
		if !strings.Contains(res.stderr, v) {
			t.Errorf("stderr does not name %s: %q", v, res.stderr)
		}
	}
	if strings.Count(res.stderr, "\n") != 1 || res.stdout != "" {
		t.Errorf("want one line on stderr and nothing on stdout; stderr %q stdout %q", res.stderr, res.stdout)
	}
	// analytics needs only the project.
	res = runCLI(t, func(k string) (string, bool) { return "", false }, "analytics")
	if res.code != exitFailure || strings.Contains(res.stderr, "TOKEN_ENCRYPTION_KEY") {
		t.Errorf("analytics: exit %d, stderr %q", res.code, res.stderr)
	}
}

// TestFirestoreUnreachable is not parallel: it points the process's
// FIRESTORE_EMULATOR_HOST, which the client library reads, at a closed
// port.
func TestFirestoreUnreachable(t *testing.T) {
	t.Setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")
	vars := map[string]string{"GOOGLE_CLOUD_PROJECT": "unreachable", "TOKEN_ENCRYPTION_KEY": testenv.EncryptionKey,
		"PLAID_CLIENT_ID": "id", "PLAID_SECRET": "secret", "PLAID_ENV": "sandbox"}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"cleanup", "--days", "90"}, console{stdout: &stdout, stderr: &stderr}, func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	})
	if code != exitFailure {
		t.Errorf("exit %d, want 1", code)
	}
	if got := stderr.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, "Firestore") {
		t.Errorf("stderr = %q, want one line about Firestore", got)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout = %q", stdout.String())
	}
}

func TestAnalytics(t *testing.T) {
	t.Parallel()
	env := newCLIEnv(t, true)
	// Store only: analytics runs without the key and Plaid credentials.
	vars := map[string]string{"GOOGLE_CLOUD_PROJECT": env.Project}
	getenv := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }

	res := runCLI(t, getenv, "analytics", "--json")
	res.mustSucceed(t)
	var body struct {
		Analytics lifecycle.Analytics `json:"analytics"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &body); err != nil {
		t.Fatalf("stdout: %v\n%s", err, res.stdout)
	}
	want := lifecycle.Analytics{
		TotalTokens: 15, ActiveTokens: 11, ExpiredTokens: 3, RevokedTokens: 1, ErrorTokens: 1, UniqueUsers: 5,
		StaleTokens30Days: 4, StaleTokens90Days: 2,
		Institutions: map[string]int{"Chase Bank": 5, "Bank of America": 3, "Wells Fargo": 3, "Citi": 3, "Unknown": 1},
		Environments: map[string]int{"sandbox": 15},
	}
	if diff := cmp.Diff(want, body.Analytics, cmpopts.IgnoreFields(lifecycle.Analytics{}, "AsOf", "Source", "Trend")); diff != "" {
		t.Errorf("analytics (-want +got):\n%s", diff)
	}
	// The counters were never initialized: a recount, and a note on stderr.
	if body.Analytics.Source != lifecycle.SourceRecount || !strings.Contains(res.stderr, "analytics --exact") {
		t.Errorf("source %q, stderr %q; want a recount and a note naming analytics --exact", body.Analytics.Source, res.stderr)
	}

	res = runCLI(t, getenv, "analytics")
	res.mustSucceed(t)
	wantText := `🚀 Personal Wealth Management - Token Management
==================================================
📊 Token Analytics:
   Total tokens: 15
   Active tokens: 11
   Expired tokens: 3
   Revoked tokens: 1
   Error tokens: 1
   Unique users: 5
   Stale tokens (30+ days): 4
   Stale tokens (90+ days): 2
   Institutions:
      Chase Bank: 5
      Bank of America: 3
      Citi: 3
      Wells Fargo: 3
      Unknown: 1
   Environments:
      sandbox: 15
   As of: TIME (a recount of every token)
`
	if diff := cmp.Diff(wantText, asOfTime.ReplaceAllString(res.stdout, "As of: TIME")); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
}

var asOfTime = regexp.MustCompile(`As of: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)

// analytics --exact recounts, prints the drift and repairs: the first run
// backfills counters never initialized, the next finds no drift, and plain
// analytics then reads the counters, with the trend.
func TestAnalyticsExact(t *testing.T) {
	t.Parallel()
	env := newCLIEnv(t, true)
	getenv := func(k string) (string, bool) {
		if k == "GOOGLE_CLOUD_PROJECT" {
			return env.Project, true
		}
		return "", false
	}

	res := runCLI(t, getenv, "analytics", "--exact")
	res.mustSucceed(t)
	for _, want := range []string{"Total tokens: 15", "Counters were not initialized: this run backfilled them",
		"tokens total: +15", "tokens unique_users: +5", "Users whose token count drifted: 5", "Repaired: the drift was added"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, res.stdout)
		}
	}

	res = runCLI(t, getenv, "analytics", "--exact", "--json")
	res.mustSucceed(t)
	var body struct {
		Analytics lifecycle.Analytics `json:"analytics"`
		Exact     map[string]any      `json:"exact"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &body); err != nil {
		t.Fatalf("stdout: %v\n%s", err, res.stdout)
	}
	delete(body.Exact, "repair_id")
	wantExact := map[string]any{"drift": map[string]any{}, "users_drifted": 0.0, "counters_initialized": true, "repaired": true}
	if diff := cmp.Diff(wantExact, body.Exact); diff != "" || body.Analytics.TotalTokens != 15 {
		t.Errorf("second --exact (-want +got):\n%s\ntotal %d", diff, body.Analytics.TotalTokens)
	}

	// Exact counters: no drift, and nothing said to be repaired.
	res = runCLI(t, getenv, "analytics", "--exact")
	res.mustSucceed(t)
	for _, want := range []string{"   Drift: none\n", "   Users whose token count drifted: 0\n", "   Counters exact: nothing to repair (recorded as repair "} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("third --exact: stdout lacks %q:\n%s", want, res.stdout)
		}
	}
	if strings.Contains(res.stdout, "Repaired") {
		t.Errorf("third --exact says it repaired exact counters:\n%s", res.stdout)
	}

	res = runCLI(t, getenv, "analytics")
	res.mustSucceed(t)
	if !strings.Contains(res.stdout, "(the counters)") || !strings.Contains(res.stdout, "Last 7 days (created / used / removed):") || res.stderr != "" {
		t.Errorf("analytics after the backfill: stdout\n%s\nstderr %q", res.stdout, res.stderr)
	}
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	env := newCLIEnv(t, true)
	alice := []string{"item-alice-chase", "item-alice-boa", "item-alice-old"}

	res := runCLI(t, env.getenv, "revoke", sample.Alice, "--dry-run")
	res.mustSucceed(t)
	want := "🚀 Personal Wealth Management - Token Management\n" + strings.Repeat("=", 50) + "\n" +
		"🔒 Would revoke 3 tokens for user-alice\n   (dry run: nothing was changed)\n"
	if diff := cmp.Diff(want, res.stdout); diff != "" {
		t.Errorf("dry run stdout (-want +got):\n%s", diff)
	}
	for _, id := range alice {
		if env.Doc(t, id).Status == lifecycle.StatusRevoked {
			t.Errorf("dry run revoked %s", id)
		}
	}

	res = runCLI(t, env.getenv, "revoke", "--json", sample.Alice)
	res.mustSucceed(t)
	var body struct {
		Message      string `json:"message"`
		RevokedCount int    `json:"revoked_count"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &body); err != nil {
		t.Fatalf("stdout: %v\n%s", err, res.stdout)
	}
	if body.Message != "Revoked 3 tokens successfully" || body.RevokedCount != 3 {
		t.Errorf("body = %+v", body)
	}
	for _, id := range alice {
		tok := env.Doc(t, id)
		if tok.Status != lifecycle.StatusRevoked || !tok.PlaidRemoved {
			t.Errorf("%s: status %s plaid_removed %v, want revoked and removed", id, tok.Status, tok.PlaidRemoved)
		}
		audit := env.AuditEntries(t, id)
		if len(audit) != 1 || audit[0].Reason != lifecycle.ReasonAdminRevoked || audit[0].Actor != "cli:ops-tester" {
			t.Errorf("%s audit = %+v", id, audit)
		}
	}
	if tok := env.Doc(t, "item-bob-chase"); tok.Status != lifecycle.StatusActive {
		t.Errorf("another user's token is %s", tok.Status)
	}

	// Nothing left to revoke.
	res = runCLI(t, env.getenv, "revoke", sample.Alice)
	res.mustSucceed(t)
	if !strings.HasSuffix(res.stdout, "🔒 Revoked 0 tokens for user-alice\n") {
		t.Errorf("stdout:\n%s", res.stdout)
	}
}

func TestMigrateLegacy(t *testing.T) {
	t.Parallel()
	env := newCLIEnv(t, false)
	ctx := context.Background()
	legacy := map[string]any{"items": map[string]any{
		"item-x1": map[string]any{"access_token": "access-sandbox-x1", "status": "error", "institution_name": "Citi",
			"transactions": map[string]any{"cursor": "abc"}},
		"item-x2": map[string]any{"access_token": "access-sandbox-x2", "status": "active"},
	}}
	if _, err := env.Client.Collection(lifecycle.TokensCollection).Doc("user-x").Set(ctx, legacy); err != nil {
		t.Fatal(err)
	}

	res := runCLI(t, env.getenv, "migrate-legacy", "--dry-run", "--json")
	res.mustSucceed(t)
	var report lifecycle.MigrateReport
	if err := json.Unmarshal([]byte(res.stdout), &report); err != nil {
		t.Fatalf("stdout: %v\n%s", err, res.stdout)
	}
	if !report.DryRun || report.LegacyUsers != 1 || report.ItemsMigrated != 2 || report.LegacyErrorItems != 1 || report.UndatedItems != 2 {
		t.Errorf("dry run report = %+v", report)
	}
	if env.Doc(t, "item-x1") != nil {
		t.Error("dry run created an item document")
	}

	res = runCLI(t, env.getenv, "migrate-legacy")
	res.mustSucceed(t)
	for _, line := range []string{"📦 Legacy Migration Results:\n", "   Users migrated: 1\n", "   Items migrated: 2\n",
		"   Plaintext tokens: 2\n", "   Items without any date (updated_at set to now): 2\n", "   Conflicts: 0\n", "   Errors: 0\n"} {
		if !strings.Contains(res.stdout, line) {
			t.Errorf("stdout has no %q:\n%s", line, res.stdout)
		}
	}
	tok := env.Doc(t, "item-x1")
	if tok == nil || tok.UserID != "user-x" || tok.Status != lifecycle.StatusActive || tok.ErrorCode != lifecycle.LegacyErrorCode {
		t.Fatalf("item-x1 = %+v", tok)
	}
	if p, err := env.Vault.Decrypt("item-x1", tok.AccessToken); err != nil || p != "access-sandbox-x1" {
		t.Errorf("item-x1 token = %q, %v", p, err)
	}

	// A document that cannot migrate is reported, and the command fails.
	conflict := map[string]any{"items": map[string]any{"item-x2": map[string]any{"access_token": "access-sandbox-y", "status": "active"}}}
	if _, err := env.Client.Collection(lifecycle.TokensCollection).Doc("user-y").Set(ctx, conflict); err != nil {
		t.Fatal(err)
	}
	res = runCLI(t, env.getenv, "migrate-legacy")
	if res.code != exitFailure || !strings.Contains(res.stdout, "user-y / item-x2 (conflict)") ||
		!strings.Contains(res.stderr, "1 legacy documents were left in place") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
}

func TestReencrypt(t *testing.T) {
	t.Parallel()
	env := newCLIEnv(t, false)
	const oldKey = "cli-test-old-key"
	old, err := lifecycle.NewVault(oldKey, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	tokens := []sample.Token{testenv.ActiveToken("item-r1", "user-r", 1), testenv.ActiveToken("item-r2", "user-r", 1)}
	if err := sample.Seed(context.Background(), env.Tokens, old, tokens); err != nil {
		t.Fatal(err)
	}
	env.vars["TOKEN_ENCRYPTION_KEY_PREVIOUS"] = oldKey
	// Plaid credentials are not needed to re-encrypt.
	delete(env.vars, "PLAID_CLIENT_ID")
	delete(env.vars, "PLAID_SECRET")

	res := runCLI(t, env.getenv, "reencrypt", "--json")
	res.mustSucceed(t)
	var report lifecycle.ReencryptReport
	if err := json.Unmarshal([]byte(res.stdout), &report); err != nil {
		t.Fatalf("stdout: %v\n%s", err, res.stdout)
	}
	if report.Checked != 2 || report.Reencrypted != 2 || report.KeyID != env.Vault.CurrentKeyID() {
		t.Errorf("report = %+v", report)
	}
	for _, tok := range tokens {
		stored := env.Doc(t, tok.ItemID).AccessToken
		if p, err := env.Vault.Decrypt(tok.ItemID, stored); err != nil || p != tok.Plaintext {
			t.Errorf("%s decrypts with the new key only to %q, %v", tok.ItemID, p, err)
		}
	}

	res = runCLI(t, env.getenv, "reencrypt", "--dry-run")
	res.mustSucceed(t)
	for _, line := range []string{"🔑 Re-encryption Results:\n", "   Tokens checked: 2\n", "   Tokens re-encrypted: 0\n",
		"   Already on the current key: 2\n", "   (dry run: nothing was changed)\n"} {
		if !strings.Contains(res.stdout, line) {
			t.Errorf("stdout has no %q:\n%s", line, res.stdout)
		}
	}
}

func TestProgressBar(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := &progress{out: &statusLine{w: &buf}, label: "cleanup", total: 300}
	p.update(150)
	p.finish()
	want := "\rcleanup [###############...............] 150/300 ( 50%)\r\033[K"
	if got := buf.String(); got != want {
		t.Errorf("bar = %q, want %q", got, want)
	}
	// Disabled (stderr not a terminal): nothing at all.
	var off progress
	off.update(1)
	off.finish()
}

// TestStatusLine: a log line written while the bar is drawn goes above it,
// and the bar is drawn again below.
func TestStatusLine(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	s := &statusLine{w: &buf}
	io.WriteString(s, "before\n")
	s.show("bar 1/2")
	io.WriteString(s, "WARN  retrying\n")
	s.show("bar 2/2")
	s.clear()
	io.WriteString(s, "after\n")
	if diff := cmp.Diff([]string{"before", "WARN  retrying", "after"}, screen(buf.String())); diff != "" {
		t.Errorf("screen (-want +got):\n%s", diff)
	}
}

// screen returns the lines a terminal shows for out: "\r" returns to the
// line's start, "\033[K" erases to its end, other text overwrites.
func screen(out string) []string {
	var lines []string
	for _, segment := range strings.Split(out, "\n") {
		var line []rune
		col := 0
		for rest := segment; rest != ""; {
			switch {
			case strings.HasPrefix(rest, "\r"):
				col, rest = 0, rest[1:]
			case strings.HasPrefix(rest, "\033[K"):
				line, rest = line[:col], rest[3:]
			default:
				r := []rune(rest)[0]
				if col < len(line) {
					line[col] = r
				} else {
					line = append(line, r)
				}
				col++
				rest = rest[len(string(r)):]
			}
		}
		lines = append(lines, string(line))
	}
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// TestTerminalOutput: on a terminal, the bar is drawn on stderr (also with
// --json) and logs are text lines; in a pipe, neither a bar nor text, JSON
// lines. stdout is the same report or one JSON object either way.
func TestTerminalOutput(t *testing.T) {
	t.Parallel()
	env := newCLIEnv(t, true)
	env.vars["LOG_LEVEL"] = "info"
	text := regexp.MustCompile(`^(DEBUG|INFO|WARN|ERROR) +\S`)
	tests := []struct {
		name     string
		terminal bool
		json     bool
	}{
		{"terminal", true, false},
		{"terminal, --json", true, true},
		{"pipe", false, false},
		{"pipe, --json", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Not parallel: the runs share the environment's documents.
			args := []string{"cleanup", "--dry-run"}
			if tc.json {
				args = append(args, "--json")
			}
			res := runCLIOn(t, tc.terminal, env.getenv, args...)
			res.mustSucceed(t)
			if tc.json {
				var body map[string]any
				if err := json.Unmarshal([]byte(res.stdout), &body); err != nil {
					t.Errorf("stdout is not one JSON object: %v\n%s", err, res.stdout)
				}
			} else if want := cleanupReport + dryRunLine + "\n"; withRunID(res.stdout) != want {
				t.Errorf("stdout (-want +got):\n%s", cmp.Diff(want, withRunID(res.stdout)))
			}
			if bar := strings.Contains(res.stderr, "\rcleanup ["); bar != tc.terminal {
				t.Errorf("progress bar on stderr = %v, want %v:\n%q", bar, tc.terminal, res.stderr)
			}
			if !tc.terminal && strings.ContainsAny(res.stderr, "\r\033") {
				t.Errorf("terminal control characters in a pipe:\n%q", res.stderr)
			}
			lines := screen(res.stderr)
			if len(lines) == 0 {
				t.Fatal("no log lines on stderr at LOG_LEVEL=info")
			}
			sawFinished := false
			for _, line := range lines {
				if tc.terminal && !tc.json {
					if !text.MatchString(line) || strings.HasPrefix(line, "{") {
						t.Errorf("not a text log line: %q", line)
					}
					sawFinished = sawFinished || strings.HasPrefix(line, "INFO  cleanup run finished ")
					continue
				}
				var entry map[string]any
				if err := json.Unmarshal([]byte(line), &entry); err != nil {
					t.Errorf("not a JSON log line: %q", line)
					continue
				}
				sawFinished = sawFinished || entry["message"] == "cleanup run finished"
			}
			if !sawFinished {
				t.Errorf("no \"cleanup run finished\" line:\n%s", strings.Join(lines, "\n"))
			}
		})
	}
}
