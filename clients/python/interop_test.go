package python

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fernet/fernet-go"
	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// pythonPath is the one interpreter these tests run: Debian's python3, with
// the cryptography that `apt-get install python3-cryptography` gives a fresh
// machine (38 on bookworm), the oldest the reference implementation must
// work with. A python3 earlier on PATH (pyenv, a virtualenv) may carry
// another cryptography and must not decide the outcome. scripts/test.sh
// installs python3-cryptography when it is missing.
const pythonPath = "/usr/bin/python3"

var pythonCheck struct {
	once    sync.Once
	version string
	err     error
}

// python returns pythonPath once it is known to import cryptography, and
// fails the test (never skips it) when it does not: a missing interpreter
// would otherwise let the two implementations drift apart unnoticed.
func python(t *testing.T) string {
	t.Helper()
	pythonCheck.once.Do(func() {
		out, err := exec.Command(pythonPath, "-E", "-s", "-c", "import cryptography; print(cryptography.__version__)").CombinedOutput()
		pythonCheck.version = strings.TrimSpace(string(out))
		if err != nil {
			pythonCheck.err = errors.New(pythonCheck.version)
		}
	})
	if pythonCheck.err != nil {
		t.Fatalf("%s cannot import cryptography (%v): run scripts/test.sh, which installs it, "+
			"or apt-get update && apt-get install -y python3-cryptography", pythonPath, pythonCheck.err)
	}
	return pythonPath
}

// pythonCommand runs python with args in this directory (the package's
// root), isolated from PYTHON* variables and the user's site packages, and
// without writing bytecode into the repository.
func pythonCommand(ctx context.Context, t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, python(t), append([]string{"-E", "-s", "-B"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// interop sends req to tests/interop.py and decodes its answer into resp.
func interop(t *testing.T, env []string, req, resp any) {
	t.Helper()
	in, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := pythonCommand(ctx, t, env, "tests/interop.py")
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tests/interop.py: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), resp); err != nil {
		t.Fatalf("tests/interop.py answered %q: %v\n%s", stdout.String(), err, stderr.String())
	}
}

// TestPythonUnitTests runs the Python suite (python3 -m unittest) on the
// emulator: its emulator tests must run, not skip.
func TestPythonUnitTests(t *testing.T) {
	t.Parallel()
	env := []string{
		emulator.FirestoreHostEnv + "=" + emulator.Host(t),
		emulator.RequireEnv + "=1",
		"PLAID_TOKEN_VAULT_TEST_PROJECT=" + emulator.ProjectID(t),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := pythonCommand(ctx, t, env, "-m", "unittest", "-v").CombinedOutput()
	if err != nil {
		t.Fatalf("python3 -m unittest: %v\n%s", err, out)
	}
	for _, want := range []string{"\nOK", "test_record_use_against_a_concurrent_use (tests.test_emulator.EmulatorTest", "test_refusals (tests.test_vault.RefusalTest"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("python3 -m unittest output lacks %q:\n%s", want, out)
		}
	}
	if regexp.MustCompile(`(?i)\bskipped\b`).Match(out) {
		t.Errorf("python3 -m unittest skipped tests:\n%s", out)
	}
	t.Logf("%s (cryptography %s): %s", pythonPath, pythonCheck.version, regexp.MustCompile(`Ran \d+ tests`).Find(out))
}

// Keys of the interop tests: last year's, this year's (non-ASCII: a
// password is UTF-8 on both sides) and next year's.
const (
	keyOld  = "interop-key-of-last-year-0123456789abcdef"
	keyNew  = "interop-key-current-0123456789abcdef-ü"
	keyNext = "interop-key-of-next-year-0123456789abcdef"
)

type vaultSpec struct {
	Key      string   `json:"key"`
	Previous []string `json:"previous,omitempty"`
	Salt     string   `json:"salt,omitempty"`
}

type itemToken struct {
	ItemID    string `json:"item_id"`
	Plaintext string `json:"plaintext"`
	Stored    string `json:"stored"`
}

// outcome is a decryption on either side: the plaintext, or the class of
// the error (the Python exception's name; Go errors are named alike by
// goOutcome).
type outcome struct {
	Plaintext string `json:"plaintext,omitempty"`
	Error     string `json:"error,omitempty"`
}

type interopResponse struct {
	KeyID          string    `json:"key_id"`
	Encrypt        []string  `json:"encrypt"`
	Decrypt        []outcome `json:"decrypt"`
	Open           []outcome `json:"open"`
	LegacyDecrypt  []outcome `json:"legacy_decrypt"`
	NeedsReencrypt []bool    `json:"needs_reencrypt"`
	FernetEncrypt  []string  `json:"fernet_encrypt"`
}

// goOutcome names a Go result as the Python side names its exceptions. The
// Python side raises ValueError for bad arguments and KeyConfigError for
// missing keys where Go answers CodeInvalid: both are "invalid" here.
func goOutcome(plaintext string, err error) outcome {
	switch {
	case err == nil:
		return outcome{Plaintext: plaintext}
	case errors.Is(err, lifecycle.ErrMalformedToken):
		return outcome{Error: "MalformedTokenError"}
	case errors.Is(err, lifecycle.ErrUnknownKey):
		return outcome{Error: "UnknownKeyError"}
	case errors.Is(err, lifecycle.ErrDecrypt):
		return outcome{Error: "DecryptError"}
	case lifecycle.IsCode(err, lifecycle.CodeInvalid):
		return outcome{Error: "invalid"}
	}
	return outcome{Error: "unexpected Go error: " + err.Error()}
}

func pythonOutcomes(in []outcome) []outcome {
	out := make([]outcome, len(in))
	for i, o := range in {
		if o.Error == "ValueError" || o.Error == "KeyConfigError" {
			o.Error = "invalid"
		}
		out[i] = o
	}
	return out
}

func newVault(t *testing.T, key string, previous []string, salt string) *lifecycle.Vault {
	t.Helper()
	v, err := lifecycle.NewVault(key, previous, salt)
	if err != nil {
		t.Fatalf("NewVault: %v", err)
	}
	return v
}

// interopItems are the tokens both directions carry: item ids and tokens
// of several lengths and alphabets (the item id is the additional data, as
// UTF-8 bytes on both sides).
var interopItems = []itemToken{
	{ItemID: "item-1", Plaintext: "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6"},
	{ItemID: "eVBnVMp7zdTJLkRNr33Rs6zr7KNJqBFL9DrE6", Plaintext: "access-production-0123456789abcdef0123456789abcd"},
	{ItemID: "ítem-ünïcode-✓", Plaintext: "access-sandbox-ü"},
	{ItemID: "x", Plaintext: "a"},
}

// TestGoEncryptsPythonDecrypts: tokens the Go vault wrote, under the
// current key and under a previous one, decrypt in Python with the same
// key configuration; a Python vault that dropped the previous key refuses
// the old ones as an unknown key, and both sides agree on which tokens
// need re-encrypting.
func TestGoEncryptsPythonDecrypts(t *testing.T) {
	t.Parallel()
	for _, salt := range []string{"", "interop-salt/ü"} {
		t.Run("salt="+salt, func(t *testing.T) {
			t.Parallel()
			goOld := newVault(t, keyOld, nil, salt)
			goNew := newVault(t, keyNew, []string{keyOld}, salt)
			var cases []itemToken
			var want []outcome
			var wantNeeds []bool
			for _, v := range []*lifecycle.Vault{goOld, goNew} {
				for _, it := range interopItems {
					stored, err := v.Encrypt(it.ItemID, it.Plaintext)
					if err != nil {
						t.Fatal(err)
					}
					cases = append(cases, itemToken{ItemID: it.ItemID, Stored: stored})
					want = append(want, outcome{Plaintext: it.Plaintext})
					wantNeeds = append(wantNeeds, goNew.NeedsReencrypt(stored))
				}
			}
			stored := make([]string, len(cases))
			for i, c := range cases {
				stored[i] = c.Stored
			}

			var rotated interopResponse
			interop(t, nil, map[string]any{
				"vault":   vaultSpec{Key: keyNew, Previous: []string{keyOld}, Salt: salt},
				"decrypt": cases, "needs_reencrypt": stored,
			}, &rotated)
			if rotated.KeyID != goNew.CurrentKeyID() {
				t.Errorf("Python key id %q, Go %q", rotated.KeyID, goNew.CurrentKeyID())
			}
			if diff := cmp.Diff(want, rotated.Decrypt); diff != "" {
				t.Errorf("Python decrypting Go's tokens (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantNeeds, rotated.NeedsReencrypt); diff != "" {
				t.Errorf("needs re-encrypting, Go (-) and Python (+):\n%s", diff)
			}

			// After the rotation, without the previous key.
			var current interopResponse
			interop(t, nil, map[string]any{"vault": vaultSpec{Key: keyNew, Salt: salt}, "decrypt": cases}, &current)
			for i, got := range current.Decrypt {
				w := want[i]
				if i < len(interopItems) { // goOld's
					w = outcome{Error: "UnknownKeyError"}
				}
				if got != w {
					t.Errorf("Python without the previous key, token %d: %+v, want %+v", i, got, w)
				}
			}
		})
	}
}

// TestPythonEncryptsGoDecrypts: tokens the Python vault wrote decrypt in
// Go, before and after a further rotation, only for their own item, and
// not at all without their key.
func TestPythonEncryptsGoDecrypts(t *testing.T) {
	t.Parallel()
	const salt = "interop-salt/ü"
	var resp interopResponse
	interop(t, nil, map[string]any{
		"vault":   vaultSpec{Key: keyNew, Previous: []string{keyOld}, Salt: salt},
		"encrypt": interopItems,
	}, &resp)
	if len(resp.Encrypt) != len(interopItems) {
		t.Fatalf("Python encrypted %d tokens, want %d", len(resp.Encrypt), len(interopItems))
	}
	goNew := newVault(t, keyNew, []string{keyOld}, salt)
	goNext := newVault(t, keyNext, []string{keyNew}, salt)
	goOld := newVault(t, keyOld, nil, salt)
	if resp.KeyID != goNew.CurrentKeyID() {
		t.Errorf("Python key id %q, Go %q", resp.KeyID, goNew.CurrentKeyID())
	}
	for i, it := range interopItems {
		stored := resp.Encrypt[i]
		if !strings.HasPrefix(stored, "v1:"+goNew.CurrentKeyID()+":") {
			t.Errorf("Python stored %q, want the v1 prefix with key id %s", stored, goNew.CurrentKeyID())
		}
		for name, v := range map[string]*lifecycle.Vault{"same keys": goNew, "rotated again": goNext} {
			if got, err := v.Decrypt(it.ItemID, stored); err != nil || got != it.Plaintext {
				t.Errorf("Go (%s) decrypting Python's token of %q = %q, %v; want %q", name, it.ItemID, got, err, it.Plaintext)
			}
		}
		if goNew.NeedsReencrypt(stored) || !goNext.NeedsReencrypt(stored) {
			t.Errorf("NeedsReencrypt of Python's token: current %v, after the next rotation %v; want false, true",
				goNew.NeedsReencrypt(stored), goNext.NeedsReencrypt(stored))
		}
		if _, err := goNew.Decrypt(it.ItemID+"-moved", stored); !errors.Is(err, lifecycle.ErrDecrypt) {
			t.Errorf("Go decrypting Python's token for another item: %v, want ErrDecrypt", err)
		}
		if _, err := goOld.Decrypt(it.ItemID, stored); !errors.Is(err, lifecycle.ErrUnknownKey) {
			t.Errorf("Go without Python's key: %v, want ErrUnknownKey", err)
		}
	}

	// A Python vault still on last year's key writes what Go's rotated
	// vault reads through TOKEN_ENCRYPTION_KEY_PREVIOUS.
	var old interopResponse
	interop(t, nil, map[string]any{"vault": vaultSpec{Key: keyOld, Salt: salt}, "encrypt": interopItems[:1]}, &old)
	if got, err := goNew.Decrypt(interopItems[0].ItemID, old.Encrypt[0]); err != nil || got != interopItems[0].Plaintext {
		t.Errorf("Go decrypting Python's token under the previous key = %q, %v", got, err)
	}
}

// TestRefusalsAgree: every malformed, moved, tampered or foreign v1 string
// gets the same answer from both vaults.
func TestRefusalsAgree(t *testing.T) {
	t.Parallel()
	v := newVault(t, keyNew, nil, "")
	const token = "access-sandbox-secret-000" // 25 bytes: 53 with nonce and tag, so the payload has stray bits
	good, err := v.Encrypt("item-1", token)
	if err != nil {
		t.Fatal(err)
	}
	kid := v.CurrentKeyID()
	payload := strings.SplitN(good, ":", 3)[2]
	flip := func(i int) string {
		b := []byte(payload)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return "v1:" + kid + ":" + string(b)
	}
	// Stray bits: the last character of a payload whose length is not a
	// multiple of 4 carries unused low bits, which the strict decoders
	// refuse when set.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	if len(payload)%4 != 3 {
		t.Fatalf("payload length %d: the cases below need 3 mod 4 (stray bits in the last character); change the token length", len(payload))
	}
	stray := good[:len(good)-1] + string(alphabet[strings.IndexByte(alphabet, good[len(good)-1])|1])
	foreign, err := newVault(t, keyOld, nil, "").Encrypt("item-1", token)
	if err != nil {
		t.Fatal(err)
	}
	otherSalt, err := newVault(t, keyNew, nil, "another-salt").Encrypt("item-1", token)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, itemID, stored string
		want                 string // the error class; "" for the plaintext
	}{
		{"valid", "item-1", good, ""},
		{"moved to another item", "item-2", good, "DecryptError"},
		{"item id differs in case", "Item-1", good, "DecryptError"},
		{"tampered nonce", "item-1", flip(3), "DecryptError"},
		{"tampered ciphertext", "item-1", flip(20), "DecryptError"},
		{"tampered tag", "item-1", flip(len(payload) - 6), "DecryptError"},
		{"truncated to whole groups", "item-1", good[:len(good)-3], "DecryptError"},
		{"another key", "item-1", foreign, "UnknownKeyError"},
		{"same key id, another salt", "item-1", otherSalt, "UnknownKeyError"},
		{"empty", "item-1", "", "MalformedTokenError"},
		{"plaintext token", "item-1", token, "MalformedTokenError"},
		{"another version", "item-1", "v2" + good[2:], "MalformedTokenError"},
		{"no key id separator", "item-1", "v1:" + kid, "MalformedTokenError"},
		{"uppercase key id", "item-1", "v1:" + strings.ToUpper(kid) + ":" + payload, "MalformedTokenError"},
		{"short key id", "item-1", "v1:" + kid[:7] + ":" + payload, "MalformedTokenError"},
		{"empty payload", "item-1", "v1:" + kid + ":", "MalformedTokenError"},
		{"padded payload", "item-1", good + "=", "MalformedTokenError"},
		{"line break in payload", "item-1", good[:20] + "\n" + good[20:], "MalformedTokenError"},
		{"carriage return at the end", "item-1", good + "\r", "MalformedTokenError"},
		{"space in payload", "item-1", good[:20] + " " + good[20:], "MalformedTokenError"},
		{"standard base64 alphabet", "item-1", "v1:" + kid + ":+/" + payload[2:], "MalformedTokenError"},
		{"stray bits in the last character", "item-1", stray, "MalformedTokenError"},
		{"payload shorter than nonce and tag", "item-1", "v1:" + kid + ":" + strings.Repeat("A", 36), "MalformedTokenError"},
		{"payload one group longer", "item-1", good + "A", "DecryptError"},
		{"payload of impossible length", "item-1", good + "AA", "MalformedTokenError"},
		{"empty item id", "", good, "invalid"},
	}
	cases := make([]itemToken, len(tests))
	var want []outcome
	for i, tc := range tests {
		cases[i] = itemToken{ItemID: tc.itemID, Stored: tc.stored}
		w := outcome{Error: tc.want}
		if tc.want == "" {
			w = outcome{Plaintext: token}
		}
		if got := goOutcome(v.Decrypt(tc.itemID, tc.stored)); got != w {
			t.Errorf("%s: Go says %+v, the table %+v", tc.name, got, w)
		}
		want = append(want, w)
	}
	var resp interopResponse
	interop(t, nil, map[string]any{"vault": vaultSpec{Key: keyNew}, "decrypt": cases}, &resp)
	got := pythonOutcomes(resp.Decrypt)
	for i, tc := range tests {
		if i >= len(got) || got[i] != want[i] {
			t.Errorf("%s: Python says %+v, Go %+v", tc.name, got[min(i, len(got)-1)], want[i])
		}
	}
}

const legacyKey = "legacy-interop-pässword"

// goFernet writes a token the way the old service stored it, with Go's
// fernet-go (the library lifecycle/fernet.go reads with): Fernet over the
// PBKDF2 key, wrapped once more in urlsafe base64.
func goFernet(t *testing.T, password, plaintext string) (wrapped string, bare []byte) {
	t.Helper()
	raw, err := pbkdf2.Key(sha256.New, password, []byte("plaid_tokens_salt"), 100_000, 32)
	if err != nil {
		t.Fatal(err)
	}
	key := fernet.Key(raw)
	// fernet-go answers the token's text (base64url, "gAAAAA...").
	text, err := fernet.EncryptAndSign([]byte(plaintext), &key)
	if err != nil {
		t.Fatal(err)
	}
	bare, err = base64.URLEncoding.DecodeString(string(text))
	if err != nil {
		t.Fatal(err)
	}
	return base64.URLEncoding.EncodeToString(text), bare
}

// TestLegacyFernetAgree: the old service's Fernet values written by
// Python's cryptography decrypt in Go, Go's fernet-go values decrypt in
// Python, in every encoding the Go side accepts, and both refuse the same
// broken values alike.
func TestLegacyFernetAgree(t *testing.T) {
	t.Parallel()
	plaintexts := []string{"access-sandbox-5d1c0e7a-2b4f-4c61-8e3d-9a7b6c5d4e3f", "access-production-0123456789abcdef0123456789abcd", "access-sandbox-ü"}

	// Python writes, Go reads.
	var py interopResponse
	interop(t, nil, map[string]any{"legacy_key": legacyKey, "fernet_encrypt": plaintexts}, &py)
	goLegacy := lifecycle.NewLegacyDecrypter(legacyKey)
	for i, p := range plaintexts {
		if got, err := goLegacy.Decrypt(py.FernetEncrypt[i]); err != nil || got != p {
			t.Errorf("Go decrypting Python's legacy token = %q, %v; want %q", got, err, p)
		}
	}

	// Go writes, Python reads (LegacyDecrypter, and open_token's dispatch).
	wrapped, bare := goFernet(t, legacyKey, plaintexts[0])
	bareText := base64.URLEncoding.EncodeToString(bare)
	flipAt := func(i int) string {
		b := bytes.Clone(bare)
		if i < 0 {
			i += len(b)
		}
		b[i] ^= 1
		return base64.URLEncoding.EncodeToString([]byte(base64.URLEncoding.EncodeToString(b)))
	}
	rewrap := func(b []byte) string {
		return base64.URLEncoding.EncodeToString([]byte(base64.URLEncoding.EncodeToString(b)))
	}
	otherKey, _ := goFernet(t, "another-legacy-password", plaintexts[0])
	values := []string{
		wrapped,
		strings.TrimRight(wrapped, "="),
		base64.RawURLEncoding.EncodeToString([]byte(strings.TrimRight(bareText, "="))),
		bareText,
		strings.TrimRight(bareText, "="),
		otherKey,
		flipAt(0),                   // version
		flipAt(8),                   // timestamp
		flipAt(9),                   // IV
		flipAt(30),                  // ciphertext
		flipAt(-1),                  // HMAC
		rewrap(bare[:len(bare)-32]), // HMAC stripped
		rewrap(bare[:72]),           // too short
		rewrap(append(bytes.Clone(bare[:25]), bare[26:]...)), // not whole blocks
		"", "====", "!!not base64!!", "not-a-token",
		base64.URLEncoding.EncodeToString([]byte("hello world")),
		rewrap([]byte("access-sandbox-1")),
		"v1:0123abcd:AAAA",
	}
	var want []outcome
	for _, s := range values {
		want = append(want, goOutcome(goLegacy.Decrypt(s)))
	}
	for i := range 5 { // the readable encodings
		if want[i] != (outcome{Plaintext: plaintexts[0]}) {
			t.Fatalf("Go reading value %d: %+v", i, want[i])
		}
	}
	noKey := goOutcome(lifecycle.NewLegacyDecrypter("").Decrypt(wrapped))

	var resp interopResponse
	interop(t, nil, map[string]any{"legacy_key": legacyKey, "legacy_decrypt": values}, &resp)
	if diff := cmp.Diff(want, pythonOutcomes(resp.LegacyDecrypt)); diff != "" {
		t.Errorf("legacy decryption, Go (-) and Python (+):\n%s", diff)
	}
	var without interopResponse
	interop(t, nil, map[string]any{"legacy_decrypt": []string{wrapped}}, &without)
	if diff := cmp.Diff([]outcome{noKey}, pythonOutcomes(without.LegacyDecrypt)); diff != "" || noKey.Error != "invalid" {
		t.Errorf("without LEGACY_TOKEN_ENCRYPTION_KEY, Go %+v, Python (+):\n%s", noKey, diff)
	}

	// open_token reads each format the store may hold, as the Go service
	// sorts them: v1 through the vault, access-... as it is (the migration
	// and reencrypt test IsLegacyPlaintext first), anything else as Fernet.
	vault := newVault(t, keyNew, nil, "")
	v1, err := vault.Encrypt("item-1", plaintexts[1])
	if err != nil {
		t.Fatal(err)
	}
	open := []itemToken{
		{ItemID: "item-1", Stored: v1},
		{ItemID: "item-1", Stored: "access-sandbox-plain"},
		{ItemID: "item-1", Stored: wrapped},
		{ItemID: "item-2", Stored: v1},
	}
	wantOpen := []outcome{{Plaintext: plaintexts[1]}, {Plaintext: "access-sandbox-plain"}, {Plaintext: plaintexts[0]}, {Error: "DecryptError"}}
	for i, o := range open {
		var got outcome
		switch {
		case strings.HasPrefix(o.Stored, "v1:"):
			got = goOutcome(vault.Decrypt(o.ItemID, o.Stored))
		case lifecycle.IsLegacyPlaintext(o.Stored):
			got = outcome{Plaintext: o.Stored}
		default:
			got = goOutcome(goLegacy.Decrypt(o.Stored))
		}
		if got != wantOpen[i] {
			t.Errorf("Go reading stored value %d: %+v, want %+v", i, got, wantOpen[i])
		}
	}
	var opened interopResponse
	interop(t, nil, map[string]any{"vault": vaultSpec{Key: keyNew}, "legacy_key": legacyKey, "open": open}, &opened)
	if diff := cmp.Diff(wantOpen, opened.Open); diff != "" {
		t.Errorf("open_token (-want +got):\n%s", diff)
	}
}
