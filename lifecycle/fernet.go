package lifecycle

import (
	"crypto/aes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/fernet/fernet-go"
)

// The old Python service stored access tokens as Fernet tokens wrapped once
// more in urlsafe base64, with the Fernet key derived from
// LEGACY_TOKEN_ENCRYPTION_KEY (DESIGN §5). These constants are its
// parameters; they must not change, or its data no longer decrypts.
const (
	legacySalt       = "plaid_tokens_salt"
	legacyIterations = 100_000
	legacyKeyLen     = len(fernet.Key{}) // 32: the HMAC key, then the AES-128 key
)

// The Fernet token layout (https://github.com/fernet/spec/blob/master/Spec.md),
// which openFernet checks before fernet-go verifies and decrypts:
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
	key  *fernet.Key
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
	plaintext, err := openFernet(key, token)
	if err != nil {
		return "", fmt.Errorf("decrypting legacy token: %w", err)
	}
	return string(plaintext), nil
}

func (d *LegacyDecrypter) fernetKey() (*fernet.Key, error) {
	d.once.Do(func() {
		if d.password == "" {
			d.err = Errorf(CodeInvalid, "LEGACY_TOKEN_ENCRYPTION_KEY is not set, but the legacy data holds encrypted tokens")
			return
		}
		derived, err := deriveKey(d.password, legacySalt, legacyIterations, legacyKeyLen)
		if err != nil {
			d.err = WrapError(CodeInternal, err, "deriving the legacy key")
			return
		}
		// The old service handed Fernet urlsafe_b64(key); Fernet decodes it
		// back, so the raw derived bytes are the Fernet key: the HMAC key,
		// then the AES-128 key, as fernet.Key holds them.
		key := fernet.Key(derived) // a copy: derived is deriveKey's cached slice
		d.key = &key
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

// openFernet verifies and decrypts a binary Fernet token with
// github.com/fernet/fernet-go, ignoring its timestamp.
//
// The layout is checked first: a token of another format is
// ErrMalformedToken, and fernet-go slices the token by the spec's offsets
// once its HMAC matches, so a short authentic token would panic it.
// fernet-go verifies the HMAC in constant time before it decrypts (no
// padding oracle) and reports every failure alike, as nil; that is
// ErrDecrypt. It also takes a last padding byte of 0, or one over the block
// size, as valid PKCS7 padding; those are refused here, as Python's
// cryptography (the writer of this data) refuses them.
func openFernet(key *fernet.Key, token []byte) ([]byte, error) {
	if len(token) < fernetMinLen {
		return nil, fmt.Errorf("token is %d bytes, shorter than the Fernet minimum %d: %w", len(token), fernetMinLen, ErrMalformedToken)
	}
	if token[0] != fernetVersion {
		return nil, fmt.Errorf("version byte is not Fernet's 0x80: %w", ErrMalformedToken)
	}
	ciphertextLen := len(token) - fernetHeaderLen - fernetMACLen
	if ciphertextLen%aes.BlockSize != 0 {
		return nil, fmt.Errorf("ciphertext is not a whole number of AES blocks: %w", ErrMalformedToken)
	}
	// A TTL of 0 turns off fernet-go's age and clock-skew checks: a legacy
	// token is migrated however old it is (or however wrong its writer's
	// clock was). fernet-go takes the token as padded base64url text.
	plaintext := fernet.VerifyAndDecrypt([]byte(base64.URLEncoding.EncodeToString(token)), 0, []*fernet.Key{key})
	if plaintext == nil {
		return nil, fmt.Errorf("token does not verify (wrong LEGACY_TOKEN_ENCRYPTION_KEY, tampered data or invalid padding): %w", ErrDecrypt)
	}
	if pad := ciphertextLen - len(plaintext); pad < 1 || pad > aes.BlockSize {
		return nil, fmt.Errorf("token does not verify (invalid padding): %w", ErrDecrypt)
	}
	return plaintext, nil
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
