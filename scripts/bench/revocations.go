package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// revocations is the revoke workload: the benchmark dataset's users revoke
// their items (o.revokesPerUser each), the quota of /item/remove saturated. After
// it every revocation that answered 200 must have left its token revoked,
// with plaid_removed true exactly for the Items the stand-in removed, and
// one audit entry when it revoked a token that was not revoked yet (the
// service audits what it changed; revoking a revoked token again changes
// nothing, and the floor audits every request).
type revocations struct{ *dataset }

func prepareRevocations(ctx context.Context, cfg lifecycle.Config, o loadOptions) (workload, error) {
	d, err := prepareDataset(ctx, cfg, o)
	if err != nil {
		return nil, err
	}
	return revocations{d}, nil
}

func (revocations) loadFlags(o loadOptions) []string {
	return []string{"-mode", "revoke", "-revokes-per-user", fmt.Sprint(o.revokesPerUser)}
}

// warm revokes an item that does not exist: 404, after one read.
func (revocations) warm(ctx context.Context, baseURL, jwtSecret string) error {
	_, err := requestAs(ctx, jwtSecret, "bench-warm-user", false, http.MethodDelete, baseURL+"/api/v1/plaid/items/bench-warm-missing", nil, http.StatusNotFound)
	return err
}

func (r revocations) check(ctx context.Context, o loadOptions, rep *loadTestReport, outPath string) (Result, error) {
	revoked, err := readDone(outPath)
	if err != nil {
		return nil, err
	}
	plaintext, wasRevoked := map[string]string{}, map[string]bool{}
	for _, t := range r.tokens {
		plaintext[t.ItemID] = t.Plaintext
		wasRevoked[t.ItemID] = t.Status == lifecycle.StatusRevoked
	}
	// Plaid answered a removal for these: removed, or ITEM_NOT_FOUND for
	// an Item already gone there; either way plaid_removed must say true.
	answered := map[string]bool{}
	var removals []time.Time
	for _, c := range r.fake.Calls() {
		if c.Path == plaidfake.PathItemRemove && !c.RateLimited {
			answered[c.AccessToken] = true
			removals = append(removals, c.Time)
		}
	}
	audited, err := r.auditEntries(ctx, lifecycle.ReasonUserRevoked)
	if err != nil {
		return nil, err
	}
	var removedAtPlaid, local, wrong, unaudited int
	for item, user := range revoked {
		tok, err := r.prod.deps.Tokens.Get(ctx, item)
		if err != nil {
			return nil, fmt.Errorf("reading revoked item %s: %w", item, err)
		}
		removed := answered[plaintext[item]]
		switch {
		case tok.Status != lifecycle.StatusRevoked || tok.PlaidRemoved != removed || tok.UserID != user:
			wrong++
			progressf("item %s of %s: status %s, plaid_removed %v, removed at Plaid %v, revoked for %s", item, tok.UserID, tok.Status, tok.PlaidRemoved, removed, user)
		case removed:
			removedAtPlaid++
		default:
			local++
		}
		if audited[item] != 1 && !wasRevoked[item] {
			unaudited++
			progressf("item %s: %d audit entries, want 1", item, audited[item])
		}
	}
	w := windows(removals)
	return Result{
		"verified": len(revoked), "removed_at_plaid": removedAtPlaid, "revoked_locally": local, "wrong": wrong,
		"unaudited": unaudited, "removals_max_60s": w.max,
		"pass": rep.ServerErrors == 0 && rep.NoAnswer == 0 && wrong == 0 && unaudited == 0 && len(revoked) == o.users*o.revokesPerUser,
	}, nil
}

// auditEntries counts the audit entries of each item with reason.
func (d *dataset) auditEntries(ctx context.Context, reasons ...string) (map[string]int, error) {
	audits, err := d.prod.client.Collection(lifecycle.AuditCollection).Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("reading the audit entries: %w", err)
	}
	counts := map[string]int{}
	for _, a := range audits {
		var e lifecycle.AuditEntry
		if err := a.DataTo(&e); err == nil && slices.Contains(reasons, e.Reason) {
			counts[e.ItemID]++
		}
	}
	return counts, nil
}
