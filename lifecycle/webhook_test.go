package lifecycle_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// webhookNow is "now" for every webhook test: iat values are relative to it.
var webhookNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newWebhookPlaid(t *testing.T) *testenv.WebhookPlaid {
	t.Helper()
	return testenv.NewWebhookPlaid(t, webhookNow, nil)
}

func itemWebhookBody(t testing.TB, code, itemID, errorCode string) []byte {
	t.Helper()
	wh := map[string]any{"webhook_type": "ITEM", "webhook_code": code, "item_id": itemID, "environment": "sandbox"}
	if errorCode != "" {
		typ, _ := plaidfake.ErrorTypeOf(errorCode)
		wh["error"] = map[string]any{"error_type": typ, "error_code": errorCode, "error_message": "the Item needs attention"}
	} else {
		wh["error"] = nil
	}
	b, err := json.Marshal(wh)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantRefusal checks that err is an *lifecycle.Error with code whose
// message contains reason.
func wantRefusal(t *testing.T, err error, code lifecycle.Code, reason string) {
	t.Helper()
	var e *lifecycle.Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want a *lifecycle.Error with code %s", err, err, code)
	}
	if e.Code != code || !strings.Contains(e.Message, reason) {
		t.Fatalf("error = %q (code %s), want code %s and a message containing %q", e.Message, e.Code, code, reason)
	}
}

func TestVerifyWebhook(t *testing.T) {
	t.Parallel()
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"webhook_type":"ITEM","webhook_code":"ERROR","item_id":"item-1"}`)

	tests := []struct {
		name string
		// header builds the Plaid-Verification header against p.
		header func(t *testing.T, p *testenv.WebhookPlaid) string
		body   []byte // what arrives; nil means body
		code   lifecycle.Code
		reason string // part of the refusal; "" for success
		// fetches is how many key lookups reach Plaid.
		fetches int
	}{
		{
			name:    "valid",
			header:  func(t *testing.T, p *testenv.WebhookPlaid) string { return p.Sign(t, p.KeyID, body, webhookNow) },
			fetches: 1,
		},
		{
			name: "valid, iat almost 5 minutes old",
			header: func(t *testing.T, p *testenv.WebhookPlaid) string {
				return p.Sign(t, p.KeyID, body, webhookNow.Add(-4*time.Minute-59*time.Second))
			},
			fetches: 1,
		},
		{
			name: "valid, iat a little ahead of our clock",
			header: func(t *testing.T, p *testenv.WebhookPlaid) string {
				return p.Sign(t, p.KeyID, body, webhookNow.Add(30*time.Second))
			},
			fetches: 1,
		},
		{
			name:   "unsigned: no header",
			header: func(*testing.T, *testenv.WebhookPlaid) string { return "" },
			code:   lifecycle.CodeUnauthorized, reason: "missing Plaid-Verification",
		},
		{
			name:   "not a JWT",
			header: func(*testing.T, *testenv.WebhookPlaid) string { return "not-a-jwt" },
			code:   lifecycle.CodeUnauthorized, reason: "malformed JWT",
		},
		{
			name:   "oversized header",
			header: func(*testing.T, *testenv.WebhookPlaid) string { return strings.Repeat("a", 5000) },
			code:   lifecycle.CodeUnauthorized, reason: "too long",
		},
		{
			name: "wrong key claiming the served kid",
			header: func(t *testing.T, p *testenv.WebhookPlaid) string {
				return testenv.ForgeWebhookJWT(t, jwt.SigningMethodES256, otherKey, p.KeyID, testenv.WebhookClaims(body, webhookNow))
			},
			code: lifecycle.CodeUnauthorized, reason: "invalid JWT signature", fetches: 1,
		},
		{
			name:   "body changed after signing",
			header: func(t *testing.T, p *testenv.WebhookPlaid) string { return p.Sign(t, p.KeyID, body, webhookNow) },
			body:   bytes.Replace(body, []byte("ERROR"), []byte("LOGIN_REPAIRED"), 1),
			code:   lifecycle.CodeUnauthorized, reason: "request_body_sha256",
		},
		{
			name: "no body hash claim",
			header: func(t *testing.T, p *testenv.WebhookPlaid) string {
				priv, _ := p.Fake.WebhookSigningKey(p.KeyID)
				return testenv.ForgeWebhookJWT(t, jwt.SigningMethodES256, priv, p.KeyID, jwt.MapClaims{"iat": webhookNow.Unix()})
			},
			code: lifecycle.CodeUnauthorized, reason: "request_body_sha256",
		},
		{
			name: "iat 10 minutes old",
			header: func(t *testing.T, p *testenv.WebhookPlaid) string {
				return p.Sign(t, p.KeyID, body, webhookNow.Add(-10*time.Minute))
			},
			code: lifecycle.CodeUnauthorized, reason: "older than 5 minutes",
		},
		{
			name: "iat 2 minutes in the future",
			header: func(t *testing.T, p *testenv.WebhookPlaid) string {
				return p.Sign(t, p.KeyID, body, webhookNow.Add(2*time.Minute))
			},
			code: lifecycle.CodeUnauthorized, reason: "in the future",
		},
		{
			name: "no iat",
			header: func(t *testing.T, p *testenv.WebhookPlaid) string {
				priv, _ := p.Fake.WebhookSigningKey(p.KeyID)
				c := testenv.WebhookClaims(body, webhookNow)
				delete(c, "iat")
				return testenv.ForgeWebhookJWT(t, jwt.SigningMethodES256, priv, p.KeyID, c)
			},
			code: lifecycle.CodeUnauthorized, reason: "no iat",
		},
		{
			name: "unknown kid",
			header: func(t *testing.T, p *testenv.WebhookPlaid) string {
				return testenv.ForgeWebhookJWT(t, jwt.SigningMethodES256, otherKey, "kid-plaid-never-issued", testenv.WebhookClaims(body, webhookNow))
			},
			code: lifecycle.CodeUnauthorized, reason: "unknown kid", fetches: 1,
		},
		{
			name: "expired key",
			header: func(t *testing.T, p *testenv.WebhookPlaid) string {
				p.Fake.ExpireWebhookKey(p.KeyID)
				return p.Sign(t, p.KeyID, body, webhookNow)
			},
			code: lifecycle.CodeUnauthorized, reason: "expired", fetches: 1,
		},
		{
			name: "no kid",
			header: func(t *testing.T, p *testenv.WebhookPlaid) string {
				priv, _ := p.Fake.WebhookSigningKey(p.KeyID)
				return testenv.ForgeWebhookJWT(t, jwt.SigningMethodES256, priv, "", testenv.WebhookClaims(body, webhookNow))
			},
			code: lifecycle.CodeUnauthorized, reason: "no valid kid",
		},
		{
			name: "HS256 keyed with the served kid",
			header: func(t *testing.T, p *testenv.WebhookPlaid) string {
				return testenv.ForgeWebhookJWT(t, jwt.SigningMethodHS256, []byte("guessable"), p.KeyID, testenv.WebhookClaims(body, webhookNow))
			},
			code: lifecycle.CodeUnauthorized, reason: "alg must be ES256",
		},
		{
			name: "RS256",
			header: func(t *testing.T, p *testenv.WebhookPlaid) string {
				return testenv.ForgeWebhookJWT(t, jwt.SigningMethodRS256, rsaKey, p.KeyID, testenv.WebhookClaims(body, webhookNow))
			},
			code: lifecycle.CodeUnauthorized, reason: "alg must be ES256",
		},
		{
			name: "alg none",
			header: func(t *testing.T, p *testenv.WebhookPlaid) string {
				return testenv.ForgeWebhookJWT(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, p.KeyID, testenv.WebhookClaims(body, webhookNow))
			},
			code: lifecycle.CodeUnauthorized, reason: "alg must be ES256",
		},
		{
			name: "ES384",
			header: func(t *testing.T, p *testenv.WebhookPlaid) string {
				k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				return testenv.ForgeWebhookJWT(t, jwt.SigningMethodES384, k, p.KeyID, testenv.WebhookClaims(body, webhookNow))
			},
			code: lifecycle.CodeUnauthorized, reason: "alg must be ES256",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newWebhookPlaid(t)
			got := body
			if tt.body != nil {
				got = tt.body
			}
			err := p.Verifier.Verify(context.Background(), tt.header(t, p), got)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Verify = %v, want success", err)
				}
			} else {
				wantRefusal(t, err, tt.code, tt.reason)
			}
			if n := p.KeyFetches(); n != tt.fetches {
				t.Errorf("key lookups at Plaid = %d, want %d", n, tt.fetches)
			}
		})
	}
}

func TestVerifyWebhookCachesKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newWebhookPlaid(t)
	body := itemWebhookBody(t, "PENDING_EXPIRATION", "item-1", "")

	// Concurrent first webhooks of one kid share one lookup.
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() { errs[i] = p.Verifier.Verify(ctx, p.Sign(t, p.KeyID, body, webhookNow), body) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if err := p.Verifier.Verify(ctx, p.Sign(t, p.KeyID, body, webhookNow), body); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if n := p.KeyFetches(); n != 1 {
		t.Fatalf("key lookups after 21 webhooks with one kid = %d, want 1", n)
	}

	// Plaid expires the key: the cache keeps trusting it until its TTL...
	p.Fake.ExpireWebhookKey(p.KeyID)
	p.Clock.Advance(59 * time.Minute)
	if err := p.Verifier.Verify(ctx, p.Sign(t, p.KeyID, body, p.Clock.Now()), body); err != nil {
		t.Fatalf("Verify within the key's TTL: %v", err)
	}
	// ...then asks Plaid again and learns of the expiry.
	p.Clock.Advance(2 * time.Minute)
	err := p.Verifier.Verify(ctx, p.Sign(t, p.KeyID, body, p.Clock.Now()), body)
	wantRefusal(t, err, lifecycle.CodeUnauthorized, "expired")
	if n := p.KeyFetches(); n != 2 {
		t.Fatalf("key lookups = %d, want 2 (one refresh after the TTL)", n)
	}
	// The refusal is cached too.
	err = p.Verifier.Verify(ctx, p.Sign(t, p.KeyID, body, p.Clock.Now()), body)
	wantRefusal(t, err, lifecycle.CodeUnauthorized, "expired")
	if n := p.KeyFetches(); n != 2 {
		t.Fatalf("key lookups = %d, want 2 (expired key cached)", n)
	}

	// A rotated-in key is fetched on first sight.
	newKid := p.Fake.NewWebhookKey()
	if err := p.Verifier.Verify(ctx, p.Sign(t, newKid, body, p.Clock.Now()), body); err != nil {
		t.Fatalf("Verify with a new key: %v", err)
	}
	if n := p.KeyFetches(); n != 3 {
		t.Fatalf("key lookups = %d, want 3", n)
	}
}

func TestVerifyWebhookUnknownKidIsCachedBriefly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newWebhookPlaid(t)
	forger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{}`)
	header := func() string {
		return testenv.ForgeWebhookJWT(t, jwt.SigningMethodES256, forger, "kid-unknown", testenv.WebhookClaims(body, p.Clock.Now()))
	}
	for range 3 {
		wantRefusal(t, p.Verifier.Verify(ctx, header(), body), lifecycle.CodeUnauthorized, "unknown kid")
	}
	if n := p.KeyFetches(); n != 1 {
		t.Fatalf("key lookups = %d, want 1", n)
	}
	p.Clock.Advance(2 * time.Minute)
	wantRefusal(t, p.Verifier.Verify(ctx, header(), body), lifecycle.CodeUnauthorized, "unknown kid")
	if n := p.KeyFetches(); n != 2 {
		t.Fatalf("key lookups = %d, want 2 once the refusal aged out", n)
	}
}

func TestVerifyWebhookKidFloodIsBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newWebhookPlaid(t)
	body := itemWebhookBody(t, "LOGIN_REPAIRED", "item-1", "")
	if err := p.Verifier.Verify(ctx, p.Sign(t, p.KeyID, body, webhookNow), body); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	forger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	flood := func() {
		t.Helper()
		var wg sync.WaitGroup
		codes := make([]lifecycle.Code, 100)
		for i := range codes {
			wg.Go(func() {
				kid := fmt.Sprintf("forged-%d-%s", i, rand.Text())
				err := p.Verifier.Verify(ctx, testenv.ForgeWebhookJWT(t, jwt.SigningMethodES256, forger, kid, testenv.WebhookClaims(body, p.Clock.Now())), body)
				codes[i] = lifecycle.ErrorCode(err)
			})
		}
		wg.Wait()
		for i, c := range codes {
			// Unknown kids Plaid was asked about are refused; the rest could
			// not be checked and are 503s Plaid would retry.
			if c != lifecycle.CodeUnauthorized && c != lifecycle.CodeUnavailable {
				t.Fatalf("forged webhook %d: code %s, want unauthenticated or unavailable", i, c)
			}
		}
	}
	flood()
	if n := p.KeyFetches(); n > lifecycle.WebhookKeyFetchBurst {
		t.Fatalf("key lookups after 100 forged kids = %d, want at most %d", n, lifecycle.WebhookKeyFetchBurst)
	}

	// Genuine webhooks still verify with the cached key, without a lookup.
	before := p.KeyFetches()
	if err := p.Verifier.Verify(ctx, p.Sign(t, p.KeyID, body, p.Clock.Now()), body); err != nil {
		t.Fatalf("Verify during the flood: %v", err)
	}
	// Even past the key's TTL, while a flood drains the lookup budget, the
	// cached key keeps verifying (for a grace period) instead of failing.
	p.Clock.Advance(61 * time.Minute)
	flood()
	if err := p.Verifier.Verify(ctx, p.Sign(t, p.KeyID, body, p.Clock.Now()), body); err != nil {
		t.Fatalf("Verify past the TTL during a flood: %v", err)
	}
	// Forged kids spend their own budget; the known key's refresh has its
	// own, so the flood cannot starve it.
	var forged, refreshes int
	for _, c := range p.Fake.Calls()[before:] {
		switch {
		case c.Path != plaidfake.PathWebhookVerificationKey:
		case c.KeyID == p.KeyID:
			refreshes++
		default:
			forged++
		}
	}
	if forged > lifecycle.WebhookKeyFetchBurst || refreshes > 1 {
		t.Fatalf("second flood: %d lookups of forged kids (want at most %d), %d refreshes of the real key (want at most 1)",
			forged, lifecycle.WebhookKeyFetchBurst, refreshes)
	}
}

// A new instance has no key in memory. Forged webhooks with made-up kids
// arriving before the first genuine one must not lock the genuine one out:
// the key another instance verified with is found in the shared store,
// without a Plaid lookup. Without the store, the same flood
// turns the genuine webhook away with a 503.
func TestVerifyWebhookNewInstanceUnderKidFlood(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	keys := lifecycle.NewFirestoreWebhookKeyStore(emulator.NewClient(t))
	first := testenv.NewWebhookPlaid(t, webhookNow, keys)
	body := itemWebhookBody(t, "USER_PERMISSION_REVOKED", "item-1", "")
	if err := first.Verifier.Verify(ctx, first.Sign(t, first.KeyID, body, webhookNow), body); err != nil {
		t.Fatalf("first instance: %v", err)
	}

	forger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		keys      lifecycle.WebhookKeyStore
		wantCode  lifecycle.Code // of the genuine webhook after the flood
		wantFetch bool           // of the genuine kid at Plaid
	}{
		{"with the shared key store", keys, "", false},
		{"memory only", nil, lifecycle.CodeUnavailable, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := testenv.NewWebhookPlaidClient(t, first.Fake)
			fresh := lifecycle.NewWebhookVerifier(client, tc.keys, first.Clock)
			before := len(first.Fake.Calls())
			for i := range 40 {
				kid := fmt.Sprintf("forged-%d-%s", i, rand.Text())
				forgedJWT := testenv.ForgeWebhookJWT(t, jwt.SigningMethodES256, forger, kid, testenv.WebhookClaims(body, webhookNow))
				if err := fresh.Verify(ctx, forgedJWT, body); err == nil {
					t.Fatal("a forged webhook verified")
				}
			}
			err := fresh.Verify(ctx, first.Sign(t, first.KeyID, body, webhookNow), body)
			if got := lifecycle.ErrorCode(err); (err == nil) != (tc.wantCode == "") || (err != nil && got != tc.wantCode) {
				t.Fatalf("genuine webhook after the flood: %v, want code %q", err, tc.wantCode)
			}
			fetched := false
			for _, c := range first.Fake.Calls()[before:] {
				fetched = fetched || c.KeyID == first.KeyID
			}
			if fetched != tc.wantFetch {
				t.Errorf("genuine kid looked up at Plaid: %v, want %v", fetched, tc.wantFetch)
			}
		})
	}
}

// A key Plaid reports expired is refused by every instance: the refusal is
// shared too.
func TestVerifyWebhookExpiredKeySharedBetweenInstances(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	keys := lifecycle.NewFirestoreWebhookKeyStore(emulator.NewClient(t))
	first := testenv.NewWebhookPlaid(t, webhookNow, keys)
	body := itemWebhookBody(t, "LOGIN_REPAIRED", "item-1", "")
	if err := first.Verifier.Verify(ctx, first.Sign(t, first.KeyID, body, webhookNow), body); err != nil {
		t.Fatal(err)
	}
	// Plaid rotates: the key expires; the first instance refreshes it past
	// its TTL and learns so.
	first.Fake.ExpireWebhookKey(first.KeyID)
	first.Clock.Advance(61 * time.Minute)
	wantRefusal(t, first.Verifier.Verify(ctx, first.Sign(t, first.KeyID, body, first.Clock.Now()), body),
		lifecycle.CodeUnauthorized, "expired")
	fresh := lifecycle.NewWebhookVerifier(testenv.NewWebhookPlaidClient(t, first.Fake), keys, first.Clock)
	before := first.KeyFetches()
	wantRefusal(t, fresh.Verify(ctx, first.Sign(t, first.KeyID, body, first.Clock.Now()), body),
		lifecycle.CodeUnauthorized, "expired")
	if n := first.KeyFetches() - before; n != 0 {
		t.Errorf("the new instance looked the expired key up %d times; the store knew", n)
	}
}

func TestVerifyWebhookRefusedKidsDoNotEvictKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newWebhookPlaid(t)
	body := []byte(`{}`)
	if err := p.Verifier.Verify(ctx, p.Sign(t, p.KeyID, body, p.Clock.Now()), body); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	forger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// More refused kids than the cache holds, paced so that each is asked
	// about (the lookup budget refills), within the real key's TTL.
	const forged = 270
	for i := range forged {
		p.Clock.Advance(12 * time.Second)
		h := testenv.ForgeWebhookJWT(t, jwt.SigningMethodES256, forger, fmt.Sprintf("forged-%d", i), testenv.WebhookClaims(body, p.Clock.Now()))
		wantRefusal(t, p.Verifier.Verify(ctx, h, body), lifecycle.CodeUnauthorized, "unknown kid")
	}
	if n := p.KeyFetches(); n != forged+1 {
		t.Fatalf("key lookups = %d, want %d", n, forged+1)
	}
	// The real key was kept: verifying needs no lookup.
	if err := p.Verifier.Verify(ctx, p.Sign(t, p.KeyID, body, p.Clock.Now()), body); err != nil {
		t.Fatalf("Verify after the flood: %v", err)
	}
	if n := p.KeyFetches(); n != forged+1 {
		t.Errorf("key lookups = %d, want %d: the real key was evicted", n, forged+1)
	}
}

func TestVerifyWebhookPlaidUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newWebhookPlaid(t)
	body := itemWebhookBody(t, "ERROR", "item-1", "ITEM_LOGIN_REQUIRED")

	// An outage is not the webhook's fault: 503, so Plaid retries.
	p.Fake.FailNext(plaidfake.PathWebhookVerificationKey, 1, 500, "API_ERROR", "INTERNAL_SERVER_ERROR")
	wantRefusal(t, p.Verifier.Verify(ctx, p.Sign(t, p.KeyID, body, webhookNow), body), lifecycle.CodeUnavailable, "could not fetch")
	// Nor is a failure cached: the retry succeeds.
	if err := p.Verifier.Verify(ctx, p.Sign(t, p.KeyID, body, webhookNow), body); err != nil {
		t.Fatalf("Verify after the outage: %v", err)
	}

	// Our own bad credentials are not an unknown kid either.
	newKid := p.Fake.NewWebhookKey()
	p.Fake.FailNext(plaidfake.PathWebhookVerificationKey, 1, 400, "INVALID_INPUT", "INVALID_API_KEYS")
	wantRefusal(t, p.Verifier.Verify(ctx, p.Sign(t, newKid, body, webhookNow), body), lifecycle.CodeUnavailable, "could not fetch")

	// A cached key outlives an outage for a grace period past its TTL...
	p.Fake.FailAlways(plaidfake.PathWebhookVerificationKey, 503, "API_ERROR", "PLANNED_MAINTENANCE")
	p.Clock.Advance(90 * time.Minute)
	if err := p.Verifier.Verify(ctx, p.Sign(t, p.KeyID, body, p.Clock.Now()), body); err != nil {
		t.Fatalf("Verify with a stale key during an outage: %v", err)
	}
	// ...but not forever.
	p.Clock.Advance(31 * time.Minute)
	wantRefusal(t, p.Verifier.Verify(ctx, p.Sign(t, p.KeyID, body, p.Clock.Now()), body), lifecycle.CodeUnavailable, "")
}

func TestVerifyWebhookCancelled(t *testing.T) {
	t.Parallel()
	p := newWebhookPlaid(t)
	p.Fake.SetLatency(time.Minute)
	body := []byte(`{}`)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	wantRefusal(t, p.Verifier.Verify(ctx, p.Sign(t, p.KeyID, body, webhookNow), body), lifecycle.CodeUnavailable, "")
}

func TestParseWebhook(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want *lifecycle.Webhook
	}{
		{
			name: "item error",
			body: `{"webhook_type": "ITEM", "webhook_code": "ERROR", "item_id": "wz666MBjYWTp2PDzzggYhM6oWWmBb",
				"error": {"display_message": null, "error_code": "ITEM_LOGIN_REQUIRED", "error_message": "the login details of this item have changed",
				"error_type": "ITEM_ERROR", "status": 400}, "environment": "production"}`,
			want: &lifecycle.Webhook{Type: "ITEM", Code: "ERROR", ItemID: "wz666MBjYWTp2PDzzggYhM6oWWmBb", Environment: "production",
				Error: &lifecycle.WebhookError{ErrorType: "ITEM_ERROR", ErrorCode: "ITEM_LOGIN_REQUIRED", ErrorMessage: "the login details of this item have changed"}},
		},
		{
			name: "null error, unknown fields",
			body: `{"webhook_type": "ITEM", "webhook_code": "PENDING_EXPIRATION", "item_id": "i", "error": null, "consent_expiration_time": "2026-04-01T00:00:00Z"}`,
			want: &lifecycle.Webhook{Type: "ITEM", Code: "PENDING_EXPIRATION", ItemID: "i"},
		},
		{name: "not JSON", body: `webhook_type=ITEM`},
		{name: "truncated", body: `{"webhook_type": "ITEM"`},
		{name: "array", body: `[]`},
		{name: "null", body: `null`},
		{name: "no webhook_type", body: `{"item_id": "i"}`},
		{name: "wrong field type", body: `{"webhook_type": "ITEM", "item_id": 7}`},
		{name: "empty", body: ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := lifecycle.ParseWebhook([]byte(tt.body))
			if tt.want == nil {
				if !lifecycle.IsCode(err, lifecycle.CodeInvalid) {
					t.Fatalf("ParseWebhook = %+v, %v; want a %s error", got, err, lifecycle.CodeInvalid)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseWebhook: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseWebhook (-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseWebhook(f *testing.F) {
	for _, seed := range []string{
		`{"webhook_type":"ITEM","webhook_code":"ERROR","item_id":"i","error":{"error_type":"ITEM_ERROR","error_code":"ITEM_NOT_FOUND","error_message":"m"},"environment":"sandbox"}`,
		`{"webhook_type":"ITEM","webhook_code":"USER_PERMISSION_REVOKED","item_id":"i","error":null}`,
		`{"webhook_type":"TRANSACTIONS","webhook_code":"DEFAULT_UPDATE","new_transactions":3}`,
		`{"webhook_type":1}`, `null`, `[]`, `{`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		wh, err := lifecycle.ParseWebhook(body)
		switch {
		case err != nil && !lifecycle.IsCode(err, lifecycle.CodeInvalid):
			t.Fatalf("ParseWebhook error %v is not %s", err, lifecycle.CodeInvalid)
		case err == nil && (wh == nil || wh.Type == ""):
			t.Fatalf("ParseWebhook accepted %q without a webhook_type", body)
		}
	})
}

// stubKeys is a PlaidAPI serving one webhook key from memory, for fuzzing
// without a network.
type stubKeys struct {
	lifecycle.PlaidAPI // nil: only WebhookVerificationKey is called
	kid                string
	key                *lifecycle.WebhookKey
}

func (s stubKeys) WebhookVerificationKey(_ context.Context, kid string) (*lifecycle.WebhookKey, error) {
	if kid != s.kid {
		return nil, &lifecycle.PlaidError{Class: lifecycle.ClassConfig, Type: "INVALID_INPUT", Code: "INVALID_WEBHOOK_VERIFICATION_KEY_ID", Status: 400}
	}
	return s.key, nil
}

func FuzzVerifyWebhook(f *testing.F) {
	fake := plaidfake.NewServer(plaidfake.DefaultClientID, plaidfake.DefaultSecret)
	defer fake.Close()
	kid := fake.NewWebhookKey()
	client, err := lifecycle.NewPlaidClient(lifecycle.PlaidClientConfig{PlaidSettings: lifecycle.PlaidSettings{PlaidClientID: plaidfake.DefaultClientID, PlaidSecret: plaidfake.DefaultSecret, PlaidEnv: "sandbox", PlaidBaseURL: fake.URL()}})
	if err != nil {
		f.Fatal(err)
	}
	jwk, err := client.WebhookVerificationKey(context.Background(), kid)
	if err != nil {
		f.Fatal(err)
	}
	priv, _ := fake.WebhookSigningKey(kid)
	verifier := lifecycle.NewWebhookVerifier(stubKeys{kid: kid, key: jwk}, nil, testenv.NewClock(webhookNow))

	body := []byte(`{"webhook_type":"ITEM","webhook_code":"ERROR","item_id":"i"}`)
	valid, err := fake.SignWebhook(kid, body, webhookNow)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, body)
	f.Add(valid, []byte(`{}`))
	f.Add(testenv.ForgeWebhookJWT(f, jwt.SigningMethodHS256, []byte("k"), kid, testenv.WebhookClaims(body, webhookNow)), body)
	f.Add(testenv.ForgeWebhookJWT(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid, testenv.WebhookClaims(body, webhookNow)), body)
	f.Add(testenv.ForgeWebhookJWT(f, jwt.SigningMethodES256, priv, "", testenv.WebhookClaims(body, webhookNow)), body)
	f.Add(testenv.ForgeWebhookJWT(f, jwt.SigningMethodES256, priv, kid, jwt.MapClaims{"iat": "yesterday", "request_body_sha256": 5}), body)
	f.Add("eyJhbGciOiJFUzI1NiJ9..", body)
	f.Add("", body)

	f.Fuzz(func(t *testing.T, header string, body []byte) {
		err := verifier.Verify(context.Background(), header, body)
		if err == nil {
			return
		}
		if c := lifecycle.ErrorCode(err); c != lifecycle.CodeUnauthorized && c != lifecycle.CodeUnavailable {
			t.Fatalf("Verify error %v has code %s", err, c)
		}
	})
}

// webhookToken is an active token with an unresolved Plaid error, as a
// webhook finds it.
func webhookToken(itemID string, status lifecycle.Status, errorCode string, plaidRemoved bool) *lifecycle.Token {
	tok := sampleToken(itemID, "user-"+itemID)
	tok.Status, tok.ErrorCode, tok.PlaidRemoved = status, errorCode, plaidRemoved
	return tok
}

// webhookService is a lifecycle.Service over store (and run store runs,
// for the audit), on clock.
func webhookService(t *testing.T, store lifecycle.TokenStore, runs lifecycle.RunStore, clock lifecycle.Clock) *lifecycle.Service {
	t.Helper()
	svc, err := lifecycle.NewService(lifecycle.Config{PlaidSettings: lifecycle.PlaidSettings{PlaidEnv: "sandbox"}}, lifecycle.Deps{Tokens: store, Runs: runs,
		Plaid: stubKeys{}, Cipher: plainCipher{}, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestApplyWebhook(t *testing.T) {
	t.Parallel()
	client := emulator.NewClient(t)
	store, runs := lifecycle.NewFirestoreTokenStore(client), lifecycle.NewFirestoreRunStore(client)
	now := webhookNow
	const (
		active  = lifecycle.StatusActive
		expired = lifecycle.StatusExpired
		revoked = lifecycle.StatusRevoked
	)
	tests := []struct {
		name      string
		start     *lifecycle.Token // nil: no document
		code      string           // webhook_code of an ITEM webhook
		errorCode string           // its error.error_code
		webhook   *lifecycle.Webhook
		// edit turns the start document into the one wanted after.
		edit    func(*lifecycle.Token)
		action  lifecycle.WebhookAction
		changed bool
	}{
		{
			name: "ERROR ITEM_LOGIN_REQUIRED sets error_code", start: webhookToken("a", active, "", false),
			code: "ERROR", errorCode: "ITEM_LOGIN_REQUIRED",
			edit:   func(t *lifecycle.Token) { t.ErrorCode, t.LastValidatedAt = "ITEM_LOGIN_REQUIRED", now },
			action: lifecycle.WebhookErrorCodeSet, changed: true,
		},
		{
			name: "ERROR replaces a previous error_code", start: webhookToken("a", active, "PENDING_EXPIRATION", false),
			code: "ERROR", errorCode: "ITEM_LOCKED",
			edit:   func(t *lifecycle.Token) { t.ErrorCode, t.LastValidatedAt = "ITEM_LOCKED", now },
			action: lifecycle.WebhookErrorCodeSet, changed: true,
		},
		{
			name: "ERROR ITEM_NOT_FOUND expires the token", start: webhookToken("a", active, "", false),
			code: "ERROR", errorCode: "ITEM_NOT_FOUND",
			edit: func(t *lifecycle.Token) {
				t.Status, t.ErrorCode, t.UpdatedAt, t.LastValidatedAt = expired, "ITEM_NOT_FOUND", now, now
			},
			action: lifecycle.WebhookExpired, changed: true,
		},
		{
			name: "ERROR INVALID_ACCESS_TOKEN expires the token", start: webhookToken("a", active, "ITEM_LOGIN_REQUIRED", false),
			code: "ERROR", errorCode: "INVALID_ACCESS_TOKEN",
			edit: func(t *lifecycle.Token) {
				t.Status, t.ErrorCode, t.UpdatedAt, t.LastValidatedAt = expired, "INVALID_ACCESS_TOKEN", now, now
			},
			action: lifecycle.WebhookExpired, changed: true,
		},
		{
			name: "ERROR USER_PERMISSION_REVOKED expires the token", start: webhookToken("a", active, "", false),
			code: "ERROR", errorCode: "USER_PERMISSION_REVOKED",
			edit: func(t *lifecycle.Token) {
				t.Status, t.ErrorCode, t.UpdatedAt, t.LastValidatedAt = expired, "USER_PERMISSION_REVOKED", now, now
			},
			action: lifecycle.WebhookExpired, changed: true,
		},
		{
			name: "PENDING_EXPIRATION", start: webhookToken("a", active, "", false), code: "PENDING_EXPIRATION",
			edit:   func(t *lifecycle.Token) { t.ErrorCode, t.LastValidatedAt = "PENDING_EXPIRATION", now },
			action: lifecycle.WebhookErrorCodeSet, changed: true,
		},
		{
			name: "PENDING_DISCONNECT", start: webhookToken("a", active, "", false), code: "PENDING_DISCONNECT",
			edit:   func(t *lifecycle.Token) { t.ErrorCode, t.LastValidatedAt = "PENDING_DISCONNECT", now },
			action: lifecycle.WebhookErrorCodeSet, changed: true,
		},
		{
			// Consent withdrawn does not remove the Item at Plaid: it stays
			// billed until cleanup (or an early removal) calls /item/remove.
			name: "USER_PERMISSION_REVOKED revokes, the Item still to be removed", start: webhookToken("a", active, "", false),
			code: "USER_PERMISSION_REVOKED",
			edit: func(t *lifecycle.Token) {
				t.Status, t.PlaidRemoved, t.UpdatedAt, t.LastValidatedAt = revoked, false, now, now
			},
			action: lifecycle.WebhookRevoked, changed: true,
		},
		{
			// One account's access withdrawn: the Item works, and update
			// mode grants it again.
			name: "USER_ACCOUNT_REVOKED sets error_code", start: webhookToken("a", active, "ITEM_LOGIN_REQUIRED", false),
			code:   "USER_ACCOUNT_REVOKED",
			edit:   func(t *lifecycle.Token) { t.ErrorCode, t.LastValidatedAt = "USER_ACCOUNT_REVOKED", now },
			action: lifecycle.WebhookErrorCodeSet, changed: true,
		},
		{
			name: "USER_PERMISSION_REVOKED moves an expired token on to revoked", start: webhookToken("a", expired, "ITEM_NOT_FOUND", false),
			code:   "USER_PERMISSION_REVOKED",
			edit:   func(t *lifecycle.Token) { t.Status, t.UpdatedAt = revoked, now },
			action: lifecycle.WebhookRevoked, changed: true,
		},
		{
			name:  "USER_PERMISSION_REVOKED leaves a revoked token as it is",
			start: webhookToken("a", revoked, "", false), code: "USER_PERMISSION_REVOKED",
			action: lifecycle.WebhookRevoked,
		},
		{
			name:  "USER_ACCOUNT_REVOKED leaves a revoked token",
			start: webhookToken("a", revoked, "", false), code: "USER_ACCOUNT_REVOKED",
			action: lifecycle.WebhookIgnored,
		},
		{
			// DESIGN §7 rule 0: another environment's Item is not ours.
			name: "a webhook of another environment is acknowledged, not acted on", start: webhookToken("a", active, "", false),
			webhook: &lifecycle.Webhook{Type: "ITEM", Code: "ERROR", Environment: "production",
				Error: &lifecycle.WebhookError{ErrorType: "ITEM_ERROR", ErrorCode: "ITEM_NOT_FOUND"}},
			action: lifecycle.WebhookAcknowledged,
		},
		{
			name: "LOGIN_REPAIRED clears error_code", start: webhookToken("a", active, "ITEM_LOGIN_REQUIRED", false), code: "LOGIN_REPAIRED",
			edit:   func(t *lifecycle.Token) { t.ErrorCode, t.LastValidatedAt = "", now },
			action: lifecycle.WebhookErrorCodeCleared, changed: true,
		},
		{
			name: "LOGIN_REPAIRED without an error", start: webhookToken("a", active, "", false), code: "LOGIN_REPAIRED",
			action: lifecycle.WebhookErrorCodeCleared,
		},
		{
			name: "NEW_ACCOUNTS_AVAILABLE is acknowledged", start: webhookToken("a", active, "ITEM_LOGIN_REQUIRED", false), code: "NEW_ACCOUNTS_AVAILABLE",
			action: lifecycle.WebhookAcknowledged,
		},
		{
			name: "WEBHOOK_UPDATE_ACKNOWLEDGED is acknowledged", start: webhookToken("a", active, "", false), code: "WEBHOOK_UPDATE_ACKNOWLEDGED",
			action: lifecycle.WebhookAcknowledged,
		},
		{
			name: "other webhook types are acknowledged", start: webhookToken("a", active, "", false),
			webhook: &lifecycle.Webhook{Type: "TRANSACTIONS", Code: "ERROR", ItemID: "a", Error: &lifecycle.WebhookError{ErrorCode: "ITEM_NOT_FOUND"}},
			action:  lifecycle.WebhookAcknowledged,
		},
		{
			name: "a revoked token is not expired by ERROR", start: webhookToken("a", revoked, "", true),
			code: "ERROR", errorCode: "ITEM_NOT_FOUND", action: lifecycle.WebhookIgnored,
		},
		{
			name: "a revoked token gets no error_code", start: webhookToken("a", revoked, "", true),
			code: "ERROR", errorCode: "ITEM_LOGIN_REQUIRED", action: lifecycle.WebhookIgnored,
		},
		{
			name: "LOGIN_REPAIRED does not revive a revoked token", start: webhookToken("a", revoked, "ITEM_LOGIN_REQUIRED", true),
			code: "LOGIN_REPAIRED", action: lifecycle.WebhookIgnored,
		},
		{
			name: "PENDING_EXPIRATION leaves a revoked token", start: webhookToken("a", revoked, "", true),
			code: "PENDING_EXPIRATION", action: lifecycle.WebhookIgnored,
		},
		{
			name: "an expired token stays expired", start: webhookToken("a", expired, "ITEM_NOT_FOUND", false),
			code: "ERROR", errorCode: "INVALID_ACCESS_TOKEN", action: lifecycle.WebhookExpired,
		},
		{
			name: "LOGIN_REPAIRED leaves an expired token", start: webhookToken("a", expired, "ITEM_NOT_FOUND", false),
			code: "LOGIN_REPAIRED", action: lifecycle.WebhookIgnored,
		},
		{
			name: "an already revoked token is left as it is", start: webhookToken("a", revoked, "", true),
			code: "USER_PERMISSION_REVOKED", action: lifecycle.WebhookRevoked,
		},
		{
			name: "ERROR without an error object is acknowledged", start: webhookToken("a", active, "", false),
			code: "ERROR", action: lifecycle.WebhookAcknowledged,
		},
		{
			name: "unknown item", code: "USER_PERMISSION_REVOKED", action: lifecycle.WebhookUnknownItem,
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			itemID := fmt.Sprintf("item-apply-%02d", i)
			var want *lifecycle.Token
			if tt.start != nil {
				tok := *tt.start
				tok.ItemID, tok.UserID = itemID, "user-"+itemID
				if err := store.Create(ctx, &tok); err != nil {
					t.Fatalf("Create: %v", err)
				}
				w := tok
				if tt.edit != nil {
					tt.edit(&w)
				}
				want = &w
			}
			wh := tt.webhook
			if wh == nil {
				var err error
				if wh, err = lifecycle.ParseWebhook(itemWebhookBody(t, tt.code, itemID, tt.errorCode)); err != nil {
					t.Fatal(err)
				}
			}
			wh.ItemID = itemID

			clock := testenv.NewClock(now)
			svc := webhookService(t, store, runs, clock)
			res, err := svc.ApplyWebhook(ctx, wh)
			if err != nil {
				t.Fatalf("ApplyWebhook: %v", err)
			}
			wantRes := lifecycle.WebhookResult{ItemID: itemID, Type: wh.Type, Code: wh.Code, Action: tt.action, Changed: tt.changed}
			if diff := cmp.Diff(wantRes, res); diff != "" {
				t.Errorf("ApplyWebhook result (-want +got):\n%s", diff)
			}
			checkToken(t, store, itemID, want)

			// Plaid delivers webhooks at least once: a replay, even later,
			// changes nothing more.
			clock.Advance(time.Hour)
			res, err = svc.ApplyWebhook(ctx, wh)
			if err != nil {
				t.Fatalf("replayed ApplyWebhook: %v", err)
			}
			wantRes.Changed = false
			if diff := cmp.Diff(wantRes, res); diff != "" {
				t.Errorf("replayed ApplyWebhook result (-want +got):\n%s", diff)
			}
			checkToken(t, store, itemID, want)
		})
	}
}

// checkToken compares the stored document of itemID with want (nil: no
// document).
func checkToken(t *testing.T, store lifecycle.TokenStore, itemID string, want *lifecycle.Token) {
	t.Helper()
	got, err := store.Get(context.Background(), itemID)
	if want == nil {
		if !errors.Is(err, lifecycle.ErrNotFound) {
			t.Fatalf("Get(%s) = %+v, %v; want no document", itemID, got, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Get(%s): %v", itemID, err)
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(lifecycle.Token{}, "Version")); diff != "" {
		t.Errorf("document %s (-want +got):\n%s", itemID, diff)
	}
}

func TestApplyWebhookUnknownItemIsLogged(t *testing.T) {
	t.Parallel()
	client := emulator.NewClient(t)
	store := lifecycle.NewFirestoreTokenStore(client)
	var logs bytes.Buffer
	ctx := lifecycle.WithLogger(context.Background(), lifecycle.NewJSONLogger(&logs, nil))
	wh := &lifecycle.Webhook{Type: "ITEM", Code: "ERROR", ItemID: "item-billed-but-unknown",
		Error: &lifecycle.WebhookError{ErrorType: "ITEM_ERROR", ErrorCode: "ITEM_LOGIN_REQUIRED"}}
	res, err := webhookService(t, store, lifecycle.NewFirestoreRunStore(client), testenv.NewClock(webhookNow)).ApplyWebhook(ctx, wh)
	if err != nil || res.Action != lifecycle.WebhookUnknownItem {
		t.Fatalf("ApplyWebhook = %+v, %v; want action %s", res, err, lifecycle.WebhookUnknownItem)
	}
	checkToken(t, store, wh.ItemID, nil)

	var line struct {
		Severity string `json:"severity"`
		Message  string `json:"message"`
		ItemID   string `json:"item_id"`
	}
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("log %q: %v", logs.String(), err)
	}
	want := struct{ Severity, Message, ItemID string }{"WARNING", "verified webhook for unknown item", wh.ItemID}
	if diff := cmp.Diff(want, struct{ Severity, Message, ItemID string }(line)); diff != "" {
		t.Errorf("log line (-want +got):\n%s", diff)
	}
}

// racingStore revokes the token between ApplyWebhook's read and its write,
// as a user revoking the Item at the same moment would.
type racingStore struct {
	*lifecycle.FirestoreTokenStore
	once sync.Once
}

func (s *racingStore) Get(ctx context.Context, itemID string) (*lifecycle.Token, error) {
	tok, err := s.FirestoreTokenStore.Get(ctx, itemID)
	s.once.Do(func() {
		_, uerr := s.FirestoreTokenStore.Update(ctx, itemID, lifecycle.Patch{
			Status: new(lifecycle.StatusRevoked), PlaidRemoved: new(true),
		}, time.Time{})
		if uerr != nil {
			err = uerr
		}
	})
	return tok, err
}

func TestApplyWebhookDoesNotOverwriteAConcurrentRevocation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	client := emulator.NewClient(t)
	store := &racingStore{FirestoreTokenStore: lifecycle.NewFirestoreTokenStore(client)}
	tok := webhookToken("item-racing", lifecycle.StatusActive, "", false)
	if err := store.Create(ctx, tok); err != nil {
		t.Fatal(err)
	}
	wh := &lifecycle.Webhook{Type: "ITEM", Code: "ERROR", ItemID: tok.ItemID,
		Error: &lifecycle.WebhookError{ErrorType: "ITEM_ERROR", ErrorCode: "ITEM_NOT_FOUND"}}
	res, err := webhookService(t, store, lifecycle.NewFirestoreRunStore(client), testenv.NewClock(webhookNow)).ApplyWebhook(ctx, wh)
	if err != nil {
		t.Fatalf("ApplyWebhook: %v", err)
	}
	if res.Action != lifecycle.WebhookIgnored || res.Changed {
		t.Errorf("ApplyWebhook = %+v, want action %s, unchanged", res, lifecycle.WebhookIgnored)
	}
	want := *tok
	want.Status, want.PlaidRemoved = lifecycle.StatusRevoked, true
	checkToken(t, store.FirestoreTokenStore, tok.ItemID, &want)
}
