package lifecycle_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

const (
	oldEncryptionKey     = "reencrypt-test-old-key"
	retiredEncryptionKey = "reencrypt-test-retired-key" // in no vault of the service
)

func reencryptVault(t *testing.T, current string, previous ...string) *lifecycle.Vault {
	t.Helper()
	v, err := lifecycle.NewVault(current, previous, "")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// rotatedEnv is a test environment midway through a key rotation: its
// service encrypts with testenv.EncryptionKey and still decrypts
// oldEncryptionKey. store, when set, stands between the service and
// Firestore.
func rotatedEnv(t *testing.T, store lifecycle.TokenStore) (*testenv.Env, *lifecycle.Service, *lifecycle.Vault) {
	t.Helper()
	env := testenv.New(t)
	vault := reencryptVault(t, testenv.EncryptionKey, oldEncryptionKey)
	if store == nil {
		store = env.Tokens
	}
	svc, err := lifecycle.NewService(env.Config, lifecycle.Deps{Tokens: store, Runs: env.Runs, Plaid: env.Adapter, Cipher: vault, Clock: env.Clock})
	if err != nil {
		t.Fatal(err)
	}
	return env, svc, vault
}

// seedEncrypted stores tokens encrypted by cipher.
func seedEncrypted(t *testing.T, env *testenv.Env, cipher lifecycle.TokenCipher, tokens ...sample.Token) {
	t.Helper()
	if err := sample.Seed(context.Background(), env.Tokens, cipher, tokens); err != nil {
		t.Fatal(err)
	}
}

// seedPlaintext stores a token as the old service left some: plaintext.
func seedPlaintext(t *testing.T, env *testenv.Env, tok sample.Token) {
	t.Helper()
	doc := tok.Token
	doc.AccessToken = tok.Plaintext
	if err := env.Tokens.Create(context.Background(), &doc); err != nil {
		t.Fatal(err)
	}
}

func TestReencrypt(t *testing.T) {
	t.Parallel()
	env, svc, vault := rotatedEnv(t, nil)
	ctx := context.Background()

	var old []sample.Token
	for _, id := range []string{"item-old-1", "item-old-2", "item-old-3"} {
		old = append(old, testenv.ActiveToken(id, "user-a", 3))
	}
	current := testenv.ActiveToken("item-current", "user-a", 3)
	plain := testenv.ActiveToken("item-plain", "user-b", 3)
	retired := testenv.ActiveToken("item-retired", "user-b", 3)
	seedEncrypted(t, env, reencryptVault(t, oldEncryptionKey), old...)
	seedEncrypted(t, env, vault, current)
	seedPlaintext(t, env, plain)
	seedEncrypted(t, env, reencryptVault(t, retiredEncryptionKey), retired)
	all := append(append([]sample.Token{}, old...), current, plain, retired)
	// A legacy per-user document not migrated yet is not a token: the run
	// does not even see it (migrate-legacy carries it over first).
	putMigrateDoc(t, env, lifecycle.TokensCollection, "user-legacy", map[string]any{"items": map[string]any{
		"item-legacy": legacyItem("item-legacy", "user-legacy", "access-sandbox-legacy", "active")}})

	before := map[string]*lifecycle.Token{}
	for _, tok := range all {
		before[tok.ItemID] = env.Doc(t, tok.ItemID)
	}
	ignoreFailures := cmpopts.IgnoreFields(lifecycle.ReencryptReport{}, "Failures")
	want := &lifecycle.ReencryptReport{DryRun: true, KeyID: vault.CurrentKeyID(), Checked: 6, Reencrypted: 4,
		Plaintext: 1, AlreadyCurrent: 1, Failed: 1}

	// Dry run: the same counts, nothing written.
	got, err := svc.Reencrypt(ctx, lifecycle.ReencryptOptions{DryRun: true})
	if err != nil {
		t.Fatalf("Reencrypt dry run: %v", err)
	}
	if diff := cmp.Diff(want, got, ignoreFailures); diff != "" {
		t.Errorf("dry run report (-want +got):\n%s", diff)
	}
	for _, tok := range all {
		if after := env.Doc(t, tok.ItemID); !after.Version.Equal(before[tok.ItemID].Version) {
			t.Errorf("dry run wrote %s", tok.ItemID)
		}
	}

	var pages int
	got, err = svc.Reencrypt(ctx, lifecycle.ReencryptOptions{Progress: func(lifecycle.ReencryptReport) { pages++ }})
	if err != nil {
		t.Fatalf("Reencrypt: %v", err)
	}
	want.DryRun = false
	if diff := cmp.Diff(want, got, ignoreFailures); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	if pages == 0 {
		t.Error("Progress never called")
	}
	// The failure names the item, never a token.
	if len(got.Failures) != 1 || got.Failures[0].ItemID != "item-retired" || got.Failures[0].Error == "" {
		t.Errorf("failures = %+v, want item-retired's", got.Failures)
	}

	for _, tok := range all {
		after := env.Doc(t, tok.ItemID)
		if tok.ItemID == "item-retired" {
			if after.AccessToken != before[tok.ItemID].AccessToken {
				t.Error("undecryptable token was rewritten")
			}
			continue
		}
		if vault.NeedsReencrypt(after.AccessToken) {
			t.Errorf("%s still needs re-encryption", tok.ItemID)
		}
		if p, err := vault.Decrypt(tok.ItemID, after.AccessToken); err != nil || p != tok.Plaintext {
			t.Errorf("%s decrypts to %q, %v; want %q", tok.ItemID, p, err, tok.Plaintext)
		}
		// Re-encryption is not a use: the token's dates are untouched.
		b := before[tok.ItemID]
		if !after.UpdatedAt.Equal(b.UpdatedAt) || !after.LastUsedAt.Equal(b.LastUsedAt) {
			t.Errorf("%s dates changed: updated_at %v → %v, last_used_at %v → %v",
				tok.ItemID, b.UpdatedAt, after.UpdatedAt, b.LastUsedAt, after.LastUsedAt)
		}
		if tok.ItemID == "item-current" && !after.Version.Equal(b.Version) {
			t.Error("token already under the current key was rewritten")
		}
	}

	// The old key can now be retired: a vault without it reads every token.
	newOnly := reencryptVault(t, testenv.EncryptionKey)
	for _, tok := range all[:5] {
		if _, err := newOnly.Decrypt(tok.ItemID, env.Doc(t, tok.ItemID).AccessToken); err != nil {
			t.Errorf("%s needs the old key still: %v", tok.ItemID, err)
		}
	}

	// A second run has nothing left to move.
	got, err = svc.Reencrypt(ctx, lifecycle.ReencryptOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want = &lifecycle.ReencryptReport{KeyID: vault.CurrentKeyID(), Checked: 6, AlreadyCurrent: 5, Failed: 1}
	if diff := cmp.Diff(want, got, ignoreFailures); diff != "" {
		t.Errorf("second run (-want +got):\n%s", diff)
	}
}

// touchingStore uses each token (bumps last_used_at) just before the
// service's first write to it, as the app may at any time.
type touchingStore struct {
	lifecycle.TokenStore
	mu      sync.Mutex
	touched map[string]bool
}

func (s *touchingStore) Update(ctx context.Context, itemID string, p lifecycle.Patch, ifVersion time.Time) (time.Time, error) {
	if err := s.touch(ctx, itemID); err != nil {
		return time.Time{}, err
	}
	return s.TokenStore.Update(ctx, itemID, p, ifVersion)
}

func (s *touchingStore) Apply(ctx context.Context, writes []lifecycle.Write) []error {
	for _, w := range writes {
		if err := s.touch(ctx, w.ItemID); err != nil {
			errs := make([]error, len(writes))
			for i := range errs {
				errs[i] = err
			}
			return errs
		}
	}
	return s.TokenStore.Apply(ctx, writes)
}

// touch bumps last_used_at of itemID the first time it is written.
func (s *touchingStore) touch(ctx context.Context, itemID string) error {
	s.mu.Lock()
	first := !s.touched[itemID]
	s.touched[itemID] = true
	s.mu.Unlock()
	if !first {
		return nil
	}
	_, err := s.TokenStore.Update(ctx, itemID, lifecycle.Patch{LastUsedAt: new(testenv.Now)}, time.Time{})
	return err
}

// TestReencryptRetriesChangedDocument: a token used between the read and
// the write is read again and re-encrypted, and the use is kept.
func TestReencryptRetriesChangedDocument(t *testing.T) {
	t.Parallel()
	store := &touchingStore{touched: map[string]bool{}}
	env, svc, vault := rotatedEnv(t, store)
	store.TokenStore = env.Tokens
	tok := testenv.ActiveToken("item-busy", "user-a", 10)
	seedEncrypted(t, env, reencryptVault(t, oldEncryptionKey), tok)

	got, err := svc.Reencrypt(context.Background(), lifecycle.ReencryptOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Reencrypted != 1 || got.Failed != 0 {
		t.Errorf("report = %+v, want 1 re-encrypted", got)
	}
	after := env.Doc(t, "item-busy")
	if !after.LastUsedAt.Equal(testenv.Now) {
		t.Errorf("last_used_at = %v, want the concurrent use %v", after.LastUsedAt, testenv.Now)
	}
	if p, err := vault.Decrypt("item-busy", after.AccessToken); err != nil || p != tok.Plaintext || vault.NeedsReencrypt(after.AccessToken) {
		t.Errorf("token decrypts to %q, %v (needs re-encryption: %v)", p, err, vault.NeedsReencrypt(after.AccessToken))
	}
}

// A program configured without TOKEN_ENCRYPTION_KEY has a cipher without a
// current key: re-encryption refuses rather than write anything.
func TestReencryptNeedsAnEncryptionKey(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	svc, err := lifecycle.NewService(env.Config, lifecycle.Deps{Tokens: env.Tokens, Runs: env.Runs, Plaid: env.Adapter, Cipher: plainCipher{}, Clock: env.Clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Reencrypt(context.Background(), lifecycle.ReencryptOptions{}); err == nil {
		t.Error("Reencrypt without an encryption key succeeded")
	}
}

// plainCipher is a TokenCipher with no current key.
type plainCipher struct{}

func (plainCipher) Encrypt(_, p string) (string, error) { return p, nil }
func (plainCipher) Decrypt(_, s string) (string, error) { return s, nil }
func (plainCipher) NeedsReencrypt(string) bool          { return true }
func (plainCipher) CurrentKeyID() string                { return "" }
