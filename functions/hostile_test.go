package functions

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// Item ids Firestore refuses as document ids answer the same 404 as
// another user's item, through the local routes and the deployed handler,
// and nothing reaches Firestore or the ERROR log.
func TestRevokeItemHostileIDsAre404(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	f.env.SeedSample(t)
	alice := f.env.Bearer(t, sample.Alice)
	notFound := f.call(t, http.MethodDelete, apiItemPath+"item-bob-chase", alice, nil)
	if notFound.Status != http.StatusNotFound {
		t.Fatalf("another user's item: %d %v", notFound.Status, notFound.Body)
	}
	ids := []string{"__x__", "__name__", "__.__", "%2E", "%2e%2e", "%FF", "%C0%AE", "%2F", "a%2Fb",
		"x%00y", strings.Repeat("i", lifecycle.MaxItemIDLength+1), "%E2%80", "__%2E__"}
	deployed := f.server.RevokeItemHandler()
	for _, id := range ids {
		for name, res := range map[string]apiResult{
			"routes":   f.call(t, http.MethodDelete, apiItemPath+id, alice, nil),
			"deployed": apiCall(t, deployed, http.MethodDelete, "/"+id, alice, nil),
		} {
			if res.Status != notFound.Status || res.Raw != notFound.Raw {
				t.Errorf("%s DELETE %s: %d %q, want the 404 of another user's item %q", name, id, res.Status, res.Raw, notFound.Raw)
			}
		}
	}
	if logs := f.logs.String(); strings.Contains(logs, `"severity":"ERROR"`) {
		t.Errorf("hostile ids logged errors:\n%s", logs)
	}
	if n := f.env.Plaid.CallCount("/item/remove"); n != 0 {
		t.Errorf("%d /item/remove calls", n)
	}
}

// The old service's per-user document is not a token: its user cannot
// revoke it as an item (its Items would stay billed while the document
// said revoked), and revoke-all migrates it first, then revokes its Items
// too (DESIGN §5).
func TestLegacyDocumentIsNotAToken(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	env := f.env
	ctx := context.Background()
	legacyItem := func(id string) map[string]any {
		return map[string]any{"item_id": id, "user_id": sample.Erin, "access_token": "access-sandbox-" + id,
			"institution_name": "Chase Bank", "status": "active", "environment": "sandbox",
			"created_at": testenv.Now.Add(-24 * time.Hour), "updated_at": testenv.Now.Add(-24 * time.Hour)}
	}
	legacy := map[string]any{"items": map[string]any{"item-erin-old-a": legacyItem("item-erin-old-a"),
		"item-erin-old-b": legacyItem("item-erin-old-b")}}
	if _, err := env.Client.Collection(lifecycle.TokensCollection).Doc(sample.Erin).Set(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"item-erin-old-a", "item-erin-old-b"} {
		env.Plaid.AddItem("access-sandbox-"+id, id, "ins_3")
	}
	erin := env.Bearer(t, sample.Erin)

	res := f.call(t, http.MethodDelete, apiItemPath+sample.Erin, erin, nil)
	if res.Status != http.StatusNotFound {
		t.Errorf("DELETE of the legacy document's id: %d %v, want 404", res.Status, res.Body)
	}
	snap, err := env.Client.Collection(lifecycle.TokensCollection).Doc(sample.Erin).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, stamped := snap.Data()["status"]; stamped {
		t.Error("the legacy document was stamped with a status")
	}

	res = f.call(t, http.MethodDelete, apiRevoke, erin, nil)
	want := map[string]any{"message": "Revoked 2 tokens successfully", "revoked_count": 2.0}
	if diff := cmp.Diff(want, res.Body); diff != "" {
		t.Errorf("revoke-all (-want +got):\n%s", diff)
	}
	for _, id := range []string{"item-erin-old-a", "item-erin-old-b"} {
		doc := env.Doc(t, id)
		if doc == nil || doc.Status != lifecycle.StatusRevoked || !doc.PlaidRemoved || !env.Plaid.Removed("access-sandbox-"+id) {
			t.Errorf("%s = %+v (removed at Plaid: %v), want migrated, revoked and removed", id, doc, env.Plaid.Removed("access-sandbox-"+id))
		}
	}
	if _, err := env.Client.Collection(lifecycle.TokensCollection).Doc(sample.Erin).Get(ctx); err == nil {
		t.Error("the legacy document is still in plaid_tokens after revoke-all")
	}
	if _, err := env.Client.Collection(lifecycle.LegacyArchiveCollection).Doc(sample.Erin).Get(ctx); err != nil {
		t.Errorf("the legacy document was not archived: %v", err)
	}
}

// Claim names are read exactly: encoding/json's case folding must not make
// {"Admin": true} an admin, {"SUB": ...} a user, or {"EXP": ...} an expiry.
func TestJWTClaimNamesAreExact(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	exp := time.Now().Add(time.Hour).Unix()
	cases := []struct {
		name   string
		claims map[string]any
		status int
	}{
		{"Admin is not admin", map[string]any{"sub": "u1", "exp": exp, "Admin": true}, http.StatusForbidden},
		{"ADMIN is not admin", map[string]any{"sub": "u1", "exp": exp, "ADMIN": true}, http.StatusForbidden},
		{"admin is admin", map[string]any{"sub": "u1", "exp": exp, "admin": true}, http.StatusOK},
		{"SUB is no subject", map[string]any{"SUB": "u1", "exp": exp}, http.StatusUnauthorized},
		{"Sub is no subject", map[string]any{"Sub": sample.AdminUser, "exp": exp}, http.StatusUnauthorized},
		{"EXP is no expiry", map[string]any{"sub": "u1", "EXP": exp, "admin": true}, http.StatusUnauthorized},
		{"a refresh token's Type does not pass as type", map[string]any{"sub": "u1", "exp": exp, "admin": true, "type": "refresh_token", "Type": "access_token"}, http.StatusUnauthorized},
		{"admin as a string is not admin", map[string]any{"sub": "u1", "exp": exp, "admin": "true"}, http.StatusForbidden},
		{"sub not a string", map[string]any{"sub": 42, "exp": exp}, http.StatusUnauthorized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := testenv.SignHS256(t, f.env.Config.AuthJWTSecret, tc.claims)
			res := f.call(t, http.MethodGet, apiAnalyze, "Bearer "+tok, nil)
			if res.Status != tc.status {
				t.Errorf("status %d %v, want %d", res.Status, res.Body, tc.status)
			}
		})
	}
}

// A signed webhook naming an item id Firestore refuses is an unknown item:
// 200 and a WARNING, not a 500. A revocation Plaid reports (consent
// withdrawn) is audited, once, in the same commit: the Item is still to be
// removed at Plaid.
func TestWebhookHostileItemIDAndRevocationAudit(t *testing.T) {
	t.Parallel()
	f := newWebhookFixture(t)
	for _, id := range []string{"__x__", "__name__", ".", "..", "a/b", "\xff"} {
		body := webhookBody(t, "USER_PERMISSION_REVOKED", id, "")
		if diff := cmp.Diff(ok200, f.post(t, http.MethodPost, PathWebhook, f.sign(t, f.kid, body), body)); diff != "" {
			t.Errorf("item_id %q (-want +got):\n%s", id, diff)
		}
	}
	if logs := f.logs.String(); strings.Contains(logs, `"severity":"ERROR"`) || !strings.Contains(logs, "verified webhook for unknown item") {
		t.Errorf("logs:\n%s", logs)
	}

	f.addToken(t, "item-revoked-at-bank", lifecycle.StatusActive, "")
	body := webhookBody(t, "USER_PERMISSION_REVOKED", "item-revoked-at-bank", "")
	f.post(t, http.MethodPost, PathWebhook, f.sign(t, f.kid, body), body)
	f.post(t, http.MethodPost, PathWebhook, f.sign(t, f.kid, body), body) // redelivered: one entry
	snaps := testenv.AuditEntries(t, f.client, "item-revoked-at-bank")
	if len(snaps) != 1 || snaps[0].Reason != lifecycle.ReasonPlaidRevoked || snaps[0].PlaidRemoved || snaps[0].UserID != "user-item-revoked-at-bank" {
		t.Errorf("audit entries = %+v, want one plaid_revoked entry, plaid_removed false", snaps)
	}
}

// An admin's HTTP cleanup is detached from the request: a client that
// disconnects after /item/remove does not lose the writes that record it.
func TestTokenCleanupSurvivesClientDisconnect(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	stale := testenv.ActiveToken("item-stale", "u1", 200)
	env.Seed(t, stale)
	s := newTestServer(t, env, nil)
	ctx, cancel := context.WithCancel(context.Background())
	env.Plaid.OnCall(func(path, _ string) {
		if path == "/item/remove" {
			cancel() // the admin's client goes away while Plaid removes the Item
		}
	})
	r, err := http.NewRequestWithContext(ctx, http.MethodDelete, PathCleanup, bytes.NewReader(nil))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", env.Bearer(t, sample.AdminUser))
	s.Routes().ServeHTTP(discardWriter{}, r)
	if !env.Plaid.Removed(stale.Plaintext) {
		t.Fatal("the Item was not removed at Plaid")
	}
	if doc := env.Doc(t, stale.ItemID); doc != nil {
		t.Errorf("the token removed at Plaid is still stored: %+v", doc)
	}
	if got := env.AuditEntries(t, stale.ItemID); len(got) != 1 {
		t.Errorf("audit entries = %+v, want one", got)
	}
}

type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}
