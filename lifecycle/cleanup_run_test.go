package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// pagedEnv is an Env whose cleanup reads pages of 100, over n healthy and
// stale tokens, with a recording continuer.
func pagedEnv(t *testing.T, n int) (*testenv.Env, *testenv.Continuer) {
	t.Helper()
	env := testenv.New(t, testenv.WithConfig(func(c *lifecycle.Config) { c.CleanupPageSize = 100 }))
	continuer := &testenv.Continuer{}
	env.Rebuild(t, func(d *lifecycle.Deps, _ *lifecycle.Config) { d.Continuer = continuer })
	env.Seed(t, mixedTokens(n)...)
	return env, continuer
}

// finish delivers the recorded continuations until the run is done, and
// returns the run record.
func finish(t *testing.T, env *testenv.Env, continuer *testenv.Continuer, runID string, budget time.Duration) *lifecycle.RunRecord {
	t.Helper()
	for i := 0; ; i++ {
		next := continuer.Take()
		if len(next) == 0 {
			break
		}
		if i > 100 {
			t.Fatal("run never finished")
		}
		for _, id := range next {
			scheduled(t, env, lifecycle.CleanupEvent{EventID: fmt.Sprintf("cont-%s-%d", id, i), ContinueRunID: id, Budget: budget})
		}
	}
	return env.Run(t, runID)
}

// When queueing the continuation fails, DailyCleanup asks Pub/Sub for a
// retry, and the redelivered event continues the checkpointed run instead
// of being acknowledged as handled: the run is not stranded.
func TestScheduledRunFailedContinuationIsResumedByRedelivery(t *testing.T) {
	t.Parallel()
	env, continuer := pagedEnv(t, 300)
	want := cleanup(t, freshCopy(t, 300), lifecycle.CleanupRequest{}).Statistics

	continuer.FailNext(1)
	ev := lifecycle.CleanupEvent{EventID: "evt-1", DaysThreshold: 90, Budget: time.Nanosecond}
	out, err := env.Service.RunScheduledCleanup(context.Background(), ev)
	if lifecycle.ErrorCode(err) != lifecycle.CodeUnavailable {
		t.Fatalf("first delivery: err = %v, want a retryable (unavailable) error", err)
	}
	runID := out.RunID
	if run := env.Run(t, runID); run.Status != lifecycle.RunCheckpointed || run.ContinuationSent {
		t.Fatalf("after the failed hand-over: run %s, continuation_sent %v; want checkpointed, not sent", run.Status, run.ContinuationSent)
	}

	// Pub/Sub redelivers the same event: it continues the run itself.
	out = scheduled(t, env, ev)
	if out.Action != "resumed" || out.RunID != runID {
		t.Fatalf("redelivery: action %q run %s, want resumed %s", out.Action, out.RunID, runID)
	}
	run := finish(t, env, continuer, runID, time.Nanosecond)
	if run.Status != lifecycle.RunSucceeded {
		t.Fatalf("run %s, want succeeded", run.Status)
	}
	if diff := cmp.Diff(want, run.Statistics); diff != "" {
		t.Errorf("totals (-uninterrupted +resumed):\n%s", diff)
	}
	// The lease is free again.
	cleanup(t, env, lifecycle.CleanupRequest{})
}

// freshCopy seeds the same dataset in another Env, for an uninterrupted run
// to compare with.
func freshCopy(t *testing.T, n int) *testenv.Env {
	t.Helper()
	env := testenv.New(t)
	env.Seed(t, mixedTokens(n)...)
	return env
}

// A redelivered event whose run's continuation was queued does nothing:
// the continuation carries the run on, and no token is checked twice.
func TestScheduledRunRedeliveryAfterHandOverIsADuplicate(t *testing.T) {
	t.Parallel()
	env, continuer := pagedEnv(t, 250)
	ev := lifecycle.CleanupEvent{EventID: "evt-1", DaysThreshold: 90, Budget: time.Nanosecond}
	first := scheduled(t, env, ev)
	calls := env.Plaid.CallCount("/item/get")

	again := scheduled(t, env, ev)
	if again.Action != "duplicate" || again.Result != nil {
		t.Errorf("redelivery: %+v, want a duplicate that runs nothing", again)
	}
	if n := env.Plaid.CallCount("/item/get"); n != calls {
		t.Errorf("redelivery made %d Plaid calls", n-calls)
	}
	run := finish(t, env, continuer, first.RunID, time.Nanosecond)
	if run.Status != lifecycle.RunSucceeded || run.Statistics.TotalChecked != 250 {
		t.Errorf("run %s checked %d, want succeeded with 250", run.Status, run.Statistics.TotalChecked)
	}
	// Every continuation delivered twice is a no-op the second time.
	for _, id := range run.EventIDs {
		if out := scheduled(t, env, lifecycle.CleanupEvent{EventID: id, ContinueRunID: run.ID}); out.Action != "finished" && out.Action != "duplicate" {
			t.Errorf("late redelivery of %s: action %q", id, out.Action)
		}
	}
}

// While an invocation runs a segment, a duplicate delivery of its own
// event neither runs the run a second time nor is dropped: it asks to be
// retried, when the lease will say whether that invocation died.
func TestScheduledRunDuplicateDeliveryWhileRunning(t *testing.T) {
	t.Parallel()
	env, _ := pagedEnv(t, 50)
	ev := lifecycle.CleanupEvent{EventID: "evt-1", DaysThreshold: 90}
	var once sync.Once
	var dupOut *lifecycle.ScheduledOutcome
	var dupErr error
	env.Plaid.OnCall(func(string, string) {
		once.Do(func() { dupOut, dupErr = env.Service.RunScheduledCleanup(context.Background(), ev) })
	})
	out := scheduled(t, env, ev)
	if lifecycle.ErrorCode(dupErr) != lifecycle.CodeUnavailable || dupOut.Action != "in_progress" {
		t.Errorf("duplicate during the run: %+v, %v; want in_progress with a retryable error", dupOut, dupErr)
	}
	if run := env.Run(t, out.RunID); run.Status != lifecycle.RunSucceeded || run.Invocations != 1 || run.Statistics.TotalChecked != 50 {
		t.Errorf("run: %s, %d invocations, %d checked; want one invocation checking 50", run.Status, run.Invocations, run.Statistics.TotalChecked)
	}
	// Retried after the run finished: acknowledged.
	if again := scheduled(t, env, ev); again.Action != "finished" {
		t.Errorf("retry after the run: action %q, want finished", again.Action)
	}
}

// killRun leaves a run as a killed process does: running, its lease
// renewed for the last time at `at`, a cursor part of the way through.
func killRun(t *testing.T, env *testenv.Env, continuer *testenv.Continuer, at time.Time) *lifecycle.RunRecord {
	t.Helper()
	continuer.FailNext(1) // checkpoint, then pretend the process died
	out, _ := env.Service.RunScheduledCleanup(context.Background(), lifecycle.CleanupEvent{EventID: "evt-killed", DaysThreshold: 90, Budget: time.Nanosecond})
	run := env.Run(t, out.RunID)
	run.Status = lifecycle.RunRunning
	run.LeaseUntil = at.Add(lifecycle.DefaultCleanupLeaseTTL)
	if err := env.Runs.SaveRun(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	_, err := env.Client.Collection(lifecycle.LocksCollection).Doc("cleanup").Set(context.Background(), lifecycle.Lease{
		Holder: run.ID, ExpiresAt: run.LeaseUntil, RenewedAt: at, Trigger: run.Trigger, Actor: run.Actor, StartedAt: run.StartedAt,
	})
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// A dead run blocks others only while its lease holds, and the refusal says
// which run, started by whom and when, until when, and how to take it over; an explicit take-over then works at once.
func TestDeadRunRefusalSaysWhoAndTakeOver(t *testing.T) {
	t.Parallel()
	env, continuer := pagedEnv(t, 250)
	dead := killRun(t, env, continuer, testenv.Now)

	_, err := env.Service.Cleanup(context.Background(), lifecycle.CleanupRequest{DaysThreshold: 90, Trigger: lifecycle.TriggerCLI, Actor: "cli:ops"})
	var held *lifecycle.LeaseHeldError
	if !errors.As(err, &held) || lifecycle.ErrorCode(err) != lifecycle.CodeConflict {
		t.Fatalf("cleanup while a run holds the lease: %v, want a LeaseHeldError conflict", err)
	}
	msg := err.Error()
	for _, want := range []string{dead.ID, "cloud-scheduler", "schedule", testenv.Now.Format(time.RFC3339),
		dead.LeaseUntil.Format(time.RFC3339), "--take-over " + dead.ID} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal %q does not say %q", msg, want)
		}
	}

	// Taking over a run that does not hold the lease is refused.
	if _, err := env.Service.Cleanup(context.Background(), lifecycle.CleanupRequest{DaysThreshold: 90, TakeOver: "not-the-holder"}); lifecycle.ErrorCode(err) != lifecycle.CodeConflict {
		t.Errorf("take-over of a run that holds nothing: %v, want conflict", err)
	}
	// A run that renewed its lease moments ago is alive: taking it over
	// would have two runs call Plaid for the same tokens.
	takeOver := lifecycle.CleanupRequest{DaysThreshold: 90, Trigger: lifecycle.TriggerCLI, Actor: "cli:ops", TakeOver: dead.ID}
	_, err = env.Service.Cleanup(context.Background(), takeOver)
	if lifecycle.ErrorCode(err) != lifecycle.CodeConflict || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("take-over of a run that just renewed its lease: %v, want a conflict that names --force", err)
	}
	// Silent for two renewal periods, it is dead though its lease holds.
	env.Clock.Advance(2*lifecycle.DefaultCleanupLeaseTTL/5 + time.Second)
	res, err := env.Service.Cleanup(context.Background(), takeOver)
	if err != nil {
		t.Fatalf("take-over: %v", err)
	}
	// It checks what the dead run's segment did not remove.
	if want := 250 - dead.Statistics.TotalCleaned; !res.Done || res.Statistics.TotalChecked != want {
		t.Errorf("run after take-over: checked %d (want %d), done %v", res.Statistics.TotalChecked, want, res.Done)
	}
	old := env.Run(t, dead.ID)
	if old.Status != lifecycle.RunAbandoned || old.SupersededBy != res.RunID || !strings.Contains(old.Failure, "cli:ops") {
		t.Errorf("taken-over run = %s superseded by %q (%q), want abandoned by %s", old.Status, old.SupersededBy, old.Failure, res.RunID)
	}
	// The abandoned run's own invocations can no longer write its record.
	old.Status = lifecycle.RunSucceeded
	if err := env.Runs.SaveRun(context.Background(), old); !errors.Is(err, lifecycle.ErrLeaseLost) {
		t.Errorf("saving an abandoned run: %v, want ErrLeaseLost", err)
	}
}

// A scheduled event that finds a dead run's lease lapsed resumes that run
// from its cursor rather than start over (DESIGN §12); an HTTP or CLI run
// instead supersedes it.
func TestLapsedRunResumedBySchedule(t *testing.T) {
	t.Parallel()
	env, continuer := pagedEnv(t, 250)
	dead := killRun(t, env, continuer, testenv.Now)
	checked := dead.Statistics.TotalChecked
	if checked == 0 || dead.Cursor == "" {
		t.Fatalf("killed run has checked %d tokens, cursor %q: want part of the way", checked, dead.Cursor)
	}

	// While the lease holds, the next day's event is skipped, saying why.
	if out := scheduled(t, env, lifecycle.CleanupEvent{EventID: "evt-next", DaysThreshold: 90}); out.Action != "skipped" || out.RunID != dead.ID {
		t.Errorf("event while the dead run's lease holds: %+v, want skipped naming %s", out, dead.ID)
	}
	env.Clock.Advance(lifecycle.DefaultCleanupLeaseTTL + time.Second)
	out := scheduled(t, env, lifecycle.CleanupEvent{EventID: "evt-later", DaysThreshold: 90})
	if out.Action != "resumed" || out.RunID != dead.ID {
		t.Fatalf("event after the lease lapsed: %+v, want resumed %s", out, dead.ID)
	}
	run := env.Run(t, dead.ID)
	if run.Status != lifecycle.RunSucceeded || run.Statistics.TotalChecked != 250 {
		t.Errorf("resumed run: %s, %d checked; want succeeded, 250 in all (no token twice)", run.Status, run.Statistics.TotalChecked)
	}
}

func TestLapsedRunSupersededByCLI(t *testing.T) {
	t.Parallel()
	env, continuer := pagedEnv(t, 150)
	dead := killRun(t, env, continuer, testenv.Now)
	env.Clock.Advance(lifecycle.DefaultCleanupLeaseTTL + time.Second)
	res := cleanup(t, env, lifecycle.CleanupRequest{Trigger: lifecycle.TriggerCLI, Actor: "cli:ops"})
	if !res.Done || res.RunID == dead.ID {
		t.Fatalf("CLI run after the lease lapsed: %+v", res)
	}
	if old := env.Run(t, dead.ID); old.Status != lifecycle.RunAbandoned || old.SupersededBy != res.RunID {
		t.Errorf("lapsed run = %s superseded by %q, want abandoned by %s", old.Status, old.SupersededBy, res.RunID)
	}
	// Its late continuation finds it abandoned and does nothing.
	if out := scheduled(t, env, lifecycle.CleanupEvent{EventID: "late", ContinueRunID: dead.ID}); out.Action != "finished" {
		t.Errorf("late continuation of the abandoned run: action %q, want finished", out.Action)
	}
}

// An invocation that loses its lease to a take-over stops, and never
// writes over the record of the run that took over.
func TestRunStopsWhenItsLeaseIsTakenOver(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.WithConfig(func(c *lifecycle.Config) {
		c.CleanupPageSize, c.CleanupConcurrency, c.CleanupLeaseTTL = 10, 1, 500*time.Millisecond
	}))
	env.Seed(t, mixedTokens(200)...)
	// The first run's 20th Plaid call answers only once an operator has
	// taken the run over (forced: it is alive) and the take-over finished.
	var calls atomic.Int32
	takeOver := make(chan *lifecycle.CleanupResult, 1)
	env.Plaid.OnCall(func(string, string) {
		if calls.Add(1) != 20 {
			return
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			runs := env.CleanupRuns(t)
			res, err := env.Service.Cleanup(context.Background(), lifecycle.CleanupRequest{DaysThreshold: 90, Trigger: lifecycle.TriggerCLI,
				Actor: "cli:ops", TakeOver: runs[0].ID, ForceTakeOver: true})
			if err != nil {
				t.Errorf("take-over: %v", err)
			}
			takeOver <- res
		}()
		<-done
	})
	_, err := env.Service.Cleanup(context.Background(), lifecycle.CleanupRequest{DaysThreshold: 90, Trigger: lifecycle.TriggerCLI, Actor: "cli:first"})
	if !errors.Is(err, lifecycle.ErrLeaseLost) {
		t.Errorf("first run: %v, want ErrLeaseLost", err)
	}
	res := <-takeOver
	if res == nil {
		t.Fatal("take-over failed")
	}
	runs := env.CleanupRuns(t)
	byID := map[string]*lifecycle.RunRecord{}
	for _, r := range runs {
		byID[r.ID] = r
	}
	if r := byID[res.RunID]; r == nil || r.Status != lifecycle.RunSucceeded {
		t.Errorf("taking-over run = %+v, want succeeded", r)
	}
	cleaned := 0
	for id, r := range byID {
		cleaned += r.Statistics.TotalCleaned
		if id == res.RunID {
			continue
		}
		if r.Status != lifecycle.RunAbandoned {
			t.Errorf("first run %s = %s, want abandoned", id, r.Status)
		}
		// Superseded, it still recorded what it did before it noticed.
		if r.Statistics.TotalChecked == 0 {
			t.Errorf("first run %s records no statistics, though it worked until the take-over", id)
		}
	}
	// Every deleted document is counted by exactly one of the two runs.
	left, err := env.Client.Collection(lifecycle.TokensCollection).Documents(context.Background()).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	if deleted := 200 - len(left); cleaned != deleted {
		t.Errorf("the runs count %d removals in all; %d documents were deleted", cleaned, deleted)
	}
}

// An invocation that stalled past its lease, while a redelivery resumed its
// run elsewhere, cannot renew the lease when it wakes: two invocations never
// work on one run for longer than a renewal period.
func TestStalledInvocationCannotRenew(t *testing.T) {
	t.Parallel()
	env, continuer := pagedEnv(t, 250)
	dead := killRun(t, env, continuer, testenv.Now)
	stalled := *dead // what the stalled invocation holds in memory
	env.Clock.Advance(lifecycle.DefaultCleanupLeaseTTL + time.Second)
	if out := scheduled(t, env, lifecycle.CleanupEvent{EventID: "evt-killed", DaysThreshold: 90}); out.Action != "resumed" {
		t.Fatalf("redelivery after the lease lapsed: action %q, want resumed", out.Action)
	}
	if err := env.Runs.RenewLease(context.Background(), &stalled, testenv.Now, testenv.Now.Add(time.Hour)); !errors.Is(err, lifecycle.ErrLeaseLost) {
		t.Errorf("the stalled invocation renewed: %v, want ErrLeaseLost", err)
	}
	if err := env.Runs.SaveRun(context.Background(), &stalled); !errors.Is(err, lifecycle.ErrLeaseLost) {
		t.Errorf("the stalled invocation saved its record: %v, want ErrLeaseLost", err)
	}
}

// flakyFinalSave is a RunStore whose saves of how an invocation ended fail
// with err, the first fails times (every time when fails is negative).
type flakyFinalSave struct {
	lifecycle.RunStore
	err   error
	mu    sync.Mutex
	fails int
}

func (f *flakyFinalSave) SaveRun(ctx context.Context, run *lifecycle.RunRecord) error {
	f.mu.Lock()
	failing := run.Status != lifecycle.RunRunning && f.fails != 0
	if failing && f.fails > 0 {
		f.fails--
	}
	f.mu.Unlock()
	if failing {
		return f.err
	}
	return f.RunStore.SaveRun(ctx, run)
}

// A run whose final record meets a Firestore still reconnecting after an
// outage saves it once Firestore answers, and releases the lease.
func TestRunFinalSaveRidesOutUnavailableFirestore(t *testing.T) {
	t.Parallel()
	env, _ := pagedEnv(t, 50)
	env.Rebuild(t, func(d *lifecycle.Deps, _ *lifecycle.Config) {
		d.Runs = &flakyFinalSave{RunStore: d.Runs, fails: 3, err: lifecycle.Errorf(lifecycle.CodeUnavailable, "Firestore is unavailable")}
	})
	res := cleanup(t, env, lifecycle.CleanupRequest{Actor: "cli:ops"})
	if run := env.Run(t, res.RunID); run.Status != lifecycle.RunSucceeded {
		t.Fatalf("run saved as %s, want succeeded", run.Status)
	}
	// The lease was released: the next run starts at once.
	if next := cleanup(t, env, lifecycle.CleanupRequest{Actor: "cli:ops"}); !next.Done {
		t.Errorf("next run: %+v, want done", next)
	}
}

// A run whose final record cannot be saved keeps its lease: once the lease
// lapses the next run finds the record unfinished and supersedes it. (A
// released lease would leave the record saying running, pointed at by
// nothing, for ever.)
func TestRunFinalSaveFailureKeepsTheLease(t *testing.T) {
	t.Parallel()
	env, _ := pagedEnv(t, 50)
	runs := env.Deps.Runs
	env.Rebuild(t, func(d *lifecycle.Deps, _ *lifecycle.Config) {
		d.Runs = &flakyFinalSave{RunStore: runs, fails: -1, err: errors.New("the record cannot be written")}
	})
	res, err := env.Service.Cleanup(t.Context(), lifecycle.CleanupRequest{DaysThreshold: 90, Trigger: lifecycle.TriggerCLI, Actor: "cli:ops"})
	if err == nil {
		t.Fatal("Cleanup succeeded although its record could not be saved")
	}
	env.Rebuild(t, func(d *lifecycle.Deps, _ *lifecycle.Config) { d.Runs = runs })
	if _, err := env.Service.Cleanup(t.Context(), lifecycle.CleanupRequest{DaysThreshold: 90, Trigger: lifecycle.TriggerCLI, Actor: "cli:ops"}); !lifecycle.IsCode(err, lifecycle.CodeConflict) {
		t.Fatalf("a run while the unsaved run's lease holds: %v, want refused (conflict)", err)
	}
	env.Clock.Advance(lifecycle.DefaultCleanupLeaseTTL + time.Second)
	next := cleanup(t, env, lifecycle.CleanupRequest{Actor: "cli:ops"})
	if old := env.Run(t, res.RunID); old.Status != lifecycle.RunAbandoned || old.SupersededBy != next.RunID {
		t.Errorf("the unsaved run is %s, superseded by %q; want abandoned by %s", old.Status, old.SupersededBy, next.RunID)
	}
}

// A dry run holds no lease, so nothing ever resumes it: one whose process
// died, or whose continuation never came, must not read as running for
// ever (manage-tokens run --follow would poll until killed). Reading it
// marks it failed; an async dry run that could not be queued says so.
func TestDeadDryRunReadsFailed(t *testing.T) {
	t.Parallel()
	env, continuer := pagedEnv(t, 250)
	ctx := context.Background()

	// Checkpointed, then its continuation is lost.
	continuer.FailNext(1)
	res, err := env.Service.Cleanup(ctx, lifecycle.CleanupRequest{DaysThreshold: 90, DryRun: true, Trigger: lifecycle.TriggerCLI,
		Actor: "cli:ops", Budget: time.Nanosecond})
	if err != nil || res.Done || res.HandedOver {
		t.Fatalf("dry run with a lost continuation: %+v, %v; want checkpointed, not handed over", res, err)
	}
	if run, err := env.Service.CleanupRun(ctx, res.RunID); err != nil || run.Status != lifecycle.RunCheckpointed {
		t.Fatalf("within its lease: %v, %v; want checkpointed", run, err)
	}
	env.Clock.Advance(lifecycle.DefaultCleanupLeaseTTL + time.Second)
	run, err := env.Service.CleanupRun(ctx, res.RunID)
	if err != nil || run.Status != lifecycle.RunFailed || !strings.Contains(run.Failure, "continuation never came") {
		t.Fatalf("past its lease: %+v, %v; want failed, saying its continuation never came", run, err)
	}
	if stored := env.Run(t, res.RunID); stored.Status != lifecycle.RunFailed || stored.EndedAt.IsZero() {
		t.Errorf("stored record = %s ended %v, want failed with an end", stored.Status, stored.EndedAt)
	}

	// Running when its process died: listed (manage-tokens runs) as failed.
	dead := killRun(t, env, continuer, env.Clock.Now())
	env.Clock.Advance(lifecycle.DefaultCleanupLeaseTTL + time.Second)
	runs, err := env.Service.RecentRuns(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range runs {
		if run.ID == dead.ID && (run.Status != lifecycle.RunFailed || !strings.Contains(run.Failure, "the process died")) {
			t.Errorf("a running run past its lease is listed %s %q; want failed: the process died", run.Status, run.Failure)
		}
	}
	if stored := env.Run(t, dead.ID); stored.Status != lifecycle.RunFailed {
		t.Errorf("the dead run's record = %s, want failed", stored.Status)
	}

	// An async dry run whose continuation cannot be queued did not run.
	continuer.FailNext(1)
	started, err := env.Service.StartCleanup(ctx, lifecycle.CleanupRequest{DaysThreshold: 90, DryRun: true, Trigger: lifecycle.TriggerHTTP, Actor: "admin"})
	if lifecycle.ErrorCode(err) != lifecycle.CodeUnavailable || strings.Contains(err.Error(), "resumes") ||
		!strings.Contains(err.Error(), "did not run") {
		t.Fatalf("async dry run that could not be queued: %v; want unavailable, saying it did not run", err)
	}
	if stored := env.Run(t, started.RunID); stored.Status != lifecycle.RunFailed {
		t.Errorf("unqueued dry run = %s, want failed", stored.Status)
	}
}
