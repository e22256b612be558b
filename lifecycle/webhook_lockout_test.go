package lifecycle_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// countingKeyStore counts the reads of the shared webhook key store.
type countingKeyStore struct {
	lifecycle.WebhookKeyStore
	reads atomic.Int64
}

func (s *countingKeyStore) WebhookKeys(ctx context.Context) ([]lifecycle.StoredWebhookKey, error) {
	s.reads.Add(1)
	return s.WebhookKeyStore.WebhookKeys(ctx)
}

// forgeFlood sends n webhooks signed by a forger under made-up kids, at
// once, and checks each is refused.
func forgeFlood(t *testing.T, v *lifecycle.WebhookVerifier, now time.Time, n int) {
	t.Helper()
	forger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"webhook_type":"ITEM"}`)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			kid := fmt.Sprintf("forged-%d-%s", i, rand.Text())
			h := testenv.ForgeWebhookJWT(t, jwt.SigningMethodES256, forger, kid, testenv.WebhookClaims(body, now))
			if err := v.Verify(context.Background(), h, body); err == nil {
				t.Error("a forged webhook verified")
			}
		})
	}
	wg.Wait()
}

// After a quiet spell longer than a key's TTL and grace, forged kids that
// drain the unknown kids' lookup budget must not keep a genuine webhook out:
// a kid Plaid ever vouched for is refreshed within the refresh budget only,
// on an old instance (memory) and on a new one (the shared store). Forged
// kids cost no Firestore read each.
func TestVerifyWebhookKnownKeyAfterQuietSpellUnderFlood(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := &countingKeyStore{WebhookKeyStore: lifecycle.NewFirestoreWebhookKeyStore(emulator.NewClient(t))}
	p := testenv.NewWebhookPlaid(t, webhookNow, store)
	body := itemWebhookBody(t, "PENDING_EXPIRATION", "item-1", "")
	if err := p.Verifier.Verify(ctx, p.Sign(t, p.KeyID, body, p.Clock.Now()), body); err != nil {
		t.Fatalf("first genuine webhook: %v", err)
	}

	p.Clock.Advance(2*time.Hour + time.Minute) // past TTL and grace
	readsBefore := store.reads.Load()
	forgeFlood(t, p.Verifier, p.Clock.Now(), 100)
	if reads := store.reads.Load() - readsBefore; reads > 1 {
		t.Errorf("100 forged kids read the key store %d times, want at most once a minute", reads)
	}
	if err := p.Verifier.Verify(ctx, p.Sign(t, p.KeyID, body, p.Clock.Now()), body); err != nil {
		t.Fatalf("genuine webhook after two quiet hours and a flood (old instance): %v", err)
	}

	// A new instance, the store's copy of the key two hours old.
	p.Clock.Advance(2*time.Hour + time.Minute)
	fresh := lifecycle.NewWebhookVerifier(testenv.NewWebhookPlaidClient(t, p.Fake), store, p.Clock)
	forgeFlood(t, fresh, p.Clock.Now(), 100)
	if err := fresh.Verify(ctx, p.Sign(t, p.KeyID, body, p.Clock.Now()), body); err != nil {
		t.Fatalf("genuine webhook after two quiet hours and a flood (new instance): %v", err)
	}
}

// A refresh the refresh budget refuses keeps a known key verifying: several
// known keys stale at once (Plaid rotating) spend the budget, and the last
// one must not be locked out for it.
func TestVerifyWebhookRefusedRefreshIsNoLockOut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newWebhookPlaid(t)
	kids := []string{p.KeyID, p.Fake.NewWebhookKey(), p.Fake.NewWebhookKey()}
	body := itemWebhookBody(t, "LOGIN_REPAIRED", "item-1", "")
	for _, kid := range kids {
		if err := p.Verifier.Verify(ctx, p.Sign(t, kid, body, p.Clock.Now()), body); err != nil {
			t.Fatalf("first webhook of %s: %v", kid, err)
		}
	}
	p.Clock.Advance(3 * time.Hour)               // all three stale, past any grace
	forgeFlood(t, p.Verifier, p.Clock.Now(), 50) // and the unknown kids' budget spent
	before := len(p.Fake.Calls())
	for _, kid := range kids {
		if err := p.Verifier.Verify(ctx, p.Sign(t, kid, body, p.Clock.Now()), body); err != nil {
			t.Errorf("genuine webhook with %s past its TTL: %v", kid, err)
		}
	}
	var refreshed []string
	for _, c := range p.Fake.Calls()[before:] {
		if c.Path == plaidfake.PathWebhookVerificationKey {
			refreshed = append(refreshed, c.KeyID)
		}
	}
	// The refresh budget's burst: two refreshed, the third verified with
	// the key Plaid vouched for.
	if len(refreshed) != 2 || refreshed[0] != kids[0] || refreshed[1] != kids[1] {
		t.Errorf("refreshes = %v, want the first two kids only", refreshed)
	}
}
