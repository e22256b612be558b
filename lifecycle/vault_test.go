package lifecycle

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

// Passwords of the test vaults. Every distinct password costs a 600,000
// iteration derivation (once per test binary, thanks to the key cache), so
// the tests share these few.
const (
	testCurrentKey  = "vault-test-current-key"
	testPreviousKey = "vault-test-previous-key"
)

// The test vector of format v1 (DESIGN §6).
const (
	vectorPassword  = "vault-test-vector-key"
	vectorItemID    = "item-vector-Xq3vB9"
	vectorPlaintext = "access-sandbox-8f2a41c6-3b1e-4d7a-9c55-0e6b2f7d1a90"
	vectorKeyID     = "97bc8bd5"
	// vectorStored was computed once, independently of this package, with
	// Python's hashlib.pbkdf2_hmac and cryptography's AESGCM, and checked
	// with Node's crypto.pbkdf2Sync and createCipheriv('aes-256-gcm'): key
	// from vectorPassword and the default salt, nonce 00 01 ... 0b, additional
	// data vectorItemID.
	vectorStored = "v1:97bc8bd5:AAECAwQFBgcICQoLRvWYvtZmzpMGDZB2ZoN_RfNqiDkyWjVy7Wz9bSLGh-Uz2dqfGc0sEwxFP2T04-4OUOhUIEmvASAXEbHhBtNMByGwAg"
)

var vectorNonce = []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}

// withNonces returns a copy of v that reads its nonces from r, so a test can
// pin a ciphertext. Test-only on purpose: a nonce repeated under one key
// breaks AES-GCM entirely, so production code has no way to set it.
func (v *Vault) withNonces(r io.Reader) *Vault {
	c := *v
	c.nonces = r
	return &c
}

// testVault returns a vault with the default salt. Derivations are cached
// per process, so calling it again with the same passwords is free.
func testVault(tb testing.TB, current string, previous ...string) *Vault {
	tb.Helper()
	v, err := NewVault(current, previous, "")
	if err != nil {
		tb.Fatalf("NewVault: %v", err)
	}
	return v
}

func mustEncrypt(tb testing.TB, v *Vault, itemID, plaintext string) string {
	tb.Helper()
	s, err := v.Encrypt(itemID, plaintext)
	if err != nil {
		tb.Fatalf("Encrypt(%q): %v", itemID, err)
	}
	return s
}

// flipPayloadByte returns stored with byte i of its decoded payload
// (negative: counted from the end) flipped, re-encoded validly, so only the
// cipher can notice.
func flipPayloadByte(tb testing.TB, stored string, i int) string {
	tb.Helper()
	cut := strings.LastIndexByte(stored, ':') + 1
	raw, err := base64.RawURLEncoding.DecodeString(stored[cut:])
	if err != nil {
		tb.Fatalf("decoding payload: %v", err)
	}
	if i < 0 {
		i += len(raw)
	}
	raw[i] ^= 0x01
	return stored[:cut] + base64.RawURLEncoding.EncodeToString(raw)
}

func TestVaultRoundTrip(t *testing.T) {
	t.Parallel()
	v := testVault(t, testCurrentKey, testPreviousKey)
	tests := []struct {
		name, itemID, plaintext string
	}{
		{"sandbox token", "eVBnVMp7zdTJLkRNr33Rs6zr7KNJqBFL9DrE6", "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"},
		{"production token", "item-2", "access-production-0f5b1a2c-7d3e-4a9b-8c6d-5e4f3a2b1c0d"},
		{"one byte", "item-3", "a"},
		{"exactly one AES block", "item-4", "0123456789abcdef"},
		{"unicode item and token", "ïtem-☃", "jeton-日本語-🔑"},
		{"long token", "item-5", strings.Repeat("x", 4096)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stored := mustEncrypt(t, v, tc.itemID, tc.plaintext)
			if prefix := "v1:" + v.CurrentKeyID() + ":"; !strings.HasPrefix(stored, prefix) {
				t.Errorf("Encrypt = %q, want prefix %q", stored, prefix)
			}
			// (Short plaintexts can occur in base64 by chance.)
			if len(tc.plaintext) >= 8 && strings.Contains(stored, tc.plaintext) {
				t.Errorf("Encrypt output contains the plaintext")
			}
			if v.NeedsReencrypt(stored) {
				t.Errorf("NeedsReencrypt(fresh ciphertext) = true, want false")
			}
			got, err := v.Decrypt(tc.itemID, stored)
			if err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			if diff := cmp.Diff(tc.plaintext, got); diff != "" {
				t.Errorf("Decrypt mismatch (-want +got):\n%s", diff)
			}
			// A fresh random nonce each time: the same token never
			// encrypts to the same string twice.
			if again := mustEncrypt(t, v, tc.itemID, tc.plaintext); again == stored {
				t.Errorf("two encryptions of the same token are identical: nonce reused")
			}
		})
	}
}

// TestVaultVector pins format v1 three ways: recomputed by hand from the
// spec with the standard library, produced by the Vault with the vector's
// nonce, and the literal computed by independent tools.
func TestVaultVector(t *testing.T) {
	t.Parallel()

	// By hand, straight from DESIGN §6, with no code from this package.
	key, err := pbkdf2.Key(sha256.New, vectorPassword, []byte("plaid-token-lifecycle/v1"), 600000, 32)
	if err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(key)
	sealed := gcm.Seal(bytes.Clone(vectorNonce), vectorNonce, []byte(vectorPlaintext), []byte(vectorItemID))
	byHand := "v1:" + hex.EncodeToString(sum[:4]) + ":" + base64.RawURLEncoding.EncodeToString(sealed)
	if byHand != vectorStored {
		t.Fatalf("by-hand v1 string = %q, independent tools gave %q", byHand, vectorStored)
	}

	v := testVault(t, vectorPassword)
	if got := v.CurrentKeyID(); got != vectorKeyID {
		t.Errorf("CurrentKeyID() = %q, want %q", got, vectorKeyID)
	}
	got, err := v.withNonces(bytes.NewReader(vectorNonce)).Encrypt(vectorItemID, vectorPlaintext)
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	if got != vectorStored {
		t.Errorf("Encrypt with the vector nonce = %q, want %q", got, vectorStored)
	}
	plaintext, err := v.Decrypt(vectorItemID, vectorStored)
	if err != nil {
		t.Fatalf("Decrypt(vector): %v", err)
	}
	if plaintext != vectorPlaintext {
		t.Errorf("Decrypt(vector) = %q, want %q", plaintext, vectorPlaintext)
	}
}

func TestVaultDecryptErrors(t *testing.T) {
	t.Parallel()
	v := testVault(t, testCurrentKey)
	const itemID = "item-errors"
	const plaintext = "access-sandbox-11111111-2222-3333-4444-555555555555"
	stored := mustEncrypt(t, v, itemID, plaintext)
	prefix := "v1:" + v.CurrentKeyID() + ":"
	payload := strings.TrimPrefix(stored, prefix)
	rawLen := base64.RawURLEncoding.DecodedLen(len(payload))

	tests := []struct {
		name    string
		vault   *Vault
		itemID  string
		stored  string
		wantErr error
		// wantInMsg must appear in the error (what an operator needs).
		wantInMsg string
	}{
		{name: "wrong key", vault: testVault(t, vectorPassword), stored: strings.Replace(stored, v.CurrentKeyID(), vectorKeyID, 1), wantErr: ErrDecrypt},
		{name: "wrong item id", itemID: "item-other", stored: stored, wantErr: ErrDecrypt, wantInMsg: "item-other"},
		{name: "tampered nonce first byte", stored: flipPayloadByte(t, stored, 0), wantErr: ErrDecrypt},
		{name: "tampered nonce last byte", stored: flipPayloadByte(t, stored, 11), wantErr: ErrDecrypt},
		{name: "tampered ciphertext", stored: flipPayloadByte(t, stored, 12), wantErr: ErrDecrypt},
		{name: "tampered ciphertext end", stored: flipPayloadByte(t, stored, rawLen-17), wantErr: ErrDecrypt},
		{name: "tampered tag", stored: flipPayloadByte(t, stored, -16), wantErr: ErrDecrypt},
		{name: "tampered tag last byte", stored: flipPayloadByte(t, stored, -1), wantErr: ErrDecrypt},
		{name: "truncated tag", stored: prefix + base64.RawURLEncoding.EncodeToString(mustDecode(t, payload)[:rawLen-1]), wantErr: ErrDecrypt},
		{name: "unknown key id", stored: "v1:0badc0de:" + payload, wantErr: ErrUnknownKey, wantInMsg: "0badc0de"},
		{name: "empty", stored: "", wantErr: ErrMalformedToken},
		{name: "legacy plaintext", stored: plaintext, wantErr: ErrMalformedToken},
		{name: "other version", stored: "v2:" + v.CurrentKeyID() + ":" + payload, wantErr: ErrMalformedToken},
		{name: "prefix only", stored: "v1:", wantErr: ErrMalformedToken},
		{name: "no payload separator", stored: "v1:" + v.CurrentKeyID(), wantErr: ErrMalformedToken},
		{name: "empty payload", stored: prefix, wantErr: ErrMalformedToken},
		{name: "empty key id", stored: "v1::" + payload, wantErr: ErrMalformedToken},
		{name: "uppercase key id", stored: "v1:0BADC0DE:" + payload, wantErr: ErrMalformedToken},
		{name: "short key id", stored: "v1:" + v.CurrentKeyID()[:6] + ":" + payload, wantErr: ErrMalformedToken},
		{name: "non-hex key id", stored: "v1:zzzzzzzz:" + payload, wantErr: ErrMalformedToken},
		{name: "bad base64", stored: prefix + "!!!!" + payload, wantErr: ErrMalformedToken},
		{name: "standard base64 alphabet", stored: prefix + "+/" + payload[2:], wantErr: ErrMalformedToken},
		{name: "padded base64", stored: prefix + base64.URLEncoding.EncodeToString(mustDecode(t, payload)), wantErr: ErrMalformedToken},
		{name: "line break in payload", stored: prefix + payload[:10] + "\n" + payload[10:], wantErr: ErrMalformedToken},
		{name: "truncated base64", stored: prefix + payload[:len(payload)-1], wantErr: ErrMalformedToken},
		{name: "non-canonical base64", stored: prefix + nonCanonical(t, payload), wantErr: ErrMalformedToken},
		{name: "too short", stored: prefix + base64.RawURLEncoding.EncodeToString(make([]byte, 27)), wantErr: ErrMalformedToken},
		{name: "nonce only", stored: prefix + base64.RawURLEncoding.EncodeToString(vectorNonce), wantErr: ErrMalformedToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vault, item := tc.vault, tc.itemID
			if vault == nil {
				vault = v
			}
			if item == "" {
				item = itemID
			}
			got, err := vault.Decrypt(item, tc.stored)
			if err == nil {
				t.Fatalf("Decrypt = %q, nil; want error %v", got, tc.wantErr)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("Decrypt error = %v, want it to wrap %v", err, tc.wantErr)
			}
			if code := ErrorCode(err); code != CodeInternal {
				t.Errorf("ErrorCode = %q, want %q", code, CodeInternal)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.wantInMsg) {
				t.Errorf("error %q does not mention %q", msg, tc.wantInMsg)
			}
			// Neither the secret nor the ciphertext may reach a log.
			for _, secret := range []string{plaintext, payload, payload[:16], tc.stored} {
				if len(secret) >= 8 && strings.Contains(msg, secret) {
					t.Errorf("error %q leaks %q", msg, secret)
				}
			}
		})
	}
}

// nonCanonical returns payload with its final character's unused low bits
// set: lenient decoders accept it as the same bytes, Strict must not.
func nonCanonical(tb testing.TB, payload string) string {
	tb.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	if len(payload)%4 == 0 {
		tb.Fatalf("payload of %d characters has no unused bits", len(payload))
	}
	last := strings.IndexByte(alphabet, payload[len(payload)-1])
	return payload[:len(payload)-1] + string(alphabet[last^1])
}

func mustDecode(tb testing.TB, payload string) []byte {
	tb.Helper()
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestVaultInvalidArguments(t *testing.T) {
	t.Parallel()
	v := testVault(t, testCurrentKey)
	stored := mustEncrypt(t, v, "item-1", "access-sandbox-1")
	failingNonces := v.withNonces(iotest.ErrReader(errors.New("entropy source broken")))

	tests := []struct {
		name     string
		call     func() (string, error)
		wantCode Code
	}{
		{"encrypt empty item id", func() (string, error) { return v.Encrypt("", "access-sandbox-1") }, CodeInvalid},
		{"encrypt empty token", func() (string, error) { return v.Encrypt("item-1", "") }, CodeInvalid},
		{"decrypt empty item id", func() (string, error) { return v.Decrypt("", stored) }, CodeInvalid},
		{"nonce source fails", func() (string, error) { return failingNonces.Encrypt("item-1", "access-sandbox-1") }, CodeInternal},
		{"nonce source runs dry", func() (string, error) {
			return v.withNonces(bytes.NewReader(make([]byte, 11))).Encrypt("item-1", "access-sandbox-1")
		}, CodeInternal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.call()
			if err == nil {
				t.Fatalf("got %q, nil; want an error with code %q", got, tc.wantCode)
			}
			if code := ErrorCode(err); code != tc.wantCode {
				t.Errorf("ErrorCode(%v) = %q, want %q", err, code, tc.wantCode)
			}
		})
	}
}

// TestVaultKeyRotation walks through a rotation: a token written under the
// old key still decrypts once that key is listed as previous, is flagged for
// re-encryption, and after re-encryption carries the current key id.
func TestVaultKeyRotation(t *testing.T) {
	t.Parallel()
	const itemID = "item-rotation"
	const plaintext = "access-production-9a8b7c6d-5e4f-3a2b-1c0d-ffeeddccbbaa"
	before := testVault(t, testPreviousKey)
	after := testVault(t, testCurrentKey, testPreviousKey)
	withoutPrevious := testVault(t, testCurrentKey)

	if before.CurrentKeyID() == after.CurrentKeyID() {
		t.Fatalf("test keys share key id %s", before.CurrentKeyID())
	}
	old := mustEncrypt(t, before, itemID, plaintext)

	got, err := after.Decrypt(itemID, old)
	if err != nil {
		t.Fatalf("Decrypt(previous key's ciphertext): %v", err)
	}
	if got != plaintext {
		t.Errorf("Decrypt(previous key's ciphertext) = %q, want %q", got, plaintext)
	}
	if !after.NeedsReencrypt(old) {
		t.Errorf("NeedsReencrypt(previous key's ciphertext) = false, want true")
	}

	reencrypted := mustEncrypt(t, after, itemID, got)
	if after.NeedsReencrypt(reencrypted) {
		t.Errorf("NeedsReencrypt(re-encrypted) = true, want false")
	}
	if got, err := withoutPrevious.Decrypt(itemID, reencrypted); err != nil || got != plaintext {
		t.Errorf("Decrypt(re-encrypted) without the previous key = %q, %v; want %q", got, err, plaintext)
	}

	// Once the previous key is dropped, old ciphertexts name their key.
	_, err = withoutPrevious.Decrypt(itemID, old)
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), before.CurrentKeyID()) {
		t.Errorf("Decrypt(old) without the previous key: error %v, want ErrUnknownKey naming %s", err, before.CurrentKeyID())
	}
}

func TestVaultNeedsReencrypt(t *testing.T) {
	t.Parallel()
	v := testVault(t, testCurrentKey, testPreviousKey)
	current := mustEncrypt(t, v, "item-1", "access-sandbox-1")
	previous := mustEncrypt(t, testVault(t, testPreviousKey), "item-1", "access-sandbox-1")

	tests := []struct {
		name   string
		stored string
		want   bool
	}{
		{"current key", current, false},
		{"previous key", previous, true},
		{"unknown key", vectorStored, true},
		{"legacy plaintext", "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6", true},
		{"legacy Fernet", legacyVectors[0].stored, true},
		{"empty", "", true},
		{"malformed key id", "v1:XYZ:" + strings.TrimPrefix(current, "v1:"+v.CurrentKeyID()+":"), true},
		{"garbage", "\x00\xff:::", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := v.NeedsReencrypt(tc.stored); got != tc.want {
				t.Errorf("NeedsReencrypt = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNewVault(t *testing.T) {
	t.Parallel()
	def := testVault(t, testCurrentKey)

	t.Run("empty current key", func(t *testing.T) {
		t.Parallel()
		_, err := NewVault("", []string{testPreviousKey}, "")
		if !IsCode(err, CodeInvalid) || !strings.Contains(err.Error(), "TOKEN_ENCRYPTION_KEY") {
			t.Errorf("NewVault(\"\") error = %v, want %s naming TOKEN_ENCRYPTION_KEY", err, CodeInvalid)
		}
	})
	t.Run("empty salt is the default salt", func(t *testing.T) {
		t.Parallel()
		v, err := NewVault(testCurrentKey, nil, DefaultEncryptionSalt)
		if err != nil {
			t.Fatal(err)
		}
		if v.CurrentKeyID() != def.CurrentKeyID() {
			t.Errorf("key id with explicit default salt = %s, with empty salt = %s", v.CurrentKeyID(), def.CurrentKeyID())
		}
	})
	t.Run("salt changes the key", func(t *testing.T) {
		t.Parallel()
		v, err := NewVault(testCurrentKey, nil, "another-salt")
		if err != nil {
			t.Fatal(err)
		}
		if v.CurrentKeyID() == def.CurrentKeyID() {
			t.Errorf("key id does not depend on the salt")
		}
		stored := mustEncrypt(t, def, "item-1", "access-sandbox-1")
		if _, err := v.Decrypt("item-1", stored); !errors.Is(err, ErrUnknownKey) {
			t.Errorf("Decrypt under another salt: error %v, want ErrUnknownKey", err)
		}
	})
	t.Run("previous keys: duplicates and blanks ignored", func(t *testing.T) {
		t.Parallel()
		v, err := NewVault(testCurrentKey, []string{"", testCurrentKey, testPreviousKey, testPreviousKey}, "")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{def.CurrentKeyID(), testVault(t, testPreviousKey).CurrentKeyID()}
		slices.Sort(want)
		if diff := cmp.Diff(want, slices.Sorted(maps.Keys(v.keys))); diff != "" {
			t.Errorf("key ids mismatch (-want +got):\n%s", diff)
		}
		if v.CurrentKeyID() != def.CurrentKeyID() {
			t.Errorf("CurrentKeyID = %s, want the current key's %s", v.CurrentKeyID(), def.CurrentKeyID())
		}
	})
}

// TestVaultConcurrent runs under -race: one Vault serves every request of a
// function instance at once.
func TestVaultConcurrent(t *testing.T) {
	t.Parallel()
	v := testVault(t, testCurrentKey, testPreviousKey)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				item := fmt.Sprintf("item-%d-%d", g, i)
				token := "access-sandbox-" + item
				stored, err := v.Encrypt(item, token)
				if err != nil {
					errs <- err
					return
				}
				got, err := v.Decrypt(item, stored)
				if err != nil || got != token {
					errs <- fmt.Errorf("round trip of %s = %q, %v", item, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// FuzzVaultDecrypt checks that no input makes Decrypt panic, that every
// failure is one of the vault's classified errors, and that whatever does
// decrypt round-trips.
func FuzzVaultDecrypt(f *testing.F) {
	v := testVault(f, testCurrentKey, testPreviousKey)
	current := mustEncrypt(f, v, "item-1", "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6")
	previous := mustEncrypt(f, testVault(f, testPreviousKey), "item-2", "access-production-1")
	seeds := []struct{ itemID, stored string }{
		{"item-1", current},
		{"item-2", previous},
		{"item-1", previous},
		{vectorItemID, vectorStored},
		{"item-1", "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"},
		{"item-1", legacyVectors[0].stored},
		{"item-1", ""},
		{"", current},
		{"item-1", "v1:"},
		{"item-1", "v1::"},
		{"item-1", "v1:" + v.CurrentKeyID() + ":"},
		{"item-1", "v1:" + v.CurrentKeyID() + ":AAAA"},
		{"item-1", "v1:" + v.CurrentKeyID() + ":" + strings.Repeat("A", 38)},
		{"item-1", "v1:deadbeef:" + strings.Repeat("_", 60)},
		{"item-1", "v1:" + v.CurrentKeyID() + ":\n\r=="},
		{"\x00", "\xff\xfe:v1:"},
	}
	for _, s := range seeds {
		f.Add(s.itemID, s.stored)
	}
	f.Fuzz(func(t *testing.T, itemID, stored string) {
		got, err := v.Decrypt(itemID, stored)
		needs := v.NeedsReencrypt(stored)
		if err != nil {
			if !errors.Is(err, ErrMalformedToken) && !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrDecrypt) &&
				!(itemID == "" && IsCode(err, CodeInvalid)) {
				t.Fatalf("Decrypt(%q, %q): unclassified error %v", itemID, stored, err)
			}
			return
		}
		if wantNeeds := !strings.HasPrefix(stored, "v1:"+v.CurrentKeyID()+":"); needs != wantNeeds {
			t.Errorf("NeedsReencrypt(%q) = %v, want %v", stored, needs, wantNeeds)
		}
		again, err := v.Encrypt(itemID, got)
		if err != nil {
			t.Fatalf("Encrypt(%q) of a decrypted token: %v", itemID, err)
		}
		if back, err := v.Decrypt(itemID, again); err != nil || back != got {
			t.Fatalf("round trip of a decrypted token = %q, %v; want %q", back, err, got)
		}
	})
}
