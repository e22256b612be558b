package lifecycle

import (
	"context"
	"errors"
	"fmt"

	"cloud.google.com/go/firestore"
)

// FirestoreLegacyStore is the LegacyStore over plaid_tokens and the legacy
// archive collection.
type FirestoreLegacyStore struct {
	client *firestore.Client
}

var _ LegacyStore = (*FirestoreLegacyStore)(nil)

// LegacyPage pages over plaid_tokens projected on `status`: every document
// comes back with at most that field, so tokens cost almost nothing to pass
// over, and those without a status are the legacy candidates.
func (s *FirestoreLegacyStore) LegacyPage(ctx context.Context, after string, limit int) ([]string, int, string, error) {
	q := s.client.Collection(TokensCollection).Select("status").OrderBy(firestore.DocumentID, firestore.Asc).Limit(limit)
	if after != "" {
		q = q.StartAfter(after)
	}
	snaps, err := q.Documents(ctx).GetAll()
	if err != nil {
		return nil, 0, "", fmt.Errorf("reading plaid_tokens after %q: %w", after, storeError(err))
	}
	var ids []string
	for _, snap := range snaps {
		if _, hasStatus := snap.Data()["status"]; !hasStatus {
			ids = append(ids, snap.Ref.ID)
		}
	}
	next := ""
	if len(snaps) == limit {
		next = snaps[len(snaps)-1].Ref.ID
	}
	return ids, len(snaps), next, nil
}

// errLeaveInPlace ends a migration transaction without writing: the
// document has a problem, which the migration reports.
var errLeaveInPlace = errors.New("legacy document left in place")

// MigrateLegacyUser migrates one legacy document in one transaction (a
// dry run reads the same documents outside one and writes nothing). Its
// error is Firestore failing; per-document problems are in the migration.
func (s *FirestoreLegacyStore) MigrateLegacyUser(ctx context.Context, userID string, dryRun bool, plan LegacyPlanner) (*LegacyMigration, error) {
	if dryRun {
		return s.planMigration(ctx, userID, plan)
	}
	var m *LegacyMigration
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		var err error
		m, err = s.migrateInTx(tx, userID, plan)
		return err
	})
	switch {
	case errors.Is(err, errLeaveInPlace):
		return m, nil
	case errors.Is(storeError(err), ErrChanged):
		// Contention the transaction's own retries did not get past: report
		// it and go on; a rerun picks the document up again.
		return &LegacyMigration{userID: userID, legacy: true, problems: []MigrateProblem{{UserID: userID, Kind: MigrateError,
			Error: "document kept changing during the migration; run it again"}}}, nil
	case err != nil:
		return nil, fmt.Errorf("migrating legacy user %s: %w", userID, storeError(err))
	}
	return m, nil
}

// planMigration is a dry run's migration: what plan makes of the document,
// resolved against the item documents that exist, without writing.
func (s *FirestoreLegacyStore) planMigration(ctx context.Context, userID string, plan LegacyPlanner) (*LegacyMigration, error) {
	snap, err := s.client.Collection(TokensCollection).Doc(userID).Get(ctx)
	if isNotFound(err) {
		return plan(userID, nil), nil // deleted since the page was read
	}
	if err != nil {
		return nil, fmt.Errorf("reading legacy document %s: %w", userID, storeError(err))
	}
	m := plan(userID, snap.Data())
	if !m.legacy || len(m.problems) > 0 {
		return m, nil
	}
	existing, err := s.client.GetAll(ctx, s.itemRefs(m))
	if err != nil {
		return m, fmt.Errorf("reading item documents of legacy user %s: %w", userID, storeError(err))
	}
	m.migrated = m.resolve(owners(existing))
	return m, nil
}

// migrateInTx reads the legacy document, the item documents it becomes and
// its archive in tx, and writes the migration plan decides: the items that
// do not exist yet, the archive, the legacy document's deletion.
// errLeaveInPlace aborts it without writing.
func (s *FirestoreLegacyStore) migrateInTx(tx *firestore.Transaction, userID string, plan LegacyPlanner) (*LegacyMigration, error) {
	ref := s.client.Collection(TokensCollection).Doc(userID)
	snap, err := tx.Get(ref)
	if isNotFound(err) {
		return plan(userID, nil), nil
	}
	if err != nil {
		return nil, err
	}
	data := snap.Data()
	m := plan(userID, data)
	switch {
	case !m.legacy:
		return m, nil
	case len(m.problems) > 0:
		return m, errLeaveInPlace
	}
	// One read for every item document and the archive document: a
	// transaction reads everything before it writes.
	refs := s.itemRefs(m)
	archive := s.client.Collection(LegacyArchiveCollection).Doc(userID)
	existing, err := tx.GetAll(append(refs, archive))
	if err != nil {
		return m, err
	}
	if !m.resolve(owners(existing[:len(refs)])) {
		return m, errLeaveInPlace
	}
	if existing[len(refs)].Exists() {
		// A legacy document for this user was archived before (the old
		// service wrote again after a migration): keep both.
		archive = s.client.Collection(LegacyArchiveCollection).Doc(userID + "@" + m.at.Format("20060102T150405.000000000Z"))
	}
	for i, item := range m.items {
		if !existing[i].Exists() {
			if err := tx.Create(refs[i], item.doc); err != nil {
				return m, err
			}
		}
	}
	if err := tx.Create(archive, m.archive(data, m.at)); err != nil {
		return m, err
	}
	m.migrated = true
	return m, tx.Delete(ref)
}

func (s *FirestoreLegacyStore) itemRefs(m *LegacyMigration) []*firestore.DocumentRef {
	refs := make([]*firestore.DocumentRef, len(m.items))
	for i, item := range m.items {
		refs[i] = s.client.Collection(TokensCollection).Doc(item.itemID)
	}
	return refs
}

// owners returns the user_id of each existing document, "" for missing ones.
func owners(snaps []*firestore.DocumentSnapshot) []string {
	out := make([]string, len(snaps))
	for i, snap := range snaps {
		if !snap.Exists() {
			continue
		}
		owner, _ := snap.Data()["user_id"].(string)
		if owner == "" {
			owner = "\x00unowned" // exists, owned by nobody: never the same user
		}
		out[i] = owner
	}
	return out
}
