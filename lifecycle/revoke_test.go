package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

const pathItemRemove = "/item/remove"

// revokedState is what a revocation leaves in a token document.
type revokedState struct {
	Status       lifecycle.Status
	PlaidRemoved bool
	UpdatedAt    time.Time
}

func stateOf(t *testing.T, env *testenv.Env, itemID string) revokedState {
	t.Helper()
	doc := env.Doc(t, itemID)
	if doc == nil {
		t.Fatalf("%s does not exist", itemID)
	}
	return revokedState{Status: doc.Status, PlaidRemoved: doc.PlaidRemoved, UpdatedAt: doc.UpdatedAt}
}

// auditOf returns the audit entries of itemID without their times.
func auditOf(t *testing.T, env *testenv.Env, itemID string) []lifecycle.AuditEntry {
	t.Helper()
	return env.AuditEntries(t, itemID)
}

func plaintext(itemID string) string { return "access-sandbox-" + itemID }

func TestRevokeItem(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		user   string
		item   string
		fault  func(*testenv.Env)
		want   *lifecycle.Revocation
		doc    revokedState
		calls  int // /item/remove requests
		audits []lifecycle.AuditEntry
	}{
		{
			name: "own active item: removed at Plaid, then revoked",
			user: sample.Alice, item: "item-alice-chase",
			want:  &lifecycle.Revocation{ItemID: "item-alice-chase", PlaidRemoved: true, Changed: true},
			doc:   revokedState{lifecycle.StatusRevoked, true, testenv.Now},
			calls: 1,
			audits: []lifecycle.AuditEntry{{ItemID: "item-alice-chase", UserID: sample.Alice, Reason: "user_revoked",
				Actor: sample.Alice, At: testenv.Now, PlaidRemoved: true}},
		},
		{
			name: "Plaid down: revoked at once, removal left to cleanup",
			user: sample.Alice, item: "item-alice-chase",
			fault: func(env *testenv.Env) {
				env.Plaid.FailAlways(pathItemRemove, 500, "API_ERROR", "INTERNAL_SERVER_ERROR")
			},
			want:  &lifecycle.Revocation{ItemID: "item-alice-chase", PlaidRemoved: false, Changed: true},
			doc:   revokedState{lifecycle.StatusRevoked, false, testenv.Now},
			calls: 3, // the adapter's retries (testenv: 3 attempts)
			audits: []lifecycle.AuditEntry{{ItemID: "item-alice-chase", UserID: sample.Alice, Reason: "user_revoked",
				Actor: sample.Alice, At: testenv.Now, PlaidRemoved: false}},
		},
		{
			name: "Plaid rate limited: revoked at once",
			user: sample.Bob, item: "item-bob-chase",
			fault: func(env *testenv.Env) {
				env.Plaid.FailAlways(pathItemRemove, 429, "RATE_LIMIT_EXCEEDED", "RATE_LIMIT")
			},
			want:  &lifecycle.Revocation{ItemID: "item-bob-chase", PlaidRemoved: false, Changed: true},
			doc:   revokedState{lifecycle.StatusRevoked, false, testenv.Now},
			calls: 3,
			audits: []lifecycle.AuditEntry{{ItemID: "item-bob-chase", UserID: sample.Bob, Reason: "user_revoked",
				Actor: sample.Bob, At: testenv.Now, PlaidRemoved: false}},
		},
		{
			name: "Plaid refuses our keys: revoked at once",
			user: sample.Bob, item: "item-bob-chase",
			fault: func(env *testenv.Env) {
				env.Plaid.FailAlways(pathItemRemove, 400, "INVALID_INPUT", "INVALID_API_KEYS")
			},
			want:  &lifecycle.Revocation{ItemID: "item-bob-chase", PlaidRemoved: false, Changed: true},
			doc:   revokedState{lifecycle.StatusRevoked, false, testenv.Now},
			calls: 1, // not retried: a configuration error
			audits: []lifecycle.AuditEntry{{ItemID: "item-bob-chase", UserID: sample.Bob, Reason: "user_revoked",
				Actor: sample.Bob, At: testenv.Now, PlaidRemoved: false}},
		},
		{
			name: "expired item already gone at Plaid counts as removed",
			user: sample.Alice, item: "item-alice-old",
			want:  &lifecycle.Revocation{ItemID: "item-alice-old", PlaidRemoved: true, Changed: true},
			doc:   revokedState{lifecycle.StatusRevoked, true, testenv.Now},
			calls: 1,
			audits: []lifecycle.AuditEntry{{ItemID: "item-alice-old", UserID: sample.Alice, Reason: "user_revoked",
				Actor: sample.Alice, At: testenv.Now, PlaidRemoved: true}},
		},
		{
			name: "expired item already removed: no Plaid call",
			user: sample.Erin, item: "item-erin-old",
			want:  &lifecycle.Revocation{ItemID: "item-erin-old", PlaidRemoved: true, Changed: true},
			doc:   revokedState{lifecycle.StatusRevoked, true, testenv.Now},
			calls: 0,
			audits: []lifecycle.AuditEntry{{ItemID: "item-erin-old", UserID: sample.Erin, Reason: "user_revoked",
				Actor: sample.Erin, At: testenv.Now, PlaidRemoved: true}},
		},
		{
			name: "revoked item not yet removed: removal tried again",
			user: sample.Dave, item: "item-dave-revoked",
			want:  &lifecycle.Revocation{ItemID: "item-dave-revoked", PlaidRemoved: true, Changed: true},
			doc:   revokedState{lifecycle.StatusRevoked, true, testenv.Now},
			calls: 1,
			audits: []lifecycle.AuditEntry{{ItemID: "item-dave-revoked", UserID: sample.Dave, Reason: "user_revoked",
				Actor: sample.Dave, At: testenv.Now, PlaidRemoved: true}},
		},
		{
			name: "revoked item, Plaid still down: success, nothing written",
			user: sample.Dave, item: "item-dave-revoked",
			fault: func(env *testenv.Env) {
				env.Plaid.FailAlways(pathItemRemove, 503, "API_ERROR", "PLANNED_MAINTENANCE")
			},
			want:  &lifecycle.Revocation{ItemID: "item-dave-revoked", PlaidRemoved: false, Changed: false},
			doc:   revokedState{lifecycle.StatusRevoked, false, testenv.Now.Add(-30 * 24 * time.Hour)},
			calls: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := testenv.New(t)
			env.SeedSample(t)
			if tt.fault != nil {
				tt.fault(env)
			}
			got, err := env.Service.RevokeItem(context.Background(), tt.user, tt.item)
			if err != nil {
				t.Fatalf("RevokeItem: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("revocation (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.doc, stateOf(t, env, tt.item)); diff != "" {
				t.Errorf("document (-want +got):\n%s", diff)
			}
			if n := env.Plaid.CallCount(pathItemRemove); n != tt.calls {
				t.Errorf("/item/remove calls = %d, want %d", n, tt.calls)
			}
			if tt.want.PlaidRemoved && tt.calls > 0 && tt.item != "item-alice-old" && !env.Plaid.Removed(plaintext(tt.item)) {
				t.Errorf("%s not removed at Plaid", tt.item)
			}
			if diff := cmp.Diff(tt.audits, auditOf(t, env, tt.item), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("audit (-want +got):\n%s", diff)
			}
		})
	}
}

// A revocation Plaid could not finish is finished by the next cleanup,
// whose rule for revoked tokens not removed at Plaid already exists.
func TestRevokeItemPlaidDownCleanupFinishes(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	env.Plaid.FailAlways(pathItemRemove, 500, "API_ERROR", "INTERNAL_SERVER_ERROR")
	if _, err := env.Service.RevokeItem(context.Background(), sample.Alice, "item-alice-chase"); err != nil {
		t.Fatal(err)
	}
	// Dead to the app at once.
	if _, err := env.Service.UseToken(context.Background(), sample.Alice, "item-alice-chase"); !lifecycle.IsCode(err, lifecycle.CodeConflict) {
		t.Errorf("UseToken of a revoked token: err = %v, want conflict", err)
	}
	if env.Plaid.Removed(plaintext("item-alice-chase")) {
		t.Fatal("removed at Plaid while Plaid was down")
	}

	env.Plaid.ClearFaults()
	res, err := env.Service.Cleanup(context.Background(), lifecycle.CleanupRequest{DaysThreshold: 90, Trigger: lifecycle.TriggerCLI})
	if err != nil {
		t.Fatal(err)
	}
	if !env.Plaid.Removed(plaintext("item-alice-chase")) {
		t.Error("cleanup did not remove the revoked item at Plaid")
	}
	if doc := env.Doc(t, "item-alice-chase"); doc != nil {
		t.Errorf("revoked document still there after cleanup: %+v", doc)
	}
	if res.Statistics.RevokedRemoved != 2 { // item-alice-chase and the sample's item-dave-revoked
		t.Errorf("revoked_removed = %d, want 2", res.Statistics.RevokedRemoved)
	}
}

// Another user's item and a missing one give the same error; the other
// user's document is untouched and Plaid is not called.
func TestRevokeItemNotTheCallersOrMissing(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	before := env.Doc(t, "item-alice-chase")

	_, errOther := env.Service.RevokeItem(context.Background(), sample.Bob, "item-alice-chase")
	_, errMissing := env.Service.RevokeItem(context.Background(), sample.Bob, "item-nobody")
	_, errEmpty := env.Service.RevokeItem(context.Background(), sample.Bob, "")
	for name, err := range map[string]error{"other user's": errOther, "missing": errMissing, "empty id": errEmpty} {
		if !errors.Is(err, lifecycle.ErrItemNotFound) || !lifecycle.IsCode(err, lifecycle.CodeNotFound) {
			t.Errorf("%s item: err = %v, want ErrItemNotFound", name, err)
		}
	}
	if errOther.Error() != errMissing.Error() {
		t.Errorf("another user's item and a missing one differ: %q vs %q", errOther, errMissing)
	}
	if diff := cmp.Diff(before, env.Doc(t, "item-alice-chase")); diff != "" {
		t.Errorf("another user's document changed (-before +after):\n%s", diff)
	}
	if n := env.Plaid.CallCount(pathItemRemove); n != 0 {
		t.Errorf("/item/remove calls = %d, want 0", n)
	}
	if got := auditOf(t, env, "item-alice-chase"); len(got) != 0 {
		t.Errorf("audit entries for a refused revocation: %+v", got)
	}
}

// Revoking twice: the second call succeeds without a Plaid call or a write.
func TestRevokeItemIdempotent(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	ctx := context.Background()
	if _, err := env.Service.RevokeItem(ctx, sample.Carol, "item-carol-citi"); err != nil {
		t.Fatal(err)
	}
	first := env.Doc(t, "item-carol-citi")
	env.Clock.Advance(time.Hour)
	got, err := env.Service.RevokeItem(ctx, sample.Carol, "item-carol-citi")
	if err != nil {
		t.Fatalf("second RevokeItem: %v", err)
	}
	if diff := cmp.Diff(&lifecycle.Revocation{ItemID: "item-carol-citi", PlaidRemoved: true}, got); diff != "" {
		t.Errorf("second revocation (-want +got):\n%s", diff)
	}
	if n := env.Plaid.CallCount(pathItemRemove); n != 1 {
		t.Errorf("/item/remove calls = %d, want 1", n)
	}
	if diff := cmp.Diff(first, env.Doc(t, "item-carol-citi")); diff != "" {
		t.Errorf("second revocation wrote the document (-first +now):\n%s", diff)
	}
	if n := len(auditOf(t, env, "item-carol-citi")); n != 1 {
		t.Errorf("%d audit entries, want 1", n)
	}
}

// A caller that goes away while Plaid answers still leaves the token
// revoked: the write does not hang on the caller's context.
func TestRevokeItemCallerGoneMidway(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env.Plaid.SetLatency(5 * time.Second)
	env.Plaid.OnCall(func(path, _ string) {
		if path == pathItemRemove {
			cancel()
		}
	})
	got, err := env.Service.RevokeItem(ctx, sample.Carol, "item-carol-chase")
	if err != nil {
		t.Fatalf("RevokeItem: %v", err)
	}
	if got.PlaidRemoved {
		t.Error("PlaidRemoved = true although the call was abandoned")
	}
	if diff := cmp.Diff(revokedState{lifecycle.StatusRevoked, false, testenv.Now}, stateOf(t, env, "item-carol-chase")); diff != "" {
		t.Errorf("document (-want +got):\n%s", diff)
	}
}

// A user's revocation does not wait out a slow or failing Plaid (its
// retries take up to a minute): it answers within a few seconds, revoked
// here, and leaves the removal to cleanup.
func TestRevokeItemDoesNotWaitOutPlaid(t *testing.T) {
	t.Parallel()
	for name, fault := range map[string]func(*testenv.Env){
		"slow": func(env *testenv.Env) { env.Plaid.SetLatency(time.Minute) },
		"failing": func(env *testenv.Env) {
			env.Plaid.FailAlways(pathItemRemove, http.StatusInternalServerError, "API_ERROR", "INTERNAL_SERVER_ERROR")
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := testenv.New(t)
			env.SeedSample(t)
			fault(env)
			start := time.Now()
			got, err := env.Service.RevokeItem(t.Context(), sample.Carol, "item-carol-chase")
			if err != nil {
				t.Fatalf("RevokeItem: %v", err)
			}
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("RevokeItem took %v: it waited on Plaid", took)
			}
			if got.PlaidRemoved {
				t.Error("PlaidRemoved = true, but Plaid never answered")
			}
			if diff := cmp.Diff(revokedState{lifecycle.StatusRevoked, false, testenv.Now}, stateOf(t, env, "item-carol-chase")); diff != "" {
				t.Errorf("document (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRevokeAllTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		user      string
		fault     func(*testenv.Env)
		wantCount int
		docs      map[string]revokedState
		calls     int
	}{
		{
			name: "active and expired, all removed at Plaid", user: sample.Alice, wantCount: 3, calls: 3,
			docs: map[string]revokedState{
				"item-alice-chase": {lifecycle.StatusRevoked, true, testenv.Now},
				"item-alice-boa":   {lifecycle.StatusRevoked, true, testenv.Now},
				"item-alice-old":   {lifecycle.StatusRevoked, true, testenv.Now}, // ITEM_NOT_FOUND counts as removed
			},
		},
		{
			name: "already revoked ones are left to cleanup", user: sample.Dave, wantCount: 2, calls: 2,
			docs: map[string]revokedState{
				"item-dave-unknown": {lifecycle.StatusRevoked, true, testenv.Now},
				"item-dave-citi":    {lifecycle.StatusRevoked, true, testenv.Now},
				"item-dave-revoked": {lifecycle.StatusRevoked, false, testenv.Now.Add(-30 * 24 * time.Hour)},
			},
		},
		{
			name: "Plaid down: all revoked, none removed", user: sample.Bob, wantCount: 3, calls: 9,
			fault: func(env *testenv.Env) {
				env.Plaid.FailAlways(pathItemRemove, 500, "API_ERROR", "INTERNAL_SERVER_ERROR")
			},
			docs: map[string]revokedState{
				"item-bob-chase": {lifecycle.StatusRevoked, false, testenv.Now},
				"item-bob-wells": {lifecycle.StatusRevoked, false, testenv.Now},
				"item-bob-old":   {lifecycle.StatusRevoked, false, testenv.Now},
			},
		},
		{name: "no tokens", user: sample.AdminUser, wantCount: 0, calls: 0, docs: map[string]revokedState{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := testenv.New(t)
			tokens := env.SeedSample(t)
			if tt.fault != nil {
				tt.fault(env)
			}
			before := map[string]*lifecycle.Token{}
			for _, tok := range tokens {
				before[tok.ItemID] = env.Doc(t, tok.ItemID)
			}
			n, err := env.Service.RevokeAllTokens(context.Background(), tt.user)
			if err != nil {
				t.Fatalf("RevokeAllTokens: %v", err)
			}
			if n != tt.wantCount {
				t.Errorf("count = %d, want %d", n, tt.wantCount)
			}
			if got := env.Plaid.CallCount(pathItemRemove); got != tt.calls {
				t.Errorf("/item/remove calls = %d, want %d", got, tt.calls)
			}
			for _, tok := range tokens {
				want, mine := tt.docs[tok.ItemID]
				if !mine {
					// Other users' tokens are untouched.
					if diff := cmp.Diff(before[tok.ItemID], env.Doc(t, tok.ItemID)); diff != "" {
						t.Errorf("%s of another user changed (-before +after):\n%s", tok.ItemID, diff)
					}
					continue
				}
				if diff := cmp.Diff(want, stateOf(t, env, tok.ItemID)); diff != "" {
					t.Errorf("%s (-want +got):\n%s", tok.ItemID, diff)
				}
			}

			// Again: nothing left to revoke, no Plaid call.
			calls := env.Plaid.CallCount(pathItemRemove)
			again, err := env.Service.RevokeAllTokens(context.Background(), tt.user)
			if err != nil || again != 0 {
				t.Errorf("second RevokeAllTokens = %d, %v; want 0, nil", again, err)
			}
			if got := env.Plaid.CallCount(pathItemRemove); got != calls {
				t.Errorf("second call made %d /item/remove calls", got-calls)
			}
		})
	}
}

// Many tokens revoke concurrently (bounded) and each is counted once.
func TestRevokeAllTokensMany(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	var tokens []sample.Token
	for i := range 40 {
		tokens = append(tokens, testenv.ActiveToken(fmt.Sprintf("item-many-%02d", i), "user-many", i))
	}
	env.Seed(t, tokens...)
	n, err := env.Service.RevokeAllTokens(context.Background(), "user-many")
	if err != nil {
		t.Fatal(err)
	}
	if n != 40 {
		t.Errorf("count = %d, want 40", n)
	}
	if got := len(env.Plaid.RemovedTokens()); got != 40 {
		t.Errorf("%d removed at Plaid, want 40", got)
	}
	for _, tok := range tokens {
		if s := stateOf(t, env, tok.ItemID); s.Status != lifecycle.StatusRevoked || !s.PlaidRemoved {
			t.Errorf("%s = %+v, want revoked and removed", tok.ItemID, s)
		}
	}
}

func TestRevokeAllTokensAsAdminAudit(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	n, err := env.Service.RevokeAllTokensAsAdmin(context.Background(), sample.Carol, "ops@finwell")
	if err != nil || n != 3 {
		t.Fatalf("RevokeAllTokensAsAdmin = %d, %v; want 3, nil", n, err)
	}
	want := []lifecycle.AuditEntry{{ItemID: "item-carol-boa", UserID: sample.Carol, Reason: "admin_revoked",
		Actor: "ops@finwell", At: testenv.Now, PlaidRemoved: true}}
	if diff := cmp.Diff(want, auditOf(t, env, "item-carol-boa")); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
}

// touchedBeforeWrite is the real token store, where the app uses each token
// once between the revocation's read and its write: the first conditional
// write of each item is refused, as Firestore refuses a stale version.
type touchedBeforeWrite struct {
	lifecycle.TokenStore
	mu      sync.Mutex
	touched map[string]bool
}

func (s *touchedBeforeWrite) Apply(ctx context.Context, writes []lifecycle.Write) []error {
	for _, w := range writes {
		s.mu.Lock()
		first := !s.touched[w.ItemID]
		s.touched[w.ItemID] = true
		s.mu.Unlock()
		if first {
			if _, err := s.TokenStore.Update(ctx, w.ItemID, lifecycle.Patch{LastUsedAt: new(time.Now())}, time.Time{}); err != nil {
				panic(err)
			}
		}
	}
	return s.TokenStore.Apply(ctx, writes)
}

// A token the app uses between the revocation's read and its write is read
// again and revoked on what it says now, not refused as changed: revoke-all
// answered 409 for a user whose tokens were in use.
func TestRevokeAllTokensInUse(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	store := &touchedBeforeWrite{TokenStore: env.Tokens, touched: map[string]bool{}}
	svc, err := lifecycle.NewService(env.Config, lifecycle.Deps{Tokens: store, Runs: env.Runs, Legacy: env.Legacy,
		Plaid: env.Adapter, Cipher: env.Vault, Clock: env.Clock})
	if err != nil {
		t.Fatal(err)
	}
	n, err := svc.RevokeAllTokens(context.Background(), sample.Alice)
	if err != nil || n != 3 {
		t.Fatalf("RevokeAllTokens while the app uses the tokens: %d, %v; want 3 revoked", n, err)
	}
	for _, id := range []string{"item-alice-chase", "item-alice-boa", "item-alice-old"} {
		if doc := env.Doc(t, id); doc.Status != lifecycle.StatusRevoked {
			t.Errorf("%s is %s, want revoked", id, doc.Status)
		}
		if audits := env.AuditEntries(t, id); len(audits) != 1 {
			t.Errorf("%s has %d audit entries, want 1", id, len(audits))
		}
	}
}
