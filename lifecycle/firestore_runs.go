package lifecycle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FirestoreRunStore is the RunStore over this service's own collections:
// plaid_token_runs, plaid_token_locks, plaid_token_events,
// plaid_token_audit and plaid_token_analytics.
type FirestoreRunStore struct {
	client *firestore.Client
}

var _ RunStore = (*FirestoreRunStore)(nil)

// NewFirestoreRunStore returns a RunStore over client.
func NewFirestoreRunStore(client *firestore.Client) *FirestoreRunStore {
	return &FirestoreRunStore{client: client}
}

// cleanupLeaseDoc is the one cleanup lease's document id in LocksCollection.
const cleanupLeaseDoc = "cleanup"

func (s *FirestoreRunStore) runRef(id string) *firestore.DocumentRef {
	return s.client.Collection(RunsCollection).Doc(id)
}

func (s *FirestoreRunStore) leaseRef() *firestore.DocumentRef {
	return s.client.Collection(LocksCollection).Doc(cleanupLeaseDoc)
}

// GetRun reads a run record.
func (s *FirestoreRunStore) GetRun(ctx context.Context, id string) (*RunRecord, error) {
	if !validRunID(id) {
		return nil, fmt.Errorf("reading run: %w", ErrNotFound)
	}
	snap, err := s.runRef(id).Get(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading run %s: %w", id, storeError(err))
	}
	return decodeRun(snap)
}

// RecentRuns reads the newest n run records (single-field index on
// started_at).
func (s *FirestoreRunStore) RecentRuns(ctx context.Context, n int) ([]*RunRecord, error) {
	iter := s.client.Collection(RunsCollection).OrderBy("started_at", firestore.Desc).Limit(n).Documents(ctx)
	defer iter.Stop()
	out := make([]*RunRecord, 0, n)
	for {
		snap, err := iter.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, queryError("reading recent runs", err)
		}
		run, err := decodeRun(snap)
		if err != nil {
			return nil, err
		}
		out = append(out, run)
	}
}

func decodeRun(snap *firestore.DocumentSnapshot) (*RunRecord, error) {
	var run RunRecord
	if err := snap.DataTo(&run); err != nil {
		return nil, fmt.Errorf("decoding run %s: %w", snap.Ref.ID, err)
	}
	return &run, nil
}

// SaveRun writes the whole run record, in a transaction that first checks
// the stored record is still this invocation's, keeping the later of the
// stored and the given lease_until. A record superseded at this invocation
// gets this invocation's statistics and errors only.
func (s *FirestoreRunStore) SaveRun(ctx context.Context, run *RunRecord) error {
	run.Errors = boundErrors(run.Errors)
	ref := s.runRef(run.ID)
	var lost error // the transaction commits, then SaveRun reports it
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		lost = nil
		snap, err := tx.Get(ref)
		switch {
		case isNotFound(err):
			return tx.Set(ref, run)
		case err != nil:
			return err
		}
		stored, err := decodeRun(snap)
		if err != nil {
			return err
		}
		if lost = invocationLost(stored, run); lost != nil {
			if stored.Invocations != run.Invocations {
				return nil
			}
			// Superseded while it worked: what it did is still recorded.
			return tx.Update(ref, []firestore.Update{{Path: "statistics", Value: run.Statistics},
				{Path: "errors", Value: run.Errors}})
		}
		// The lease keeper renews lease_until in the store alone.
		if stored.LeaseUntil.After(run.LeaseUntil) {
			run.LeaseUntil = stored.LeaseUntil
		}
		return tx.Set(ref, run)
	})
	if err != nil {
		return fmt.Errorf("saving run %s: %w", run.ID, storeError(err))
	}
	return lost
}

// invocationLost says, as an error wrapping ErrLeaseLost, that the stored
// record is no longer run's invocation's to write: another invocation took
// the run, or it ended without it (superseded, or marked dead when its lease
// lapsed).
func invocationLost(stored, run *RunRecord) error {
	if stored.Invocations != run.Invocations || (stored.Status.Finished() && stored.Status != run.Status) {
		return fmt.Errorf("run %s is %s at invocation %d: %w", run.ID, stored.Status, stored.Invocations, ErrLeaseLost)
	}
	return nil
}

// UpdateRun reads run id and writes what change makes of it, in one
// transaction; change returns false to write nothing. It returns the record
// as stored afterwards.
func (s *FirestoreRunStore) UpdateRun(ctx context.Context, id string, change func(*RunRecord) bool) (*RunRecord, error) {
	if !validRunID(id) {
		return nil, fmt.Errorf("updating run: %w", ErrNotFound)
	}
	ref := s.runRef(id)
	var out *RunRecord
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		if err != nil {
			return err
		}
		run, err := decodeRun(snap)
		if err != nil {
			return err
		}
		out = run
		if !change(run) {
			return nil
		}
		return tx.Set(ref, run)
	})
	if err != nil {
		return nil, fmt.Errorf("updating run %s: %w", id, storeError(err))
	}
	return out, nil
}

// ClaimCleanup reads the event's record, the lease and the runs they and
// runIDs name, and writes what decide says, in one transaction.
func (s *FirestoreRunStore) ClaimCleanup(ctx context.Context, eventID string, runIDs []string, decide func(ClaimState) (ClaimWrites, error)) error {
	eventRef := s.client.Collection(EventsCollection).Doc(eventDocID(eventKindCleanup, eventID))
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		st, err := s.readClaimState(tx, eventRef, eventID, runIDs)
		if err != nil {
			return err
		}
		w, err := decide(st)
		if err != nil {
			return err
		}
		return s.writeClaim(tx, w, eventRef, eventID)
	})
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return err // decide's own verdict, e.g. the lease is held
		}
		return fmt.Errorf("claiming the cleanup lease: %w", storeError(err))
	}
	return nil
}

// readClaimState reads in tx the event's record (when eventID is set), the
// lease, and the runs runIDs, the record and the lease name.
func (s *FirestoreRunStore) readClaimState(tx *firestore.Transaction, eventRef *firestore.DocumentRef, eventID string, runIDs []string) (ClaimState, error) {
	st := ClaimState{Runs: map[string]*RunRecord{}}
	ids := slices.Clone(runIDs)
	if eventID != "" {
		var ev EventRecord
		switch found, err := getInto(tx, eventRef, &ev); {
		case err != nil:
			return st, fmt.Errorf("reading event record %s: %w", eventID, err)
		case found:
			st.Event = &ev
			ids = append(ids, ev.RunID)
		}
	}
	var l Lease
	switch found, err := getInto(tx, s.leaseRef(), &l); {
	case err != nil:
		return st, fmt.Errorf("reading the cleanup lease: %w", err)
	case found:
		st.Lease = &l
		ids = append(ids, l.Holder)
	}
	var refs []*firestore.DocumentRef
	for _, id := range ids {
		if validRunID(id) && !slices.ContainsFunc(refs, func(r *firestore.DocumentRef) bool { return r.ID == id }) {
			refs = append(refs, s.runRef(id))
		}
	}
	if len(refs) == 0 {
		return st, nil
	}
	snaps, err := tx.GetAll(refs)
	if err != nil {
		return st, err
	}
	for _, snap := range snaps {
		if snap.Exists() {
			run, err := decodeRun(snap)
			if err != nil {
				return st, err
			}
			st.Runs[snap.Ref.ID] = run
		}
	}
	return st, nil
}

// getInto reads ref in tx into v; found is false when it does not exist.
func getInto(tx *firestore.Transaction, ref *firestore.DocumentRef, v any) (found bool, err error) {
	snap, err := tx.Get(ref)
	switch {
	case isNotFound(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, snap.DataTo(v)
}

// writeClaim writes a claim's decision in tx: its runs whole, the lease,
// and the event's record.
func (s *FirestoreRunStore) writeClaim(tx *firestore.Transaction, w ClaimWrites, eventRef *firestore.DocumentRef, eventID string) error {
	for _, run := range w.Runs {
		run.Errors = boundErrors(run.Errors)
		if err := tx.Set(s.runRef(run.ID), run); err != nil {
			return err
		}
	}
	if w.Lease != nil {
		if err := tx.Set(s.leaseRef(), w.Lease); err != nil {
			return err
		}
	}
	if w.Event != nil && eventID != "" {
		return tx.Create(eventRef, w.Event)
	}
	return nil
}

// RenewLease extends the hold of run's invocation to until, in a
// transaction that checks the run record and the lease are still its own.
func (s *FirestoreRunStore) RenewLease(ctx context.Context, run *RunRecord, now, until time.Time) error {
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(s.runRef(run.ID))
		if err != nil {
			return err
		}
		stored, err := decodeRun(snap)
		if err != nil {
			return err
		}
		if stored.Invocations != run.Invocations || stored.Status.Finished() {
			return fmt.Errorf("run %s is %s at invocation %d: %w", run.ID, stored.Status, stored.Invocations, ErrLeaseLost)
		}
		if !run.DryRun {
			snap, err := tx.Get(s.leaseRef())
			if isNotFound(err) {
				return ErrLeaseLost
			}
			if err != nil {
				return err
			}
			var l Lease
			if err := snap.DataTo(&l); err != nil {
				return err
			}
			if l.Holder != run.ID {
				return fmt.Errorf("the lease is held by run %s: %w", l.Holder, ErrLeaseLost)
			}
			if err := tx.Update(s.leaseRef(), []firestore.Update{{Path: "expires_at", Value: until},
				{Path: "renewed_at", Value: now}}); err != nil {
				return err
			}
		}
		return tx.Update(s.runRef(run.ID), []firestore.Update{{Path: "lease_until", Value: until}})
	})
	if err != nil {
		if errors.Is(err, ErrLeaseLost) {
			return err
		}
		return fmt.Errorf("renewing the lease of run %s: %w", run.ID, storeError(err))
	}
	return nil
}

// ReleaseLease frees the lease if holder still holds it.
func (s *FirestoreRunStore) ReleaseLease(ctx context.Context, holder string) error {
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(s.leaseRef())
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		var l Lease
		if err := snap.DataTo(&l); err != nil {
			return err
		}
		if l.Holder != holder {
			return nil
		}
		return tx.Delete(s.leaseRef())
	})
	if err != nil {
		return fmt.Errorf("releasing the cleanup lease: %w", storeError(err))
	}
	return nil
}

// Audit appends entries, several through a BulkWriter. An entry is created
// under its own document id (chosen here); a retry of a write whose answer
// was lost finds it there (AlreadyExists), which is success.
func (s *FirestoreRunStore) Audit(ctx context.Context, entries ...AuditEntry) error {
	col := s.client.Collection(AuditCollection)
	switch len(entries) {
	case 0:
		return nil
	case 1:
		if _, err := col.NewDoc().Create(ctx, entries[0]); err != nil && status.Code(err) != codes.AlreadyExists {
			return fmt.Errorf("writing audit entry for %s: %w", entries[0].ItemID, storeError(err))
		}
		return nil
	}
	bw := s.client.BulkWriter(ctx)
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
		if _, err := job.Results(); err != nil && status.Code(err) != codes.AlreadyExists {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("writing %d audit entries: %w", len(entries), storeError(err))
	}
	return nil
}

// SaveSnapshot stores snap under a document id derived from its event id,
// so a redelivered event stores nothing more.
func (s *FirestoreRunStore) SaveSnapshot(ctx context.Context, snap AnalyticsSnapshot) (bool, error) {
	ref := s.client.Collection(SnapshotsCollection).Doc(eventDocID("analytics", snap.EventID))
	// Institution names are map keys: one Firestore reserves (__x__) would
	// fail every week's snapshot.
	snap.Analytics.Institutions = mapKeys(snap.Analytics.Institutions, storedKey)
	snap.Analytics.Environments = mapKeys(snap.Analytics.Environments, storedKey)
	_, err := ref.Create(ctx, snap)
	if status.Code(err) == codes.AlreadyExists {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("saving analytics snapshot of event %s: %w", snap.EventID, storeError(err))
	}
	return true, nil
}

// Snapshots reads the newest n snapshots (single-field index on taken_at).
func (s *FirestoreRunStore) Snapshots(ctx context.Context, n int) ([]AnalyticsSnapshot, error) {
	iter := s.client.Collection(SnapshotsCollection).OrderBy("taken_at", firestore.Desc).Limit(n).Documents(ctx)
	defer iter.Stop()
	out := make([]AnalyticsSnapshot, 0, n)
	for {
		snap, err := iter.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, queryError("reading analytics history", err)
		}
		var a AnalyticsSnapshot
		if err := snap.DataTo(&a); err != nil {
			return nil, fmt.Errorf("decoding analytics snapshot %s: %w", snap.Ref.ID, err)
		}
		a.Analytics.Institutions = mapKeys(a.Analytics.Institutions, loadedKey)
		a.Analytics.Environments = mapKeys(a.Analytics.Environments, loadedKey)
		out = append(out, a)
	}
}

// validRunID reports whether id can name a run record: run ids are UUIDs
// this service makes, but come back in requests and messages.
func validRunID(id string) bool { return validDocumentID(id, 64) }

// maxEventDocID bounds an event record's document id before it is hashed.
const maxEventDocID = 256

// eventDocID is the document id of a handled event. CloudEvent ids are
// Pub/Sub message ids (digits) in practice, but caller-controlled: one that
// cannot be a document id is hashed.
func eventDocID(kind, id string) string {
	doc := kind + "-" + id
	if !validDocumentID(doc, maxEventDocID) {
		sum := sha256.Sum256([]byte(id))
		doc = kind + "-sha256-" + hex.EncodeToString(sum[:])
	}
	return doc
}

// mapKeys is a copy of m (never nil) with each key passed through key.
func mapKeys(m map[string]int, key func(string) string) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[key(k)] = v
	}
	return out
}
