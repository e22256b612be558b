package lifecycle_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

func loggedContext() (context.Context, *testenv.LogBuffer) {
	logs := &testenv.LogBuffer{}
	return lifecycle.WithLogger(context.Background(), lifecycle.NewJSONLogger(logs, slog.LevelInfo)), logs
}

func newToken(item, user, access string) lifecycle.NewToken {
	return lifecycle.NewToken{
		UserID: user, ItemID: item, AccessToken: access,
		InstitutionID: "ins_109508", InstitutionName: "First Platypus Bank", Environment: "sandbox",
		Metadata: lifecycle.Metadata{Name: "First Platypus Bank", URL: "https://platypus.example", PrimaryColor: "#1f1f1f"},
	}
}

// ignoreVersion leaves out the document's update time.
var ignoreVersion = cmpopts.IgnoreFields(lifecycle.Token{}, "Version", "AccessToken")

func decrypt(t *testing.T, env *testenv.Env, tok *lifecycle.Token) string {
	t.Helper()
	plain, err := env.Vault.Decrypt(tok.ItemID, tok.AccessToken)
	if err != nil {
		t.Fatalf("decrypting %s: %v", tok.ItemID, err)
	}
	return plain
}

func TestStoreTokenNew(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx, logs := loggedContext()
	got, err := env.Service.StoreToken(ctx, newToken("item-new", sample.Alice, "access-sandbox-new-1"))
	if err != nil {
		t.Fatalf("StoreToken: %v", err)
	}
	want := &lifecycle.Token{
		ItemID: "item-new", UserID: sample.Alice, InstitutionID: "ins_109508", InstitutionName: "First Platypus Bank",
		Status: lifecycle.StatusActive, Environment: "sandbox", CreatedAt: testenv.Now, UpdatedAt: testenv.Now,
		Metadata: lifecycle.Metadata{Name: "First Platypus Bank", URL: "https://platypus.example", PrimaryColor: "#1f1f1f"},
	}
	doc := env.Doc(t, "item-new")
	for name, tok := range map[string]*lifecycle.Token{"returned": got, "stored": doc} {
		if diff := cmp.Diff(want, tok, ignoreVersion); diff != "" {
			t.Errorf("%s token (-want +got):\n%s", name, diff)
		}
	}
	if strings.Contains(doc.AccessToken, "access-sandbox-new-1") || !strings.HasPrefix(doc.AccessToken, "v1:") {
		t.Errorf("stored access_token %q is not the vault's ciphertext", doc.AccessToken)
	}
	if plain := decrypt(t, env, doc); plain != "access-sandbox-new-1" {
		t.Errorf("stored token decrypts to %q", plain)
	}
	wantLog := []map[string]any{{"severity": "INFO", "message": "token stored", "item_id": "item-new", "user_id": sample.Alice,
		"institution_id": "ins_109508", "environment": "sandbox", "created": true, "changed": true}}
	if diff := cmp.Diff(wantLog, logs.Entries(t, "token stored")); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	if strings.Contains(logs.String(), "access-sandbox-new-1") || strings.Contains(logs.String(), doc.AccessToken) {
		t.Error("the token reached the log")
	}
}

// The environment defaults to PLAID_ENV.
func TestStoreTokenDefaultEnvironment(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	nt := newToken("item-env", sample.Alice, "access-sandbox-env")
	nt.Environment = ""
	got, err := env.Service.StoreToken(context.Background(), nt)
	if err != nil {
		t.Fatal(err)
	}
	if got.Environment != "sandbox" || env.Doc(t, "item-env").Environment != "sandbox" {
		t.Errorf("environment = %q, want PLAID_ENV's sandbox", got.Environment)
	}
}

// Storing the same item again (a retried exchange, a rotated token)
// updates the token and updated_at, keeps created_at and every field the
// service does not know.
func TestStoreTokenIdempotent(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	if _, err := env.Service.StoreToken(ctx, newToken("item-again", sample.Bob, "access-sandbox-first")); err != nil {
		t.Fatal(err)
	}
	// The very same token again (a retried exchange): nothing is written.
	stored := env.Doc(t, "item-again")
	env.Clock.Advance(time.Minute)
	if _, err := env.Service.StoreToken(ctx, newToken("item-again", sample.Bob, "access-sandbox-first")); err != nil {
		t.Fatalf("retried StoreToken: %v", err)
	}
	if diff := cmp.Diff(stored, env.Doc(t, "item-again")); diff != "" {
		t.Errorf("a retried store wrote the document (-before +after):\n%s", diff)
	}

	// The old service's per-item extras, read by other parts of the app.
	extras := map[string]any{"last_successful_update": "2026-11-01T00:00:00Z", "cursor": "abc"}
	ref := env.Client.Collection(lifecycle.TokensCollection).Doc("item-again")
	if _, err := ref.Update(ctx, []firestore.Update{{Path: "transactions", Value: extras}}); err != nil {
		t.Fatal(err)
	}

	env.Clock.Advance(2 * time.Hour)
	later := testenv.Now.Add(2*time.Hour + time.Minute)
	got, err := env.Service.StoreToken(ctx, newToken("item-again", sample.Bob, "access-sandbox-rotated"))
	if err != nil {
		t.Fatalf("second StoreToken: %v", err)
	}
	doc := env.Doc(t, "item-again")
	if !doc.CreatedAt.Equal(testenv.Now) || !doc.UpdatedAt.Equal(later) || doc.Status != lifecycle.StatusActive {
		t.Errorf("document created %v updated %v status %s; want created %v, updated %v, active",
			doc.CreatedAt, doc.UpdatedAt, doc.Status, testenv.Now, later)
	}
	if diff := cmp.Diff(doc, got, cmpopts.IgnoreFields(lifecycle.Token{}, "Version")); diff != "" {
		t.Errorf("returned token differs from the document (-doc +returned):\n%s", diff)
	}
	if plain := decrypt(t, env, doc); plain != "access-sandbox-rotated" {
		t.Errorf("token decrypts to %q, want the rotated one", plain)
	}
	snap, err := ref.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(extras, snap.Data()["transactions"]); diff != "" {
		t.Errorf("transactions extras (-want +got):\n%s", diff)
	}
}

func TestStoreTokenRefusals(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	ctx := context.Background()

	tests := []struct {
		name string
		nt   lifecycle.NewToken
		code lifecycle.Code
	}{
		{"another user's item", newToken("item-alice-chase", sample.Bob, "access-sandbox-bob"), lifecycle.CodeConflict},
		{"revoked item", newToken("item-dave-revoked", sample.Dave, "access-sandbox-again"), lifecycle.CodeConflict},
		{"expired item already removed at Plaid", newToken("item-erin-old", sample.Erin, "access-sandbox-again"), lifecycle.CodeConflict},
		{"no user", newToken("item-x", "", "access-sandbox-x"), lifecycle.CodeInvalid},
		{"no item", newToken("", sample.Alice, "access-sandbox-x"), lifecycle.CodeInvalid},
		{"item id with a slash", newToken("items/x", sample.Alice, "access-sandbox-x"), lifecycle.CodeInvalid},
		{"reserved item id", newToken("__x__", sample.Alice, "access-sandbox-x"), lifecycle.CodeInvalid},
		{"item id too long", newToken(strings.Repeat("i", 257), sample.Alice, "access-sandbox-x"), lifecycle.CodeInvalid},
		{"no token", newToken("item-x", sample.Alice, ""), lifecycle.CodeInvalid},
		{"public token, not exchanged", newToken("item-x", sample.Alice, "public-sandbox-x"), lifecycle.CodeInvalid},
		{"production token for sandbox", newToken("item-x", sample.Alice, "access-production-x"), lifecycle.CodeInvalid},
		// DESIGN §7 rule 0: a sandbox deployment takes no production token,
		// however consistently labelled.
		{"production token of a production item on sandbox", func() lifecycle.NewToken {
			nt := newToken("item-x", sample.Alice, "access-production-x")
			nt.Environment = "production"
			return nt
		}(), lifecycle.CodeInvalid},
		{"unknown environment", func() lifecycle.NewToken {
			nt := newToken("item-x", sample.Alice, "access-sandbox-x")
			nt.Environment = "development"
			return nt
		}(), lifecycle.CodeInvalid},
	}
	before := map[string]*lifecycle.Token{}
	for _, id := range []string{"item-alice-chase", "item-dave-revoked", "item-erin-old"} {
		before[id] = env.Doc(t, id)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := env.Service.StoreToken(ctx, tt.nt)
			if !lifecycle.IsCode(err, tt.code) {
				t.Errorf("err = %v, want code %s", err, tt.code)
			}
		})
	}
	_, err := env.Service.StoreToken(ctx, newToken("item-alice-chase", sample.Bob, "access-sandbox-bob"))
	if !errors.Is(err, lifecycle.ErrItemOfAnotherUser) {
		t.Errorf("another user's item: err = %v, want ErrItemOfAnotherUser", err)
	}
	for id, doc := range before {
		if diff := cmp.Diff(doc, env.Doc(t, id)); diff != "" {
			t.Errorf("refused store changed %s (-before +after):\n%s", id, diff)
		}
	}
	if doc := env.Doc(t, "item-x"); doc != nil {
		t.Errorf("invalid token stored: %+v", doc)
	}
}

// An expired token whose item gets a new access token (Plaid's
// /item/access_token/invalidate) comes back to active, its error cleared.
func TestStoreTokenReactivatesExpired(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	expired := testenv.ActiveToken("item-rotated", sample.Carol, 3)
	expired.Status, expired.ErrorCode = lifecycle.StatusExpired, "INVALID_ACCESS_TOKEN"
	env.Seed(t, expired)
	got, err := env.Service.StoreToken(context.Background(), newToken("item-rotated", sample.Carol, "access-sandbox-fresh"))
	if err != nil {
		t.Fatal(err)
	}
	doc := env.Doc(t, "item-rotated")
	if doc.Status != lifecycle.StatusActive || doc.ErrorCode != "" || got.ErrorCode != "" || !doc.CreatedAt.Equal(expired.CreatedAt) {
		t.Errorf("document = %+v, want active, no error, created_at kept", doc)
	}
	// The new link's institution fields replace the stale ones.
	nt := newToken("item-rotated", sample.Carol, "access-sandbox-fresh")
	if doc.InstitutionID != nt.InstitutionID || doc.InstitutionName != nt.InstitutionName || doc.Metadata != nt.Metadata ||
		got.InstitutionName != nt.InstitutionName {
		t.Errorf("institution = %q %q %+v, want the new link's %q %q %+v", doc.InstitutionID, doc.InstitutionName, doc.Metadata,
			nt.InstitutionID, nt.InstitutionName, nt.Metadata)
	}
}

// Storing the same active token again with new institution details (the
// app re-linked, the institution renamed) updates them, and keeps fields
// this service does not know.
func TestStoreTokenUpdatesInstitutionFields(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	nt := newToken("item-renamed", sample.Carol, "access-sandbox-same")
	if _, err := env.Service.StoreToken(ctx, nt); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.Collection(lifecycle.TokensCollection).Doc(nt.ItemID).Update(ctx,
		[]firestore.Update{{Path: "transactions", Value: map[string]any{"cursor": "c1"}}}); err != nil {
		t.Fatal(err)
	}
	nt.InstitutionName, nt.Metadata.Name, nt.Metadata.Logo = "Platypus Bank (renamed)", "Platypus Bank (renamed)", "logo2"
	if _, err := env.Service.StoreToken(ctx, nt); err != nil {
		t.Fatal(err)
	}
	doc := env.Doc(t, nt.ItemID)
	if doc.InstitutionName != nt.InstitutionName || doc.Metadata != nt.Metadata {
		t.Errorf("institution = %q %+v, want %q %+v", doc.InstitutionName, doc.Metadata, nt.InstitutionName, nt.Metadata)
	}
	snap, err := env.Client.Collection(lifecycle.TokensCollection).Doc(nt.ItemID).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := snap.Data()["transactions"]; !ok {
		t.Error("re-store dropped the transactions field")
	}
}

// Concurrent stores of one item by its user all succeed and leave one
// active document with one of the tokens.
func TestStoreTokenConcurrent(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = env.Service.StoreToken(context.Background(), newToken("item-race", sample.Alice, "access-sandbox-race"))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("store %d: %v", i, err)
		}
	}
	if doc := env.Doc(t, "item-race"); doc == nil || doc.Status != lifecycle.StatusActive || decrypt(t, env, doc) != "access-sandbox-race" {
		t.Errorf("document = %+v", doc)
	}
}

func TestUseTokenRecordsUseAtMostHourly(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	ctx, logs := loggedContext()
	use := func() string {
		t.Helper()
		plain, err := env.Service.UseToken(ctx, sample.Alice, "item-alice-chase")
		if err != nil {
			t.Fatalf("UseToken: %v", err)
		}
		return plain
	}

	// Last used a day ago: the use is recorded.
	if got := use(); got != plaintext("item-alice-chase") {
		t.Errorf("UseToken = %q, want the plaintext", got)
	}
	first := env.Doc(t, "item-alice-chase")
	if !first.LastUsedAt.Equal(testenv.Now) {
		t.Errorf("last_used_at = %v, want %v", first.LastUsedAt, testenv.Now)
	}
	if !first.UpdatedAt.Equal(testenv.Now.Add(-300 * 24 * time.Hour)) {
		t.Errorf("updated_at moved to %v: a use is not a change of the token", first.UpdatedAt)
	}

	// Within the hour: no write at all.
	env.Clock.Advance(59 * time.Minute)
	use()
	use()
	if diff := cmp.Diff(first, env.Doc(t, "item-alice-chase")); diff != "" {
		t.Errorf("a use within the hour wrote the document (-before +after):\n%s", diff)
	}

	// Past the hour: recorded again.
	env.Clock.Advance(2 * time.Minute)
	use()
	if got := env.Doc(t, "item-alice-chase").LastUsedAt; !got.Equal(testenv.Now.Add(61 * time.Minute)) {
		t.Errorf("last_used_at = %v, want %v", got, testenv.Now.Add(61*time.Minute))
	}

	entries := logs.Entries(t, "token used")
	var recorded []bool
	for _, e := range entries {
		recorded = append(recorded, e["usage_recorded"].(bool))
		if e["item_id"] != "item-alice-chase" || e["user_id"] != sample.Alice || e["institution_id"] != "ins_3" {
			t.Errorf("log entry fields = %v", e)
		}
	}
	if diff := cmp.Diff([]bool{true, false, false, true}, recorded); diff != "" {
		t.Errorf("usage_recorded of the four uses (-want +got):\n%s", diff)
	}
	if strings.Contains(logs.String(), plaintext("item-alice-chase")) {
		t.Error("the token reached the log")
	}
}

func TestUseTokenRefusals(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	ctx := context.Background()
	before := env.Doc(t, "item-alice-chase")

	tests := []struct {
		name, user, item string
		code             lifecycle.Code
	}{
		{"another user's item", sample.Bob, "item-alice-chase", lifecycle.CodeNotFound},
		{"missing item", sample.Bob, "item-nobody", lifecycle.CodeNotFound},
		{"revoked", sample.Dave, "item-dave-revoked", lifecycle.CodeConflict},
		{"expired", sample.Bob, "item-bob-old", lifecycle.CodeConflict},
		{"no user", "", "item-alice-chase", lifecycle.CodeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain, err := env.Service.UseToken(ctx, tt.user, tt.item)
			if !lifecycle.IsCode(err, tt.code) || plain != "" {
				t.Errorf("UseToken = %q, %v; want code %s", plain, err, tt.code)
			}
		})
	}
	_, errOther := env.Service.UseToken(ctx, sample.Bob, "item-alice-chase")
	_, errMissing := env.Service.UseToken(ctx, sample.Bob, "item-nobody")
	if !errors.Is(errOther, lifecycle.ErrItemNotFound) || errOther.Error() != errMissing.Error() {
		t.Errorf("another user's item (%v) and a missing one (%v) must read the same", errOther, errMissing)
	}
	if diff := cmp.Diff(before, env.Doc(t, "item-alice-chase")); diff != "" {
		t.Errorf("another user's use touched the document (-before +after):\n%s", diff)
	}

	// A token that needs the user is handed out: Link's update mode needs it.
	plain, err := env.Service.UseToken(ctx, sample.Erin, "item-erin-chase")
	if err != nil || plain != plaintext("item-erin-chase") {
		t.Errorf("UseToken of a needs-user token = %q, %v; want the token", plain, err)
	}
}
