package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

func TestMain(m *testing.M) { os.Exit(emulator.Main(m)) }

type result struct {
	code           int
	stdout, stderr string
}

func runDevkit(t *testing.T, vars map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr, func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	return result{code, stdout.String(), stderr.String()}
}

// seed -h prints the help and seeds nothing; seed again keeps what changed;
// seed --reset makes the sample set as new, at the stand-in too.
func TestSeedReset(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	var resets atomic.Int32
	standIn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/reset-sample" {
			resets.Add(1)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		http.NotFound(w, r)
	}))
	defer standIn.Close()
	vars := map[string]string{"FIRESTORE_EMULATOR_HOST": os.Getenv("FIRESTORE_EMULATOR_HOST"), "GOOGLE_CLOUD_PROJECT": env.Project,
		"TOKEN_ENCRYPTION_KEY": testenv.EncryptionKey, "PLAID_STANDIN_CONTROL_URL": standIn.URL}

	for _, help := range []string{"-h", "--help"} {
		res := runDevkit(t, vars, "seed", help)
		if res.code != 0 || !strings.Contains(res.stderr, "usage: devkit seed [--reset]") || env.Doc(t, "item-alice-chase") != nil {
			t.Fatalf("seed %s: exit %d, stderr %q, or it seeded", help, res.code, res.stderr)
		}
	}
	if res := runDevkit(t, vars, "seed"); res.code != 0 || !strings.Contains(res.stderr, "seeded 15 sample tokens") {
		t.Fatalf("seed: exit %d %s", res.code, res.stderr)
	}
	// The system is used: a token revoked, another added.
	ctx := context.Background()
	revoked := lifecycle.StatusRevoked
	if _, err := env.Tokens.Update(ctx, "item-alice-chase", lifecycle.Patch{Status: &revoked}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	env.Seed(t, testenv.ActiveToken("item-new", "user-new", 1))

	runDevkit(t, vars, "seed")
	if tok := env.Doc(t, "item-alice-chase"); tok.Status != lifecycle.StatusRevoked {
		t.Fatalf("plain seed changed a stored document: %s", tok.Status)
	}
	res := runDevkit(t, vars, "seed", "--reset")
	if res.code != 0 || !strings.Contains(res.stderr, "deleted 16 token documents") || resets.Load() != 1 {
		t.Fatalf("seed --reset: exit %d, %d stand-in resets\n%s", res.code, resets.Load(), res.stderr)
	}
	if tok := env.Doc(t, "item-alice-chase"); tok == nil || tok.Status != lifecycle.StatusActive {
		t.Errorf("after --reset item-alice-chase = %+v, want active", tok)
	}
	if env.Doc(t, "item-new") != nil {
		t.Error("--reset left a document that is not in the sample set")
	}

	// Only the emulator is seeded: without it and without the local
	// profile, nothing is.
	if res := runDevkit(t, map[string]string{"GOOGLE_CLOUD_PROJECT": "prod", "TOKEN_ENCRYPTION_KEY": testenv.EncryptionKey, "HOME": t.TempDir()}, "seed"); res.code != 1 ||
		!strings.Contains(res.stderr, "scripts/dev.sh writes it") {
		t.Errorf("seed without the emulator nor a profile: exit %d, stderr %q", res.code, res.stderr)
	}
}

func TestJWT(t *testing.T) {
	t.Parallel()
	const secret = "devkit-test-secret-0123456789abcdef0123"
	vars := map[string]string{"AUTH_JWT_SECRET": secret, "FIRESTORE_EMULATOR_HOST": "127.0.0.1:1"}
	res := runDevkit(t, vars, "jwt", "--sub", "user-alice", "--admin")
	if res.code != 0 {
		t.Fatalf("jwt: exit %d %s", res.code, res.stderr)
	}
	tok, err := jwt.Parse(strings.TrimSpace(res.stdout), func(*jwt.Token) (any, error) { return []byte(secret), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatal(err)
	}
	c := tok.Claims.(jwt.MapClaims)
	if c["sub"] != "user-alice" || c["admin"] != true || c["type"] != "access_token" {
		t.Errorf("claims = %v", c)
	}
	for _, args := range [][]string{{}, {"frobnicate"}, {"jwt", "--nope"}, {"seed", "extra"}} {
		if res := runDevkit(t, vars, args...); res.code != 2 {
			t.Errorf("%v: exit %d, want 2", args, res.code)
		}
	}
	if res := runDevkit(t, vars, "jwt"); res.code != 1 || !strings.Contains(res.stderr, "--sub is required") {
		t.Errorf("jwt without --sub: exit %d %q", res.code, res.stderr)
	}
}
