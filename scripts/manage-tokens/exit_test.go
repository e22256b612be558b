package main

import (
	"encoding/json"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// Plaid refuses /item/remove with an error the service does not retry (a
// request it finds malformed): the tokens to remove stay for the next run.
func failRemovals(env *cliEnv) {
	env.Plaid.FailAlways("/item/remove", 400, "INVALID_INPUT", "INVALID_FIELD")
}

// A cleanup that kept tokens for the next run exits 3 (DESIGN §9), text
// and --json alike, and says so on stderr; the same run then exits 0 once
// Plaid answers.
func TestCleanupLeftWorkExits3(t *testing.T) {
	t.Parallel()
	env := newCLIEnv(t, true)
	failRemovals(env)

	res := runCLI(t, env.getenv, "cleanup", "--days", "90")
	if res.code != exitLater {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, exitLater, res.stdout, res.stderr)
	}
	// 2 expired (the third was removed at Plaid before), 1 revoked and 2
	// stale tokens need /item/remove.
	for _, want := range []string{"   Expired tokens removed: 1\n", "   Not finished (kept for the next run): 5\n", "   Run id: "} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, res.stdout)
		}
	}
	if !strings.Contains(res.stderr, "left work for the next one (exit 3)") {
		t.Errorf("stderr does not say why it exits 3:\n%s", res.stderr)
	}
	for _, id := range []string{"item-alice-old", "item-dave-revoked", "item-carol-boa"} {
		if env.Doc(t, id) == nil {
			t.Errorf("%s was deleted although Plaid did not remove it", id)
		}
	}

	res = runCLI(t, env.getenv, "cleanup", "--days", "90", "--json")
	if res.code != exitLater {
		t.Fatalf("--json: exit %d, want %d\n%s", res.code, exitLater, res.stderr)
	}
	// The token the first run marked expired is now to remove as well.
	var body lifecycle.CleanupReport
	if err := json.Unmarshal([]byte(res.stdout), &body); err != nil || body.Statistics.Errors != 6 {
		t.Errorf("--json stdout = %+v, %v:\n%s", body, err, res.stdout)
	}
	// The run command exits 3 for that run too: a script following it
	// learns the same.
	if res := runCLI(t, env.getenv, "run", body.RunID); res.code != exitLater ||
		!strings.Contains(res.stdout, "Not finished (kept for the next run): 6") || !strings.Contains(res.stdout, "item-dave-citi (plaid_remove): ") {
		t.Errorf("run %s: exit %d, want 3 with its errors listed:\n%s", body.RunID, res.code, res.stdout)
	}

	env.Plaid.ClearFaults()
	res = runCLI(t, env.getenv, "cleanup", "--days", "90")
	res.mustSucceed(t)
	if !strings.Contains(res.stdout, "Total cleaned: 6") {
		t.Errorf("the next run did not finish the work:\n%s", res.stdout)
	}
}

// Revoking tokens whose Items Plaid did not confirm removed exits 3: they
// are revoked for the app, still billed until a cleanup removes them.
func TestRevokeNotRemovedAtPlaidExits3(t *testing.T) {
	t.Parallel()
	env := newCLIEnv(t, true)
	failRemovals(env)
	res := runCLI(t, env.getenv, "revoke", sample.Alice)
	if res.code != exitLater {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, exitLater, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "🔒 Revoked 3 tokens for user-alice\n   Not yet removed at Plaid (the next cleanup removes them): 3\n") {
		t.Errorf("stdout:\n%s", res.stdout)
	}
	for _, id := range []string{"item-alice-chase", "item-alice-boa", "item-alice-old"} {
		if tok := env.Doc(t, id); tok.Status != lifecycle.StatusRevoked || tok.PlaidRemoved {
			t.Errorf("%s: status %s plaid_removed %v, want revoked, not removed", id, tok.Status, tok.PlaidRemoved)
		}
	}
	env.Plaid.ClearFaults()
	// The cleanup finishes the removals; revoking again then has nothing
	// left undone.
	runCLI(t, env.getenv, "cleanup", "--days", "90").mustSucceed(t)
	res = runCLI(t, env.getenv, "revoke", "--json", sample.Alice)
	res.mustSucceed(t)
	if !strings.Contains(res.stdout, `"not_removed_at_plaid": 0`) {
		t.Errorf("stdout:\n%s", res.stdout)
	}
}

// A project that holds nothing of this service (a misspelled
// GOOGLE_CLOUD_PROJECT: the emulator accepts any) fails with exit 1 rather
// than report an empty success; analytics --exact initializes it, and then
// the commands run.
func TestEmptyProjectFails(t *testing.T) {
	t.Parallel()
	env := newCLIEnv(t, false)
	for _, args := range [][]string{{"cleanup", "--dry-run"}, {"analytics"}, {"runs"}, {"report"}} {
		res := runCLI(t, env.getenv, args...)
		if res.code != exitFailure || res.stdout != "" {
			t.Errorf("%v on an empty project: exit %d, stdout %q; want 1 and nothing", args, res.code, res.stdout)
		}
		for _, want := range []string{env.Project, "holds no token and no record of this service", "GOOGLE_CLOUD_PROJECT", "analytics --exact"} {
			if !strings.Contains(res.stderr, want) {
				t.Errorf("%v: stderr lacks %q:\n%s", args, want, res.stderr)
			}
		}
	}
	runCLI(t, env.getenv, "analytics", "--exact").mustSucceed(t)
	res := runCLI(t, env.getenv, "cleanup", "--dry-run")
	res.mustSucceed(t)
	if !strings.Contains(res.stdout, "Total tokens checked: 0") {
		t.Errorf("stdout:\n%s", res.stdout)
	}
}

// Runs and audit entries name the operator: --actor when given.
func TestActorInRecords(t *testing.T) {
	t.Parallel()
	env := newCLIEnv(t, true)
	runCLI(t, env.getenv, "cleanup", "--days", "90", "--actor", "alice@finwell.example").mustSucceed(t)
	runs := env.CleanupRuns(t)
	if len(runs) != 1 || runs[0].Actor != "alice@finwell.example" || runs[0].Trigger != lifecycle.TriggerCLI {
		t.Fatalf("runs = %+v", runs)
	}
	for _, id := range []string{"item-alice-old", "item-carol-boa"} {
		audit := env.AuditEntries(t, id)
		if len(audit) != 1 || audit[0].Actor != "alice@finwell.example" || audit[0].RunID != runs[0].ID {
			t.Errorf("%s audit = %+v", id, audit)
		}
	}
}

// resolveActor: --actor, else the account of the credentials, read from
// files only, else the local user.
func TestResolveActor(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sa := write("sa.json", `{"type": "service_account", "client_email": "ops-runner@prod.iam.gserviceaccount.com", "private_key": "x"}`)
	imp := write("imp.json", `{"type": "impersonated_service_account",
		"service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/deployer@prod.iam.gserviceaccount.com:generateAccessToken"}`)
	user := write("user.json", `{"type": "authorized_user", "client_id": "x", "refresh_token": "y"}`)
	// A gcloud configuration directory: ADC of a user, two configurations.
	gcloud := filepath.Join(dir, "gcloud")
	write("gcloud/application_default_credentials.json", `{"type": "authorized_user"}`)
	write("gcloud/active_config", "work\n")
	write("gcloud/configurations/config_work", "[core]\nproject = prod\naccount = bob@finwell.example\n")
	write("gcloud/configurations/config_default", "[compute]\naccount = not-core@x\n")
	home := filepath.Join(dir, "home") // no gcloud there

	tests := []struct {
		name string
		flag string
		env  map[string]string
		want string
	}{
		{"flag first", "carol@finwell.example", map[string]string{"GOOGLE_APPLICATION_CREDENTIALS": sa, "USER": "u"}, "carol@finwell.example"},
		{"service account key", "", map[string]string{"GOOGLE_APPLICATION_CREDENTIALS": sa, "USER": "u"}, "ops-runner@prod.iam.gserviceaccount.com"},
		{"impersonated", "", map[string]string{"GOOGLE_APPLICATION_CREDENTIALS": imp}, "deployer@prod.iam.gserviceaccount.com"},
		{"user credentials: gcloud's active configuration", "", map[string]string{"GOOGLE_APPLICATION_CREDENTIALS": user, "CLOUDSDK_CONFIG": gcloud, "USER": "u"}, "bob@finwell.example"},
		{"gcloud's well-known ADC file", "", map[string]string{"CLOUDSDK_CONFIG": gcloud}, "bob@finwell.example"},
		{"CLOUDSDK_ACTIVE_CONFIG_NAME picks the configuration", "", map[string]string{"CLOUDSDK_CONFIG": gcloud, "CLOUDSDK_ACTIVE_CONFIG_NAME": "default", "USER": "u"}, "cli:u"},
		{"CLOUDSDK_CORE_ACCOUNT", "", map[string]string{"CLOUDSDK_CONFIG": gcloud, "CLOUDSDK_CORE_ACCOUNT": "dana@finwell.example"}, "dana@finwell.example"},
		{"no credentials: the local user", "", map[string]string{"HOME": home, "USER": "ops"}, "cli:ops"},
		{"a credentials file that cannot be read", "", map[string]string{"GOOGLE_APPLICATION_CREDENTIALS": filepath.Join(dir, "gone.json"), "HOME": home, "USERNAME": "win"}, "cli:win"},
		{"nothing at all: the process's account", "", nil, "cli:" + osUser(t)},
	}
	for _, tc := range tests {
		getenv := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
		if got := resolveActor(tc.flag, getenv); got != tc.want {
			t.Errorf("%s: actor %q, want %q", tc.name, got, tc.want)
		}
	}
}

// runs lists the newest runs, newest first, with their id, trigger, actor,
// status and totals; --json has the records.
func TestRunsList(t *testing.T) {
	t.Parallel()
	env := newCLIEnv(t, true)
	runCLI(t, env.getenv, "cleanup", "--dry-run").mustSucceed(t)
	res := runCLI(t, env.getenv, "cleanup", "--json", "--actor", "erin@finwell.example")
	res.mustSucceed(t)
	var body lifecycle.CleanupReport
	if err := json.Unmarshal([]byte(res.stdout), &body); err != nil {
		t.Fatal(err)
	}

	res = runCLI(t, env.getenv, "runs")
	res.mustSucceed(t)
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[2], "🧾 Recent Runs") || !strings.Contains(lines[3], "RUN ID") {
		t.Fatalf("runs:\n%s", res.stdout)
	}
	newest, dry := strings.Fields(lines[4]), strings.Fields(lines[5])
	if diff := strings.Join(newest, " "); newest[0] != body.RunID || !strings.Contains(diff, "cli erin@finwell.example succeeded 15 6 1 0") {
		t.Errorf("newest run line %q, want run %s by erin, succeeded, 15 checked, 6 cleaned, 1 marked", lines[4], body.RunID)
	}
	if !strings.Contains(lines[5], "cli:ops-tester") || !strings.Contains(lines[5], "(dry run)") || dry[0] == body.RunID {
		t.Errorf("dry run line %q", lines[5])
	}

	res = runCLI(t, env.getenv, "runs", "--json", "--limit", "1")
	res.mustSucceed(t)
	var list struct {
		Runs []lifecycle.RunRecord `json:"runs"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &list); err != nil {
		t.Fatalf("stdout: %v\n%s", err, res.stdout)
	}
	if len(list.Runs) != 1 || list.Runs[0].ID != body.RunID || list.Runs[0].Statistics != testenv.SampleStatistics {
		t.Errorf("runs --json --limit 1 = %+v", list.Runs)
	}
	if res := runCLI(t, env.getenv, "runs", "--limit", "0"); res.code != exitUsage ||
		!strings.HasPrefix(res.stderr, `manage-tokens runs: --limit must be an integer from 1 to 200, got "0"`) {
		t.Errorf("--limit 0: exit %d, stderr %q", res.code, res.stderr)
	}
}

// A misspelled command or flag gets a suggestion; the error line stays the
// old tool's.
func TestSuggestions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args       []string
		first, has string
	}{
		{[]string{"cleanpu"}, `manage-tokens: unknown command "cleanpu"`, "Did you mean this?\n\tcleanup\n"},
		{[]string{"analytic"}, `manage-tokens: unknown command "analytic"`, "Did you mean this?\n\tanalytics\n"},
		{[]string{"rnu"}, `manage-tokens: unknown command "rnu"`, "\trun\n"},
		{[]string{"cleanup", "--dryrun"}, "manage-tokens cleanup: unknown flag --dryrun (did you mean --dry-run?)", "usage: manage-tokens cleanup"},
		{[]string{"runs", "--limt", "3"}, "manage-tokens runs: unknown flag --limt (did you mean --limit?)", "usage: manage-tokens runs"},
	}
	for _, tc := range tests {
		res := runCLI(t, nil, tc.args...)
		first, _, _ := strings.Cut(res.stderr, "\n")
		if res.code != exitUsage || first != tc.first || !strings.Contains(res.stderr, tc.has) {
			t.Errorf("%v: exit %d, stderr:\n%s\nwant first line %q and %q", tc.args, res.code, res.stderr, tc.first, tc.has)
		}
	}
}

// completion prints each shell's script, and the script's callback
// completes commands and flags.
func TestCompletion(t *testing.T) {
	t.Parallel()
	for shell, marker := range map[string]string{"bash": "complete -o default -F __start_manage-tokens manage-tokens",
		"zsh": "#compdef manage-tokens", "fish": "complete -c manage-tokens"} {
		res := runCLI(t, nil, "completion", shell)
		if res.code != exitOK || !strings.Contains(res.stdout, marker) || res.stderr != "" {
			t.Errorf("completion %s: exit %d, stderr %q, script lacks %q", shell, res.code, res.stderr, marker)
		}
	}
	// What the scripts run on Tab: __complete <words so far>.
	res := runCLI(t, nil, "__complete", "cle")
	if res.code != exitOK || !strings.Contains(res.stdout, "cleanup\t") {
		t.Errorf("completing 'cle': exit %d\n%s", res.code, res.stdout)
	}
	res = runCLI(t, nil, "__complete", "cleanup", "--d")
	for _, want := range []string{"--days\t", "--dry-run\t"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("completing 'cleanup --d' lacks %q:\n%s", want, res.stdout)
		}
	}
	res = runCLI(t, nil, "__complete", "completion", "")
	if !strings.Contains(res.stdout, "bash\nzsh\nfish\n") {
		t.Errorf("completing 'completion ' does not offer the shells:\n%s", res.stdout)
	}
	if res := runCLI(t, nil, "completion", "powershell"); res.code != exitUsage ||
		!strings.HasPrefix(res.stderr, `manage-tokens completion: <shell> must be bash, zsh or fish, got "powershell"`) {
		t.Errorf("completion powershell: exit %d, stderr %q", res.code, res.stderr)
	}
}

func osUser(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}
