package lifecycle

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestDecideClaim walks the claim state machine of cleanup_run.go case by
// case: what was read, what is decided. No store: the emulator tests cover
// the transaction that feeds it.
func TestDecideClaim(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 2, 0, 0, 0, time.UTC)
	const ttl = 5 * time.Minute
	run := func(id string, status RunStatus, mod ...func(*RunRecord)) *RunRecord {
		r := &RunRecord{ID: id, Status: status, Invocations: 1, Trigger: TriggerSchedule, Actor: "cloud-scheduler",
			LeaseUntil: now.Add(ttl), Cursor: "item-0100"}
		for _, m := range mod {
			m(r)
		}
		return r
	}
	lapsed := func(r *RunRecord) { r.LeaseUntil = now.Add(-time.Minute) }
	dry := func(r *RunRecord) { r.DryRun = true }
	continuationSent := func(r *RunRecord) { r.ContinuationSent = true }
	segmentOf := func(ev string) func(*RunRecord) { return func(r *RunRecord) { r.SegmentEvent = ev } }
	// lease held by holder, renewed `ago` before now.
	lease := func(holder string, ago time.Duration) *Lease {
		return &Lease{Holder: holder, ExpiresAt: now.Add(ttl - ago), RenewedAt: now.Add(-ago), Trigger: TriggerSchedule, Actor: "cloud-scheduler"}
	}
	state := func(l *Lease, ev *EventRecord, runs ...*RunRecord) ClaimState {
		st := ClaimState{Lease: l, Event: ev, Runs: map[string]*RunRecord{}}
		for _, r := range runs {
			st.Runs[r.ID] = r
		}
		return st
	}
	fresh := func(dryRun bool) *RunRecord {
		return &RunRecord{ID: "new", Trigger: TriggerCLI, Actor: "ops@example.com", DryRun: dryRun, DaysThreshold: 90}
	}
	event := func(runID string) *EventRecord { return &EventRecord{EventID: "evt-1", RunID: runID} }

	// want is what a case decides, reduced to what matters.
	type want struct {
		Action      string
		Run         string    // the run this invocation runs
		RunStatus   RunStatus // its status, as written
		Invocations int
		Lease       string // holder of the lease written, "" for none
		Abandoned   string
		Event       string // outcome of the event record written, "" for none
		RetryLater  bool
		ForcedLive  bool
		ErrCode     Code
	}
	tests := []struct {
		name string
		st   ClaimState
		req  claimRequest
		want want
	}{
		{"new run, no lease", state(nil, nil), claimRequest{newRun: fresh(false)},
			want{Action: actionStarted, Run: "new", RunStatus: RunRunning, Invocations: 1, Lease: "new"}},
		{"new run created checkpointed", state(nil, nil), claimRequest{newRun: fresh(false), startCheckpointed: true},
			want{Action: actionStarted, Run: "new", RunStatus: RunCheckpointed, Lease: "new"}},
		{"live lease refuses an HTTP or CLI run", state(lease("old", time.Minute), nil, run("old", RunRunning)),
			claimRequest{newRun: fresh(false)}, want{ErrCode: CodeConflict}},
		{"live lease skips a scheduled run", state(lease("old", time.Minute), nil, run("old", RunRunning)),
			claimRequest{eventID: "evt-1", scheduled: true, newRun: fresh(false)},
			want{Action: actionSkipped, Event: actionSkipped}},
		{"a dry run needs no lease", state(lease("old", time.Minute), nil, run("old", RunRunning)),
			claimRequest{newRun: fresh(true)},
			want{Action: actionStarted, Run: "new", RunStatus: RunRunning, Invocations: 1}},
		{"a scheduled run resumes a lapsed holder", state(lease("old", 2*ttl), nil, run("old", RunCheckpointed, lapsed)),
			claimRequest{eventID: "evt-1", scheduled: true, newRun: fresh(false)},
			want{Action: actionResumed, Run: "old", RunStatus: RunRunning, Invocations: 2, Lease: "old", Event: actionResumed}},
		{"a CLI run supersedes a lapsed holder", state(lease("old", 2*ttl), nil, run("old", RunRunning, lapsed)),
			claimRequest{newRun: fresh(false)},
			want{Action: actionStarted, Run: "new", RunStatus: RunRunning, Invocations: 1, Lease: "new", Abandoned: "old"}},
		{"take-over of a run that renewed recently is refused", state(lease("old", time.Minute), nil, run("old", RunRunning)),
			claimRequest{takeOver: "old", newRun: fresh(false)}, want{ErrCode: CodeConflict}},
		{"forced take-over of a live run", state(lease("old", time.Minute), nil, run("old", RunRunning)),
			claimRequest{takeOver: "old", forceTakeOver: true, newRun: fresh(false)},
			want{Action: actionStarted, Run: "new", RunStatus: RunRunning, Invocations: 1, Lease: "new", Abandoned: "old", ForcedLive: true}},
		{"take-over of a run silent for three renewals", state(lease("old", 3*leaseRenewEvery(ttl)), nil, run("old", RunRunning)),
			claimRequest{takeOver: "old", newRun: fresh(false)},
			want{Action: actionStarted, Run: "new", RunStatus: RunRunning, Invocations: 1, Lease: "new", Abandoned: "old"}},
		{"take-over of a run that holds nothing", state(lease("old", time.Minute), nil, run("old", RunRunning)),
			claimRequest{takeOver: "other", newRun: fresh(false)}, want{ErrCode: CodeConflict}},
		{"a dry run takes nothing over", state(lease("old", 3*ttl), nil, run("old", RunRunning)),
			claimRequest{takeOver: "old", newRun: fresh(true)}, want{ErrCode: CodeInvalid}},
		{"redelivery of a finished run", state(nil, event("old"), run("old", RunSucceeded)),
			claimRequest{eventID: "evt-1", scheduled: true, newRun: fresh(false)}, want{Action: actionFinished}},
		{"redelivery whose continuation is queued", state(lease("old", 0), event("old"), run("old", RunCheckpointed, continuationSent)),
			claimRequest{eventID: "evt-1", scheduled: true, newRun: fresh(false)}, want{Action: actionDuplicate}},
		{"redelivery of a checkpointed run resumes it", state(lease("old", 0), event("old"), run("old", RunCheckpointed)),
			claimRequest{eventID: "evt-1", scheduled: true, newRun: fresh(false)},
			want{Action: actionResumed, Run: "old", RunStatus: RunRunning, Invocations: 2, Lease: "old"}},
		{"redelivery while its own segment may run", state(lease("old", 0), event("old"), run("old", RunRunning, segmentOf("evt-1"))),
			claimRequest{eventID: "evt-1", scheduled: true, newRun: fresh(false)}, want{Action: actionInProgress, RetryLater: true}},
		{"redelivery whose segment died resumes it", state(lease("old", 2*ttl), event("old"), run("old", RunRunning, segmentOf("evt-1"), lapsed)),
			claimRequest{eventID: "evt-1", scheduled: true, newRun: fresh(false)},
			want{Action: actionResumed, Run: "old", RunStatus: RunRunning, Invocations: 2, Lease: "old"}},
		{"redelivery of an event that ran nothing", state(nil, event("gone")),
			claimRequest{eventID: "evt-1", scheduled: true, newRun: fresh(false)}, want{Action: actionDuplicate}},
		{"continuation of a missing run", state(nil, nil),
			claimRequest{eventID: "evt-2", continueRunID: "missing", scheduled: true, newRun: fresh(false)},
			want{Action: actionDropped, Event: actionDropped}},
		{"continuation of a checkpointed dry run", state(nil, nil, run("old", RunCheckpointed, dry)),
			claimRequest{eventID: "evt-2", continueRunID: "old", scheduled: true, newRun: fresh(false)},
			want{Action: actionResumed, Run: "old", RunStatus: RunRunning, Invocations: 2, Event: actionResumed}},
		{"continuation while another delivery runs it", state(lease("old", 0), nil, run("old", RunRunning, segmentOf("evt-9"))),
			claimRequest{eventID: "evt-2", continueRunID: "old", scheduled: true, newRun: fresh(false)},
			want{Action: actionInProgress, Event: actionInProgress}},
		{"continuation of a run superseded meanwhile", state(lease("other", 0), nil, run("old", RunCheckpointed)),
			claimRequest{eventID: "evt-2", continueRunID: "old", scheduled: true, newRun: fresh(false)},
			want{Action: actionSkipped, Event: actionSkipped}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w, out, err := decideClaim(tc.st, tc.req, now, ttl)
			got := want{Action: out.action, RetryLater: out.retryLater, ForcedLive: out.forcedLive, ErrCode: ErrorCode(err)}
			if err == nil {
				got.ErrCode = ""
			}
			if out.run != nil {
				got.Run, got.RunStatus, got.Invocations = out.run.ID, out.run.Status, out.run.Invocations
				if !out.run.LeaseUntil.Equal(now.Add(ttl)) {
					t.Errorf("run's lease_until = %v, want now + TTL", out.run.LeaseUntil)
				}
			}
			if w.Lease != nil {
				got.Lease = w.Lease.Holder
			}
			if out.abandoned != nil {
				got.Abandoned = out.abandoned.ID
				if out.abandoned.Status != RunAbandoned || out.abandoned.SupersededBy != "new" {
					t.Errorf("abandoned run: %s superseded by %q", out.abandoned.Status, out.abandoned.SupersededBy)
				}
			}
			if w.Event != nil {
				got.Event = w.Event.Outcome
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			if err != nil && (len(w.Runs) != 0 || w.Lease != nil || w.Event != nil) {
				t.Errorf("a refused claim writes nothing; it writes %+v", w)
			}
		})
	}
}

func TestMarkDead(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 2, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		run    RunRecord
		dead   bool
		reason string
	}{
		{"running within its lease", RunRecord{Status: RunRunning, LeaseUntil: now.Add(time.Minute)}, false, ""},
		{"running past its lease", RunRecord{Status: RunRunning, LeaseUntil: now.Add(-time.Second)}, true, "the process died"},
		{"dry run running past its lease", RunRecord{Status: RunRunning, DryRun: true, LeaseUntil: now.Add(-time.Second)}, true, "the process died"},
		{"checkpointed dry run past its lease", RunRecord{Status: RunCheckpointed, DryRun: true, LeaseUntil: now.Add(-time.Second)}, true, "continuation never came"},
		{"checkpointed run past its lease: the schedule resumes it", RunRecord{Status: RunCheckpointed, LeaseUntil: now.Add(-time.Hour)}, false, ""},
		{"succeeded", RunRecord{Status: RunSucceeded, LeaseUntil: now.Add(-time.Hour)}, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := tc.run
			if got := markDead(&r, now); got != tc.dead {
				t.Fatalf("markDead = %v, want %v", got, tc.dead)
			}
			if !tc.dead {
				if diff := cmp.Diff(tc.run, r); diff != "" {
					t.Errorf("a live run changed (-before +after):\n%s", diff)
				}
				return
			}
			if r.Status != RunFailed || !r.EndedAt.Equal(now) || !strings.Contains(r.Failure, tc.reason) {
				t.Errorf("dead run = %s ended %v failure %q; want failed now, saying %q", r.Status, r.EndedAt, r.Failure, tc.reason)
			}
		})
	}
}
