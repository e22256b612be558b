package lifecycle_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// legacyArchive is the collection MigrateLegacy archives legacy documents
// in (legacyArchiveCollection in migrate.go).
const legacyArchive = "plaid_token_legacy_archive"

const migrateLegacyKey = "legacy-migration-pässword"

// legacyFernet encrypts plaintext the way the old service stored tokens:
// base64url(Fernet token), the Fernet key derived from password with
// PBKDF2-HMAC-SHA256 (salt plaid_tokens_salt, 100,000 iterations), the
// token built per the Fernet spec (AES-128-CBC, PKCS7, HMAC-SHA256).
func legacyFernet(t *testing.T, password, plaintext string) string {
	t.Helper()
	key := legacyFernetKey(t, password)
	block, err := aes.NewCipher(key[16:])
	if err != nil {
		t.Fatal(err)
	}
	iv := make([]byte, aes.BlockSize)
	rand.Read(iv)
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	padded := append([]byte(plaintext), bytes.Repeat([]byte{byte(pad)}, pad)...)
	token := binary.BigEndian.AppendUint64([]byte{0x80}, uint64(time.Now().Unix()))
	token = append(token, iv...)
	ct := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, padded)
	token = append(token, ct...)
	mac := hmac.New(sha256.New, key[:16])
	mac.Write(token)
	token = mac.Sum(token)
	return base64.URLEncoding.EncodeToString([]byte(base64.URLEncoding.EncodeToString(token)))
}

// legacyFernetKeys caches derivations: PBKDF2 is slow under -race.
var legacyFernetKeys sync.Map // password → []byte

func legacyFernetKey(t *testing.T, password string) []byte {
	t.Helper()
	if key, ok := legacyFernetKeys.Load(password); ok {
		return key.([]byte)
	}
	key, err := pbkdf2.Key(sha256.New, password, []byte("plaid_tokens_salt"), 100_000, 32)
	if err != nil {
		t.Fatal(err)
	}
	legacyFernetKeys.Store(password, key)
	return key
}

var (
	legacyCreated = time.Date(2024, 3, 1, 9, 30, 0, 0, time.UTC)
	legacyUpdated = time.Date(2025, 6, 2, 10, 0, 0, 0, time.UTC)
	legacyUsed    = time.Date(2026, 11, 20, 8, 15, 0, 0, time.UTC)
)

// legacyItem is one item of a legacy document, with the old service's
// fields.
func legacyItem(itemID, userID, accessToken, status string) map[string]any {
	item := map[string]any{
		"item_id": itemID, "access_token": accessToken, "institution_id": "ins_3",
		"institution_name": "Chase Bank", "status": status, "environment": "sandbox",
		"created_at": legacyCreated, "updated_at": legacyUpdated, "last_used_at": legacyUsed,
		"metadata": map[string]any{"name": "Chase Bank", "url": "https://chase.com", "primary_color": "#117ACA", "logo": ""},
	}
	if userID != "" {
		item["user_id"] = userID
	}
	return item
}

func putMigrateDoc(t *testing.T, env *testenv.Env, collection, id string, data map[string]any) {
	t.Helper()
	if _, err := env.Client.Collection(collection).Doc(id).Set(context.Background(), data); err != nil {
		t.Fatalf("writing %s/%s: %v", collection, id, err)
	}
}

// migrateRawDoc returns a document's data, or nil when it does not exist.
func migrateRawDoc(t *testing.T, env *testenv.Env, collection, id string) map[string]any {
	t.Helper()
	snap, err := env.Client.Collection(collection).Doc(id).Get(context.Background())
	if lifecycle.IsCode(err, lifecycle.CodeNotFound) || status.Code(err) == codes.NotFound {
		return nil
	}
	if err != nil {
		t.Fatalf("reading %s/%s: %v", collection, id, err)
	}
	return snap.Data()
}

// migrateCollectionState returns every document of a collection with its update
// time, to show a run changed nothing.
func migrateCollectionState(t *testing.T, env *testenv.Env, collection string) map[string]time.Time {
	t.Helper()
	snaps, err := env.Client.Collection(collection).Documents(context.Background()).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Time{}
	for _, s := range snaps {
		out[s.Ref.ID] = s.UpdateTime
	}
	return out
}

func runMigrate(t *testing.T, env *testenv.Env, opts lifecycle.MigrateOptions) *lifecycle.MigrateReport {
	t.Helper()
	r, err := env.Service.MigrateLegacy(context.Background(), opts)
	if err != nil {
		t.Fatalf("MigrateLegacy: %v", err)
	}
	return r
}

// ignoreScan: documents_scanned also counts item documents a real run
// created ahead of its cursor.
var ignoreScan = cmpopts.IgnoreFields(lifecycle.MigrateReport{}, "DocumentsScanned")

func TestMigrateLegacy(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()

	// A token document of the new format, which the migration leaves alone.
	env.Seed(t, testenv.ActiveToken("item-modern", "user-modern", 2))

	transactions := map[string]any{
		"cursor": "CAESJ3Z4b2pZ", "last_sync": legacyUsed,
		"added": []any{map[string]any{"transaction_id": "tx-1", "amount": 12.5}},
	}
	aliceChase := legacyItem("item-alice-chase", "user-alice", "access-sandbox-alice-chase", "active")
	aliceChase["transactions"] = transactions
	aliceWells := legacyItem("item-alice-wells", "user-alice", legacyFernet(t, migrateLegacyKey, "access-sandbox-alice-wells"), "error")
	// Bob's item predates user_id and plaid_removed in items.
	bobCiti := legacyItem("item-bob-citi", "", legacyFernet(t, migrateLegacyKey, "access-production-bob-citi"), "revoked")
	alice := map[string]any{"user_id": "user-alice", "created_at": legacyCreated,
		"items": map[string]any{"item-alice-chase": aliceChase, "item-alice-wells": aliceWells}}
	bob := map[string]any{"items": map[string]any{"item-bob-citi": bobCiti}}
	putMigrateDoc(t, env, lifecycle.TokensCollection, "user-alice", alice)
	putMigrateDoc(t, env, lifecycle.TokensCollection, "user-bob", bob)

	want := &lifecycle.MigrateReport{
		DryRun: true, DocumentsScanned: 3, LegacyUsers: 2, UsersMigrated: 2, Items: 3, ItemsMigrated: 3,
		PlaintextTokens: 1, FernetTokens: 2, LegacyErrorItems: 1, Problems: []lifecycle.MigrateProblem{},
	}

	// Dry run: the full report, and not one write.
	before := migrateCollectionState(t, env, lifecycle.TokensCollection)
	got := runMigrate(t, env, lifecycle.MigrateOptions{DryRun: true, LegacyKey: migrateLegacyKey})
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dry run report (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before, migrateCollectionState(t, env, lifecycle.TokensCollection)); diff != "" {
		t.Errorf("dry run changed plaid_tokens (-before +after):\n%s", diff)
	}
	if n := len(migrateCollectionState(t, env, legacyArchive)); n != 0 {
		t.Errorf("dry run archived %d documents", n)
	}

	// The real run.
	var progressed int
	want.DryRun = false
	got = runMigrate(t, env, lifecycle.MigrateOptions{LegacyKey: migrateLegacyKey,
		Progress: func(lifecycle.MigrateReport) { progressed++ }})
	if diff := cmp.Diff(want, got, ignoreScan); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	if progressed == 0 {
		t.Error("Progress never called")
	}

	tests := []struct {
		itemID, userID, plaintext string
		legacy                    map[string]any
		status, errorCode         string
	}{
		{"item-alice-chase", "user-alice", "access-sandbox-alice-chase", aliceChase, "active", ""},
		{"item-alice-wells", "user-alice", "access-sandbox-alice-wells", aliceWells, "active", lifecycle.LegacyErrorCode},
		{"item-bob-citi", "user-bob", "access-production-bob-citi", bobCiti, "revoked", ""},
	}
	for _, tc := range tests {
		t.Run(tc.itemID, func(t *testing.T) {
			tok := env.Doc(t, tc.itemID)
			if tok == nil {
				t.Fatal("item document missing")
			}
			plain, err := env.Vault.Decrypt(tc.itemID, tok.AccessToken)
			if err != nil || plain != tc.plaintext {
				t.Errorf("decrypted token = %q, %v; want %q", plain, err, tc.plaintext)
			}
			if env.Vault.NeedsReencrypt(tok.AccessToken) {
				t.Error("token is not under the current key")
			}
			// Every field as it was, but for those the migration sets.
			wantDoc := map[string]any{}
			for k, v := range tc.legacy {
				wantDoc[k] = v
			}
			wantDoc["user_id"], wantDoc["item_id"], wantDoc["status"] = tc.userID, tc.itemID, tc.status
			wantDoc["plaid_removed"] = false
			if tc.errorCode != "" {
				wantDoc["error_code"] = tc.errorCode
			}
			gotDoc := migrateRawDoc(t, env, lifecycle.TokensCollection, tc.itemID)
			wantDoc["access_token"] = gotDoc["access_token"] // checked above
			if diff := cmp.Diff(wantDoc, gotDoc); diff != "" {
				t.Errorf("item document (-want +got):\n%s", diff)
			}
		})
	}

	// Legacy documents gone from plaid_tokens, archived whole.
	for id, legacy := range map[string]map[string]any{"user-alice": alice, "user-bob": bob} {
		if migrateRawDoc(t, env, lifecycle.TokensCollection, id) != nil {
			t.Errorf("legacy document %s still in plaid_tokens", id)
		}
		archived := migrateRawDoc(t, env, legacyArchive, id)
		if archived == nil {
			t.Errorf("legacy document %s not archived", id)
			continue
		}
		if ts, ok := archived["migrated_at"].(time.Time); !ok || !ts.Equal(testenv.Now) {
			t.Errorf("archive %s migrated_at = %v, want %v", id, archived["migrated_at"], testenv.Now)
		}
		items := archived["items"].(map[string]any)
		for itemID, item := range legacy["items"].(map[string]any) {
			want := item.(map[string]any)
			got := items[itemID].(map[string]any)
			if stored := want["access_token"].(string); lifecycle.IsLegacyPlaintext(stored) {
				// No plaintext token outlives the migration, even archived.
				plain, err := env.Vault.Decrypt(itemID, got["access_token"].(string))
				if err != nil || plain != stored {
					t.Errorf("archived %s token decrypts to %q, %v; want %q", itemID, plain, err, stored)
				}
				got["access_token"] = stored
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("archived item %s (-want +got):\n%s", itemID, diff)
			}
		}
	}
	if tok := env.Doc(t, "item-modern"); tok == nil || tok.UserID != "user-modern" {
		t.Errorf("modern token document = %+v", tok)
	}

	// A second run finds nothing to do and writes nothing.
	before = migrateCollectionState(t, env, lifecycle.TokensCollection)
	got = runMigrate(t, env, lifecycle.MigrateOptions{LegacyKey: migrateLegacyKey})
	if diff := cmp.Diff(&lifecycle.MigrateReport{DocumentsScanned: 4, Problems: []lifecycle.MigrateProblem{}}, got); diff != "" {
		t.Errorf("second run report (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before, migrateCollectionState(t, env, lifecycle.TokensCollection)); diff != "" {
		t.Errorf("second run changed plaid_tokens (-before +after):\n%s", diff)
	}
	// Every migrated token works with the rest of the service: the sample
	// cleanup reads them all.
	if _, _, err := env.Tokens.Page(ctx, "", 100); err != nil {
		t.Errorf("reading the migrated collection: %v", err)
	}
}

func TestMigrateLegacyLeavesProblemDocumentsWhole(t *testing.T) {
	t.Parallel()
	good := func(itemID, userID string) map[string]any {
		return legacyItem(itemID, userID, "access-sandbox-"+itemID, "active")
	}
	tests := []struct {
		name      string
		legacyKey string
		items     map[string]any
		existing  *lifecycle.Token // an item document already there
		want      lifecycle.MigrateReport
		problem   lifecycle.MigrateProblem
	}{
		{
			name:      "fernet token under another key",
			legacyKey: migrateLegacyKey,
			items: map[string]any{
				"item-a": good("item-a", "user-x"),
				"item-b": legacyItem("item-b", "user-x", legacyFernet(t, "some-other-password", "access-sandbox-b"), "active"),
			},
			want:    lifecycle.MigrateReport{Items: 2, PlaintextTokens: 1, Errors: 1},
			problem: lifecycle.MigrateProblem{UserID: "user-x", ItemID: "item-b", Kind: lifecycle.MigrateError},
		},
		{
			name: "fernet token without LEGACY_TOKEN_ENCRYPTION_KEY",
			items: map[string]any{
				"item-b": legacyItem("item-b", "user-x", legacyFernet(t, migrateLegacyKey, "access-sandbox-b"), "active"),
			},
			want:    lifecycle.MigrateReport{Items: 1, Errors: 1},
			problem: lifecycle.MigrateProblem{UserID: "user-x", ItemID: "item-b", Kind: lifecycle.MigrateError},
		},
		{
			name:      "garbage token",
			legacyKey: migrateLegacyKey,
			items:     map[string]any{"item-b": legacyItem("item-b", "user-x", "not-a-token", "active")},
			want:      lifecycle.MigrateReport{Items: 1, Errors: 1},
			problem:   lifecycle.MigrateProblem{UserID: "user-x", ItemID: "item-b", Kind: lifecycle.MigrateError},
		},
		{
			name:      "item owned by another user",
			legacyKey: migrateLegacyKey,
			items:     map[string]any{"item-a": good("item-a", "user-x"), "item-b": good("item-b", "user-x")},
			existing:  new(testenv.ActiveToken("item-b", "user-y", 1).Token),
			want:      lifecycle.MigrateReport{Items: 2, PlaintextTokens: 2, Conflicts: 1},
			problem:   lifecycle.MigrateProblem{UserID: "user-x", ItemID: "item-b", Kind: lifecycle.MigrateConflict},
		},
		{
			name:      "item user_id differs from its document",
			legacyKey: migrateLegacyKey,
			items:     map[string]any{"item-a": good("item-a", "user-x"), "item-b": good("item-b", "user-z")},
			want:      lifecycle.MigrateReport{Items: 2, PlaintextTokens: 1, Errors: 1},
			problem:   lifecycle.MigrateProblem{UserID: "user-x", ItemID: "item-b", Kind: lifecycle.MigrateError},
		},
		{
			name:      "timestamp stored as text",
			legacyKey: migrateLegacyKey,
			items: map[string]any{"item-b": func() map[string]any {
				it := good("item-b", "user-x")
				it["last_used_at"] = "2026-01-01T00:00:00"
				return it
			}()},
			want:    lifecycle.MigrateReport{Items: 1, Errors: 1},
			problem: lifecycle.MigrateProblem{UserID: "user-x", ItemID: "item-b", Kind: lifecycle.MigrateError},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := testenv.New(t)
			legacy := map[string]any{"items": tc.items}
			putMigrateDoc(t, env, lifecycle.TokensCollection, "user-x", legacy)
			if tc.existing != nil {
				if err := env.Tokens.Create(context.Background(), tc.existing); err != nil {
					t.Fatal(err)
				}
			}
			want := tc.want
			want.LegacyUsers, want.UsersLeftInPlace = 1, 1
			want.DocumentsScanned = 1
			if tc.existing != nil {
				want.DocumentsScanned = 2
			}
			before := migrateCollectionState(t, env, lifecycle.TokensCollection)
			for _, dry := range []bool{true, false} {
				want.DryRun = dry
				got := runMigrate(t, env, lifecycle.MigrateOptions{DryRun: dry, LegacyKey: tc.legacyKey})
				if len(got.Problems) != 1 {
					t.Fatalf("dry=%v problems = %+v, want one", dry, got.Problems)
				}
				if got.Problems[0].Error == "" {
					t.Error("problem without an error message")
				}
				if diff := cmp.Diff(tc.problem, got.Problems[0], cmpopts.IgnoreFields(lifecycle.MigrateProblem{}, "Error")); diff != "" {
					t.Errorf("dry=%v problem (-want +got):\n%s", dry, diff)
				}
				if diff := cmp.Diff(&want, got, cmpopts.IgnoreFields(lifecycle.MigrateReport{}, "Problems")); diff != "" {
					t.Errorf("dry=%v report (-want +got):\n%s", dry, diff)
				}
			}
			// Nothing created, nothing archived: the legacy document is
			// whole, and no item of it half-migrated.
			if diff := cmp.Diff(before, migrateCollectionState(t, env, lifecycle.TokensCollection)); diff != "" {
				t.Errorf("plaid_tokens changed (-before +after):\n%s", diff)
			}
			if n := len(migrateCollectionState(t, env, legacyArchive)); n != 0 {
				t.Errorf("%d documents archived", n)
			}
			if tc.existing != nil {
				if tok := env.Doc(t, tc.existing.ItemID); tok.UserID != tc.existing.UserID {
					t.Errorf("existing document's user_id = %q, want %q", tok.UserID, tc.existing.UserID)
				}
			}
		})
	}
}

// TestMigrateLegacyItemAlreadyMigrated: an item whose document exists for
// the same user is not overwritten, and the rest of its legacy document
// migrates.
func TestMigrateLegacyItemAlreadyMigrated(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	existing := testenv.ActiveToken("item-a", "user-x", 1)
	env.Seed(t, existing)
	putMigrateDoc(t, env, lifecycle.TokensCollection, "user-x", map[string]any{"items": map[string]any{
		"item-a": legacyItem("item-a", "user-x", "access-sandbox-item-a-old", "active"),
		"item-b": legacyItem("item-b", "user-x", "access-sandbox-item-b", "expired"),
	}})
	before := env.Doc(t, "item-a")

	got := runMigrate(t, env, lifecycle.MigrateOptions{})
	want := &lifecycle.MigrateReport{DocumentsScanned: 2, LegacyUsers: 1, UsersMigrated: 1, Items: 2,
		ItemsMigrated: 1, ItemsAlreadyMigrated: 1, PlaintextTokens: 2, Problems: []lifecycle.MigrateProblem{}}
	if diff := cmp.Diff(want, got, ignoreScan); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	if after := env.Doc(t, "item-a"); !after.Version.Equal(before.Version) {
		t.Error("existing item document was rewritten")
	}
	if tok := env.Doc(t, "item-b"); tok == nil || tok.Status != lifecycle.StatusExpired {
		t.Errorf("item-b = %+v, want an expired token", tok)
	}
	if migrateRawDoc(t, env, lifecycle.TokensCollection, "user-x") != nil || migrateRawDoc(t, env, legacyArchive, "user-x") == nil {
		t.Error("legacy document not moved to the archive")
	}
}

// TestMigrateLegacyPages runs over more documents than one page holds, with
// legacy documents spread through them.
func TestMigrateLegacyPages(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	bw := env.Client.BulkWriter(ctx)
	const users = 320 // more than one page of 300
	for i := range users {
		user, item := fmt.Sprintf("user-%04d", i), fmt.Sprintf("item-%04d", i)
		if _, err := bw.Set(env.Client.Collection(lifecycle.TokensCollection).Doc(user), map[string]any{
			"items": map[string]any{item: legacyItem(item, user, "access-sandbox-"+item, "active")},
		}); err != nil {
			t.Fatal(err)
		}
	}
	bw.End()
	got := runMigrate(t, env, lifecycle.MigrateOptions{})
	if got.LegacyUsers != users || got.UsersMigrated != users || got.ItemsMigrated != users {
		t.Errorf("report = %+v, want %d users and items migrated", got, users)
	}
	agg, err := env.Client.Collection(lifecycle.TokensCollection).NewAggregationQuery().WithCount("n").Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var count struct {
		N int64 `firestore:"n"`
	}
	if err := agg.DataTo(&count); err != nil || count.N != users {
		t.Errorf("plaid_tokens holds %d documents (%v), want %d", count.N, err, users)
	}
	if got := runMigrate(t, env, lifecycle.MigrateOptions{}); got.LegacyUsers != 0 {
		t.Errorf("second run found %d legacy users", got.LegacyUsers)
	}
}

// TestMigrateLegacyUndatedItem: an item without any date gets updated_at =
// the migration time, so the next cleanup validates it instead of taking
// it for stale and removing it at Plaid.
func TestMigrateLegacyUndatedItem(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	item := map[string]any{"access_token": "access-sandbox-undated", "status": "active", "institution_name": "Citi"}
	putMigrateDoc(t, env, lifecycle.TokensCollection, "user-u", map[string]any{"items": map[string]any{"item-undated": item}})
	env.Plaid.AddItem("access-sandbox-undated", "item-undated", "ins_5")

	if got := runMigrate(t, env, lifecycle.MigrateOptions{}); got.UndatedItems != 1 || got.ItemsMigrated != 1 {
		t.Fatalf("report = %+v, want 1 undated item migrated", got)
	}
	tok := env.Doc(t, "item-undated")
	if !tok.UpdatedAt.Equal(testenv.Now) || !tok.CreatedAt.IsZero() || !tok.LastUsedAt.IsZero() {
		t.Errorf("dates: created %v updated %v last used %v; want only updated_at = %v", tok.CreatedAt, tok.UpdatedAt, tok.LastUsedAt, testenv.Now)
	}
	res, err := env.Service.Cleanup(context.Background(), lifecycle.CleanupRequest{DaysThreshold: 90, Trigger: lifecycle.TriggerCLI})
	if err != nil {
		t.Fatal(err)
	}
	if res.Statistics.StaleRemoved != 0 || env.Doc(t, "item-undated") == nil {
		t.Errorf("cleanup removed the undated item: %+v", res.Statistics)
	}
}
