package lifecycle

import (
	"context"
	"fmt"
	"time"
)

// RunStatus is the state of a run record.
type RunStatus string

// Run states. A checkpointed run continues in a new invocation; a running
// one whose lease lapsed is resumed from its cursor; an abandoned one was
// superseded by another run (an operator's take-over, or a new run after
// its lease lapsed).
const (
	RunRunning      RunStatus = "running"
	RunCheckpointed RunStatus = "checkpointed"
	RunSucceeded    RunStatus = "succeeded"
	RunFailed       RunStatus = "failed"
	RunAbandoned    RunStatus = "abandoned"
)

// Finished reports whether a run in this state will never run again.
func (s RunStatus) Finished() bool {
	return s == RunSucceeded || s == RunFailed || s == RunAbandoned
}

// RunError is one thing a run could not finish, kept in its record. It
// never holds a token.
type RunError struct {
	ItemID string `firestore:"item_id" json:"item_id"`
	Stage  string `firestore:"stage" json:"stage"`
	Error  string `firestore:"error" json:"error"`
}

// maxRunErrors bounds the errors kept in a run record (a document is at
// most 1 MiB); Statistics.Errors still counts them all.
const maxRunErrors = 50

func boundErrors(errs []RunError) []RunError {
	if len(errs) > maxRunErrors {
		return errs[:maxRunErrors]
	}
	return errs
}

// RunRecord is one cleanup run, in plaid_token_runs.
type RunRecord struct {
	ID            string     `firestore:"id" json:"run_id"`
	Kind          string     `firestore:"kind" json:"kind"` // "cleanup"
	Trigger       string     `firestore:"trigger" json:"trigger"`
	Actor         string     `firestore:"actor" json:"actor"`
	Status        RunStatus  `firestore:"status" json:"status"`
	DryRun        bool       `firestore:"dry_run" json:"dry_run"`
	DaysThreshold int        `firestore:"days_threshold" json:"days_threshold"`
	StartedAt     time.Time  `firestore:"started_at" json:"started_at"`
	EndedAt       time.Time  `firestore:"ended_at,omitempty" json:"ended_at,omitzero"`
	Cursor        string     `firestore:"cursor" json:"cursor"`
	Invocations   int        `firestore:"invocations" json:"invocations"`
	EventIDs      []string   `firestore:"event_ids" json:"event_ids"`
	Statistics    Statistics `firestore:"statistics" json:"statistics"`
	Errors        []RunError `firestore:"errors" json:"errors"`
	Failure       string     `firestore:"failure,omitempty" json:"failure,omitempty"`

	// LeaseUntil is when the current invocation's hold on the run lapses
	// unless renewed: a running run past it has died (kill -9, a function
	// timeout) and may be resumed from its cursor.
	LeaseUntil time.Time `firestore:"lease_until" json:"lease_until,omitzero"`
	// SegmentEvent is the CloudEvent whose invocation runs (or last ran) the
	// current segment; "" for HTTP and CLI invocations.
	SegmentEvent string `firestore:"segment_event" json:"-"`
	// ContinuationSent says the continuation of a checkpointed run was
	// accepted by the cleanup topic: a redelivered event then leaves the
	// run to it.
	ContinuationSent bool `firestore:"continuation_sent" json:"continuation_sent"`
	// SupersededBy names the run that took over an abandoned one.
	SupersededBy string `firestore:"superseded_by,omitempty" json:"superseded_by,omitempty"`
}

// AuditEntry records one removal or revocation. It never holds a token.
type AuditEntry struct {
	ItemID string    `firestore:"item_id"`
	UserID string    `firestore:"user_id"`
	Reason string    `firestore:"reason"` // expired, revoked, stale, user_revoked, admin_revoked, plaid_revoked
	Actor  string    `firestore:"actor"`
	RunID  string    `firestore:"run_id,omitempty"`
	At     time.Time `firestore:"at"`
	// PlaidRemoved says whether the Item was removed at Plaid at that time.
	PlaidRemoved bool `firestore:"plaid_removed"`
}

// Lease is the one-cleanup-at-a-time lease (plaid_token_locks/cleanup): who
// holds it and until when. A lapsed lease is free to take.
type Lease struct {
	Holder    string    `firestore:"holder"` // the run id
	ExpiresAt time.Time `firestore:"expires_at"`
	// RenewedAt is when the holder last took or renewed it: a holder that
	// renewed within two renewal periods is alive, whatever its expiry.
	RenewedAt time.Time `firestore:"renewed_at"`
	Trigger   string    `firestore:"trigger"`
	Actor     string    `firestore:"actor"`
	StartedAt time.Time `firestore:"started_at"`
}

// EventRecord is a handled cleanup CloudEvent (plaid_token_events), kept
// while Pub/Sub may redeliver it, with the run it started or continued.
type EventRecord struct {
	EventID    string    `firestore:"event_id"`
	Kind       string    `firestore:"kind"`
	RunID      string    `firestore:"run_id"`
	Outcome    string    `firestore:"outcome"`
	ReceivedAt time.Time `firestore:"received_at"`
	ExpireAt   time.Time `firestore:"expire_at"`
}

// eventRecordTTL is how long a handled event id is remembered. Pub/Sub
// redelivers for at most 7 days; a TTL policy on expire_at deletes the rest.
const eventRecordTTL = 8 * 24 * time.Hour

// eventKindCleanup names cleanup events' records.
const eventKindCleanup = "cleanup"

// ClaimState is what RunStore.ClaimCleanup read in its transaction.
type ClaimState struct {
	Event *EventRecord          // nil: no event, or one not seen before
	Lease *Lease                // nil: never taken or released
	Runs  map[string]*RunRecord // by id: the runs the event, the lease and the caller name, those that exist
}

// ClaimWrites is what a claim writes in the same transaction.
type ClaimWrites struct {
	Runs  []*RunRecord // saved whole
	Lease *Lease       // set when not nil
	Event *EventRecord // created when not nil
}

// LeaseHeldError refuses a cleanup while another run holds the lease. It
// says which run, started how and by whom, until when, and how an operator
// takes over a dead one.
type LeaseHeldError struct {
	RunID     string
	Trigger   string
	Actor     string
	StartedAt time.Time
	ExpiresAt time.Time
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("a cleanup is already running: run %s (%s, started by %s at %s) holds the lease until %s; "+
		"if that run is dead, take it over with `manage-tokens cleanup --take-over %s`",
		e.RunID, e.Trigger, e.Actor, e.StartedAt.UTC().Format(time.RFC3339), e.ExpiresAt.UTC().Format(time.RFC3339), e.RunID)
}

// Is makes errors.Is(err, ErrLeaseHeld) true.
func (e *LeaseHeldError) Is(target error) bool { return target == ErrLeaseHeld }

// As makes the refusal a conflict to errors.As(err, **Error) (ErrorCode,
// IsCode, the HTTP mapping), its message the whole sentence. It is not
// wrapped in an *Error instead: that Error() would print the sentence
// twice, once as the message and once as the wrapped error.
func (e *LeaseHeldError) As(target any) bool {
	if t, ok := target.(**Error); ok {
		*t = &Error{Code: CodeConflict, Message: e.Error()}
		return true
	}
	return false
}

// leaseHeld is the error a caller gets for a held lease: a conflict that
// says which run holds it.
func leaseHeld(l *Lease) error {
	return &LeaseHeldError{RunID: l.Holder, Trigger: l.Trigger, Actor: l.Actor, StartedAt: l.StartedAt, ExpiresAt: l.ExpiresAt}
}

// MaxRecentRuns is the most run records RecentRuns returns.
const MaxRecentRuns = 200

// RecentRuns returns the newest n run records (1..MaxRecentRuns), newest
// first: what `manage-tokens runs` lists and the weekly report charts. A
// run that died is listed, and recorded, as failed (markDead).
func (s *Service) RecentRuns(ctx context.Context, n int) ([]*RunRecord, error) {
	if n < 1 || n > MaxRecentRuns {
		return nil, Errorf(CodeInvalid, "the number of runs must be an integer from 1 to %d", MaxRecentRuns)
	}
	runs, err := s.runs.RecentRuns(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("listing recent runs: %w", err)
	}
	for i, run := range runs {
		if runs[i], err = s.settleDead(ctx, run); err != nil {
			return nil, fmt.Errorf("listing recent runs: %w", err)
		}
	}
	return runs, nil
}
