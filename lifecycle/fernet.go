package lifecycle

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// The old Python service stored access tokens as Fernet tokens wrapped once
// more in urlsafe base64, with the Fernet key derived from
// LEGACY_TOKEN_ENCRYPTION_KEY (DESIGN §5). These constants are its
// parameters; they must not change, or its data no longer decrypts.
const (
	legacySalt       = "plaid_tokens_salt"
	legacyIterations = 100_000
	legacyKeyLen     = 32 // Fernet: 16 bytes signing key, 16 bytes AES-128 key
)

// The Fernet token layout (https://github.com/fernet/spec/blob/master/Spec.md):
//
//	version (1 byte, 0x80) | timestamp (8) | IV (16) | AES-128-CBC ciphertext (n*16) | HMAC-SHA256 (32)
const (
	fernetVersion   = 0x80
	fernetHeaderLen = 1 + 8 + aes.BlockSize
	fernetMACLen    = sha256.Size
	fernetMinLen    = fernetHeaderLen + aes.BlockSize + fernetMACLen
)

// LegacyDecrypter decrypts access tokens written by the old Python service,
// so the migration can re-encrypt them with the Vault. It only decrypts:
// nothing new is ever written in the legacy format.
//
// A LegacyDecrypter is safe for concurrent use.
type LegacyDecrypter struct {
	password string

	once sync.Once
	key  fernetKey
	err  error
}

// NewLegacyDecrypter returns a decrypter for tokens encrypted with password
// (LEGACY_TOKEN_ENCRYPTION_KEY). The key is derived on first use, so a
// migration that meets only plaintext tokens never pays for it, and an empty
// password is reported only when an encrypted token needs it.
func NewLegacyDecrypter(password string) *LegacyDecrypter {
	return &LegacyDecrypter{password: password}
}

// Decrypt returns the access token in a legacy stored value: base64url of a
// Fernet token (as the old service wrote it) or, tolerated, the bare Fernet
// token. The token's timestamp is ignored: a legacy token is migrated
// however old it is. Errors wrap ErrMalformedToken or ErrDecrypt; callers
// check IsLegacyPlaintext first.
func (d *LegacyDecrypter) Decrypt(stored string) (string, error) {
	token, err := unwrapLegacy(stored)
	if err != nil {
		return "", fmt.Errorf("decrypting legacy token: %w", err)
	}
	key, err := d.fernetKey()
	if err != nil {
		return "", fmt.Errorf("decrypting legacy token: %w", err)
	}
	plaintext, err := key.open(token)
	if err != nil {
		return "", fmt.Errorf("decrypting legacy token: %w", err)
	}
	return string(plaintext), nil
}

func (d *LegacyDecrypter) fernetKey() (fernetKey, error) {
	d.once.Do(func() {
		if d.password == "" {
			d.err = Errorf(CodeInvalid, "LEGACY_TOKEN_ENCRYPTION_KEY is not set, but the legacy data holds encrypted tokens")
			return
		}
		key, err := deriveKey(d.password, legacySalt, legacyIterations, legacyKeyLen)
		if err != nil {
			d.err = WrapError(CodeInternal, err, "deriving the legacy key")
			return
		}
		// The old service handed Fernet urlsafe_b64(key); Fernet decodes it
		// back, so the raw derived bytes are the Fernet key.
		d.key, d.err = newFernetKey(key)
	})
	return d.key, d.err
}

// IsLegacyPlaintext reports whether s is an access token the old service
// stored unencrypted. Plaid access tokens start with "access-" (e.g.
// access-sandbox-...), which neither format v1 nor a wrapped Fernet token
// (base64 of "gAAAAA...") can.
func IsLegacyPlaintext(s string) bool {
	return strings.HasPrefix(s, "access-")
}

// fernetKey is a 32-byte Fernet key split into its two halves.
type fernetKey struct {
	signing    []byte // HMAC-SHA256 key: the first 16 bytes
	encryption []byte // AES-128 key: the last 16 bytes
}

func newFernetKey(key []byte) (fernetKey, error) {
	if len(key) != 32 {
		return fernetKey{}, fmt.Errorf("a Fernet key is 32 bytes, got %d", len(key))
	}
	return fernetKey{signing: key[:16], encryption: key[16:]}, nil
}

// open verifies and decrypts a binary Fernet token, following the spec's
// order: check the shape, verify the HMAC in constant time, and only then
// decrypt, so that nothing about unauthenticated data leaks (no padding
// oracle).
func (k fernetKey) open(token []byte) ([]byte, error) {
	if len(token) < fernetMinLen {
		return nil, fmt.Errorf("token is %d bytes, shorter than the Fernet minimum %d: %w", len(token), fernetMinLen, ErrMalformedToken)
	}
	if token[0] != fernetVersion {
		return nil, fmt.Errorf("version byte is not Fernet's 0x80: %w", ErrMalformedToken)
	}
	signed, mac := token[:len(token)-fernetMACLen], token[len(token)-fernetMACLen:]
	if (len(signed)-fernetHeaderLen)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("ciphertext is not a whole number of AES blocks: %w", ErrMalformedToken)
	}
	h := hmac.New(sha256.New, k.signing)
	h.Write(signed)
	if !hmac.Equal(h.Sum(nil), mac) {
		return nil, fmt.Errorf("HMAC does not match (wrong LEGACY_TOKEN_ENCRYPTION_KEY or tampered data): %w", ErrDecrypt)
	}

	block, err := aes.NewCipher(k.encryption)
	if err != nil {
		return nil, WrapError(CodeInternal, err, "creating AES cipher")
	}
	iv, ciphertext := signed[1+8:fernetHeaderLen], signed[fernetHeaderLen:]
	plaintext := make([]byte, len(ciphertext))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plaintext, ciphertext)
	plaintext, err = unpadPKCS7(plaintext)
	if err != nil {
		return nil, fmt.Errorf("decrypted plaintext: %w", err)
	}
	return plaintext, nil
}

func unpadPKCS7(b []byte) ([]byte, error) {
	if len(b) == 0 || len(b)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("not a whole number of AES blocks: %w", ErrMalformedToken)
	}
	n := int(b[len(b)-1])
	if n == 0 || n > aes.BlockSize {
		return nil, fmt.Errorf("invalid PKCS7 padding: %w", ErrMalformedToken)
	}
	for _, c := range b[len(b)-n:] {
		if int(c) != n {
			return nil, fmt.Errorf("invalid PKCS7 padding: %w", ErrMalformedToken)
		}
	}
	return b[:len(b)-n], nil
}

// unwrapLegacy turns a stored legacy value into a binary Fernet token. The
// old service stored base64url(Fernet token), and a Fernet token is itself
// base64url of binary starting with 0x80. Decoding once therefore gives
// either the text of a Fernet token ("gAAAAA...": wrapped, decode again) or
// binary starting with 0x80 (a bare token: accepted too, so that a value
// written without the extra wrapping is not lost).
func unwrapLegacy(stored string) ([]byte, error) {
	if stored == "" {
		return nil, fmt.Errorf("stored token is empty: %w", ErrMalformedToken)
	}
	outer, err := decodeBase64URL(stored)
	if err != nil {
		return nil, fmt.Errorf("stored token is not base64url: %w", ErrMalformedToken)
	}
	if len(outer) > 0 && outer[0] == fernetVersion {
		return outer, nil
	}
	token, err := decodeBase64URL(string(outer))
	if err != nil {
		return nil, fmt.Errorf("stored token does not wrap a base64url Fernet token: %w", ErrMalformedToken)
	}
	return token, nil
}

// decodeBase64URL decodes urlsafe base64 with or without padding: Python's
// urlsafe_b64encode pads, but a value copied by hand or by another tool may
// not be. The HMAC, not the encoding, is what authenticates the token.
func decodeBase64URL(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, errors.New("empty")
	}
	return b, nil
}
