package testenv

// Helpers for handler tests: real JWTs (HS256 with the Env's secret, RS256
// from a local JWKS endpoint) and real Pub/Sub CloudEvents.
//
// This file must not import the functions package: its own tests (package
// functions) use testenv, and the import would be a cycle. They build their
// Server with functions.New(ctx, env.Config, functions.Deps{Service:
// env.Service}).

import (
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/golang-jwt/jwt/v5"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// Tokens are checked against the system clock (the authenticator does not
// use the Env's FixedClock), so their times are real ones.

// AccessTokenClaims are the claims of an access token as the old FastAPI
// service issued them: sub, exp an hour from now, type access_token.
func AccessTokenClaims(sub string) jwt.MapClaims {
	return jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix(), "type": "access_token"}
}

// SignHS256 returns claims as a compact JWT signed with secret.
func SignHS256(t testing.TB, secret string, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatalf("signing HS256 test token: %v", err)
	}
	return s
}

// AccessToken returns an HS256 access token for sub signed with the Env's
// AUTH_JWT_SECRET. Claims in extra are added (a nil value removes one).
func (e *Env) AccessToken(t testing.TB, sub string, extra map[string]any) string {
	t.Helper()
	return SignHS256(t, e.Config.AuthJWTSecret, WithClaims(AccessTokenClaims(sub), extra))
}

// Bearer returns the Authorization header value of an HS256 access token
// for sub.
func (e *Env) Bearer(t testing.TB, sub string) string {
	t.Helper()
	return "Bearer " + e.AccessToken(t, sub, nil)
}

// WithClaims returns a copy of c with changes applied; a nil value removes
// the claim.
func WithClaims(c jwt.MapClaims, changes map[string]any) jwt.MapClaims {
	out := make(jwt.MapClaims, len(c)+len(changes))
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

// JWKS is a local JWKS endpoint serving one RSA public key, standing in for
// Firebase Auth or Google's issuer, and the private key to sign with.
type JWKS struct {
	URL      string
	KeyID    string
	Issuer   string
	Audience string
	key      *rsa.PrivateKey
	hits     atomic.Int64
}

// jwksKey is generated once per test binary: RSA key generation is slow
// under -race.
var jwksKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// NewJWKS starts a JWKS server for the test, closed when it ends.
func NewJWKS(t testing.TB) *JWKS {
	t.Helper()
	key, err := jwksKey()
	if err != nil {
		t.Fatalf("generating RSA test key: %v", err)
	}
	j := &JWKS{KeyID: "test-rsa-1", Issuer: "https://securetoken.google.com/finwell-test",
		Audience: "finwell-test", key: key}
	jwk, err := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{KID: j.KeyID, ALG: jwkset.AlgRS256, USE: jwkset.UseSig},
	})
	if err != nil {
		t.Fatalf("building test JWK: %v", err)
	}
	store := jwkset.NewMemoryStorage()
	if err := store.KeyWrite(t.Context(), jwk); err != nil {
		t.Fatalf("storing test JWK: %v", err)
	}
	body, err := store.JSONPublic(t.Context())
	if err != nil {
		t.Fatalf("marshalling test JWKS: %v", err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		j.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	j.URL = srv.URL
	return j
}

// Configure returns cfg set to verify RS256 tokens of j (AUTH_JWKS_URL,
// AUTH_ISSUER, AUTH_AUDIENCE).
func (j *JWKS) Configure(cfg lifecycle.Config) lifecycle.Config {
	cfg.AuthJWKSURL, cfg.AuthIssuer, cfg.AuthAudience = j.URL, j.Issuer, j.Audience
	return cfg
}

// Claims are an ID token's claims for sub as Firebase Auth issues them.
func (j *JWKS) Claims(sub string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"sub": sub, "iss": j.Issuer, "aud": j.Audience,
		"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix()}
}

// Sign returns claims as an RS256 JWT signed by j's key, with its kid.
func (j *JWKS) Sign(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = j.KeyID
	s, err := tok.SignedString(j.key)
	if err != nil {
		t.Fatalf("signing RS256 test token: %v", err)
	}
	return s
}

// Bearer returns the Authorization header value of an RS256 ID token for
// sub.
func (j *JWKS) Bearer(t testing.TB, sub string) string {
	t.Helper()
	return "Bearer " + j.Sign(t, j.Claims(sub))
}

// Hits is how many times the JWKS was downloaded.
func (j *JWKS) Hits() int { return int(j.hits.Load()) }

// PubSubEventType is the CloudEvent type Eventarc delivers Pub/Sub
// messages as (functions.PubSubEventType; repeated to keep the import out).
const PubSubEventType = "google.cloud.pubsub.topic.v1.messagePublished"

// PubSubEvent is a messagePublished CloudEvent with id carrying data from
// topic, as Eventarc delivers a Cloud Scheduler message: the data is the
// Pub/Sub push envelope, the message body base64 in it.
func PubSubEvent(t testing.TB, id, topic string, data []byte) event.Event {
	t.Helper()
	e := event.New()
	e.SetID(id)
	e.SetType(PubSubEventType)
	e.SetSource("//pubsub.googleapis.com/projects/test-project/topics/" + topic)
	payload := map[string]any{
		"message": map[string]any{
			"data":      data, // []byte marshals as base64, as Pub/Sub sends it
			"messageId": id, "publishTime": Now.Format(time.RFC3339Nano),
		},
		"subscription": "projects/test-project/subscriptions/eventarc-" + topic,
	}
	if err := e.SetData(event.ApplicationJSON, payload); err != nil {
		t.Fatalf("building Pub/Sub CloudEvent: %v", err)
	}
	return e
}
