package lifecycle

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
)

// Format v1 of a stored access token (DESIGN §6):
//
//	"v1:" + key id + ":" + base64url-nopad(nonce || ciphertext || tag)
//
// with AES-256-GCM, the item id as additional data, and the key derived from
// TOKEN_ENCRYPTION_KEY by PBKDF2-HMAC-SHA256.
const (
	vaultPrefix     = "v1:"
	vaultIterations = 600_000
	vaultKeyLen     = 32 // AES-256
	vaultNonceLen   = 12 // the GCM standard nonce size
	vaultTagLen     = 16
	vaultKeyIDLen   = 8 // hex of the first 4 bytes of SHA-256(key)
)

// The vault and the legacy decrypter return ErrDecrypt, ErrUnknownKey and
// ErrMalformedToken (errors.go), wrapped with context (which item, which key
// id, what was wrong), never with the plaintext or the ciphertext.

// Vault encrypts access tokens for storage and decrypts them for use, in
// format v1. It encrypts with the current key only; previous keys still
// decrypt, so keys can be rotated and documents re-encrypted at leisure.
//
// A Vault is immutable after NewVault and safe for concurrent use.
type Vault struct {
	current vaultKey
	keys    map[string]vaultKey // by key id, current included
	nonces  io.Reader           // crypto/rand.Reader except in tests
}

type vaultKey struct {
	id   string
	aead cipher.AEAD
}

// NewVault derives the current key and every previous key from their
// passwords (TOKEN_ENCRYPTION_KEY, TOKEN_ENCRYPTION_KEY_PREVIOUS) and salt
// (TOKEN_ENCRYPTION_SALT; empty means DefaultEncryptionSalt).
//
// Derivation is deliberately slow (600,000 PBKDF2 iterations, about 0.2s per
// key), so callers build one Vault per process, lazily, never per request.
// Derived keys are also cached per process, so a second NewVault with the
// same passwords and salt costs nothing.
func NewVault(current string, previous []string, salt string) (*Vault, error) {
	if current == "" {
		return nil, Errorf(CodeInvalid, "creating vault: TOKEN_ENCRYPTION_KEY is empty")
	}
	if salt == "" {
		salt = DefaultEncryptionSalt
	}
	// A key listed twice, or both current and previous (midway through a
	// rotation), is one key.
	passwords := []string{current}
	for _, p := range previous {
		if p != "" && !slices.Contains(passwords, p) {
			passwords = append(passwords, p)
		}
	}

	// Derive in parallel: cold start pays for the slowest key, not the sum.
	derived := make([][]byte, len(passwords))
	errs := make([]error, len(passwords))
	var wg sync.WaitGroup
	for i, p := range passwords {
		wg.Go(func() { derived[i], errs[i] = deriveKey(p, salt, vaultIterations, vaultKeyLen) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, WrapError(CodeInternal, err, "creating vault: deriving keys")
	}

	v := &Vault{keys: make(map[string]vaultKey, len(passwords)), nonces: rand.Reader}
	for i, key := range derived {
		k, err := newVaultKey(key)
		if err != nil {
			return nil, WrapError(CodeInternal, err, "creating vault")
		}
		if _, dup := v.keys[k.id]; dup {
			// Duplicate passwords were dropped above, so this is two
			// different passwords whose key ids collide (a 1 in 2^32
			// chance); decryption could not tell them apart.
			return nil, Errorf(CodeInvalid, "creating vault: two different encryption keys share key id %s; choose another key", k.id)
		}
		v.keys[k.id] = k
		if i == 0 {
			v.current = k
		}
	}
	return v, nil
}

func newVaultKey(key []byte) (vaultKey, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return vaultKey{}, fmt.Errorf("creating AES cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return vaultKey{}, fmt.Errorf("creating GCM: %w", err)
	}
	sum := sha256.Sum256(key)
	return vaultKey{id: hex.EncodeToString(sum[:4]), aead: aead}, nil
}

// CurrentKeyID returns the key id of TOKEN_ENCRYPTION_KEY: the id every new
// ciphertext carries.
func (v *Vault) CurrentKeyID() string { return v.current.id }

// Encrypt encrypts an access token for the document of itemID with the
// current key. The item id is bound in as additional data, so the result
// only decrypts for that item.
func (v *Vault) Encrypt(itemID, plaintext string) (string, error) {
	if itemID == "" {
		return "", Errorf(CodeInvalid, "encrypting token: item id is empty")
	}
	if plaintext == "" {
		return "", Errorf(CodeInvalid, "encrypting token of item %q: access token is empty", itemID)
	}
	nonce := make([]byte, vaultNonceLen, vaultNonceLen+len(plaintext)+vaultTagLen)
	if _, err := io.ReadFull(v.nonces, nonce); err != nil {
		return "", WrapError(CodeInternal, err, fmt.Sprintf("encrypting token of item %q: reading nonce", itemID))
	}
	sealed := v.current.aead.Seal(nonce, nonce, []byte(plaintext), []byte(itemID))
	return vaultPrefix + v.current.id + ":" + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Decrypt returns the access token stored for itemID. It accepts
// ciphertexts of the current and of every previous key. Errors wrap
// ErrMalformedToken, ErrUnknownKey or ErrDecrypt.
func (v *Vault) Decrypt(itemID, stored string) (string, error) {
	if itemID == "" {
		return "", Errorf(CodeInvalid, "decrypting token: item id is empty")
	}
	keyID, payload, err := parseV1(stored)
	if err != nil {
		return "", fmt.Errorf("decrypting token of item %q: %w", itemID, err)
	}
	key, ok := v.keys[keyID]
	if !ok {
		return "", fmt.Errorf("decrypting token of item %q: key id %s is neither TOKEN_ENCRYPTION_KEY nor in TOKEN_ENCRYPTION_KEY_PREVIOUS: %w", itemID, keyID, ErrUnknownKey)
	}
	// Strict, and no line breaks (which the decoder would skip), so that a
	// payload has exactly one accepted spelling.
	raw, err := base64.RawURLEncoding.Strict().DecodeString(payload)
	if err != nil || strings.ContainsAny(payload, "\r\n") {
		return "", fmt.Errorf("decrypting token of item %q: payload is not unpadded base64url: %w", itemID, ErrMalformedToken)
	}
	if len(raw) < vaultNonceLen+vaultTagLen {
		return "", fmt.Errorf("decrypting token of item %q: payload is %d bytes, shorter than nonce and tag (%d): %w", itemID, len(raw), vaultNonceLen+vaultTagLen, ErrMalformedToken)
	}
	plaintext, err := key.aead.Open(nil, raw[:vaultNonceLen], raw[vaultNonceLen:], []byte(itemID))
	if err != nil {
		// GCM's error says nothing more than ours; don't wrap it.
		return "", fmt.Errorf("decrypting token of item %q with key %s: %w", itemID, keyID, ErrDecrypt)
	}
	return string(plaintext), nil
}

// NeedsReencrypt reports whether stored should be rewritten with the
// current key: it is not a well-formed v1 string (for example a legacy
// plaintext `access-...` token) or it carries another key's id.
func (v *Vault) NeedsReencrypt(stored string) bool {
	keyID, _, err := parseV1(stored)
	return err != nil || keyID != v.current.id
}

// parseV1 splits a v1 string into its key id and base64 payload. Its errors
// describe the shape only: the string may be a plaintext token, and must
// not end up in a log.
func parseV1(stored string) (keyID, payload string, err error) {
	if stored == "" {
		return "", "", fmt.Errorf("stored token is empty: %w", ErrMalformedToken)
	}
	rest, ok := strings.CutPrefix(stored, vaultPrefix)
	if !ok {
		return "", "", fmt.Errorf("stored token does not start with %q: %w", vaultPrefix, ErrMalformedToken)
	}
	keyID, payload, ok = strings.Cut(rest, ":")
	if !ok {
		return "", "", fmt.Errorf("stored token has no key id separator: %w", ErrMalformedToken)
	}
	if !isKeyID(keyID) {
		return "", "", fmt.Errorf("stored token's key id is not %d lowercase hex digits: %w", vaultKeyIDLen, ErrMalformedToken)
	}
	if payload == "" {
		return "", "", fmt.Errorf("stored token has an empty payload: %w", ErrMalformedToken)
	}
	return keyID, payload, nil
}

func isKeyID(s string) bool {
	if len(s) != vaultKeyIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// derivedKeys caches PBKDF2 results per process, so that every Vault or
// LegacyDecrypter built from the same configuration (and every test) pays
// for a derivation once. Each entry has its own Once so that deriving one
// key does not block lookups of another.
var derivedKeys = struct {
	mu sync.Mutex
	m  map[derivation]*derivedKey
}{m: make(map[derivation]*derivedKey)}

type derivation struct {
	password, salt string
	iterations     int
	keyLen         int
}

type derivedKey struct {
	once sync.Once
	key  []byte
	err  error
}

// deriveKey returns PBKDF2-HMAC-SHA256(password, salt, iterations, keyLen),
// computed at most once per process for each combination. The returned
// slice is shared: callers must not modify it.
func deriveKey(password, salt string, iterations, keyLen int) ([]byte, error) {
	d := derivation{password: password, salt: salt, iterations: iterations, keyLen: keyLen}
	derivedKeys.mu.Lock()
	e, ok := derivedKeys.m[d]
	if !ok {
		e = new(derivedKey)
		derivedKeys.m[d] = e
	}
	derivedKeys.mu.Unlock()
	e.once.Do(func() {
		e.key, e.err = pbkdf2.Key(sha256.New, password, []byte(salt), iterations, keyLen)
		if e.err != nil {
			e.err = fmt.Errorf("PBKDF2-HMAC-SHA256: %w", e.err)
		}
	})
	return e.key, e.err
}
