package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// WebhookPlaid is what webhook tests need: a fake Plaid serving one webhook
// key, the real plaid-go adapter pointed at it, and a verifier using both
// (and keys, when given) on a settable clock.
type WebhookPlaid struct {
	Fake     *plaidfake.Server
	KeyID    string
	Clock    *Clock
	Verifier *lifecycle.WebhookVerifier
}

// NewWebhookPlaid builds a WebhookPlaid at now; keys may be nil.
func NewWebhookPlaid(t testing.TB, now time.Time, keys lifecycle.WebhookKeyStore) *WebhookPlaid {
	t.Helper()
	fake := plaidfake.New(t)
	clock := NewClock(now)
	return &WebhookPlaid{
		Fake:     fake,
		KeyID:    fake.NewWebhookKey(),
		Clock:    clock,
		Verifier: lifecycle.NewWebhookVerifier(NewWebhookPlaidClient(t, fake), keys, clock),
	}
}

// Sign returns the Plaid-Verification header the fake Plaid sends with body
// at iat, signed by kid.
func (p *WebhookPlaid) Sign(t testing.TB, kid string, body []byte, iat time.Time) string {
	t.Helper()
	h, err := p.Fake.SignWebhook(kid, body, iat)
	if err != nil {
		t.Fatalf("SignWebhook: %v", err)
	}
	return h
}

// KeyFetches is how many key lookups reached the fake Plaid.
func (p *WebhookPlaid) KeyFetches() int {
	return p.Fake.CallCount(plaidfake.PathWebhookVerificationKey)
}

// ForgeWebhookJWT signs claims with any method and key, with kid in the
// header unless it is empty: the forgeries Plaid never sends.
func ForgeWebhookJWT(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing %s JWT: %v", method.Alg(), err)
	}
	return s
}

// WebhookClaims are the claims Plaid signs for body at iat.
func WebhookClaims(body []byte, iat time.Time) jwt.MapClaims {
	sum := sha256.Sum256(body)
	return jwt.MapClaims{"iat": iat.Unix(), "request_body_sha256": hex.EncodeToString(sum[:])}
}

// NewWebhookPlaidClient returns the real plaid-go adapter speaking to fake
// as webhook verification tests need it: webhook key lookups are not paced
// (the verifier's own bound on them is under test) and a failed call is not
// retried (an outage must fail fast, not back off).
func NewWebhookPlaidClient(t testing.TB, fake *plaidfake.Server) *lifecycle.PlaidClient {
	t.Helper()
	client, err := lifecycle.NewPlaidClient(lifecycle.PlaidClientConfig{
		PlaidSettings: lifecycle.PlaidSettings{PlaidClientID: fake.ClientID, PlaidSecret: fake.Secret, PlaidEnv: "sandbox", PlaidBaseURL: fake.URL()},
		WebhookKeyRPM: 60000,
		MaxAttempts:   1,
	})
	if err != nil {
		t.Fatalf("NewPlaidClient: %v", err)
	}
	return client
}
