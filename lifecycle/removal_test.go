package lifecycle_test

import (
	"context"
	"testing"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// A revocation that could not remove its Item at Plaid asks for an early
// removal, so the Item stops being billed within minutes rather than at
// the next daily cleanup; the removal is idempotent.
func TestRevocationThatWentLocalIsRemovedEarly(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	continuer := &testenv.Continuer{}
	env.Rebuild(t, func(d *lifecycle.Deps, _ *lifecycle.Config) { d.Continuer = continuer })
	env.SeedSample(t)
	ctx := context.Background()

	env.Plaid.FailAlways(pathItemRemove, 500, "API_ERROR", "INTERNAL_SERVER_ERROR")
	rev, err := env.Service.RevokeItem(ctx, sample.Alice, "item-alice-chase")
	if err != nil || rev.PlaidRemoved {
		t.Fatalf("RevokeItem with Plaid down: %+v, %v; want revoked locally", rev, err)
	}
	// The revocation and its audit entry landed together.
	if audits := env.AuditEntries(t, "item-alice-chase"); len(audits) != 1 || audits[0].PlaidRemoved ||
		audits[0].Reason != lifecycle.ReasonUserRevoked || audits[0].Actor != sample.Alice {
		t.Errorf("audit entries = %+v, want one user_revoked entry by %s with plaid_removed false", audits, sample.Alice)
	}
	reqs := continuer.TakeRemovals()
	if len(reqs) != 1 || reqs[0] != (lifecycle.RemovalRequest{ItemID: "item-alice-chase"}) {
		t.Fatalf("removal requests = %+v, want one for item-alice-chase", reqs)
	}

	// Plaid still down: worth a retry (Pub/Sub redelivers), nothing written.
	if out, err := env.Service.RemoveOwedItem(ctx, reqs[0]); !lifecycle.IsCode(err, lifecycle.CodeUnavailable) {
		t.Errorf("early removal while Plaid is down: %q, %v; want an unavailable error (retry)", out, err)
	}
	env.Plaid.ClearFaults()
	out, err := env.Service.RemoveOwedItem(ctx, reqs[0])
	if err != nil || out != lifecycle.RemovalDone {
		t.Fatalf("early removal: %q, %v; want removed", out, err)
	}
	if !env.Plaid.Removed(plaintext("item-alice-chase")) {
		t.Error("the Item was not removed at Plaid")
	}
	if doc := env.Doc(t, "item-alice-chase"); doc.Status != lifecycle.StatusRevoked || !doc.PlaidRemoved {
		t.Errorf("after the early removal: %s, plaid_removed %v; want revoked, true", doc.Status, doc.PlaidRemoved)
	}
	// A redelivery finds nothing owed and calls Plaid no more.
	removes := env.Plaid.CallCount(pathItemRemove)
	if out, err := env.Service.RemoveOwedItem(ctx, reqs[0]); err != nil || out != lifecycle.RemovalNotOwed {
		t.Errorf("redelivered early removal: %q, %v; want not_owed", out, err)
	}
	if n := env.Plaid.CallCount(pathItemRemove); n != removes {
		t.Errorf("the redelivery called /item/remove %d more times", n-removes)
	}
	// A revocation that did remove the Item asks for nothing.
	if _, err := env.Service.RevokeItem(ctx, sample.Bob, "item-bob-chase"); err != nil {
		t.Fatal(err)
	}
	if reqs := continuer.TakeRemovals(); len(reqs) != 0 {
		t.Errorf("a revocation removed at Plaid asked for early removals: %+v", reqs)
	}
}

// An Item no document holds (an exchange whose store failed) is removed
// from the sealed token its request carries; never one the app holds.
func TestEarlyRemovalOfASealedToken(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	ctx := context.Background()

	const orphan = "item-orphan"
	env.Plaid.AddItem(plaintext(orphan), orphan, "ins_3")
	sealed, err := env.Vault.Encrypt(orphan, plaintext(orphan))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := env.Service.RemoveOwedItem(ctx, lifecycle.RemovalRequest{ItemID: orphan, SealedToken: sealed}); err != nil || out != lifecycle.RemovalDone {
		t.Fatalf("early removal of a sealed token: %q, %v; want removed", out, err)
	}
	if !env.Plaid.Removed(plaintext(orphan)) {
		t.Error("the orphaned Item was not removed at Plaid")
	}

	// The store landed after all: a live token is never removed.
	live, err := env.Vault.Encrypt("item-alice-chase", plaintext("item-alice-chase"))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := env.Service.RemoveOwedItem(ctx, lifecycle.RemovalRequest{ItemID: "item-alice-chase", SealedToken: live}); err != nil || out != lifecycle.RemovalNotOwed {
		t.Errorf("early removal of an Item the app holds: %q, %v; want not_owed", out, err)
	}
	if env.Plaid.Removed(plaintext("item-alice-chase")) {
		t.Error("a live token's Item was removed at Plaid")
	}
	// A sealed token moved to another item id does not decrypt: refused, not retried.
	if out, err := env.Service.RemoveOwedItem(ctx, lifecycle.RemovalRequest{ItemID: "item-elsewhere", SealedToken: sealed}); err != nil || out != lifecycle.RemovalRefused {
		t.Errorf("early removal with another item's sealed token: %q, %v; want refused", out, err)
	}
}
