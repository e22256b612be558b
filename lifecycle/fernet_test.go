package lifecycle

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fernet/fernet-go"
)

// legacyTestPassword is the LEGACY_TOKEN_ENCRYPTION_KEY of legacyVectors.
// Non-ASCII on purpose: the old service derived from password.encode(),
// UTF-8.
const legacyTestPassword = "legacy-test-pässword"

// legacyVectors were produced once, independently of this package, with
// Python's cryptography package exactly as the old service stored tokens:
//
//	kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=b"plaid_tokens_salt", iterations=100000)
//	f = Fernet(base64.urlsafe_b64encode(kdf.derive(password.encode())))
//	stored = base64.urlsafe_b64encode(f.encrypt(token.encode())).decode()
var legacyVectors = []struct {
	name, stored, plaintext string
}{
	{
		name:      "51-byte token",
		stored:    "Z0FBQUFBQnJDa2V6Mjc5ZklMSmh3SlZjUXlfMzBwamJ5WXJ5bUQzRUo0blhkRmZaUTVzcm4yNTRLRTFxRmdCYTZ1WS1WV2ZVN0tUUDBrQmwxZTBtOHpTMUl5UDhGOXc1RXYtdlAxaXF6MFQ5ekZuVlhLZDZZRlctQmROMW1WU0Y3OThyMUJDSnh6VlItUjlQRmFOUDlFLW4wY3VYMlZMMjJ3PT0=",
		plaintext: "access-sandbox-5d1c0e7a-2b4f-4c61-8e3d-9a7b6c5d4e3f",
	},
	{
		// 48 bytes: a whole number of blocks, so PKCS7 adds a full block.
		name:      "48-byte token",
		stored:    "Z0FBQUFBQnJDa2V6dkdlS0RldlFoMWVkbkpLZjl1Skx0LS1Zc1RPbVlhdlRLUFVOOWFLa2l6NWx4amJ5UGhZMEYwR0FaS2piOC1vVkVBcjgyNGpEaXZpSGdzQUdsX0pveUFQV2Z3dV9VdXRWQlQzOXdHMDBfdHVMMkxUMURibTZycXE0MHM2c2tubFI5M1EtSnh1aE0xUGZIeUMwNmJIR0FBPT0=",
		plaintext: "access-production-0123456789abcdef0123456789abcd",
	},
}

// The published Fernet spec vector (github.com/fernet/spec, generate.json
// and verify.json): this key and token carry the message "hello".
const (
	specFernetKey   = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4="
	specFernetToken = "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA=="
)

func specKey(tb testing.TB) *fernet.Key {
	tb.Helper()
	k, err := fernet.DecodeKey(specFernetKey)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// sealFernet builds a binary Fernet token by hand from the spec, with
// already padded plaintext, so tests can also build tokens whose HMAC is
// valid but whose padding is not.
func sealFernet(tb testing.TB, k *fernet.Key, timestamp uint64, iv, padded []byte) []byte {
	tb.Helper()
	signing, encryption := k[:16], k[16:]
	block, err := aes.NewCipher(encryption)
	if err != nil {
		tb.Fatal(err)
	}
	token := []byte{0x80}
	token = binary.BigEndian.AppendUint64(token, timestamp)
	token = append(token, iv...)
	ciphertext := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ciphertext, padded)
	token = append(token, ciphertext...)
	mac := hmac.New(sha256.New, signing)
	mac.Write(token)
	return mac.Sum(token)
}

func pkcs7(b []byte) []byte {
	n := aes.BlockSize - len(b)%aes.BlockSize
	return append(bytes.Clone(b), bytes.Repeat([]byte{byte(n)}, n)...)
}

// wrapLegacy stores a binary Fernet token the way the old service did.
func wrapLegacy(token []byte) string {
	return base64.URLEncoding.EncodeToString([]byte(base64.URLEncoding.EncodeToString(token)))
}

func TestLegacyDecryptVectors(t *testing.T) {
	t.Parallel()
	d := NewLegacyDecrypter(legacyTestPassword)
	for _, tc := range legacyVectors {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := d.Decrypt(tc.stored)
			if err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			if got != tc.plaintext {
				t.Errorf("Decrypt = %q, want %q", got, tc.plaintext)
			}
		})
	}
}

// TestLegacyDecryptEncodings: the old service padded both base64 layers;
// unpadded and unwrapped (bare Fernet) values decrypt too, so a value that
// was copied or written differently is not lost in the migration.
func TestLegacyDecryptEncodings(t *testing.T) {
	t.Parallel()
	d := NewLegacyDecrypter(legacyTestPassword)
	vec := legacyVectors[0]
	inner, err := base64.URLEncoding.DecodeString(vec.stored)
	if err != nil {
		t.Fatal(err)
	}
	bare := string(inner)
	tests := []struct{ name, stored string }{
		{"wrapped, padded (as stored)", vec.stored},
		{"wrapped, outer unpadded", strings.TrimRight(vec.stored, "=")},
		{"wrapped, inner unpadded", base64.RawURLEncoding.EncodeToString([]byte(strings.TrimRight(bare, "=")))},
		{"bare Fernet token", bare},
		{"bare Fernet token, unpadded", strings.TrimRight(bare, "=")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := d.Decrypt(tc.stored)
			if err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			if got != vec.plaintext {
				t.Errorf("Decrypt = %q, want %q", got, vec.plaintext)
			}
		})
	}
}

func TestFernetSpecVector(t *testing.T) {
	t.Parallel()
	k := specKey(t)
	tests := []struct{ name, stored string }{
		{"bare, as published", specFernetToken},
		{"wrapped, as the old service stored", base64.URLEncoding.EncodeToString([]byte(specFernetToken))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			token, err := unwrapLegacy(tc.stored)
			if err != nil {
				t.Fatalf("unwrapLegacy: %v", err)
			}
			got, err := openFernet(k, token)
			if err != nil {
				t.Fatalf("openFernet: %v", err)
			}
			if string(got) != "hello" {
				t.Errorf("openFernet = %q, want %q", got, "hello")
			}
		})
	}
}

// TestFernetOpenByHand covers what only an authentic token reaches: the
// padding checks after the HMAC (fernet-go's, and the two openFernet adds),
// and the absence of any TTL or clock check.
func TestFernetOpenByHand(t *testing.T) {
	t.Parallel()
	k := specKey(t)
	iv := bytes.Repeat([]byte{0x42}, aes.BlockSize)
	badLastByte := func(n byte) []byte {
		b := pkcs7([]byte("access-sandbox-1"))
		b[len(b)-1] = n
		return b
	}
	tests := []struct {
		name      string
		timestamp uint64
		padded    []byte
		want      string
		wantErr   error
	}{
		{name: "empty plaintext", timestamp: 1, padded: pkcs7(nil), want: ""},
		{name: "timestamp zero: no TTL", timestamp: 0, padded: pkcs7([]byte("access-sandbox-1")), want: "access-sandbox-1"},
		{name: "far-future timestamp: no clock check", timestamp: 1<<64 - 1, padded: pkcs7([]byte("access-sandbox-1")), want: "access-sandbox-1"},
		{name: "padding byte zero", padded: badLastByte(0), wantErr: ErrDecrypt},
		{name: "padding byte over block size", padded: badLastByte(17), wantErr: ErrDecrypt},
		{name: "consistent padding over block size", padded: bytes.Repeat([]byte{17}, 32), wantErr: ErrDecrypt},
		{name: "inconsistent padding", padded: badLastByte(3), wantErr: ErrDecrypt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := openFernet(k, sealFernet(t, k, tc.timestamp, iv, tc.padded))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("openFernet error = %v, want %v", err, tc.wantErr)
			}
			if string(got) != tc.want {
				t.Errorf("openFernet = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestLegacyDecryptIgnoresTimestamp: tokens fernet-go itself writes, at
// any time, decrypt through the whole legacy path once wrapped as the old
// service stored them; a token's age never refuses it.
func TestLegacyDecryptIgnoresTimestamp(t *testing.T) {
	t.Parallel()
	d := NewLegacyDecrypter(legacyTestPassword)
	key, err := d.fernetKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []time.Time{
		time.Unix(0, 0),
		time.Date(2019, 3, 1, 0, 0, 0, 0, time.UTC), // years before any migration
		time.Now(),
		time.Now().Add(time.Hour), // past fernet-go's 60s clock skew
		time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		const plaintext = "access-sandbox-0d6b3f0e-97a1-4c4e-8a8c-1f5e2d3c4b5a"
		tok, err := fernet.EncryptAndSignAtTime([]byte(plaintext), key, at)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.Decrypt(base64.URLEncoding.EncodeToString(tok))
		if err != nil || got != plaintext {
			t.Errorf("token signed at %v: Decrypt = %q, %v; want %q", at, got, err, plaintext)
		}
	}
}

// tamperLegacy flips byte i of the binary Fernet token inside a stored value
// and wraps it again, so only the token checks can notice.
func tamperLegacy(tb testing.TB, stored string, edit func([]byte) []byte) string {
	tb.Helper()
	token, err := unwrapLegacy(stored)
	if err != nil {
		tb.Fatal(err)
	}
	return wrapLegacy(edit(token))
}

func flipAt(i int) func([]byte) []byte {
	return func(b []byte) []byte {
		if i < 0 {
			i += len(b)
		}
		b[i] ^= 0x01
		return b
	}
}

func TestLegacyDecryptErrors(t *testing.T) {
	t.Parallel()
	d := NewLegacyDecrypter(legacyTestPassword)
	vec := legacyVectors[0]
	tests := []struct {
		name      string
		decrypter *LegacyDecrypter
		stored    string
		wantErr   error
		wantCode  Code
	}{
		{name: "wrong password", decrypter: NewLegacyDecrypter("legacy-test-wrong-password"), stored: vec.stored, wantErr: ErrDecrypt},
		{name: "no password", decrypter: NewLegacyDecrypter(""), stored: vec.stored, wantCode: CodeInvalid},
		{name: "tampered version", stored: tamperLegacy(t, vec.stored, flipAt(0)), wantErr: ErrMalformedToken},
		{name: "tampered timestamp", stored: tamperLegacy(t, vec.stored, flipAt(8)), wantErr: ErrDecrypt},
		{name: "tampered IV", stored: tamperLegacy(t, vec.stored, flipAt(9)), wantErr: ErrDecrypt},
		{name: "tampered ciphertext", stored: tamperLegacy(t, vec.stored, flipAt(fernetHeaderLen)), wantErr: ErrDecrypt},
		{name: "tampered last ciphertext block", stored: tamperLegacy(t, vec.stored, flipAt(-fernetMACLen-1)), wantErr: ErrDecrypt},
		{name: "tampered HMAC", stored: tamperLegacy(t, vec.stored, flipAt(-1)), wantErr: ErrDecrypt},
		{name: "HMAC stripped", stored: tamperLegacy(t, vec.stored, func(b []byte) []byte { return b[:len(b)-fernetMACLen] }), wantErr: ErrDecrypt},
		{name: "too short", stored: tamperLegacy(t, vec.stored, func(b []byte) []byte { return b[:fernetMinLen-1] }), wantErr: ErrMalformedToken},
		{name: "ciphertext not whole blocks", stored: tamperLegacy(t, vec.stored, func(b []byte) []byte {
			return append(b[:fernetHeaderLen:fernetHeaderLen], b[fernetHeaderLen+1:]...)
		}), wantErr: ErrMalformedToken},
		{name: "empty", stored: "", wantErr: ErrMalformedToken},
		{name: "not base64", stored: "!!not base64!!", wantErr: ErrMalformedToken},
		{name: "wraps non-base64", stored: base64.URLEncoding.EncodeToString([]byte("hello world")), wantErr: ErrMalformedToken},
		{name: "wraps base64 of a non-token", stored: base64.URLEncoding.EncodeToString([]byte(base64.URLEncoding.EncodeToString([]byte("access-sandbox-1")))), wantErr: ErrMalformedToken},
		{name: "format v1", stored: vectorStored, wantErr: ErrMalformedToken},
		{name: "only padding", stored: "====", wantErr: ErrMalformedToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dec := tc.decrypter
			if dec == nil {
				dec = d
			}
			got, err := dec.Decrypt(tc.stored)
			if err == nil {
				t.Fatalf("Decrypt = %q, nil; want an error", got)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("Decrypt error = %v, want it to wrap %v", err, tc.wantErr)
			}
			wantCode := tc.wantCode
			if wantCode == "" {
				wantCode = CodeInternal
			}
			if code := ErrorCode(err); code != wantCode {
				t.Errorf("ErrorCode(%v) = %q, want %q", err, code, wantCode)
			}
			for _, secret := range []string{vec.plaintext, tc.stored} {
				if len(secret) >= 8 && strings.Contains(err.Error(), secret) {
					t.Errorf("error %q leaks %q", err, secret)
				}
			}
		})
	}
}

func TestIsLegacyPlaintext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s    string
		want bool
	}{
		{"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6", true},
		{"access-development-de3ce8ef-33f8-452c-a685-8671031fc0f6", true},
		{"access-production-de3ce8ef-33f8-452c-a685-8671031fc0f6", true},
		{"", false},
		{"access", false},
		{"Access-sandbox-1", false},
		{"public-sandbox-1", false},
		{vectorStored, false},
		{legacyVectors[0].stored, false},
		{specFernetToken, false},
	}
	for _, tc := range tests {
		if got := IsLegacyPlaintext(tc.s); got != tc.want {
			t.Errorf("IsLegacyPlaintext(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

// TestLegacyDecryptConcurrent runs under -race: the migration decrypts in
// parallel, and the first calls race to derive the key.
func TestLegacyDecryptConcurrent(t *testing.T) {
	t.Parallel()
	d := NewLegacyDecrypter(legacyTestPassword)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for _, vec := range legacyVectors {
				if got, err := d.Decrypt(vec.stored); err != nil || got != vec.plaintext {
					t.Errorf("Decrypt(%s) = %q, %v; want %q", vec.name, got, err, vec.plaintext)
				}
			}
		})
	}
	wg.Wait()
}

// FuzzLegacyDecrypt checks that no stored value makes the legacy decrypter
// panic and that every failure is classified. Random input never passes the
// HMAC, so the input is also sealed by hand as padded plaintext under the
// spec key, to reach the padding checks behind it.
func FuzzLegacyDecrypt(f *testing.F) {
	d := NewLegacyDecrypter(legacyTestPassword)
	k := specKey(f)
	iv := make([]byte, aes.BlockSize)
	for _, vec := range legacyVectors {
		f.Add(vec.stored)
	}
	for _, s := range []string{
		specFernetToken,
		base64.URLEncoding.EncodeToString([]byte(specFernetToken)),
		"",
		"====",
		"gAAAAA",
		"Z0FBQUFB",
		"access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6",
		vectorStored,
		string(pkcs7([]byte("access-sandbox-1"))),
		strings.Repeat("\x10", 16),
		"\x80\x00\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stored string) {
		if _, err := d.Decrypt(stored); err != nil &&
			!errors.Is(err, ErrMalformedToken) && !errors.Is(err, ErrDecrypt) {
			t.Fatalf("Decrypt(%q): unclassified error %v", stored, err)
		}
		if len(stored) == 0 || len(stored)%aes.BlockSize != 0 {
			return
		}
		got, err := openFernet(k, sealFernet(t, k, 0, iv, []byte(stored)))
		if err != nil {
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("openFernet(sealed %q): error %v, want ErrDecrypt", stored, err)
			}
			return
		}
		if want := pkcs7(got); string(want) != stored {
			t.Fatalf("openFernet(sealed %q) = %q, which does not pad back to the input", stored, got)
		}
	})
}
