package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// holdLease leaves the cleanup lease with a run whose process died: running,
// its lease an hour from now.
func holdLease(t *testing.T, env *cliEnv) string {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	run := &lifecycle.RunRecord{ID: "run-dead", Kind: "cleanup", Trigger: lifecycle.TriggerCLI, Actor: "cli:gone",
		Status: lifecycle.RunRunning, DaysThreshold: 90, StartedAt: now.Add(-time.Minute), Invocations: 1,
		LeaseUntil: now.Add(time.Hour)}
	if err := env.Runs.SaveRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	_, err := env.Client.Collection(lifecycle.LocksCollection).Doc("cleanup").Set(ctx, lifecycle.Lease{
		Holder: run.ID, ExpiresAt: run.LeaseUntil, Trigger: run.Trigger, Actor: run.Actor, StartedAt: run.StartedAt})
	if err != nil {
		t.Fatal(err)
	}
	return run.ID
}

// A cleanup refused because a dead run holds the lease says which run,
// started by whom and when, until when, and how to take it over; with
// --take-over it runs at once.
func TestCleanupRefusedThenTakesOver(t *testing.T) {
	t.Parallel()
	env := newCLIEnv(t, true)
	dead := holdLease(t, env)

	res := runCLI(t, env.getenv, "cleanup", "--days", "90")
	if res.code != exitFailure {
		t.Fatalf("cleanup while a dead run holds the lease: exit %d, want 1\n%s", res.code, res.stderr)
	}
	for _, want := range []string{dead, "cli:gone", "holds the lease until", "--take-over " + dead} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("refusal does not say %q:\n%s", want, res.stderr)
		}
	}
	if n := strings.Count(strings.TrimSpace(res.stderr), "\n"); n != 0 {
		t.Errorf("refusal is %d lines, want one:\n%s", n+1, res.stderr)
	}
	// Said once (the error used to be wrapped in itself), --json too.
	for _, args := range [][]string{{"cleanup"}, {"cleanup", "--json"}} {
		res := runCLI(t, env.getenv, args...)
		if n := strings.Count(res.stderr, "a cleanup is already running"); res.code != exitFailure || n != 1 {
			t.Errorf("%v: exit %d, %q said %d times:\n%s", args, res.code, "a cleanup is already running", n, res.stderr)
		}
	}

	res = runCLI(t, env.getenv, "cleanup", "--days", "90", "--take-over", dead, "--json")
	res.mustSucceed(t)
	var body lifecycle.CleanupReport
	if err := json.Unmarshal([]byte(res.stdout), &body); err != nil {
		t.Fatal(err)
	}
	if body.Statistics.TotalChecked != 15 {
		t.Errorf("cleanup after the take-over checked %d tokens, want 15", body.Statistics.TotalChecked)
	}
	if run := env.Run(t, dead); run.Status != lifecycle.RunAbandoned || run.SupersededBy != body.RunID {
		t.Errorf("dead run = %s superseded by %q, want abandoned by %s", run.Status, run.SupersededBy, body.RunID)
	}

	// The run command reports both: the finished one exits 0, the
	// abandoned one 1.
	res = runCLI(t, env.getenv, "run", body.RunID)
	res.mustSucceed(t)
	for _, want := range []string{"Status: succeeded", "Total tokens checked: 15", "(cli)"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("run report lacks %q:\n%s", want, res.stdout)
		}
	}
	res = runCLI(t, env.getenv, "run", "--json", dead)
	if res.code != exitFailure || !strings.Contains(res.stdout, `"status": "abandoned"`) {
		t.Errorf("run of the abandoned run: exit %d\n%s", res.code, res.stdout)
	}
	if res := runCLI(t, env.getenv, "run", "no-such-run"); res.code != exitFailure || !strings.Contains(res.stderr, "no cleanup run") {
		t.Errorf("unknown run: exit %d, stderr %q", res.code, res.stderr)
	}
}

// run --follow reports until a run in progress finishes: the run is
// finished by the test at its second wait, so no time passes and none is
// measured.
func TestRunFollow(t *testing.T) {
	// Not parallel: it replaces followWait.
	env := newCLIEnv(t, false)
	ctx := context.Background()
	now := time.Now().UTC()
	run := &lifecycle.RunRecord{ID: "run-live", Kind: "cleanup", Trigger: lifecycle.TriggerSchedule, Actor: "cloud-scheduler",
		Status: lifecycle.RunCheckpointed, DaysThreshold: 90, StartedAt: now, Invocations: 1}
	if err := env.Runs.SaveRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	waits := 0
	defer func(w func(context.Context) error) { followWait = w }(followWait)
	followWait = func(context.Context) error {
		waits++
		if waits == 2 {
			run.Status, run.EndedAt, run.Statistics = lifecycle.RunSucceeded, time.Now().UTC(), testenv.SampleStatistics
			if err := env.Runs.SaveRun(ctx, run); err != nil {
				t.Error(err)
			}
		}
		return nil
	}
	res := runCLIOn(t, true, env.getenv, "run", "--follow", run.ID)
	res.mustSucceed(t)
	if waits != 2 || !strings.Contains(res.stdout, "Status: succeeded") || !strings.Contains(res.stdout, "Total cleaned: 6") {
		t.Errorf("--follow returned after %d waits with:\n%s", waits, res.stdout)
	}
	if n := strings.Count(res.stderr, "run run-live: checkpointed"); n != 2 {
		t.Errorf("--follow showed the run in progress %d times on the terminal, want 2:\n%q", n, res.stderr)
	}
}
