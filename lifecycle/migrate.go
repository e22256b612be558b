package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// The legacy archive (LegacyArchiveCollection) keeps every per-user
// document of the old service that the migration carried over, as it was
// plus `migrated_at` and `migrated_items`, with the user id as document id
// (plaintext access tokens in it are replaced by their v1 ciphertext: see
// LegacyMigration.archive). The legacy document leaves plaid_tokens in the
// same transaction that writes its archive copy, so the old data is never
// deleted outright: an operator can always go back to it.

// LegacyErrorCode is the error_code given to items the old service had in
// status `error` (or in a status this service does not know): they are
// migrated as active so that the next validation decides (DESIGN §5).
const LegacyErrorCode = "LEGACY_ERROR"

const (
	// migratePageSize is the number of plaid_tokens documents looked at per
	// page. Pages read ids only (LegacyStore.LegacyPage); a legacy document
	// is read in full only by the worker that migrates it, so memory stays
	// bounded by migrateWorkers legacy documents (each at most Firestore's
	// 1 MiB) whatever the collection size.
	migratePageSize = 300
	// migrateWorkers bounds the legacy documents migrated at once.
	migrateWorkers = 8
	// maxMigrateProblems bounds the problems listed in a report; the
	// counts still count them all.
	maxMigrateProblems = 100
)

// MigrateOptions asks for a legacy migration.
type MigrateOptions struct {
	// DryRun computes the full report and writes nothing.
	DryRun bool
	// LegacyKey is LEGACY_TOKEN_ENCRYPTION_KEY, the password the old
	// service's Fernet key was derived from. It may be empty when the legacy
	// data holds only plaintext tokens.
	LegacyKey string
	// Progress, if set, is called after each page with the totals so far.
	Progress func(MigrateReport)
}

// MigrateReport is what a legacy migration did (or, dry, would do).
type MigrateReport struct {
	DryRun bool `json:"dry_run"`
	// DocumentsScanned counts the plaid_tokens documents looked at (in a
	// real run, item documents it created ahead of its cursor too).
	DocumentsScanned int `json:"documents_scanned"`
	// LegacyUsers counts the legacy per-user documents found.
	LegacyUsers int `json:"legacy_users"`
	// UsersMigrated counts legacy documents archived and removed from
	// plaid_tokens because every item of theirs is in place.
	UsersMigrated int `json:"users_migrated"`
	// UsersLeftInPlace counts legacy documents left as they are because of a
	// conflict or an error in one of their items.
	UsersLeftInPlace int `json:"users_left_in_place"`
	// Items counts the items in the legacy documents found.
	Items int `json:"items"`
	// ItemsMigrated counts item documents created.
	ItemsMigrated int `json:"items_migrated"`
	// ItemsAlreadyMigrated counts items whose document already existed for
	// the same user (left as it was).
	ItemsAlreadyMigrated int `json:"items_already_migrated"`
	// PlaintextTokens and FernetTokens count the readable access tokens by
	// the form the old service stored them in.
	PlaintextTokens int `json:"plaintext_tokens"`
	FernetTokens    int `json:"fernet_tokens"`
	// LegacyErrorItems counts items migrated as active with error_code
	// LEGACY_ERROR (old status `error` or unknown).
	LegacyErrorItems int `json:"legacy_error_items"`
	// UndatedItems counts items without created_at, updated_at or
	// last_used_at. They get updated_at = the migration time: with no date
	// at all, the first cleanup would take them for stale and remove a
	// possibly live Item at Plaid.
	UndatedItems int `json:"undated_items"`
	// Conflicts counts items whose document already exists for another
	// user; Errors counts items (or documents) that could not be read or
	// decrypted. Either leaves the whole legacy document in place.
	Conflicts int `json:"conflicts"`
	Errors    int `json:"errors"`
	// Problems lists the first conflicts and errors (never a token).
	Problems []MigrateProblem `json:"problems"`
}

// MigrateProblem is one conflict or error of a migration.
type MigrateProblem struct {
	UserID string `json:"user_id"`
	ItemID string `json:"item_id,omitempty"`
	Kind   string `json:"kind"` // "conflict" or "error"
	Error  string `json:"error"`
}

// Kinds of MigrateProblem.
const (
	MigrateConflict = "conflict"
	MigrateError    = "error"
)

// MigrateLegacy carries the old service's per-user documents over to one
// document per item (DESIGN §5). For each legacy document (one with an
// `items` map and no `status`) it, in one transaction: creates
// plaid_tokens/{item_id} for every item (every field kept, the access token
// re-encrypted with the vault, status `error` as active with
// LEGACY_ERROR), never overwriting an existing document, then writes the
// legacy document to the archive collection and deletes it. A document
// with any conflict or undecryptable token is left whole, with nothing
// created, so nothing is ever half-migrated, and a second run finds nothing
// to do.
func (s *Service) MigrateLegacy(ctx context.Context, opts MigrateOptions) (*MigrateReport, error) {
	if s.legacy == nil {
		return nil, Errorf(CodeInternal, "migrating legacy data needs a legacy store")
	}
	legacy := NewLegacyDecrypter(opts.LegacyKey)
	log := Logger(ctx).With(slog.Bool("dry_run", opts.DryRun))
	report := &MigrateReport{DryRun: opts.DryRun, Problems: []MigrateProblem{}}
	after := ""
	for {
		userIDs, scanned, next, err := s.legacy.LegacyPage(ctx, after, migratePageSize)
		if err != nil {
			return report, fmt.Errorf("migrating legacy data: %w", err)
		}
		report.DocumentsScanned += scanned
		if err := s.migratePage(ctx, userIDs, legacy, opts.DryRun, report, log); err != nil {
			return report, err
		}
		if opts.Progress != nil {
			opts.Progress(*report)
		}
		if next == "" {
			break
		}
		after = next
	}
	log.InfoContext(ctx, "legacy migration finished", report.logAttrs()...)
	return report, nil
}

// migrateLegacyUserFirst migrates the legacy document of userID, if any,
// before the user's tokens are revoked: its Items are live at Plaid too.
// A document that cannot be migrated stops the revocation with an error
// naming why: revoking all but the legacy Items would leave them billed
// while the user was told all were revoked.
func (s *Service) migrateLegacyUserFirst(ctx context.Context, userID string) error {
	if s.legacy == nil || !validDocumentID(userID, maxIDLength) {
		return nil
	}
	m, err := s.legacy.MigrateLegacyUser(ctx, userID, false, s.legacyPlanner(NewLegacyDecrypter(s.config.LegacyEncryptionKey)))
	if err != nil {
		return err
	}
	if !m.legacy {
		return nil
	}
	log := Logger(ctx).With(slog.String("user_id", userID))
	if !m.migrated {
		for _, p := range m.problems {
			log.ErrorContext(ctx, "legacy document of a user revoking all tokens cannot be migrated",
				slog.String("item_id", p.ItemID), slog.String("kind", p.Kind), slog.String("error", p.Error))
		}
		return Errorf(CodeUnavailable, "the user's tokens from the old service could not be migrated; nothing was revoked (an operator must run migrate-legacy)")
	}
	log.InfoContext(ctx, "legacy user migrated before revocation", slog.Int("items_created", m.created),
		slog.Int("items_already_migrated", m.alreadyMigrated))
	return nil
}

func (r *MigrateReport) logAttrs() []any {
	return []any{
		slog.Int("documents_scanned", r.DocumentsScanned), slog.Int("legacy_users", r.LegacyUsers),
		slog.Int("users_migrated", r.UsersMigrated), slog.Int("users_left_in_place", r.UsersLeftInPlace),
		slog.Int("items", r.Items), slog.Int("items_migrated", r.ItemsMigrated),
		slog.Int("items_already_migrated", r.ItemsAlreadyMigrated), slog.Int("plaintext_tokens", r.PlaintextTokens),
		slog.Int("fernet_tokens", r.FernetTokens), slog.Int("legacy_error_items", r.LegacyErrorItems), slog.Int("undated_items", r.UndatedItems),
		slog.Int("conflicts", r.Conflicts), slog.Int("errors", r.Errors),
	}
}

// LegacyMigration is what the migration did (dry: would do) with one
// legacy document: the item documents it becomes and what kept it in
// place. The LegacyStore fills in how the items met the documents already
// there (resolve) and whether it was migrated.
type LegacyMigration struct {
	userID          string
	at              time.Time // when it was planned: migrated_at
	items           []legacyItem
	legacy          bool // it was a legacy document (still there, with items)
	migrated        bool // archived and removed (dry: would be)
	itemCount       int
	created         int
	alreadyMigrated int
	plaintext       int
	fernet          int
	legacyErrors    int
	undated         int
	problems        []MigrateProblem
}

type legacyItem struct {
	itemID string
	userID string
	source string // how the old service stored the token: "plaintext" or "fernet"
	doc    map[string]any
}

// migratePage migrates the legacy documents of one page a few at a time
// and adds their outcomes to report, in document order.
func (s *Service) migratePage(ctx context.Context, userIDs []string, legacy *LegacyDecrypter, dryRun bool, report *MigrateReport, log *slog.Logger) error {
	if len(userIDs) == 0 {
		return nil
	}
	planner := s.legacyPlanner(legacy)
	outcomes := make([]*LegacyMigration, len(userIDs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(migrateWorkers)
	for i, id := range userIDs {
		g.Go(func() error {
			var err error
			outcomes[i], err = s.legacy.MigrateLegacyUser(gctx, id, dryRun, planner)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for i, o := range outcomes {
		if !o.legacy {
			continue
		}
		report.add(o)
		if o.migrated {
			log.InfoContext(ctx, "legacy user migrated", slog.String("user_id", userIDs[i]),
				slog.Int("items_created", o.created), slog.Int("items_already_migrated", o.alreadyMigrated))
			continue
		}
		for _, p := range o.problems {
			log.WarnContext(ctx, "legacy user left in place", slog.String("user_id", p.UserID),
				slog.String("item_id", p.ItemID), slog.String("kind", p.Kind), slog.String("error", p.Error))
		}
	}
	return nil
}

func (r *MigrateReport) add(o *LegacyMigration) {
	r.LegacyUsers++
	if o.migrated {
		r.UsersMigrated++
	} else {
		r.UsersLeftInPlace++
	}
	r.Items += o.itemCount
	r.ItemsMigrated += o.created
	r.ItemsAlreadyMigrated += o.alreadyMigrated
	r.PlaintextTokens += o.plaintext
	r.FernetTokens += o.fernet
	r.LegacyErrorItems += o.legacyErrors
	r.UndatedItems += o.undated
	for _, p := range o.problems {
		if p.Kind == MigrateConflict {
			r.Conflicts++
		} else {
			r.Errors++
		}
		if len(r.Problems) < maxMigrateProblems {
			r.Problems = append(r.Problems, p)
		}
	}
}

// archive returns the archive copy of the legacy document data: all of it
// as it was, except that plaintext access tokens are replaced by their v1
// ciphertext (the one in the item's new document). Nothing is lost, the
// vault still decrypts them, and no plaintext token outlives the migration.
// Fernet tokens are encrypted already and stay as they were.
func (m *LegacyMigration) archive(data map[string]any, now time.Time) map[string]any {
	archived := maps.Clone(data)
	items := maps.Clone(data["items"].(map[string]any))
	migrated := make([]string, 0, len(m.items))
	for _, item := range m.items {
		migrated = append(migrated, item.itemID)
		if item.source != "plaintext" {
			continue
		}
		fields := maps.Clone(items[item.itemID].(map[string]any))
		fields["access_token"] = item.doc["access_token"]
		items[item.itemID] = fields
	}
	archived["items"] = items
	archived["migrated_at"] = now
	archived["migrated_items"] = migrated
	return archived
}

// resolve compares the planned items with the owners of the documents
// already at their ids ("" where there is none): an existing document of
// the same user is an item already migrated (left alone), one of another
// user a conflict. It reports whether every item can be put in place.
func (m *LegacyMigration) resolve(owners []string) bool {
	for i, item := range m.items {
		switch owners[i] {
		case "":
			m.created++
		case item.userID:
			m.alreadyMigrated++
		default:
			m.problems = append(m.problems, MigrateProblem{UserID: m.userID, ItemID: item.itemID, Kind: MigrateConflict,
				Error: "plaid_tokens/" + item.itemID + " already exists for another user"})
		}
	}
	if len(m.problems) > 0 {
		m.created, m.alreadyMigrated = 0, 0
		return false
	}
	return true
}

// legacyPlanner returns the planner that turns a legacy document into its
// item documents, decrypting old tokens with legacy and encrypting them
// with the service's vault.
func (s *Service) legacyPlanner(legacy *LegacyDecrypter) LegacyPlanner {
	p := &legacyPlan{cipher: s.cipher, legacy: legacy, now: s.clock.Now}
	return p.plan
}

type legacyPlan struct {
	cipher TokenCipher
	legacy *LegacyDecrypter
	now    func() time.Time
}

// plan reads a legacy document into the item documents it becomes. The
// migration says whether it is a legacy document at all, counts its
// tokens, and lists what keeps it from migrating.
func (p *legacyPlan) plan(userID string, data map[string]any) *LegacyMigration {
	m := &LegacyMigration{userID: userID, at: p.now()}
	if data == nil {
		return m
	}
	if _, hasStatus := data["status"]; hasStatus {
		return m
	}
	items, ok := data["items"].(map[string]any)
	if !ok {
		return m
	}
	m.legacy = true
	m.itemCount = len(items)
	problem := func(itemID, format string, args ...any) {
		m.problems = append(m.problems, MigrateProblem{UserID: userID, ItemID: itemID, Kind: MigrateError,
			Error: fmt.Sprintf(format, args...)})
	}
	for _, itemID := range slices.Sorted(maps.Keys(items)) {
		fields, ok := items[itemID].(map[string]any)
		if !ok {
			problem(itemID, "item is not a map but %T", items[itemID])
			continue
		}
		if err := checkItemID(itemID); err != nil {
			problem(itemID, "%v", err)
			continue
		}
		if itemID == userID {
			problem(itemID, "item id equals its user's document id; it cannot have a document of its own")
			continue
		}
		doc, facts, err := p.itemDocument(userID, itemID, fields)
		if err != nil {
			problem(itemID, "%v", err)
			continue
		}
		if facts.legacyError {
			m.legacyErrors++
		}
		if facts.undated {
			m.undated++
		}
		switch facts.source {
		case "plaintext":
			m.plaintext++
		case "fernet":
			m.fernet++
		}
		m.items = append(m.items, legacyItem{itemID: itemID, userID: doc["user_id"].(string), source: facts.source, doc: doc})
	}
	return m
}

// itemFacts says what itemDocument found out about a legacy item.
type itemFacts struct {
	source      string // how the old service stored the token: "plaintext" or "fernet"
	legacyError bool   // status `error` (or unknown), migrated as active with LEGACY_ERROR
	undated     bool   // no date at all: updated_at set to the migration time
}

// itemDocument builds the plaid_tokens document of one legacy item: every
// field as it was, with the access token encrypted by the vault for this
// item, status `error` (or unknown) as active with LEGACY_ERROR, item_id,
// user_id (the parent's when missing), plaid_removed (false when missing)
// and, for an item with no date at all, updated_at.
func (p *legacyPlan) itemDocument(userID, itemID string, fields map[string]any) (map[string]any, itemFacts, error) {
	var facts itemFacts
	stored, _ := fields["access_token"].(string)
	var plaintext string
	switch {
	case stored == "":
		return nil, facts, errors.New("item has no access_token")
	case IsLegacyPlaintext(stored):
		plaintext, facts.source = stored, "plaintext"
	default:
		var err error
		if plaintext, err = p.legacy.Decrypt(stored); err != nil {
			return nil, facts, err
		}
		facts.source = "fernet"
	}

	doc := maps.Clone(fields)
	switch owner := fields["user_id"].(type) {
	case nil:
		doc["user_id"] = userID
	case string:
		if owner == "" {
			doc["user_id"] = userID
		} else if owner != userID {
			// Ownership decides who may revoke the item: never guess it.
			return nil, facts, fmt.Errorf("item's user_id %q differs from its document's %q", owner, userID)
		}
	default:
		return nil, facts, fmt.Errorf("item's user_id is %T, not a string", owner)
	}
	if id, ok := fields["item_id"].(string); ok && id != "" && id != itemID {
		return nil, facts, fmt.Errorf("item's item_id %q differs from its key", id)
	}
	doc["item_id"] = itemID
	switch st, _ := fields["status"].(string); Status(st) {
	case StatusActive, StatusExpired, StatusRevoked:
	default:
		// `error`, or anything this service does not know: active, so that
		// the next validation decides. The archive keeps the old status.
		doc["status"] = string(StatusActive)
		doc["error_code"] = LegacyErrorCode
		facts.legacyError = true
	}
	if _, ok := fields["plaid_removed"]; !ok {
		doc["plaid_removed"] = false
	}
	if err := checkTokenFields(doc); err != nil {
		return nil, facts, err
	}
	if doc["created_at"] == nil && doc["updated_at"] == nil && doc["last_used_at"] == nil {
		doc["updated_at"] = p.now()
		facts.undated = true
	}
	enc, err := p.cipher.Encrypt(itemID, plaintext)
	if err != nil {
		return nil, facts, fmt.Errorf("encrypting token: %w", err)
	}
	doc["access_token"] = enc
	return doc, facts, nil
}

// checkTokenFields checks that the fields the Token type reads have the
// types it reads them as, so that the migrated document decodes; a
// mismatch is reported rather than written, or every later page read of
// the collection would fail on it.
func checkTokenFields(doc map[string]any) error {
	for _, k := range []string{"institution_id", "institution_name", "environment", "error_code", "status"} {
		switch doc[k].(type) {
		case nil, string:
		default:
			return fmt.Errorf("field %s is %T, not a string", k, doc[k])
		}
	}
	for _, k := range []string{"created_at", "updated_at", "last_used_at", "last_validated_at"} {
		switch doc[k].(type) {
		case nil, time.Time:
		default:
			return fmt.Errorf("field %s is %T, not a timestamp", k, doc[k])
		}
	}
	if _, ok := doc["plaid_removed"].(bool); !ok {
		return fmt.Errorf("field plaid_removed is %T, not a boolean", doc["plaid_removed"])
	}
	switch md := doc["metadata"].(type) {
	case nil:
	case map[string]any:
		for _, k := range []string{"name", "url", "primary_color", "logo"} {
			switch md[k].(type) {
			case nil, string:
			default:
				return fmt.Errorf("field metadata.%s is %T, not a string", k, md[k])
			}
		}
	default:
		return fmt.Errorf("field metadata is %T, not a map", md)
	}
	return nil
}

// checkItemID refuses item ids that cannot name a token document, saying
// why.
func checkItemID(id string) error {
	switch {
	case id == "":
		return errors.New("item id is empty")
	case strings.Contains(id, "/"):
		return errors.New("item id contains '/'")
	case id == "." || id == "..":
		return errors.New("item id is a dot path (\".\" or \"..\")")
	case strings.HasPrefix(id, "__") && strings.HasSuffix(id, "__"):
		return errors.New("item id matches __.*__, which Firestore reserves")
	case !ValidItemID(id):
		return fmt.Errorf("item id is not valid UTF-8 of at most %d bytes", MaxItemIDLength)
	}
	return nil
}
