package python

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// legacyArchive is where migrate-legacy keeps the old per-user documents
// (lifecycle.LegacyArchiveCollection; docs/BEHAVIOUR.md).
const legacyArchive = "plaid_token_legacy_archive"

// appItem is one Item as the app sees it through plaid_token_vault's
// TokenStore (tests/interop.py's firestore answer).
type appItem struct {
	ItemID          string         `json:"item_id"`
	UserID          string         `json:"user_id"`
	Status          string         `json:"status"`
	ErrorCode       *string        `json:"error_code"`
	InstitutionID   *string        `json:"institution_id"`
	InstitutionName *string        `json:"institution_name"`
	Environment     *string        `json:"environment"`
	Legacy          bool           `json:"legacy"`
	Fields          map[string]any `json:"fields"`
	Token           string         `json:"token"`
}

// appRead is what the app does on each side of the migration, in one
// Python process on the emulator: it optionally writes new Items itself,
// then lists every Item of users and fetches each token (active ones
// through TokenStore.access_token, which records the use at now).
func appRead(t *testing.T, env *testenv.Env, now time.Time, users []string, create ...map[string]any) map[string][]appItem {
	t.Helper()
	var resp struct {
		Firestore struct {
			Users   map[string][]appItem `json:"users"`
			Created []string             `json:"created"`
		} `json:"firestore"`
	}
	interop(t, []string{emulator.FirestoreHostEnv + "=" + emulator.Host(t)}, map[string]any{
		"vault":      vaultSpec{Key: env.Config.EncryptionKey, Salt: env.Config.EncryptionSalt},
		"legacy_key": migrationLegacyKey,
		"firestore": map[string]any{
			"project": env.Project, "database": env.Config.FirestoreDatabase,
			"now": now.UTC().Format(time.RFC3339Nano), "users": users, "create": create,
		},
	}, &resp)
	if len(resp.Firestore.Created) != len(create) {
		t.Fatalf("the app created %v, want %d items", resp.Firestore.Created, len(create))
	}
	return resp.Firestore.Users
}

const migrationLegacyKey = "legacy-migration-pässword"

// The old service's dates, before the test's now (testenv.Now).
var (
	oldCreated = time.Date(2024, 3, 1, 9, 30, 0, 0, time.UTC)
	oldUpdated = time.Date(2025, 6, 2, 10, 0, 0, 0, time.UTC)
	oldUsed    = time.Date(2026, 11, 20, 8, 15, 0, 0, time.UTC)
)

// oldItem is one item of an old per-user document, with the old service's
// fields.
func oldItem(itemID, userID, accessToken, status string) map[string]any {
	item := map[string]any{
		"item_id": itemID, "access_token": accessToken, "institution_id": "ins_3",
		"institution_name": "Chase Bank", "status": status, "environment": "sandbox",
		"created_at": oldCreated, "updated_at": oldUpdated, "last_used_at": oldUsed,
		"metadata": map[string]any{"name": "Chase Bank", "url": "https://chase.com", "primary_color": "#117ACA", "logo": ""},
	}
	if userID != "" {
		item["user_id"] = userID
	}
	return item
}

func rawDoc(t *testing.T, env *testenv.Env, collection, id string) map[string]any {
	t.Helper()
	snap, err := env.Client.Collection(collection).Doc(id).Get(context.Background())
	if status.Code(err) == codes.NotFound {
		return nil
	}
	if err != nil {
		t.Fatalf("reading %s/%s: %v", collection, id, err)
	}
	return snap.Data()
}

// updateTimes returns every plaid_tokens document's update time: equal
// before and after shows nothing was written.
func updateTimes(t *testing.T, env *testenv.Env) map[string]time.Time {
	t.Helper()
	snaps, err := env.Client.Collection(lifecycle.TokensCollection).Documents(context.Background()).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Time{}
	for _, s := range snaps {
		out[s.Ref.ID] = s.UpdateTime
	}
	return out
}

// migrate runs the migration as `manage-tokens migrate-legacy` does
// (Service.MigrateLegacy with LEGACY_TOKEN_ENCRYPTION_KEY).
func migrate(t *testing.T, env *testenv.Env, dryRun bool, legacyKey string) *lifecycle.MigrateReport {
	t.Helper()
	r, err := env.Service.MigrateLegacy(context.Background(), lifecycle.MigrateOptions{DryRun: dryRun, LegacyKey: legacyKey})
	if err != nil {
		t.Fatalf("MigrateLegacy(dry run %v): %v", dryRun, err)
	}
	return r
}

// TestMigrationKeepsTheAppReading follows a store as the old service left
// it through the documented switch-over (docs/MIGRATING.md): the app reads
// every Item through plaid_token_vault before the migration, while only
// some users are migrated (a first run without LEGACY_TOKEN_ENCRYPTION_KEY
// leaves the users with Fernet tokens in place), and after it. Every Item
// stays readable, nothing is lost, the app's uses land where the item is
// and are carried over, and an Item the app writes itself in format v1
// is the service's like any other.
func TestMigrationKeepsTheAppReading(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	t0 := testenv.Now

	// The old service's Fernet values, written by cryptography as it did.
	var fernet interopResponse
	interop(t, nil, map[string]any{"legacy_key": migrationLegacyKey, "fernet_encrypt": []string{
		"access-sandbox-alice-wells", "access-production-bob-citi",
	}}, &fernet)
	transactions := map[string]any{
		"cursor": "CAESJ3Z4b2pZ", "last_sync": oldUsed,
		"added": []any{map[string]any{"transaction_id": "tx-1", "amount": 12.5, "pending": false}},
	}
	aliceChase := oldItem("item-alice-chase", "user-alice", "access-sandbox-alice-chase", "active")
	aliceChase["transactions"] = transactions
	carolChase := oldItem("item-carol-chase", "user-carol", "access-sandbox-carol-chase", "active")
	carolChase["transactions"] = map[string]any{"cursor": "carol-cursor"}
	old := map[string]map[string]any{
		// Plaintext and Fernet, one in status error: left in place by a run
		// without the legacy key.
		"user-alice": {"user_id": "user-alice", "created_at": oldCreated, "items": map[string]any{
			"item-alice-chase": aliceChase,
			"item-alice-wells": oldItem("item-alice-wells", "user-alice", fernet.FernetEncrypt[0], "error"),
		}},
		// Items from before the old service wrote user_id in them.
		"user-bob": {"items": map[string]any{
			"item-bob-citi": oldItem("item-bob-citi", "", fernet.FernetEncrypt[1], "revoked"),
			"item-bob-amex": oldItem("item-bob-amex", "", "access-sandbox-bob-amex", "expired"),
		}},
		// Plaintext only: migrated by the first run.
		"user-carol": {"user_id": "user-carol", "items": map[string]any{
			"item-carol-chase": carolChase,
			"item-carol-citi":  oldItem("item-carol-citi", "user-carol", "access-sandbox-carol-citi", "error"),
		}},
		// One item already has its own document (written by this service).
		"user-dave": {"items": map[string]any{
			"item-dave-1": oldItem("item-dave-1", "user-dave", "access-sandbox-dave-1-old", "active"),
			"item-dave-2": oldItem("item-dave-2", "user-dave", "access-sandbox-dave-2", "active"),
		}},
	}
	for id, doc := range old {
		if _, err := env.Client.Collection(lifecycle.TokensCollection).Doc(id).Set(ctx, doc); err != nil {
			t.Fatal(err)
		}
	}
	env.Seed(t, testenv.ActiveToken("item-modern", "user-modern", 2), testenv.ActiveToken("item-dave-1", "user-dave", 2))
	users := []string{"user-alice", "user-bob", "user-carol", "user-dave", "user-modern"}

	// What the app must see, whatever the layout: every Item, its token,
	// status `error` as active with LEGACY_ERROR (as the migration writes it).
	legacyError := lifecycle.LegacyErrorCode
	type want struct {
		token, status string
		errorCode     *string
	}
	wantItems := map[string]map[string]want{
		"user-alice": {
			"item-alice-chase": {"access-sandbox-alice-chase", "active", nil},
			"item-alice-wells": {"access-sandbox-alice-wells", "active", &legacyError},
		},
		"user-bob": {
			"item-bob-citi": {"access-production-bob-citi", "revoked", nil},
			"item-bob-amex": {"access-sandbox-bob-amex", "expired", nil},
		},
		"user-carol": {
			"item-carol-chase": {"access-sandbox-carol-chase", "active", nil},
			"item-carol-citi":  {"access-sandbox-carol-citi", "active", &legacyError},
		},
		"user-dave": {
			"item-dave-1": {"access-sandbox-item-dave-1", "active", nil}, // its own document wins
			"item-dave-2": {"access-sandbox-dave-2", "active", nil},
		},
		"user-modern": {"item-modern": {"access-sandbox-item-modern", "active", nil}},
	}
	// checkView compares the app's view with wantItems, and which items it
	// found in the old layout.
	checkView := func(t *testing.T, phase string, view map[string][]appItem, legacyUsers ...string) {
		t.Helper()
		for _, user := range users {
			got := map[string]want{}
			for _, it := range view[user] {
				if it.UserID != user {
					t.Errorf("%s: %s listed %s of user %q", phase, user, it.ItemID, it.UserID)
				}
				if _, ok := it.Fields["access_token"]; ok {
					t.Errorf("%s: item %s's fields carry its access token", phase, it.ItemID)
				}
				wantLegacy := slices.Contains(legacyUsers, user) && it.ItemID != "item-dave-1"
				if it.Legacy != wantLegacy {
					t.Errorf("%s: item %s read from the old layout: %v, want %v", phase, it.ItemID, it.Legacy, wantLegacy)
				}
				got[it.ItemID] = want{it.Token, it.Status, it.ErrorCode}
			}
			if diff := cmp.Diff(wantItems[user], got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("%s: the app's view of %s (-want +got):\n%s", phase, user, diff)
			}
		}
	}
	// oldUsedAt returns items.<item>.last_used_at of an old per-user document.
	oldUsedAt := func(t *testing.T, user, item string) any {
		t.Helper()
		doc := rawDoc(t, env, lifecycle.TokensCollection, user)
		if doc == nil {
			t.Fatalf("old document %s is gone", user)
		}
		return doc["items"].(map[string]any)[item].(map[string]any)["last_used_at"]
	}

	// Before: the old layout only, but for this service's documents.
	before := appRead(t, env, t0, users)
	checkView(t, "before", before, "user-alice", "user-bob", "user-carol", "user-dave")
	// The app's uses were recorded where the items are: in the old
	// documents, active (and `error`) items only.
	for user, items := range map[string][]string{"user-alice": {"item-alice-chase", "item-alice-wells"},
		"user-carol": {"item-carol-chase", "item-carol-citi"}, "user-dave": {"item-dave-2"}} {
		for _, item := range items {
			if got := oldUsedAt(t, user, item); got != t0 {
				t.Errorf("before: %s's last_used_at = %v, want the use at %v", item, got, t0)
			}
		}
	}
	if got := oldUsedAt(t, "user-bob", "item-bob-citi"); got != oldUsed {
		t.Errorf("before: a revoked item's last_used_at moved to %v", got)
	}
	for _, item := range []string{"item-dave-1", "item-modern"} {
		if tok := env.Doc(t, item); !tok.LastUsedAt.Equal(t0) {
			t.Errorf("before: %s's last_used_at = %v, want %v", item, tok.LastUsedAt, t0)
		}
	}

	// During: a dry run writes nothing; a first run without the legacy key
	// migrates the users whose tokens are all plaintext and leaves the
	// others whole.
	unchanged := updateTimes(t, env)
	dry := migrate(t, env, true, "")
	if diff := cmp.Diff(unchanged, updateTimes(t, env)); diff != "" {
		t.Fatalf("dry run wrote to plaid_tokens (-before +after):\n%s", diff)
	}
	partial := migrate(t, env, false, "")
	wantPartial := &lifecycle.MigrateReport{LegacyUsers: 4, UsersMigrated: 2, UsersLeftInPlace: 2, Items: 8,
		ItemsMigrated: 3, ItemsAlreadyMigrated: 1, PlaintextTokens: 6, LegacyErrorItems: 1, Errors: 2}
	ignore := cmpopts.IgnoreFields(lifecycle.MigrateReport{}, "DryRun", "DocumentsScanned", "Problems")
	for name, r := range map[string]*lifecycle.MigrateReport{"dry run": dry, "first run": partial} {
		if diff := cmp.Diff(wantPartial, r, ignore); diff != "" {
			t.Errorf("%s without the legacy key (-want +got):\n%s", name, diff)
		}
	}
	var leftUsers []string
	for _, p := range partial.Problems {
		leftUsers = append(leftUsers, p.UserID)
	}
	if slices.Sort(leftUsers); !slices.Equal(leftUsers, []string{"user-alice", "user-bob"}) {
		t.Errorf("users left in place: %v, want alice and bob", partial.Problems)
	}

	// Meanwhile the app links an Item and writes it itself, in format v1.
	appRead(t, env, t0, nil, map[string]any{
		"item_id": "item-carol-new", "plaintext": "access-sandbox-carol-new",
		"fields": map[string]any{"user_id": "user-carol", "item_id": "item-carol-new", "status": "active",
			"institution_id": "ins_5", "institution_name": "Citi", "environment": "sandbox",
			"created_at": t0.Format(time.RFC3339), "updated_at": t0.Format(time.RFC3339)},
	})
	if got, err := env.Service.UseToken(ctx, "user-carol", "item-carol-new"); err != nil || got != "access-sandbox-carol-new" {
		t.Fatalf("the service reading the app's own v1 token: %q, %v", got, err)
	}
	wantItems["user-carol"]["item-carol-new"] = want{"access-sandbox-carol-new", "active", nil}

	// Half an hour later, some users migrated and others not: the app reads
	// both layouts, and records no use (within the hour).
	unchanged = updateTimes(t, env)
	during := appRead(t, env, t0.Add(30*time.Minute), users)
	checkView(t, "during", during, "user-alice", "user-bob")
	if diff := cmp.Diff(unchanged, updateTimes(t, env)); diff != "" {
		t.Errorf("during: the app wrote within the hour (-before +after):\n%s", diff)
	}

	// After: with the legacy key, dry run first, then for real; a third run
	// finds nothing left.
	wantRest := &lifecycle.MigrateReport{LegacyUsers: 2, UsersMigrated: 2, Items: 4, ItemsMigrated: 4,
		PlaintextTokens: 2, FernetTokens: 2, LegacyErrorItems: 1}
	unchanged = updateTimes(t, env)
	if diff := cmp.Diff(wantRest, migrate(t, env, true, migrationLegacyKey), ignore); diff != "" {
		t.Errorf("dry run with the legacy key (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(unchanged, updateTimes(t, env)); diff != "" {
		t.Fatalf("dry run wrote to plaid_tokens (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(wantRest, migrate(t, env, false, migrationLegacyKey), ignore); diff != "" {
		t.Errorf("run with the legacy key (-want +got):\n%s", diff)
	}
	if r := migrate(t, env, false, migrationLegacyKey); r.LegacyUsers != 0 {
		t.Errorf("a third run found %d legacy users", r.LegacyUsers)
	}
	t2 := t0.Add(2 * time.Hour)
	after := appRead(t, env, t2, users)
	checkView(t, "after", after)

	// Nothing lost: every field the app read before the migration is still
	// there, as it was, but for those the migration sets (and last_used_at,
	// which the app's own uses moved).
	set := []string{"status", "error_code", "user_id", "item_id", "plaid_removed", "last_used_at"}
	fieldsOf := func(view map[string][]appItem) map[string]map[string]any {
		out := map[string]map[string]any{}
		for _, items := range view {
			for _, it := range items {
				f := maps.Clone(it.Fields)
				for _, k := range set {
					delete(f, k)
				}
				out[it.ItemID] = f
			}
		}
		return out
	}
	beforeFields := fieldsOf(before)
	beforeFields["item-carol-new"] = fieldsOf(during)["item-carol-new"]
	for phase, view := range map[string]map[string][]appItem{"during": during, "after": after} {
		if diff := cmp.Diff(beforeFields, fieldsOf(view)); diff != "" {
			t.Errorf("%s: fields changed since before the migration (-before +%s):\n%s", phase, phase, diff)
		}
	}

	// The uses the app recorded in the old documents were carried over, and
	// it records new ones on the item documents.
	for item, wantUsed := range map[string]time.Time{
		"item-alice-chase": t2, "item-alice-wells": t2, "item-carol-chase": t2, "item-carol-citi": t2,
		"item-dave-1": t2, "item-dave-2": t2, "item-modern": t2, "item-carol-new": t2,
		"item-bob-citi": oldUsed, "item-bob-amex": oldUsed,
	} {
		if tok := env.Doc(t, item); tok == nil || !tok.LastUsedAt.Equal(wantUsed) {
			t.Errorf("after: %s = %+v, want last_used_at %v", item, tok, wantUsed)
		}
	}

	// The service reads every Item too: each token decrypts under the
	// current key, active ones are the app's to use.
	for user, items := range wantItems {
		for item, w := range items {
			tok := env.Doc(t, item)
			if tok == nil {
				t.Errorf("after: %s has no document", item)
				continue
			}
			if got, err := env.Vault.Decrypt(item, tok.AccessToken); err != nil || got != w.token || env.Vault.NeedsReencrypt(tok.AccessToken) {
				t.Errorf("after: the service decrypting %s = %q, %v", item, got, err)
			}
			if w.status == "active" {
				if got, err := env.Service.UseToken(ctx, user, item); err != nil || got != w.token {
					t.Errorf("after: UseToken(%s) = %q, %v", item, got, err)
				}
			}
		}
	}
	for user := range old {
		if rawDoc(t, env, lifecycle.TokensCollection, user) != nil || rawDoc(t, env, legacyArchive, user) == nil {
			t.Errorf("after: %s's old document is not (only) in the archive", user)
		}
	}

	// What `manage-tokens analytics --exact` checks: every Item counted,
	// nothing else.
	exact, err := env.Service.ExactAnalytics(ctx, lifecycle.ExactOptions{Repair: true, Trigger: lifecycle.TriggerCLI})
	if err != nil {
		t.Fatal(err)
	}
	a := exact.Analytics
	got := [6]int{a.TotalTokens, a.ActiveTokens, a.ExpiredTokens, a.RevokedTokens, a.ErrorTokens, a.UniqueUsers}
	if want := [6]int{10, 8, 1, 1, 2, 5}; got != want {
		t.Errorf("analytics (total, active, expired, revoked, error, users) = %v, want %v", got, want)
	}
}
