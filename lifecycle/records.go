package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Records keeps what the service writes beside the tokens: run records,
// the audit trail, leases, handled CloudEvent ids and analytics snapshots.
type Records struct {
	client *firestore.Client
}

// NewRecords returns Records over client.
func NewRecords(client *firestore.Client) *Records { return &Records{client: client} }

// RunStatus is the state of a run record.
type RunStatus string

// Run states. A checkpointed run continues in a new invocation.
const (
	RunRunning      RunStatus = "running"
	RunCheckpointed RunStatus = "checkpointed"
	RunSucceeded    RunStatus = "succeeded"
	RunFailed       RunStatus = "failed"
)

// RunError is one thing a run could not finish, kept in its record. It
// never holds a token.
type RunError struct {
	ItemID string `firestore:"item_id" json:"item_id"`
	Stage  string `firestore:"stage" json:"stage"`
	Error  string `firestore:"error" json:"error"`
}

// MaxRunErrors bounds the errors kept in a run record (a document is at
// most 1 MiB); Statistics.Errors still counts them all.
const MaxRunErrors = 50

// RunRecord is one cleanup or analytics run, in plaid_token_runs.
type RunRecord struct {
	ID            string     `firestore:"id"`
	Kind          string     `firestore:"kind"` // "cleanup" or "analytics"
	Trigger       string     `firestore:"trigger"`
	Actor         string     `firestore:"actor"`
	Status        RunStatus  `firestore:"status"`
	DryRun        bool       `firestore:"dry_run"`
	DaysThreshold int        `firestore:"days_threshold"`
	StartedAt     time.Time  `firestore:"started_at"`
	EndedAt       time.Time  `firestore:"ended_at,omitempty"`
	Cursor        string     `firestore:"cursor"`
	Invocations   int        `firestore:"invocations"`
	EventIDs      []string   `firestore:"event_ids"`
	Statistics    Statistics `firestore:"statistics"`
	Errors        []RunError `firestore:"errors"`
	Failure       string     `firestore:"failure,omitempty"`
}

// SaveRun writes the whole run record.
func (r *Records) SaveRun(ctx context.Context, run *RunRecord) error {
	if len(run.Errors) > MaxRunErrors {
		run.Errors = run.Errors[:MaxRunErrors]
	}
	if _, err := r.client.Collection(RunsCollection).Doc(run.ID).Set(ctx, run); err != nil {
		return fmt.Errorf("saving run %s: %w", run.ID, storeError(err))
	}
	return nil
}

// GetRun reads a run record.
func (r *Records) GetRun(ctx context.Context, id string) (*RunRecord, error) {
	snap, err := r.client.Collection(RunsCollection).Doc(id).Get(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading run %s: %w", id, storeError(err))
	}
	var run RunRecord
	if err := snap.DataTo(&run); err != nil {
		return nil, fmt.Errorf("decoding run %s: %w", id, err)
	}
	return &run, nil
}

// LatestRuns returns the newest limit runs of kind, newest first.
func (r *Records) LatestRuns(ctx context.Context, kind string, limit int) ([]*RunRecord, error) {
	iter := r.client.Collection(RunsCollection).Where("kind", "==", kind).
		OrderBy("started_at", firestore.Desc).Limit(limit).Documents(ctx)
	defer iter.Stop()
	var out []*RunRecord
	for {
		snap, err := iter.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s runs: %w", kind, storeError(err))
		}
		var run RunRecord
		if err := snap.DataTo(&run); err != nil {
			return nil, fmt.Errorf("decoding run %s: %w", snap.Ref.ID, err)
		}
		out = append(out, &run)
	}
}

// AuditEntry records one removal or revocation. It never holds a token.
type AuditEntry struct {
	ItemID string    `firestore:"item_id"`
	UserID string    `firestore:"user_id"`
	Reason string    `firestore:"reason"` // expired, revoked, stale, user_revoked, admin_revoked
	Actor  string    `firestore:"actor"`
	RunID  string    `firestore:"run_id,omitempty"`
	At     time.Time `firestore:"at"`
	// PlaidRemoved says whether /item/remove had succeeded at that time.
	PlaidRemoved bool `firestore:"plaid_removed"`
}

// Audit appends an audit entry.
func (r *Records) Audit(ctx context.Context, e AuditEntry) error {
	if _, _, err := r.client.Collection(AuditCollection).Add(ctx, e); err != nil {
		return fmt.Errorf("writing audit entry for %s: %w", e.ItemID, storeError(err))
	}
	return nil
}

// AuditEntries returns the audit entries of itemID (for operators and tests).
func (r *Records) AuditEntries(ctx context.Context, itemID string) ([]AuditEntry, error) {
	snaps, err := r.client.Collection(AuditCollection).Where("item_id", "==", itemID).Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("reading audit of %s: %w", itemID, storeError(err))
	}
	out := make([]AuditEntry, 0, len(snaps))
	for _, s := range snaps {
		var e AuditEntry
		if err := s.DataTo(&e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// ErrLeaseHeld: another run holds the lease.
var ErrLeaseHeld = &Error{Code: CodeConflict, Message: "a cleanup is already running"}

type lease struct {
	Holder    string    `firestore:"holder"`
	ExpiresAt time.Time `firestore:"expires_at"`
}

// AcquireLease takes the lease name for holder until now+ttl, in a
// transaction. It succeeds when the lease is free, expired, or already
// held by holder (a continuing run renews its own lease); otherwise the
// error wraps ErrLeaseHeld.
func (r *Records) AcquireLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) error {
	ref := r.client.Collection(LocksCollection).Doc(name)
	err := r.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		if err != nil && status.Code(err) != codes.NotFound {
			return err
		}
		if err == nil {
			var l lease
			if err := snap.DataTo(&l); err != nil {
				return err
			}
			if l.Holder != holder && now.Before(l.ExpiresAt) {
				return ErrLeaseHeld
			}
		}
		return tx.Set(ref, lease{Holder: holder, ExpiresAt: now.Add(ttl)})
	})
	if err != nil {
		return fmt.Errorf("acquiring lease %s: %w", name, storeError(err))
	}
	return nil
}

// ReleaseLease frees the lease if holder still holds it.
func (r *Records) ReleaseLease(ctx context.Context, name, holder string) error {
	ref := r.client.Collection(LocksCollection).Doc(name)
	err := r.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		if status.Code(err) == codes.NotFound {
			return nil
		}
		if err != nil {
			return err
		}
		var l lease
		if err := snap.DataTo(&l); err != nil {
			return err
		}
		if l.Holder != holder {
			return nil
		}
		return tx.Delete(ref)
	})
	if err != nil {
		return fmt.Errorf("releasing lease %s: %w", name, storeError(err))
	}
	return nil
}

// eventRecordTTL is how long a handled event id is remembered. Pub/Sub
// redelivers for at most 7 days; a TTL policy on expire_at deletes the rest.
const eventRecordTTL = 8 * 24 * time.Hour

// ClaimEvent records that the CloudEvent id is being handled. It returns
// false if the id was claimed before: a redelivery that must not run again.
func (r *Records) ClaimEvent(ctx context.Context, id, kind string, now time.Time) (bool, error) {
	_, err := r.client.Collection(EventsCollection).Doc(eventDocID(kind, id)).Create(ctx, map[string]any{
		"event_id": id, "kind": kind, "received_at": now, "expire_at": now.Add(eventRecordTTL),
	})
	if status.Code(err) == codes.AlreadyExists {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("claiming event %s: %w", id, storeError(err))
	}
	return true, nil
}

// UnclaimEvent forgets a claimed event id, so that Pub/Sub's retry of a
// failed run runs again.
func (r *Records) UnclaimEvent(ctx context.Context, id, kind string) error {
	if _, err := r.client.Collection(EventsCollection).Doc(eventDocID(kind, id)).Delete(ctx); err != nil {
		return fmt.Errorf("unclaiming event %s: %w", id, storeError(err))
	}
	return nil
}

func eventDocID(kind, id string) string {
	// Document ids may not contain '/'; CloudEvent ids are Pub/Sub message
	// ids (digits) in practice, but the id is caller-controlled.
	safe := make([]rune, 0, len(id))
	for _, c := range id {
		if c == '/' {
			c = '_'
		}
		safe = append(safe, c)
	}
	return kind + "-" + string(safe)
}

// AuditBatch appends entries through a BulkWriter.
func (r *Records) AuditBatch(ctx context.Context, entries []AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	bw := r.client.BulkWriter(ctx)
	col := r.client.Collection(AuditCollection)
	jobs := make([]*firestore.BulkWriterJob, 0, len(entries))
	var errs []error
	for _, e := range entries {
		job, err := bw.Create(col.NewDoc(), e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		jobs = append(jobs, job)
	}
	bw.End()
	for _, job := range jobs {
		if _, err := job.Results(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("writing %d audit entries: %w", len(entries), err)
	}
	return nil
}
