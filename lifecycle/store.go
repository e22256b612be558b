package lifecycle

import (
	"context"
	"time"
)

// The lifecycle's storage, as the operations need it. The Firestore adapters
// (firestore_*.go) implement these interfaces; they are the only files of
// this package that know Firestore exists.

// TokenStore is the token collection (plaid_tokens). Documents there that
// are not tokens, the old service's per-user documents (DESIGN §5), are
// never returned as tokens: Get answers ErrNotFound for them, ListByUser,
// Page and Summaries pass them over. An item id Firestore cannot hold as a
// document id (ValidItemID) is ErrNotFound too, never a storage error.
type TokenStore interface {
	// Get returns the token with itemID, or an error wrapping ErrNotFound.
	Get(ctx context.Context, itemID string) (*Token, error)
	// Create stores a new token document; ErrChanged if it already exists.
	Create(ctx context.Context, t *Token) error
	// Mutate reads the token document itemID (nil when there is none) and,
	// in the same transaction, writes what decide says. decide may run more
	// than once (a contended transaction is retried); its error aborts
	// without writing. A document at itemID that is not a token is a
	// conflict. Mutate returns the token as written, or as read when
	// nothing was, without its Version.
	Mutate(ctx context.Context, itemID string, decide func(existing *Token) (Mutation, error)) (*Token, error)
	// ListByUser returns every token of userID.
	ListByUser(ctx context.Context, userID string) ([]*Token, error)
	// Page returns the tokens among the next limit documents in item id
	// order after the item id `after` ("" for the first page), and the
	// cursor to continue from: next is "" once the collection is exhausted.
	// Non-token documents count towards limit, so a page may hold fewer
	// tokens than limit without being the last.
	Page(ctx context.Context, after string, limit int) (tokens []*Token, next string, err error)
	// Update applies p to the token. When ifVersion is non-zero the write
	// only happens if the document's update time still equals it, else the
	// error wraps ErrChanged. It returns the document's new version.
	Update(ctx context.Context, itemID string, p Patch, ifVersion time.Time) (time.Time, error)
	// Delete removes the token document, only if its update time still
	// equals ifVersion (required: a delete is never unconditional), else the
	// error wraps ErrChanged.
	Delete(ctx context.Context, itemID string, ifVersion time.Time) error
	// Apply performs a batch of writes (parallel, batched) and returns one
	// error per write, nil for success. Each item id appears at most once.
	Apply(ctx context.Context, writes []Write) []error
	// Summaries calls visit with the analytics fields of every token, in
	// no particular order, reading only those fields. It stops at visit's
	// first error.
	Summaries(ctx context.Context, visit func(*TokenSummary) error) error
}

// Mutation is what a read-decide-write on one token document writes: a new
// document, a patch of the existing one, or nothing (the zero Mutation).
type Mutation struct {
	Create *Token
	Patch  *Patch
}

// Write is one write of a TokenStore.Apply batch: a conditional delete, or
// a patch.
type Write struct {
	ItemID    string
	Delete    bool
	Patch     Patch
	IfVersion time.Time // required for deletes and audited writes
	// Audit is the audit entry recorded with the write: both land or
	// neither, so no document is ever gone or revoked without its entry.
	// (It needs a RunID, or outside a run a Reason: the entry's identity is
	// that, the item and IfVersion, so that a retried write whose first
	// answer was lost finds its own entry and reports success rather than
	// ErrChanged.)
	Audit *AuditEntry
}

// RunStore keeps what the service records beside the tokens: run records,
// the cleanup lease, handled CloudEvent ids, the audit trail and the
// weekly analytics snapshots.
type RunStore interface {
	// GetRun returns a run record, or an error wrapping ErrNotFound.
	GetRun(ctx context.Context, id string) (*RunRecord, error)
	// RecentRuns returns the newest n run records by start time, newest
	// first.
	RecentRuns(ctx context.Context, n int) ([]*RunRecord, error)
	// SaveRun writes the whole run record, unless the stored record is no
	// longer this invocation's: another invocation took the run since this
	// one claimed it (the stored record's Invocations moved on), or the run
	// ended without it (abandoned by a take-over, or marked failed when its
	// lease lapsed). Then the error wraps ErrLeaseLost, and when the record
	// is still at this invocation, only its statistics and errors are
	// written: a superseded run still records what it did.
	SaveRun(ctx context.Context, run *RunRecord) error
	// UpdateRun reads a run record and, in the same transaction, writes
	// what change makes of it; change returns false to write nothing. It
	// returns the record as it stands afterwards (ErrNotFound when missing).
	UpdateRun(ctx context.Context, id string, change func(*RunRecord) bool) (*RunRecord, error)
	// ClaimCleanup reads, in one transaction, the record of eventID (when
	// not empty), the cleanup lease, and the runs named by the event record,
	// the lease and runIDs; decide says what to write, and the store writes
	// it atomically with those reads. decide may run more than once when
	// the transaction is retried; its error aborts without writing.
	ClaimCleanup(ctx context.Context, eventID string, runIDs []string, decide func(ClaimState) (ClaimWrites, error)) error
	// RenewLease extends the hold of the invocation of run that claimed it
	// (its Invocations count then) to until: the record's LeaseUntil and,
	// for a run that is not a dry run, the cleanup lease. It fails with an
	// error wrapping ErrLeaseLost when another run holds the lease or
	// another invocation has taken the run since (a stalled invocation
	// whose lease lapsed and was resumed elsewhere must stop).
	// now is when the renewal happens (the lease's renewed_at).
	RenewLease(ctx context.Context, run *RunRecord, now, until time.Time) error
	// ReleaseLease frees the cleanup lease if holder still holds it.
	ReleaseLease(ctx context.Context, holder string) error
	// Audit appends audit entries.
	Audit(ctx context.Context, entries ...AuditEntry) error
	// SaveSnapshot stores an analytics snapshot under its event id; false
	// when that event's snapshot exists already (a redelivery).
	SaveSnapshot(ctx context.Context, snap AnalyticsSnapshot) (bool, error)
	// Snapshots returns the newest n snapshots, newest first.
	Snapshots(ctx context.Context, n int) ([]AnalyticsSnapshot, error)
}

// LegacyStore reaches the old service's per-user documents in
// plaid_tokens (DESIGN §5) for the migration.
type LegacyStore interface {
	// LegacyPage returns the ids of the legacy documents among the next
	// limit documents after `after`, how many documents it looked at, and
	// the cursor to continue from ("" when exhausted).
	LegacyPage(ctx context.Context, after string, limit int) (userIDs []string, scanned int, next string, err error)
	// MigrateLegacyUser migrates one legacy document atomically: it reads
	// the document (nil data when it is gone or not legacy any more) and the
	// documents its items would become, and plan decides. When plan returns
	// a migration without problems and dryRun is false, the store creates
	// the item documents that do not exist yet, archives the legacy document
	// and deletes it, all in one transaction.
	MigrateLegacyUser(ctx context.Context, userID string, dryRun bool, plan LegacyPlanner) (*LegacyMigration, error)
}

// LegacyPlanner turns a legacy document's data into the item documents it
// becomes (DESIGN §5). It is called inside the migration's transaction.
type LegacyPlanner func(userID string, data map[string]any) *LegacyMigration

// StatsStore keeps the analytics counters (DESIGN §12; stats.go): counter
// shards, each user's token count, the record of every applied change, and
// the state of the repairs that keep them exact.
type StatsStore interface {
	// CountChanges reads, in one transaction, the counters' state, which
	// of eventIDs (at most MaxTokenChangesPerCall) were applied already and
	// the token counts of users; count decides (countChanges), and the store
	// writes what it says atomically with those reads: the applied changes'
	// records (event id, commit time and delta), their increments to the
	// counter shards, and the users' new counts. count may run more than
	// once (a contended transaction is retried); its error aborts without
	// writing.
	CountChanges(ctx context.Context, eventIDs, users []string, count func(CountState) (CountWrites, error)) error
	// ReadStats reads the counters and their state at one read time; with
	// opts, also every user's count and the applied changes committed after
	// opts.ChangesAfter, at the same read time.
	ReadStats(ctx context.Context, opts StatsRead) (*StatsReading, error)
	// RecountTokens calls visit with the summary of every token as of one
	// read time, which it chooses no earlier than notBefore and returns:
	// a whole second minus a microsecond, so that a commit time known only
	// to the second (the Firestore emulator's event times) still compares
	// exactly with it.
	RecountTokens(ctx context.Context, notBefore time.Time, visit func(*TokenSummary) error) (time.Time, error)
	// ClaimRepair takes the one repair lease for repairID until until. A
	// live lease of another repair refuses it with an error of
	// CodeConflict.
	ClaimRepair(ctx context.Context, repairID string, now, until time.Time) error
	// RaiseHorizon sets the repair horizon to t0 (never lowering it), while
	// repairID holds the lease: from then on a change committed at or
	// before t0 that was not applied yet is counted by the repair's recount,
	// and CountChanges skips it.
	RaiseHorizon(ctx context.Context, repairID string, t0, now time.Time) error
	// ApplyRepair adds counters (at most maxRepairKeysPerCall keys) and
	// users' count changes (at most maxRepairUsersPerCall users) in one
	// transaction, while repairID holds the lease (else ErrRepairLeaseLost).
	ApplyRepair(ctx context.Context, repairID string, now time.Time, counters Counters, users map[string]int64) error
	// EndRepair frees repairID's lease; with rec, it records the finished
	// repair and marks the counters initialized.
	EndRepair(ctx context.Context, repairID string, rec *StatsRepair) error
}
