package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func newStore(t *testing.T) *lifecycle.FirestoreTokenStore {
	t.Helper()
	return lifecycle.NewFirestoreTokenStore(emulator.NewClient(t))
}

func sampleToken(itemID, userID string) *lifecycle.Token {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &lifecycle.Token{
		ItemID:          itemID,
		UserID:          userID,
		AccessToken:     "v1:deadbeef:ciphertext",
		InstitutionID:   "ins_1",
		InstitutionName: "Chase Bank",
		Status:          lifecycle.StatusActive,
		Environment:     "sandbox",
		CreatedAt:       created,
		UpdatedAt:       created,
		Metadata:        lifecycle.Metadata{Name: "Chase", URL: "https://chase.example", PrimaryColor: "#000", Logo: "x"},
	}
}

func TestStoreCreateGetRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	want := sampleToken("item-1", "user-1")
	if err := s.Create(ctx, want); err != nil {
		t.Fatalf("Create: %v", err)
	}
	got, err := s.Get(ctx, "item-1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(lifecycle.Token{}, "Version")); diff != "" {
		t.Errorf("Get mismatch (-want +got):\n%s", diff)
	}
	if got.Version.IsZero() {
		t.Error("Get returned no Version")
	}
	if err := s.Create(ctx, want); !errors.Is(err, lifecycle.ErrChanged) {
		t.Errorf("second Create = %v, want ErrChanged", err)
	}
	if _, err := s.Get(ctx, "missing"); !errors.Is(err, lifecycle.ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
}

func TestStoreListByUser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	for i, user := range []string{"alice", "bob", "alice", "carol", "alice"} {
		if err := s.Create(ctx, sampleToken(fmt.Sprintf("item-%d", i), user)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ListByUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tok := range got {
		ids = append(ids, tok.ItemID)
	}
	if diff := cmp.Diff([]string{"item-0", "item-2", "item-4"}, ids, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Errorf("ListByUser(alice) (-want +got):\n%s", diff)
	}
}

func TestStoreStaleVersionRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	if err := s.Create(ctx, sampleToken("item-1", "u")); err != nil {
		t.Fatal(err)
	}
	read, err := s.Get(ctx, "item-1")
	if err != nil {
		t.Fatal(err)
	}
	// The app uses the token after cleanup read it.
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.Update(ctx, "item-1", lifecycle.Patch{LastUsedAt: &now}, time.Time{}); err != nil {
		t.Fatalf("unconditional Update: %v", err)
	}

	if err := s.Delete(ctx, "item-1", read.Version); !errors.Is(err, lifecycle.ErrChanged) {
		t.Errorf("Delete with stale version = %v, want ErrChanged", err)
	}
	if _, err := s.Update(ctx, "item-1", lifecycle.Patch{Status: new(lifecycle.StatusExpired)}, read.Version); !errors.Is(err, lifecycle.ErrChanged) {
		t.Errorf("Update with stale version = %v, want ErrChanged", err)
	}
	if err := s.Delete(ctx, "item-1", time.Time{}); lifecycle.ErrorCode(err) != lifecycle.CodeInvalid {
		t.Errorf("unconditional Delete = %v, want CodeInvalid", err)
	}
	got, err := s.Get(ctx, "item-1")
	if err != nil {
		t.Fatalf("document is gone after refused writes: %v", err)
	}
	if got.Status != lifecycle.StatusActive || !got.LastUsedAt.Equal(now) {
		t.Errorf("document = status %q last_used_at %v, want active and %v", got.Status, got.LastUsedAt, now)
	}

	// With the current version both succeed.
	v, err := s.Update(ctx, "item-1", lifecycle.Patch{ErrorCode: new("ITEM_LOGIN_REQUIRED")}, got.Version)
	if err != nil {
		t.Fatalf("Update with current version: %v", err)
	}
	if err := s.Delete(ctx, "item-1", v); err != nil {
		t.Fatalf("Delete with current version: %v", err)
	}
	if _, err := s.Get(ctx, "item-1"); !errors.Is(err, lifecycle.ErrNotFound) {
		t.Errorf("Get after delete = %v, want ErrNotFound", err)
	}
	if _, err := s.Update(ctx, "item-1", lifecycle.Patch{ErrorCode: new("X")}, time.Time{}); !errors.Is(err, lifecycle.ErrNotFound) {
		t.Errorf("Update of missing document = %v, want ErrNotFound", err)
	}
}

func TestStorePatchClearsErrorCodeAndKeepsUnknownFields(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := emulator.NewClient(t)
	s := lifecycle.NewFirestoreTokenStore(client)
	// A document as the old service left it, with an extra field other parts
	// of the app read.
	_, err := client.Collection(lifecycle.TokensCollection).Doc("item-x").Set(ctx, map[string]any{
		"user_id": "u", "item_id": "item-x", "status": "active", "error_code": "ITEM_LOGIN_REQUIRED",
		"transactions": map[string]any{"cursor": "abc"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, "item-x", lifecycle.Patch{ClearErrorCode: true}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	snap, err := client.Collection(lifecycle.TokensCollection).Doc("item-x").Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := snap.Data()["error_code"]; ok {
		t.Error("error_code still present after ClearErrorCode")
	}
	if diff := cmp.Diff(map[string]any{"cursor": "abc"}, snap.Data()["transactions"]); diff != "" {
		t.Errorf("transactions changed (-want +got):\n%s", diff)
	}
}

func TestStorePagingVisitsEveryDocumentOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	const n = 257
	for i := range n {
		if err := s.Create(ctx, sampleToken(fmt.Sprintf("item-%04d", i), "u")); err != nil {
			t.Fatal(err)
		}
	}
	for _, pageSize := range []int{1, 10, 100, 257, 500} {
		seen := map[string]int{}
		after, pages := "", 0
		for {
			page, next, err := s.Page(ctx, after, pageSize)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, tok := range page {
				seen[tok.ItemID]++
			}
			if next == "" {
				break
			}
			after = next
		}
		if len(seen) != n {
			t.Errorf("page size %d: visited %d distinct documents, want %d", pageSize, len(seen), n)
		}
		for id, c := range seen {
			if c != 1 {
				t.Errorf("page size %d: %s visited %d times", pageSize, id, c)
			}
		}
		if want := n/pageSize + 1; pages != want {
			t.Errorf("page size %d: %d pages, want %d", pageSize, pages, want)
		}
	}
}

func TestStoreApplyBulk(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	var versions []time.Time
	for i := range 5 {
		tok := sampleToken(fmt.Sprintf("item-%d", i), "u")
		if err := s.Create(ctx, tok); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, tok.Version)
	}
	// item-4 is touched after being read: its delete must be refused.
	if _, err := s.Update(ctx, "item-4", lifecycle.Patch{LastUsedAt: new(time.Now())}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	errs := s.Apply(ctx, []lifecycle.Write{
		{ItemID: "item-0", Delete: true, IfVersion: versions[0]},
		{ItemID: "item-1", Delete: true, IfVersion: versions[1]},
		{ItemID: "item-2", Patch: lifecycle.Patch{Status: new(lifecycle.StatusExpired)}, IfVersion: versions[2]},
		{ItemID: "item-3", Delete: true}, // unconditional: refused
		{ItemID: "item-4", Delete: true, IfVersion: versions[4]},
	})
	wantOK := []bool{true, true, true, false, false}
	for i, err := range errs {
		if (err == nil) != wantOK[i] {
			t.Errorf("write %d: err = %v, want ok=%v", i, err, wantOK[i])
		}
	}
	if !errors.Is(errs[4], lifecycle.ErrChanged) {
		t.Errorf("stale delete error = %v, want ErrChanged", errs[4])
	}
	for id, wantExists := range map[string]bool{"item-0": false, "item-1": false, "item-2": true, "item-3": true, "item-4": true} {
		_, err := s.Get(ctx, id)
		if exists := err == nil; exists != wantExists {
			t.Errorf("%s exists = %v, want %v (err %v)", id, exists, wantExists, err)
		}
	}
	if got, _ := s.Get(ctx, "item-2"); got == nil || got.Status != lifecycle.StatusExpired {
		t.Errorf("item-2 = %+v, want status expired", got)
	}
}

// A cleanup's delete and its audit entry land together or not at all, and a
// delete retried after its first answer was lost (it landed) is a success,
// not "changed by someone else".
func TestStoreAuditedDeleteLandsWithItsEntry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := emulator.NewClient(t)
	s := lifecycle.NewFirestoreTokenStore(client)
	versions := map[string]time.Time{}
	for _, id := range []string{"item-a", "item-b", "item-c"} {
		tok := sampleToken(id, "u")
		if err := s.Create(ctx, tok); err != nil {
			t.Fatal(err)
		}
		versions[id] = tok.Version
	}
	// The app uses item-c after the cleanup read it.
	if _, err := s.Update(ctx, "item-c", lifecycle.Patch{LastUsedAt: new(time.Now())}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	audited := func(runID, id, reason string) lifecycle.Write {
		return lifecycle.Write{ItemID: id, Delete: true, IfVersion: versions[id], Audit: &lifecycle.AuditEntry{
			ItemID: id, UserID: "u", Reason: reason, Actor: "scheduler", RunID: runID, At: time.Now().UTC(), PlaidRemoved: true}}
	}
	entries := func() map[string]string { // item id → run id/reason
		t.Helper()
		snaps, err := client.Collection(lifecycle.AuditCollection).Documents(ctx).GetAll()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, snap := range snaps {
			var e lifecycle.AuditEntry
			if err := snap.DataTo(&e); err != nil {
				t.Fatal(err)
			}
			if _, dup := out[e.ItemID]; dup {
				t.Errorf("two audit entries for %s", e.ItemID)
			}
			out[e.ItemID] = e.RunID + "/" + e.Reason
		}
		return out
	}

	errs := s.Apply(ctx, []lifecycle.Write{audited("run-1", "item-a", "expired"), audited("run-1", "item-b", "stale"), audited("run-1", "item-c", "stale")})
	if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], lifecycle.ErrChanged) {
		t.Fatalf("Apply = %v; want nil, nil, ErrChanged", errs)
	}
	want := map[string]string{"item-a": "run-1/expired", "item-b": "run-1/stale"}
	if diff := cmp.Diff(want, entries()); diff != "" {
		t.Errorf("audit entries after the deletes (-want +got):\n%s", diff)
	}
	if _, err := s.Get(ctx, "item-c"); err != nil {
		t.Errorf("item-c, used meanwhile, is gone: %v", err)
	}

	// The same delete again, as when its first answer was lost: it finds
	// its own entry.
	if errs := s.Apply(ctx, []lifecycle.Write{audited("run-1", "item-a", "expired")}); errs[0] != nil {
		t.Errorf("retried delete of item-a = %v, want success (its entry is there)", errs[0])
	}
	// Another run finds the document gone and records nothing.
	if errs := s.Apply(ctx, []lifecycle.Write{audited("run-2", "item-b", "stale")}); !errors.Is(errs[0], lifecycle.ErrChanged) && !errors.Is(errs[0], lifecycle.ErrNotFound) {
		t.Errorf("another run's delete of the deleted item-b = %v, want ErrNotFound or ErrChanged", errs[0])
	}
	if diff := cmp.Diff(want, entries()); diff != "" {
		t.Errorf("audit entries after the retries (-want +got):\n%s", diff)
	}
}

// A revocation's patch and its audit entry land together or not at all:
// one refused by its precondition (the document changed since it was read)
// writes neither, and the one decided again on the fresh version lands with
// its own entry.
func TestStoreAuditedPatchLandsWithItsEntry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := emulator.NewClient(t)
	s := lifecycle.NewFirestoreTokenStore(client)
	tok := sampleToken("item-r", "u")
	if err := s.Create(ctx, tok); err != nil {
		t.Fatal(err)
	}
	stale := tok.Version
	fresh, err := s.Update(ctx, "item-r", lifecycle.Patch{LastUsedAt: new(time.Now())}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	revoke := func(version time.Time) lifecycle.Write {
		return lifecycle.Write{ItemID: "item-r", IfVersion: version,
			Patch: lifecycle.Patch{Status: new(lifecycle.StatusRevoked), PlaidRemoved: new(false)},
			Audit: &lifecycle.AuditEntry{ItemID: "item-r", UserID: "u", Reason: lifecycle.ReasonUserRevoked, Actor: "u", At: time.Now().UTC()}}
	}
	auditCount := func() int {
		t.Helper()
		snaps, err := client.Collection(lifecycle.AuditCollection).Where("item_id", "==", "item-r").Documents(ctx).GetAll()
		if err != nil {
			t.Fatal(err)
		}
		return len(snaps)
	}
	if errs := s.Apply(ctx, []lifecycle.Write{revoke(stale)}); !errors.Is(errs[0], lifecycle.ErrChanged) {
		t.Fatalf("revocation decided on a stale version = %v, want ErrChanged", errs[0])
	}
	if got, _ := s.Get(ctx, "item-r"); got.Status != lifecycle.StatusActive || auditCount() != 0 {
		t.Fatalf("a refused revocation wrote something: status %s, %d audit entries", got.Status, auditCount())
	}
	if errs := s.Apply(ctx, []lifecycle.Write{revoke(fresh)}); errs[0] != nil {
		t.Fatalf("revocation on the fresh version = %v", errs[0])
	}
	if got, _ := s.Get(ctx, "item-r"); got.Status != lifecycle.StatusRevoked || auditCount() != 1 {
		t.Errorf("after the revocation: status %s, %d audit entries; want revoked with one", got.Status, auditCount())
	}
	// Its answer lost, the same write again finds its own entry: success.
	if errs := s.Apply(ctx, []lifecycle.Write{revoke(fresh)}); errs[0] != nil || auditCount() != 1 {
		t.Errorf("retried revocation = %v with %d entries, want success and still one", errs[0], auditCount())
	}
	// An unconditional audited write is refused: the entry's id needs the version.
	if errs := s.Apply(ctx, []lifecycle.Write{revoke(time.Time{})}); !lifecycle.IsCode(errs[0], lifecycle.CodeInvalid) {
		t.Errorf("audited write without a version = %v, want invalid", errs[0])
	}
}
