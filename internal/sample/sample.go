// Package sample is the example token set: the dataset whose cleanup gives
// the statistics of DESIGN §4 (15 checked, 3 expired, 2 stale, 1 invalid,
// 1 revoked, 6 cleaned). Tests seed it, and scripts/dev.sh seeds it into
// the local emulator and its Plaid stand-in.
package sample

import (
	"context"
	"fmt"
	"time"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// PlaidState is how the Plaid stand-in answers for a token.
type PlaidState string

// Plaid states of sample tokens.
const (
	Healthy   PlaidState = "healthy"
	Gone      PlaidState = "gone"       // /item/get answers ITEM_NOT_FOUND
	NeedsUser PlaidState = "needs_user" // item.error ITEM_LOGIN_REQUIRED in a 200
)

// Token is one sample token: the document and the plaintext access token.
type Token struct {
	lifecycle.Token
	Plaintext string
	Plaid     PlaidState
}

// Users of the sample set. AdminUser owns nothing and is the admin.
const (
	AdminUser = "admin-ops"
	Alice     = "user-alice"
	Bob       = "user-bob"
	Carol     = "user-carol"
	Dave      = "user-dave"
	Erin      = "user-erin"
)

// Environment is the Plaid environment of every sample token: the sample is
// one deployment's data (a token of another environment is DESIGN §7 rule
// 0's, left untouched; tests make their own).
const Environment = "sandbox"

// Tokens returns the sample set relative to now. With a 90-day threshold a
// cleanup gives: total_checked 15, expired_removed 3, stale_removed 2,
// invalid_marked 1, revoked_removed 1, total_cleaned 6 (and needs_user 1).
func Tokens(now time.Time) []Token {
	day := 24 * time.Hour
	ago := func(days int) time.Time { return now.Add(-time.Duration(days) * day) }
	type row struct {
		item, user, instID, inst string
		status                   lifecycle.Status
		created, used            int // days ago; used < 0: never used
		plaidRemoved             bool
		plaid                    PlaidState
	}
	rows := []row{
		// Healthy, recently used.
		{"item-alice-chase", Alice, "ins_3", "Chase Bank", lifecycle.StatusActive, 300, 1, false, Healthy},
		{"item-alice-boa", Alice, "ins_1", "Bank of America", lifecycle.StatusActive, 200, 5, false, Healthy},
		{"item-bob-chase", Bob, "ins_3", "Chase Bank", lifecycle.StatusActive, 150, 2, false, Healthy},
		{"item-bob-wells", Bob, "ins_4", "Wells Fargo", lifecycle.StatusActive, 100, 45, false, Healthy},
		{"item-carol-chase", Carol, "ins_3", "Chase Bank", lifecycle.StatusActive, 80, 35, false, Healthy},
		{"item-carol-citi", Carol, "ins_5", "Citi", lifecycle.StatusActive, 60, 10, false, Healthy},
		{"item-dave-unknown", Dave, "", "", lifecycle.StatusActive, 20, -1, false, Healthy},
		// Alive, but the user must log in again at the bank.
		{"item-erin-chase", Erin, "ins_3", "Chase Bank", lifecycle.StatusActive, 90, 3, false, NeedsUser},
		// Dead at Plaid although still active here: marked expired.
		{"item-dave-citi", Dave, "ins_5", "Citi", lifecycle.StatusActive, 70, 20, false, Gone},
		// Stale: unused for more than 90 days.
		{"item-carol-boa", Carol, "ins_1", "Bank of America", lifecycle.StatusActive, 400, 120, false, Healthy},
		{"item-erin-wells", Erin, "ins_4", "Wells Fargo", lifecycle.StatusActive, 200, -1, false, Healthy},
		// Expired and revoked: finished at Plaid (unless already) and deleted.
		{"item-alice-old", Alice, "ins_3", "Chase Bank", lifecycle.StatusExpired, 500, 200, false, Gone},
		{"item-bob-old", Bob, "ins_1", "Bank of America", lifecycle.StatusExpired, 400, 100, false, Healthy},
		{"item-erin-old", Erin, "ins_5", "Citi", lifecycle.StatusExpired, 300, 95, true, Gone},
		{"item-dave-revoked", Dave, "ins_4", "Wells Fargo", lifecycle.StatusRevoked, 30, 10, false, Healthy},
	}
	out := make([]Token, 0, len(rows))
	for _, r := range rows {
		t := lifecycle.Token{
			ItemID: r.item, UserID: r.user, InstitutionID: r.instID, InstitutionName: r.inst,
			Status: r.status, Environment: Environment, CreatedAt: ago(r.created), UpdatedAt: ago(r.created),
			PlaidRemoved: r.plaidRemoved,
			Metadata:     lifecycle.Metadata{Name: r.inst},
		}
		if r.used >= 0 {
			t.LastUsedAt = ago(r.used)
		}
		if r.plaid == NeedsUser {
			t.ErrorCode = "ITEM_LOGIN_REQUIRED"
		}
		out = append(out, Token{Token: t, Plaintext: "access-" + Environment + "-" + r.item, Plaid: r.plaid})
	}
	return out
}

// Plaid is what a Plaid stand-in needs to answer for sample tokens.
type Plaid interface {
	AddItem(accessToken, itemID, institutionID string)
	SetTokenError(accessToken, errorCode string)
	SetItemError(accessToken, errorCode string)
}

// Register makes plaid answer for every token as its PlaidState says.
func Register(plaid Plaid, tokens []Token) {
	for _, t := range tokens {
		switch t.Plaid {
		case Gone:
			plaid.SetTokenError(t.Plaintext, "ITEM_NOT_FOUND")
		case NeedsUser:
			plaid.AddItem(t.Plaintext, t.ItemID, t.InstitutionID)
			plaid.SetItemError(t.Plaintext, "ITEM_LOGIN_REQUIRED")
		default:
			plaid.AddItem(t.Plaintext, t.ItemID, t.InstitutionID)
		}
	}
}

// Seed encrypts each token with cipher and creates its document. Existing
// documents are left alone, so seeding twice is harmless.
func Seed(ctx context.Context, store lifecycle.TokenStore, cipher lifecycle.TokenCipher, tokens []Token) error {
	for _, t := range tokens {
		doc := t.Token
		enc, err := cipher.Encrypt(doc.ItemID, t.Plaintext)
		if err != nil {
			return fmt.Errorf("encrypting sample token %s: %w", doc.ItemID, err)
		}
		doc.AccessToken = enc
		if err := store.Create(ctx, &doc); err != nil && !lifecycle.IsCode(err, lifecycle.CodeConflict) {
			return fmt.Errorf("seeding %s: %w", doc.ItemID, err)
		}
	}
	return nil
}

// BenchTokens is the benchmark's dataset of n tokens relative to now: 10%
// expired, 5% revoked, 10% stale, 2% gone at Plaid, the rest healthy. It is
// deterministic, so a Plaid stand-in and a seeder in different processes
// agree on it.
func BenchTokens(n int, now time.Time) []Token {
	day := 24 * time.Hour
	out := make([]Token, 0, n)
	for i := range n {
		lastUsed := now.Add(-time.Duration(1+i%20) * day)
		t := lifecycle.Token{
			ItemID: fmt.Sprintf("bench-item-%07d", i), UserID: fmt.Sprintf("bench-user-%05d", i/3),
			InstitutionID: "ins_3", InstitutionName: "Chase Bank", Status: lifecycle.StatusActive,
			Environment: "sandbox", CreatedAt: now.Add(-400 * day), UpdatedAt: now.Add(-400 * day),
			LastUsedAt: lastUsed,
		}
		state := Healthy
		switch r := i % 100; {
		case r < 10:
			t.Status = lifecycle.StatusExpired
		case r < 15:
			t.Status = lifecycle.StatusRevoked
		case r < 25:
			t.LastUsedAt = now.Add(-180 * day)
		case r < 27:
			state = Gone
		}
		out = append(out, Token{Token: t, Plaintext: fmt.Sprintf("access-sandbox-bench-%07d", i), Plaid: state})
	}
	return out
}
