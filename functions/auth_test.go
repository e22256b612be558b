package functions

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

const (
	testSecret   = "test-secret-at-least-32-bytes-long!!"
	testIssuer   = "https://securetoken.google.com/finwell-test"
	testAudience = "finwell-test"
	rsaKID       = "rsa-1"
	ecKID        = "ec-1"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type testKeys struct {
	rsa      *rsa.PrivateKey
	ec       *ecdsa.PrivateKey
	otherRSA *rsa.PrivateKey // not in the JWKS
	rsaPEM   []byte          // the RSA public key, PEM-encoded, as an attacker would find it
}

var loadTestKeys = sync.OnceValues(func() (testKeys, error) {
	var k testKeys
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return k, err
	}
	if k.otherRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return k, err
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return k, err
	}
	der, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		return k, err
	}
	k.rsaPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	return k, nil
})

func keys(t *testing.T) testKeys {
	t.Helper()
	k, err := loadTestKeys()
	if err != nil {
		t.Fatalf("generating test keys: %v", err)
	}
	return k
}

// jwksServer serves the public RSA and EC test keys as a JWK Set and counts
// the downloads.
func jwksServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	k := keys(t)
	store := jwkset.NewMemoryStorage()
	for _, m := range []struct {
		key any
		kid string
		alg jwkset.ALG
	}{
		{&k.rsa.PublicKey, rsaKID, jwkset.AlgRS256},
		{&k.ec.PublicKey, ecKID, jwkset.AlgES256},
	} {
		jwk, err := jwkset.NewJWKFromKey(m.key, jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: m.kid, ALG: m.alg, USE: jwkset.UseSig},
		})
		if err != nil {
			t.Fatalf("building JWK %s: %v", m.kid, err)
		}
		if err := store.KeyWrite(t.Context(), jwk); err != nil {
			t.Fatalf("storing JWK %s: %v", m.kid, err)
		}
	}
	body, err := store.JSONPublic(t.Context())
	if err != nil {
		t.Fatalf("marshalling JWKS: %v", err)
	}
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// failingJWKSServer answers every JWKS download with 500.
func failingJWKSServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newTestAuthenticator(t *testing.T, cfg lifecycle.Config, client *http.Client) *Authenticator {
	t.Helper()
	cfg.AdminUserIDs = []string{"admin-1"}
	a, err := NewAuthenticator(t.Context(), cfg, client)
	if err != nil {
		t.Fatalf("NewAuthenticator: %v", err)
	}
	a.clock = testenv.NewClock(testNow)
	return a
}

func jwksConfig(url string) lifecycle.Config {
	return lifecycle.Config{AuthJWKSURL: url, AuthIssuer: testIssuer, AuthAudience: testAudience}
}

// sign returns a compact JWT of claims signed with key by method, with kid
// in the header when not empty.
func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing test token: %v", err)
	}
	return s
}

// legacyClaims are claims as the old FastAPI service issued them.
func legacyClaims(sub string) jwt.MapClaims {
	return jwt.MapClaims{"sub": sub, "exp": testNow.Add(time.Hour).Unix(), "type": "access_token"}
}

// firebaseClaims are claims as Firebase Auth issues them.
func firebaseClaims(sub string) jwt.MapClaims {
	return jwt.MapClaims{
		"sub": sub, "iss": testIssuer, "aud": testAudience,
		"iat": testNow.Add(-time.Minute).Unix(), "exp": testNow.Add(time.Hour).Unix(),
	}
}

func withClaims(c jwt.MapClaims, changes map[string]any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for k, v := range changes {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

// tamper changes the first byte of tok's signature.
func tamper(tok string) string {
	i := strings.LastIndexByte(tok, '.') + 1
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

// authOutcome is what a test compares: the principal or the error's code
// and caller-facing message.
type authOutcome struct {
	Principal Principal
	Code      lifecycle.Code
	Message   string
}

func outcome(t *testing.T, p Principal, err error) authOutcome {
	t.Helper()
	if err == nil {
		return authOutcome{Principal: p}
	}
	var e *lifecycle.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not a *lifecycle.Error", err)
	}
	return authOutcome{Code: e.Code, Message: e.Message}
}

var (
	refusedInvalid = authOutcome{Code: lifecycle.CodeUnauthorized, Message: "invalid token"}
	refusedExpired = authOutcome{Code: lifecycle.CodeUnauthorized, Message: "token expired: sign in again for a new one"}
	refusedMissing = authOutcome{Code: lifecycle.CodeUnauthorized, Message: "missing bearer token: send the header Authorization: Bearer followed by a space and the JWT"}
	// A refusal of the header says what was wrong with it, and what to send.
	refusedBasic = authOutcome{Code: lifecycle.CodeUnauthorized,
		Message: "missing bearer token: the Authorization header uses the Basic scheme; send the header Authorization: Bearer followed by a space and the JWT"}
	refusedNoScheme = authOutcome{Code: lifecycle.CodeUnauthorized,
		Message: "missing bearer token: the Authorization header holds a token without the word Bearer before it; send the header Authorization: Bearer followed by a space and the JWT"}
	refusedEmpty = authOutcome{Code: lifecycle.CodeUnauthorized,
		Message: "missing bearer token: nothing follows Bearer in the Authorization header; send the header Authorization: Bearer followed by a space and the JWT"}
	refusedTwoHeaders = authOutcome{Code: lifecycle.CodeUnauthorized, Message: "invalid token: more than one Authorization header; send one"}
)

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	k := keys(t)
	srv, _ := jwksServer(t)

	both := lifecycle.Config{AuthJWTSecret: testSecret, AuthJWKSURL: srv.URL, AuthIssuer: testIssuer, AuthAudience: testAudience}
	authenticators := map[string]*Authenticator{
		"hs":   newTestAuthenticator(t, lifecycle.Config{AuthJWTSecret: testSecret}, srv.Client()),
		"jwks": newTestAuthenticator(t, jwksConfig(srv.URL), srv.Client()),
		"both": newTestAuthenticator(t, both, srv.Client()),
	}
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", c) }
	rs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodRS256, k.rsa, rsaKID, c) }
	es := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodES256, k.ec, ecKID, c) }
	bearer := func(tok string) []string { return []string{"Bearer " + tok} }
	user := authOutcome{Principal: Principal{UserID: "user-1"}}

	tests := []struct {
		name   string
		auth   string   // key of authenticators
		header []string // Authorization header values
		want   authOutcome
	}{
		// HS256, as the old service issued.
		{"hs256 user", "hs", bearer(hs(legacyClaims("user-1"))), user},
		{"hs256 admin by list", "hs", bearer(hs(legacyClaims("admin-1"))), authOutcome{Principal: Principal{UserID: "admin-1", Admin: true}}},
		{"hs256 admin by claim", "hs", bearer(hs(withClaims(legacyClaims("user-2"), map[string]any{"admin": true}))), authOutcome{Principal: Principal{UserID: "user-2", Admin: true}}},
		{"hs256 admin false claim", "hs", bearer(hs(withClaims(legacyClaims("user-1"), map[string]any{"admin": false}))), user},
		{"hs256 admin string claim is not admin", "hs", bearer(hs(withClaims(legacyClaims("user-1"), map[string]any{"admin": "true"}))), user},
		{"hs256 without type claim", "hs", bearer(hs(withClaims(legacyClaims("user-1"), map[string]any{"type": nil}))), user},
		{"hs256 with both verifiers configured", "both", bearer(hs(legacyClaims("user-1"))), user},
		{"hs256 expired beyond leeway", "hs", bearer(hs(withClaims(legacyClaims("user-1"), map[string]any{"exp": testNow.Add(-31 * time.Second).Unix()}))), refusedExpired},
		{"hs256 expired within leeway", "hs", bearer(hs(withClaims(legacyClaims("user-1"), map[string]any{"exp": testNow.Add(-20 * time.Second).Unix()}))), user},
		{"hs256 missing exp", "hs", bearer(hs(withClaims(legacyClaims("user-1"), map[string]any{"exp": nil}))), refusedInvalid},
		{"hs256 nbf in the future", "hs", bearer(hs(withClaims(legacyClaims("user-1"), map[string]any{"nbf": testNow.Add(time.Minute).Unix()}))), refusedInvalid},
		{"hs256 nbf within leeway", "hs", bearer(hs(withClaims(legacyClaims("user-1"), map[string]any{"nbf": testNow.Add(20 * time.Second).Unix()}))), user},
		{"hs256 no sub", "hs", bearer(hs(withClaims(legacyClaims("user-1"), map[string]any{"sub": nil}))), refusedInvalid},
		{"hs256 empty sub", "hs", bearer(hs(legacyClaims(""))), refusedInvalid},
		{"hs256 refresh token", "hs", bearer(hs(withClaims(legacyClaims("user-1"), map[string]any{"type": "refresh_token"}))), refusedInvalid},
		{"hs256 non-string type", "hs", bearer(hs(withClaims(legacyClaims("user-1"), map[string]any{"type": 1}))), refusedInvalid},
		{"hs256 wrong secret", "hs", bearer(sign(t, jwt.SigningMethodHS256, []byte("another-secret-at-least-32-bytes!!"), "", legacyClaims("user-1"))), refusedInvalid},
		{"hs256 bad signature", "hs", bearer(tamper(hs(legacyClaims("user-1")))), refusedInvalid},
		{"hs384 refused", "hs", bearer(sign(t, jwt.SigningMethodHS384, []byte(testSecret), "", legacyClaims("user-1"))), refusedInvalid},
		{"alg none", "both", bearer(sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", legacyClaims("user-1"))), refusedInvalid},
		{"hs256 when only jwks configured", "jwks", bearer(hs(legacyClaims("user-1"))), refusedInvalid},
		{"rs256 when only hs256 configured", "hs", bearer(rs(firebaseClaims("user-1"))), refusedInvalid},
		{"garbage token", "both", bearer("not.a.jwt"), refusedInvalid},

		// RS256 and ES256 through the JWKS.
		{"rs256 user", "jwks", bearer(rs(firebaseClaims("user-1"))), user},
		{"es256 user", "jwks", bearer(es(firebaseClaims("user-1"))), user},
		{"rs256 admin by list", "both", bearer(rs(firebaseClaims("admin-1"))), authOutcome{Principal: Principal{UserID: "admin-1", Admin: true}}},
		{"es256 admin by claim", "jwks", bearer(es(withClaims(firebaseClaims("user-3"), map[string]any{"admin": true}))), authOutcome{Principal: Principal{UserID: "user-3", Admin: true}}},
		{"rs256 audience list", "jwks", bearer(rs(withClaims(firebaseClaims("user-1"), map[string]any{"aud": []string{"other", testAudience}}))), user},
		{"rs256 wrong issuer", "jwks", bearer(rs(withClaims(firebaseClaims("user-1"), map[string]any{"iss": "https://evil.example"}))), refusedInvalid},
		{"rs256 missing issuer", "jwks", bearer(rs(withClaims(firebaseClaims("user-1"), map[string]any{"iss": nil}))), refusedInvalid},
		{"rs256 wrong audience", "jwks", bearer(rs(withClaims(firebaseClaims("user-1"), map[string]any{"aud": "other-project"}))), refusedInvalid},
		{"rs256 missing audience", "jwks", bearer(rs(withClaims(firebaseClaims("user-1"), map[string]any{"aud": nil}))), refusedInvalid},
		{"rs256 expired", "jwks", bearer(rs(withClaims(firebaseClaims("user-1"), map[string]any{"exp": testNow.Add(-time.Hour).Unix()}))), refusedExpired},
		{"rs256 empty sub", "jwks", bearer(rs(firebaseClaims(""))), refusedInvalid},
		{"rs256 unknown kid", "jwks", bearer(sign(t, jwt.SigningMethodRS256, k.otherRSA, "rsa-unknown", firebaseClaims("user-1"))), refusedInvalid},
		{"rs256 signed by another key", "jwks", bearer(sign(t, jwt.SigningMethodRS256, k.otherRSA, rsaKID, firebaseClaims("user-1"))), refusedInvalid},
		{"es256 claiming the rsa kid", "jwks", bearer(sign(t, jwt.SigningMethodES256, k.ec, rsaKID, firebaseClaims("user-1"))), refusedInvalid},
		{"rs384 refused", "jwks", bearer(sign(t, jwt.SigningMethodRS384, k.rsa, rsaKID, firebaseClaims("user-1"))), refusedInvalid},
		// Alg confusion: the RSA public key used as an HMAC secret.
		{"hs256 signed with rsa public key, jwks only", "jwks", bearer(sign(t, jwt.SigningMethodHS256, k.rsaPEM, rsaKID, firebaseClaims("user-1"))), refusedInvalid},
		{"hs256 signed with rsa public key, both", "both", bearer(sign(t, jwt.SigningMethodHS256, k.rsaPEM, rsaKID, withClaims(firebaseClaims("user-1"), map[string]any{"type": "access_token"}))), refusedInvalid},

		// The Authorization header.
		{"no header", "hs", nil, refusedMissing},
		{"basic scheme", "hs", []string{"Basic x"}, refusedBasic},
		{"a token without Bearer", "hs", []string{hs(legacyClaims("user-1"))}, refusedNoScheme},
		{"an unknown scheme", "hs", []string{"Tok\"en x"}, authOutcome{Code: lifecycle.CodeUnauthorized,
			Message: "missing bearer token: the Authorization header uses an unknown scheme; send the header Authorization: Bearer followed by a space and the JWT"}},
		{"bearer without token", "hs", []string{"Bearer"}, refusedEmpty},
		{"bearer with blank token", "hs", []string{"Bearer   "}, refusedEmpty},
		{"two tokens", "hs", []string{"Bearer " + hs(legacyClaims("user-1")) + " " + hs(legacyClaims("user-1"))}, refusedInvalid},
		{"two headers", "hs", []string{"Bearer " + hs(legacyClaims("user-1")), "Bearer " + hs(legacyClaims("user-1"))}, refusedTwoHeaders},
		{"lowercase bearer", "hs", []string{"bearer " + hs(legacyClaims("user-1"))}, user},
		{"uppercase bearer", "hs", []string{"BEARER " + hs(legacyClaims("user-1"))}, user},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, "/api/v1/plaid/tokens/analytics", nil)
			for _, v := range tt.header {
				r.Header.Add("Authorization", v)
			}
			p, err := authenticators[tt.auth].Authenticate(r)
			if diff := cmp.Diff(tt.want, outcome(t, p, err)); diff != "" {
				t.Errorf("Authenticate() mismatch (-want +got):\n%s\nerror: %v", diff, err)
			}
		})
	}
}

func TestAuthJWKSFetchedLazilyAndOnUnknownKID(t *testing.T) {
	t.Parallel()
	k := keys(t)
	srv, hits := jwksServer(t)
	a := newTestAuthenticator(t, jwksConfig(srv.URL), srv.Client())
	if got := hits.Load(); got != 0 {
		t.Fatalf("JWKS downloads after NewAuthenticator = %d, want 0 (lazy)", got)
	}

	authenticate := func(tok string) error {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		_, err := a.Authenticate(r)
		return err
	}
	for range 3 {
		if err := authenticate(sign(t, jwt.SigningMethodRS256, k.rsa, rsaKID, firebaseClaims("user-1"))); err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
	}
	if got := hits.Load(); got != 1 {
		t.Errorf("JWKS downloads after three known-kid tokens = %d, want 1 (cached)", got)
	}

	// Unknown kids trigger a refresh, but only as often as the limiter allows.
	for range 3 {
		err := authenticate(sign(t, jwt.SigningMethodRS256, k.otherRSA, "rotated", firebaseClaims("user-1")))
		if !lifecycle.IsCode(err, lifecycle.CodeUnauthorized) {
			t.Fatalf("unknown kid: got %v, want %s", err, lifecycle.CodeUnauthorized)
		}
	}
	if got := hits.Load(); got != 2 {
		t.Errorf("JWKS downloads after three unknown-kid tokens = %d, want 2 (one rate-limited refresh)", got)
	}
}

func TestAuthJWKSUnavailable(t *testing.T) {
	t.Parallel()
	k := keys(t)
	srv := failingJWKSServer(t)
	down := newTestAuthenticator(t, jwksConfig(srv.URL), srv.Client())
	// Nothing listens on a closed server's address.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	unreachable := newTestAuthenticator(t, jwksConfig(closed.URL), nil)

	want := authOutcome{Code: lifecycle.CodeUnavailable, Message: "authentication is temporarily unavailable"}
	tok := sign(t, jwt.SigningMethodRS256, k.rsa, rsaKID, firebaseClaims("user-1"))
	for name, a := range map[string]*Authenticator{"status 500": down, "unreachable": unreachable} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for i := range 2 { // the second request finds the refresh rate-limited
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				r.Header.Set("Authorization", "Bearer "+tok)
				p, err := a.Authenticate(r)
				if diff := cmp.Diff(want, outcome(t, p, err)); diff != "" {
					t.Errorf("request %d: Authenticate() mismatch (-want +got):\n%s", i, diff)
				}
			}
		})
	}
}

func TestNewAuthenticatorRefusesIncompleteConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  lifecycle.Config
	}{
		{"nothing configured", lifecycle.Config{}},
		{"jwks without issuer", lifecycle.Config{AuthJWKSURL: "https://example.com/jwks", AuthAudience: testAudience}},
		{"jwks without audience", lifecycle.Config{AuthJWKSURL: "https://example.com/jwks", AuthIssuer: testIssuer}},
		{"jwks url not http", lifecycle.Config{AuthJWKSURL: "file:///etc/jwks.json", AuthIssuer: testIssuer, AuthAudience: testAudience}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewAuthenticator(context.Background(), tt.cfg, nil); err == nil {
				t.Error("NewAuthenticator succeeded, want an error")
			}
		})
	}
}

// response is what a middleware test compares.
type response struct {
	Status    int
	Challenge string
	Body      map[string]string
}

func serve(t *testing.T, h http.Handler, authorization string) response {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/api/v1/plaid/tokens/analytics", nil)
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	got := response{Status: w.Code, Challenge: w.Header().Get("WWW-Authenticate")}
	if w.Code != http.StatusOK {
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", ct)
		}
		if err := json.Unmarshal(w.Body.Bytes(), &got.Body); err != nil {
			t.Fatalf("error body %q is not a JSON object of strings: %v", w.Body.String(), err)
		}
		return got
	}
	got.Body = map[string]string{"served": w.Body.String()}
	return got
}

func TestAuthMiddleware(t *testing.T) {
	t.Parallel()
	k := keys(t)
	a := newTestAuthenticator(t, lifecycle.Config{AuthJWTSecret: testSecret}, nil)
	down := failingJWKSServer(t)
	unavailable := newTestAuthenticator(t, jwksConfig(down.URL), down.Client())

	// whoami echoes the principal Require put in the context.
	whoami := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := PrincipalFrom(r.Context())
		if !ok {
			t.Error("no principal in the request context")
		}
		_, _ = w.Write([]byte(p.UserID))
	})
	hs := func(sub string) string {
		return "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", legacyClaims(sub))
	}
	expired := "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(testSecret), "",
		withClaims(legacyClaims("user-1"), map[string]any{"exp": testNow.Add(-time.Hour).Unix()}))
	unauthorized := func(detail, challenge string) response {
		return response{Status: http.StatusUnauthorized, Challenge: challenge,
			Body: map[string]string{"detail": detail, "code": string(lifecycle.CodeUnauthorized)}}
	}

	tests := []struct {
		name          string
		handler       http.Handler
		authorization string
		want          response
	}{
		{"require no token", a.Require(whoami), "", unauthorized(refusedMissing.Message, "Bearer")},
		{"require basic scheme", a.Require(whoami), "Basic dXNlcjpwYXNz", unauthorized(refusedBasic.Message, "Bearer")},
		{"require invalid token", a.Require(whoami), "Bearer not.a.jwt", unauthorized("invalid token", `Bearer error="invalid_token"`)},
		{"require expired token", a.Require(whoami), expired, unauthorized(refusedExpired.Message, `Bearer error="invalid_token"`)},
		{"require user", a.Require(whoami), hs("user-1"), response{Status: http.StatusOK, Body: map[string]string{"served": "user-1"}}},
		{"require admin, user refused", a.Require(RequireAdmin(whoami)), hs("user-1"), response{Status: http.StatusForbidden,
			Body: map[string]string{"detail": "admin privileges required", "code": string(lifecycle.CodeForbidden)}}},
		{"require admin, admin served", a.Require(RequireAdmin(whoami)), hs("admin-1"), response{Status: http.StatusOK, Body: map[string]string{"served": "admin-1"}}},
		{"require admin, no token", a.Require(RequireAdmin(whoami)), "", unauthorized(refusedMissing.Message, "Bearer")},
		{"require admin without require", RequireAdmin(whoami), hs("admin-1"), unauthorized(refusedMissing.Message, "Bearer")},
		{"jwks unavailable", unavailable.Require(whoami), "Bearer " + sign(t, jwt.SigningMethodES256, k.ec, ecKID, firebaseClaims("user-1")),
			response{Status: http.StatusServiceUnavailable,
				Body: map[string]string{"detail": "authentication is temporarily unavailable", "code": string(lifecycle.CodeUnavailable)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := serve(t, tt.handler, tt.authorization)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("response mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAuthPrincipalContext(t *testing.T) {
	t.Parallel()
	if _, ok := PrincipalFrom(context.Background()); ok {
		t.Error("PrincipalFrom(empty context) reported a principal")
	}
	want := Principal{UserID: "user-1", Admin: true}
	got, ok := PrincipalFrom(WithPrincipal(context.Background(), want))
	if !ok {
		t.Fatal("PrincipalFrom found no principal")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PrincipalFrom mismatch (-want +got):\n%s", diff)
	}
}

// On a local system (the Firestore emulator) an expired token's refusal
// gives the command that mints a new one for the same user.
func TestExpiredTokenLocally(t *testing.T) {
	t.Parallel()
	a := newTestAuthenticator(t, lifecycle.Config{AuthJWTSecret: testSecret, FirestoreEmulatorHost: "127.0.0.1:8790"}, nil)
	expired := func(sub string) string {
		return "Bearer " + sign(t, jwt.SigningMethodHS256, []byte(testSecret), "",
			withClaims(legacyClaims(sub), map[string]any{"exp": testNow.Add(-time.Hour).Unix()}))
	}
	for sub, want := range map[string]string{
		"user-alice": "token expired: sign in again for a new one; locally: go run ./scripts/devkit jwt -sub user-alice",
		// A sub a shell would not take as it is is not pasted into a command.
		"x; rm -rf ~": "token expired: sign in again for a new one; locally: go run ./scripts/devkit jwt -sub USER_ID",
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", expired(sub))
		_, err := a.Authenticate(r)
		if got := outcome(t, Principal{}, err); got != (authOutcome{Code: lifecycle.CodeUnauthorized, Message: want}) {
			t.Errorf("sub %q: %+v, want %q", sub, got, want)
		}
	}
}
