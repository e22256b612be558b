package lifecycle_test

import (
	"context"
	"slices"
	"testing"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// productionToken is a token of Plaid's production environment as a
// sandbox deployment (testenv's PLAID_ENV) finds it in its store.
func productionToken(itemID string, mod func(*sample.Token)) sample.Token {
	tok := testenv.ActiveToken(itemID, "user-prod", 3)
	tok.Environment = "production"
	tok.Plaintext = "access-production-" + itemID
	if mod != nil {
		mod(&tok)
	}
	return tok
}

// DESIGN §7 rule 0: a deployment with the wrong PLAID_ENV must not destroy
// the other environment's tokens. Plaid answers INVALID_ACCESS_TOKEN for
// them, which used to read as "gone": RevokeItem recorded plaid_removed, a
// cleanup marked them expired and the next deleted them, while their Items
// stayed billed with no token left to remove them. Now they are never sent
// to Plaid, never marked, never deleted, and counted in errors each run.
func TestOtherEnvironmentTokensAreNeverTouched(t *testing.T) {
	t.Parallel()
	env := testenv.New(t) // PLAID_ENV=sandbox
	ctx := context.Background()
	others := []sample.Token{
		productionToken("prod-active", nil),
		productionToken("prod-stale", func(tk *sample.Token) { *tk = productionTokenUsed(tk.ItemID, 200) }),
		productionToken("prod-expired", func(tk *sample.Token) { tk.Status = lifecycle.StatusExpired }),
		productionToken("prod-revoked-removed", func(tk *sample.Token) {
			tk.Status, tk.PlaidRemoved = lifecycle.StatusRevoked, true
		}),
		// Only the field says production: the token itself is sandbox's.
		productionToken("prod-label", func(tk *sample.Token) { tk.Plaintext = "access-sandbox-prod-label" }),
		// Only the token says it: an app that wrote no environment field.
		productionToken("prod-prefix", func(tk *sample.Token) { tk.Environment = "" }),
	}
	controlExpired := testenv.ActiveToken("sandbox-expired", "user-sb", 3)
	controlExpired.Status = lifecycle.StatusExpired
	env.Seed(t, append(slices.Clone(others), testenv.ActiveToken("sandbox-active", "user-sb", 3), controlExpired)...)
	before := map[string]*lifecycle.Token{}
	for _, o := range others {
		before[o.ItemID] = env.Doc(t, o.ItemID)
	}

	// The user revokes their production Item on the sandbox deployment:
	// dead to the app at once, but not "removed at Plaid".
	rev, err := env.Service.RevokeItem(ctx, "user-prod", "prod-active")
	if err != nil || rev.PlaidRemoved {
		t.Fatalf("RevokeItem of a production token: %+v, %v; want revoked with plaid_removed false", rev, err)
	}
	if got := env.Doc(t, "prod-active"); got.Status != lifecycle.StatusRevoked || got.PlaidRemoved {
		t.Errorf("revoked production token = %s, plaid_removed %v; want revoked, false", got.Status, got.PlaidRemoved)
	}
	before["prod-active"] = env.Doc(t, "prod-active")

	for i := range 2 { // the first cleanup used to mark, the second delete
		res := cleanup(t, env, lifecycle.CleanupRequest{})
		if res.Statistics.Errors != len(others) || res.Statistics.TotalChecked != len(others)+2-i {
			t.Errorf("cleanup %d: %+v; want %d errors (the production tokens), the sandbox ones handled", i+1, res.Statistics, len(others))
		}
		stages := map[string]int{}
		for _, e := range res.Errors {
			stages[e.Stage]++
		}
		if stages["environment"] != len(others) {
			t.Errorf("cleanup %d error stages %v, want every production token refused by rule 0", i+1, stages)
		}
	}
	for _, o := range others {
		got := env.Doc(t, o.ItemID)
		if got == nil {
			t.Errorf("%s was deleted", o.ItemID)
			continue
		}
		if !got.Version.Equal(before[o.ItemID].Version) || got.Status != before[o.ItemID].Status || got.ErrorCode != before[o.ItemID].ErrorCode {
			t.Errorf("%s changed: %s/%q, was %s/%q", o.ItemID, got.Status, got.ErrorCode, before[o.ItemID].Status, before[o.ItemID].ErrorCode)
		}
	}
	for _, c := range env.Plaid.Calls() {
		if c.AccessToken != "" && lifecycle.TokenEnvironment(c.AccessToken) != "sandbox" {
			t.Errorf("Plaid received %s with a token of another environment", c.Path)
		}
		if c.AccessToken == "access-sandbox-prod-label" {
			t.Errorf("Plaid received %s for prod-label, whose document says production", c.Path)
		}
	}
	if env.Doc(t, "sandbox-expired") != nil {
		t.Error("the sandbox deployment's own expired token was not removed")
	}
}

func productionTokenUsed(itemID string, daysAgo int) sample.Token {
	tok := testenv.ActiveToken(itemID, "user-prod", daysAgo)
	tok.Environment = "production"
	tok.Plaintext = "access-production-" + itemID
	return tok
}
