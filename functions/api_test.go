package functions

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// apiFixture is a server over a testenv.Env that accepts HS256 tokens
// signed with the Env's secret and RS256 tokens from a local JWKS.
type apiFixture struct {
	env    *testenv.Env
	jwks   *testenv.JWKS
	server *Server
	routes http.Handler
	logs   *testenv.LogBuffer
}

func newAPIFixture(t *testing.T) *apiFixture {
	t.Helper()
	return newAPIFixtureWith(t, nil)
}

// newAPIFixtureWith is newAPIFixture whose server sends repair requests to
// repairs (nil: publishes them).
func newAPIFixtureWith(t *testing.T, repairs AnalyticsRepairRequester) *apiFixture {
	t.Helper()
	env := testenv.New(t)
	jwks := testenv.NewJWKS(t)
	logs := &testenv.LogBuffer{}
	s, err := New(t.Context(), jwks.Configure(env.Config), Deps{Service: env.Service,
		AnalyticsRepairs: repairs, Logger: lifecycle.NewJSONLogger(logs, slog.LevelInfo)})
	if err != nil {
		t.Fatalf("functions.New: %v", err)
	}
	return &apiFixture{env: env, jwks: jwks, server: s, routes: s.Routes(), logs: logs}
}

// apiResult is what a handler test compares.
type apiResult struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    string
}

// call serves one request through the routes scripts/serve listens with.
func (f *apiFixture) call(t *testing.T, method, target, authorization string, body io.Reader) apiResult {
	t.Helper()
	return apiCall(t, f.routes, method, target, authorization, body)
}

func apiCall(t *testing.T, h http.Handler, method, target, authorization string, body io.Reader) apiResult {
	t.Helper()
	r := httptest.NewRequest(method, target, body)
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	res := apiResult{Status: w.Code, Header: w.Header(), Raw: w.Body.String()}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type = %q, want application/json", method, target, ct)
	}
	if err := json.Unmarshal(w.Body.Bytes(), &res.Body); err != nil {
		t.Fatalf("%s %s: body is not a JSON object (%v): %q", method, target, err, w.Body.String())
	}
	return res
}

// errorJSON is an error body as decoded JSON.
func errorJSON(detail string, code lifecycle.Code) map[string]any {
	return map[string]any{"detail": detail, "code": string(code)}
}

// sampleAnalyticsJSON is DESIGN §4's analytics object for the sample set
// at testenv.Now (counted by hand in lifecycle/analytics_test.go).
func sampleAnalyticsJSON() map[string]any {
	return map[string]any{
		"total_tokens": 15.0, "active_tokens": 11.0, "expired_tokens": 3.0, "revoked_tokens": 1.0,
		"error_tokens": 1.0, "unique_users": 5.0, "stale_tokens_30_days": 4.0, "stale_tokens_90_days": 2.0,
		"institutions": map[string]any{"Chase Bank": 5.0, "Bank of America": 3.0, "Wells Fargo": 3.0, "Citi": 3.0, "Unknown": 1.0},
		"environments": map[string]any{"sandbox": 15.0},
	}
}

const (
	apiItemPath = "/api/v1/plaid/items/"
	apiRevoke   = "/api/v1/plaid/tokens/revoke-all"
	apiAnalyze  = "/api/v1/plaid/tokens/analytics"
	apiCleanup  = "/api/v1/plaid/tokens/cleanup"
)

func TestAPIUnauthenticated(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	f.env.SeedSample(t)
	env := f.env
	before := env.Doc(t, "item-alice-chase")

	otherSecret := "another-secret-0123456789abcdef0123456789"
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, testenv.AccessTokenClaims(sample.Alice)).
		SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	hs := env.AccessToken(t, sample.Alice, nil)
	rs := f.jwks.Sign(t, f.jwks.Claims(sample.Alice))
	tokens := []struct {
		name, authorization, detail string
	}{
		{"no header", "", "missing bearer token: send the header Authorization: Bearer followed by a space and the JWT"},
		{"not bearer", "Basic dXNlcjpwYXNz", "missing bearer token: the Authorization header uses the Basic scheme; send the header Authorization: Bearer followed by a space and the JWT"},
		{"garbage", "Bearer not.a.jwt", "invalid token"},
		{"HS256 bad signature", "Bearer " + hs[:len(hs)-4] + "AAAA", "invalid token"},
		{"HS256 other secret", "Bearer " + testenv.SignHS256(t, otherSecret, testenv.AccessTokenClaims(sample.Alice)), "invalid token"},
		{"HS256 expired", "Bearer " + env.AccessToken(t, sample.Alice, map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}), "token expired: sign in again for a new one"},
		{"HS256 refresh token", "Bearer " + env.AccessToken(t, sample.Alice, map[string]any{"type": "refresh_token"}), "invalid token"},
		{"HS256 without sub", "Bearer " + env.AccessToken(t, sample.Alice, map[string]any{"sub": nil}), "invalid token"},
		{"alg none", "Bearer " + none, "invalid token"},
		{"RS256 bad signature", "Bearer " + rs[:len(rs)-4] + "AAAA", "invalid token"},
		{"RS256 wrong audience", "Bearer " + f.jwks.Sign(t, testenv.WithClaims(f.jwks.Claims(sample.Alice), map[string]any{"aud": "someone-else"})), "invalid token"},
		{"RS256 wrong issuer", "Bearer " + f.jwks.Sign(t, testenv.WithClaims(f.jwks.Claims(sample.Alice), map[string]any{"iss": "https://evil.example"})), "invalid token"},
	}
	endpoints := []struct{ method, target string }{
		{http.MethodDelete, apiRevoke},
		{http.MethodDelete, apiItemPath + "item-alice-chase"},
		{http.MethodGet, apiAnalyze},
		{http.MethodDelete, apiCleanup},
	}
	for _, tok := range tokens {
		for _, ep := range endpoints {
			t.Run(tok.name+" "+ep.method+" "+ep.target, func(t *testing.T) {
				t.Parallel()
				got := f.call(t, ep.method, ep.target, tok.authorization, nil)
				if got.Status != http.StatusUnauthorized {
					t.Fatalf("status = %d, want 401; body %s", got.Status, got.Raw)
				}
				if c := got.Header.Get("WWW-Authenticate"); !strings.HasPrefix(c, "Bearer") {
					t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", c)
				}
				if diff := cmp.Diff(errorJSON(tok.detail, lifecycle.CodeUnauthorized), got.Body); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
			})
		}
	}
	t.Cleanup(func() {
		if diff := cmp.Diff(before, env.Doc(t, "item-alice-chase")); diff != "" {
			t.Errorf("an unauthenticated request changed a document (-before +after):\n%s", diff)
		}
		if n := env.Plaid.CallCount("/item/remove"); n != 0 {
			t.Errorf("unauthenticated requests made %d /item/remove calls", n)
		}
	})
}

func TestAPINotAdmin(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	f.env.SeedSample(t)
	for _, auth := range []struct{ name, authorization string }{
		{"HS256", f.env.Bearer(t, sample.Alice)},
		{"RS256", f.jwks.Bearer(t, sample.Alice)},
		{"admin claim not a boolean", "Bearer " + f.env.AccessToken(t, sample.Alice, map[string]any{"admin": "true"})},
	} {
		for _, ep := range []struct{ method, target string }{
			{http.MethodGet, apiAnalyze}, {http.MethodGet, apiAnalyze + "?history=3"},
			{http.MethodDelete, apiCleanup}, {http.MethodDelete, apiCleanup + "?days_threshold=1"},
		} {
			t.Run(auth.name+" "+ep.method+" "+ep.target, func(t *testing.T) {
				t.Parallel()
				got := f.call(t, ep.method, ep.target, auth.authorization, nil)
				want := apiResult{Status: http.StatusForbidden, Body: errorJSON("admin privileges required", lifecycle.CodeForbidden)}
				if diff := cmp.Diff(want, got, cmpStatusBody); diff != "" {
					t.Errorf("response (-want +got):\n%s", diff)
				}
			})
		}
	}
	t.Cleanup(func() {
		if n := len(f.env.Plaid.Calls()); n != 0 {
			t.Errorf("refused requests made %d Plaid calls", n)
		}
		if doc := f.env.Doc(t, "item-carol-boa"); doc == nil {
			t.Error("a refused cleanup removed a stale token")
		}
	})
}

// cmpStatusBody compares status and body only.
var cmpStatusBody = cmp.Comparer(func(a, b apiResult) bool {
	return a.Status == b.Status && cmp.Equal(a.Body, b.Body)
})

func TestAPIMethodNotAllowed(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	admin := f.env.Bearer(t, sample.AdminUser)
	tests := []struct{ method, target, allow string }{
		{http.MethodGet, apiRevoke, http.MethodDelete},
		{http.MethodPost, apiRevoke, http.MethodDelete},
		{http.MethodGet, apiItemPath + "item-alice-chase", http.MethodDelete},
		{http.MethodPut, apiItemPath + "item-alice-chase", http.MethodDelete},
		{http.MethodDelete, apiAnalyze, http.MethodGet},
		{http.MethodPost, apiAnalyze, http.MethodGet},
		{http.MethodGet, apiCleanup, http.MethodDelete},
	}
	for _, tt := range tests {
		for _, authorization := range []string{"", admin} { // the method is checked first
			t.Run(tt.method+" "+tt.target, func(t *testing.T) {
				t.Parallel()
				got := f.call(t, tt.method, tt.target, authorization, nil)
				if got.Status != http.StatusMethodNotAllowed || got.Header.Get("Allow") != tt.allow {
					t.Errorf("status %d Allow %q, want 405 Allow %q", got.Status, got.Header.Get("Allow"), tt.allow)
				}
				if got.Body["code"] != "method_not_allowed" || got.Body["detail"] == "" || len(got.Body) != 2 {
					t.Errorf("body = %v, want {detail, code: method_not_allowed}", got.Body)
				}
			})
		}
	}
}

func TestAPIBodyTooLarge(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	f.env.SeedSample(t)
	big := strings.Repeat("x", maxRequestBody+1)
	for _, ep := range []struct{ method, target, authorization string }{
		{http.MethodDelete, apiRevoke, f.env.Bearer(t, sample.Alice)},
		{http.MethodDelete, apiItemPath + "item-alice-chase", f.env.Bearer(t, sample.Alice)},
		{http.MethodGet, apiAnalyze, f.env.Bearer(t, sample.AdminUser)},
		{http.MethodDelete, apiCleanup, f.env.Bearer(t, sample.AdminUser)},
	} {
		t.Run(ep.method+" "+ep.target, func(t *testing.T) {
			t.Parallel()
			got := f.call(t, ep.method, ep.target, ep.authorization, strings.NewReader(big))
			if got.Status != http.StatusRequestEntityTooLarge || got.Body["code"] != string(lifecycle.CodeTooLarge) {
				t.Errorf("status %d body %v, want 413 too_large", got.Status, got.Body)
			}
		})
	}
	t.Cleanup(func() {
		if doc := f.env.Doc(t, "item-alice-chase"); doc.Status != lifecycle.StatusActive {
			t.Errorf("an oversized request revoked a token: %+v", doc)
		}
	})
}

func TestAPIRevokeItem(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	env := f.env
	env.SeedSample(t)

	// HS256, the caller's own item.
	got := f.call(t, http.MethodDelete, apiItemPath+"item-alice-chase", env.Bearer(t, sample.Alice), nil)
	want := apiResult{Status: http.StatusOK, Body: map[string]any{"message": "Item revoked successfully", "item_id": "item-alice-chase"}}
	if diff := cmp.Diff(want, got, cmpStatusBody); diff != "" {
		t.Errorf("revoke own item (-want +got):\n%s", diff)
	}
	if doc := env.Doc(t, "item-alice-chase"); doc.Status != lifecycle.StatusRevoked || !doc.PlaidRemoved || !doc.UpdatedAt.Equal(testenv.Now) {
		t.Errorf("document = %+v, want revoked, plaid_removed, updated now", doc)
	}
	if !env.Plaid.Removed("access-sandbox-item-alice-chase") || env.Plaid.CallCount("/item/remove") != 1 {
		t.Errorf("Plaid: removed %v after %d calls, want removed after 1", env.Plaid.Removed("access-sandbox-item-alice-chase"), env.Plaid.CallCount("/item/remove"))
	}

	// Again: idempotent, no second Plaid call.
	got = f.call(t, http.MethodDelete, apiItemPath+"item-alice-chase", env.Bearer(t, sample.Alice), nil)
	if diff := cmp.Diff(want, got, cmpStatusBody); diff != "" {
		t.Errorf("revoke again (-want +got):\n%s", diff)
	}
	if n := env.Plaid.CallCount("/item/remove"); n != 1 {
		t.Errorf("/item/remove calls = %d after a repeated revocation, want 1", n)
	}

	// RS256 from the JWKS.
	got = f.call(t, http.MethodDelete, apiItemPath+"item-carol-citi", f.jwks.Bearer(t, sample.Carol), nil)
	want = apiResult{Status: http.StatusOK, Body: map[string]any{"message": "Item revoked successfully", "item_id": "item-carol-citi"}}
	if diff := cmp.Diff(want, got, cmpStatusBody); diff != "" {
		t.Errorf("revoke with an RS256 token (-want +got):\n%s", diff)
	}
	if doc := env.Doc(t, "item-carol-citi"); doc.Status != lifecycle.StatusRevoked || !doc.PlaidRemoved {
		t.Errorf("document = %+v, want revoked and removed", doc)
	}

	// Plaid down: revoked at once all the same.
	env.Plaid.FailAlways("/item/remove", 500, "API_ERROR", "INTERNAL_SERVER_ERROR")
	got = f.call(t, http.MethodDelete, apiItemPath+"item-bob-chase", env.Bearer(t, sample.Bob), nil)
	want = apiResult{Status: http.StatusOK, Body: map[string]any{"message": "Item revoked successfully", "item_id": "item-bob-chase"}}
	if diff := cmp.Diff(want, got, cmpStatusBody); diff != "" {
		t.Errorf("revoke while Plaid is down (-want +got):\n%s", diff)
	}
	if doc := env.Doc(t, "item-bob-chase"); doc.Status != lifecycle.StatusRevoked || doc.PlaidRemoved {
		t.Errorf("document = %+v, want revoked, plaid_removed false", doc)
	}
}

// Another user's item answers exactly like a missing one and is left
// alone; admins included (they revoke for others through the CLI).
func TestAPIRevokeItemNotFound(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	env := f.env
	env.SeedSample(t)
	before := env.Doc(t, "item-alice-chase")

	missing := f.call(t, http.MethodDelete, apiItemPath+"item-nobody", env.Bearer(t, sample.Bob), nil)
	want := apiResult{Status: http.StatusNotFound, Body: errorJSON("item not found", lifecycle.CodeNotFound)}
	if diff := cmp.Diff(want, missing, cmpStatusBody); diff != "" {
		t.Errorf("missing item (-want +got):\n%s", diff)
	}
	for _, tt := range []struct{ name, target, authorization string }{
		{"another user's, HS256", apiItemPath + "item-alice-chase", env.Bearer(t, sample.Bob)},
		{"another user's, RS256", apiItemPath + "item-alice-chase", f.jwks.Bearer(t, sample.Bob)},
		{"another user's, admin", apiItemPath + "item-alice-chase", env.Bearer(t, sample.AdminUser)},
		{"no item id", apiItemPath, env.Bearer(t, sample.Bob)},
		{"nested path", apiItemPath + "item-alice-chase/x", env.Bearer(t, sample.Alice)},
	} {
		got := f.call(t, http.MethodDelete, tt.target, tt.authorization, nil)
		if got.Status != missing.Status || got.Raw != missing.Raw {
			t.Errorf("%s: %d %s, want exactly the missing item's %d %s", tt.name, got.Status, got.Raw, missing.Status, missing.Raw)
		}
	}
	if diff := cmp.Diff(before, env.Doc(t, "item-alice-chase")); diff != "" {
		t.Errorf("another user's document changed (-before +after):\n%s", diff)
	}
	if n := env.Plaid.CallCount("/item/remove"); n != 0 {
		t.Errorf("/item/remove calls = %d, want 0", n)
	}
}

// The RevokeItem function deployed alone takes the item id as its path.
func TestAPIRevokeItemDeployedAtRoot(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	f.env.SeedSample(t)
	got := apiCall(t, f.server.RevokeItemHandler(), http.MethodDelete, "/item-alice-boa", f.env.Bearer(t, sample.Alice), nil)
	want := apiResult{Status: http.StatusOK, Body: map[string]any{"message": "Item revoked successfully", "item_id": "item-alice-boa"}}
	if diff := cmp.Diff(want, got, cmpStatusBody); diff != "" {
		t.Errorf("response (-want +got):\n%s", diff)
	}
}

func TestAPIRevokeAll(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	env := f.env
	tokens := env.SeedSample(t)
	before := map[string]*lifecycle.Token{}
	for _, tok := range tokens {
		before[tok.ItemID] = env.Doc(t, tok.ItemID)
	}
	revokeAll := func(authorization string) apiResult {
		t.Helper()
		return f.call(t, http.MethodDelete, apiRevoke, authorization, nil)
	}
	body := func(n float64, msg string) apiResult {
		return apiResult{Status: http.StatusOK, Body: map[string]any{"message": msg, "revoked_count": n}}
	}

	if diff := cmp.Diff(body(3, "Revoked 3 tokens successfully"), revokeAll(env.Bearer(t, sample.Alice)), cmpStatusBody); diff != "" {
		t.Errorf("Alice (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(body(0, "Revoked 0 tokens successfully"), revokeAll(env.Bearer(t, sample.Alice)), cmpStatusBody); diff != "" {
		t.Errorf("Alice again (-want +got):\n%s", diff)
	}
	// Dave over RS256: item-dave-revoked is already revoked.
	if diff := cmp.Diff(body(2, "Revoked 2 tokens successfully"), revokeAll(f.jwks.Bearer(t, sample.Dave)), cmpStatusBody); diff != "" {
		t.Errorf("Dave (-want +got):\n%s", diff)
	}
	// An admin revokes their own tokens only: none.
	if diff := cmp.Diff(body(0, "Revoked 0 tokens successfully"), revokeAll(env.Bearer(t, sample.AdminUser)), cmpStatusBody); diff != "" {
		t.Errorf("admin (-want +got):\n%s", diff)
	}

	for _, tok := range tokens {
		doc := env.Doc(t, tok.ItemID)
		switch tok.UserID {
		case sample.Alice, sample.Dave:
			if doc.Status != lifecycle.StatusRevoked {
				t.Errorf("%s status = %s, want revoked", tok.ItemID, doc.Status)
			}
		default:
			if diff := cmp.Diff(before[tok.ItemID], doc); diff != "" {
				t.Errorf("%s of another user changed (-before +after):\n%s", tok.ItemID, diff)
			}
		}
	}
	if n := env.Plaid.CallCount("/item/remove"); n != 5 {
		t.Errorf("/item/remove calls = %d, want 5 (3 of Alice, 2 of Dave)", n)
	}
}

// analyticsFixture is an API fixture whose server takes repair requests
// (counted) instead of publishing them.
func analyticsFixture(t *testing.T) (*apiFixture, *testenv.Repairs) {
	t.Helper()
	repairs := &testenv.Repairs{}
	return newAPIFixtureWith(t, repairs), repairs
}

// countsOf returns the analytics object of a body without the keys that
// vary (as_of, source, trend), checking that as_of is a time.
func countsOf(t *testing.T, body map[string]any) map[string]any {
	t.Helper()
	a, ok := body["analytics"].(map[string]any)
	if !ok {
		t.Fatalf("no analytics object in %v", body)
	}
	out := maps.Clone(a)
	if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(out["as_of"])); err != nil {
		t.Errorf("as_of = %v, want a time", out["as_of"])
	}
	for _, k := range []string{"as_of", "source", "trend"} {
		delete(out, k)
	}
	return out
}

func TestAPIAnalytics(t *testing.T) {
	t.Parallel()
	f, repairs := analyticsFixture(t)
	env := f.env
	env.SeedSample(t)

	for _, tt := range []struct{ name, authorization string }{
		{"HS256 admin by ADMIN_USER_IDS", env.Bearer(t, sample.AdminUser)},
		{"HS256 admin claim", "Bearer " + env.AccessToken(t, sample.Alice, map[string]any{"admin": true})},
		{"RS256 admin claim", "Bearer " + f.jwks.Sign(t, testenv.WithClaims(f.jwks.Claims("firebase-ops"), map[string]any{"admin": true}))},
	} {
		got := f.call(t, http.MethodGet, apiAnalyze, tt.authorization, nil)
		if got.Status != http.StatusOK {
			t.Fatalf("%s: HTTP %d %v", tt.name, got.Status, got.Body)
		}
		if diff := cmp.Diff(sampleAnalyticsJSON(), countsOf(t, got.Body)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
		// The counters were never initialized: counted from every token,
		// and a repair (the backfill) is asked of WeeklyAnalytics.
		if a := got.Body["analytics"].(map[string]any); a["source"] != "recount" || got.Body["repair_requested"] != true {
			t.Errorf("%s: source %v, repair_requested %v; want recount, true", tt.name, a["source"], got.Body["repair_requested"])
		}
	}
	// One request for the backfill, not one per call.
	if n := repairs.Requests(); n != 1 {
		t.Errorf("%d repair requests, want 1", n)
	}

	// Once a repair has backfilled them, analytics read the counters.
	if _, err := env.Service.ExactAnalytics(t.Context(), lifecycle.ExactOptions{Repair: true}); err != nil {
		t.Fatal(err)
	}
	got := f.call(t, http.MethodGet, apiAnalyze, env.Bearer(t, sample.AdminUser), nil)
	if diff := cmp.Diff(sampleAnalyticsJSON(), countsOf(t, got.Body)); diff != "" {
		t.Errorf("from the counters (-want +got):\n%s", diff)
	}
	a := got.Body["analytics"].(map[string]any)
	trend, _ := a["trend"].([]any)
	if a["source"] != "counters" || len(trend) != lifecycle.TrendDays || got.Body["repair_requested"] != nil {
		t.Errorf("source %v, %d trend days, repair_requested %v; want counters, %d, absent", a["source"], len(trend), got.Body["repair_requested"], lifecycle.TrendDays)
	}
	if last := trend[len(trend)-1].(map[string]any); last["date"] != testenv.Now.Format(time.DateOnly) {
		t.Errorf("the trend ends on %v, want today %s", last["date"], testenv.Now.Format(time.DateOnly))
	}
	if n := repairs.Requests(); n != 1 {
		t.Errorf("%d repair requests after the backfill, want still 1", n)
	}
	if n := len(env.Plaid.Calls()); n != 0 {
		t.Errorf("analytics made %d Plaid calls", n)
	}
}

// ?exact=true recounts every token, compares with the counters and writes
// nothing (TokenAnalytics only reads Firestore): drift found asks
// WeeklyAnalytics for a repair.
func TestAPIAnalyticsExact(t *testing.T) {
	t.Parallel()
	f, repairs := analyticsFixture(t)
	env := f.env
	env.SeedSample(t)
	admin := env.Bearer(t, sample.AdminUser)
	if _, err := env.Service.ExactAnalytics(t.Context(), lifecycle.ExactOptions{Repair: true}); err != nil {
		t.Fatal(err)
	}

	got := f.call(t, http.MethodGet, apiAnalyze+"?exact=true", admin, nil)
	if diff := cmp.Diff(sampleAnalyticsJSON(), countsOf(t, got.Body)); diff != "" {
		t.Errorf("exact analytics (-want +got):\n%s", diff)
	}
	wantExact := map[string]any{"drift": map[string]any{}, "users_drifted": 0.0, "counters_initialized": true}
	if diff := cmp.Diff(wantExact, got.Body["exact"]); diff != "" || got.Body["repair_requested"] != nil {
		t.Errorf("exact report (-want +got):\n%s\nrepair_requested %v", diff, got.Body["repair_requested"])
	}

	// A writer's token whose event never reached TokenStats.
	w := testenv.NewTokenWriter(env.Client)
	w.Set(t, "item-lost-event", testenv.TokenData(testenv.ActiveToken("item-lost-event", sample.Alice, 0).Token))
	got = f.call(t, http.MethodGet, apiAnalyze+"?exact=true", admin, nil)
	if n := countsOf(t, got.Body)["total_tokens"]; n != 16.0 {
		t.Errorf("exact total_tokens %v, want 16", n)
	}
	wantDrift := map[string]any{
		"tokens": map[string]any{"total": 1.0}, "status": map[string]any{"active": 1.0},
		"institutions": map[string]any{"Chase Bank": 1.0}, "environments": map[string]any{"sandbox": 1.0},
		"activity": map[string]any{testenv.Now.Format(time.DateOnly): 1.0},
	}
	wantExact = map[string]any{"drift": wantDrift, "users_drifted": 1.0, "counters_initialized": true}
	if diff := cmp.Diff(wantExact, got.Body["exact"]); diff != "" || got.Body["repair_requested"] != true {
		t.Errorf("exact report with a lost event (-want +got):\n%s\nrepair_requested %v", diff, got.Body["repair_requested"])
	}
	if repairs.Requests() != 1 {
		t.Errorf("%d repair requests, want 1", repairs.Requests())
	}
	// Nothing was written: the counters still miss the token.
	if n := countsOf(t, f.call(t, http.MethodGet, apiAnalyze, admin, nil).Body)["total_tokens"]; n != 15.0 {
		t.Errorf("counters' total_tokens %v after a read-only recount, want 15", n)
	}

	for _, bad := range []string{"yes", "", "1&exact=0"} {
		got := f.call(t, http.MethodGet, apiAnalyze+"?exact="+bad, admin, nil)
		want := apiResult{Status: http.StatusBadRequest, Body: errorJSON("exact must be true or false", lifecycle.CodeInvalid)}
		if diff := cmp.Diff(want, got, cmpStatusBody); diff != "" {
			t.Errorf("exact=%s (-want +got):\n%s", bad, diff)
		}
	}
}

// pubsubTopicNamed creates topic and an Eventarc-like subscription sub on
// it in the Pub/Sub emulator, for project.
func pubsubTopicNamed(t *testing.T, project, topic, sub string) (client *pubsub.Client, topicName, subName string) {
	t.Helper()
	emulator.PubSubHost(t)
	ctx := context.Background()
	client, err := pubsub.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	topicName = "projects/" + project + "/topics/" + topic
	subName = "projects/" + project + "/subscriptions/" + sub
	if _, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topicName}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: subName, Topic: topicName, AckDeadlineSeconds: 60}); err != nil {
		t.Fatal(err)
	}
	return client, topicName, subName
}

// A repair request goes to the analytics topic on the real Pub/Sub
// emulator, as {"repair": true}.
func TestAnalyticsRepairRequestPublished(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	project := f.env.Project
	client, _, sub := pubsubTopicNamed(t, project, lifecycle.DefaultAnalyticsTopic, "eventarc-weekly-analytics")
	f.env.SeedSample(t) // counters never initialized: analytics asks for the backfill
	s, err := New(t.Context(), f.env.Config, Deps{Service: f.env.Service, Logger: lifecycle.NewJSONLogger(f.logs, slog.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	got := apiCall(t, s.Routes(), http.MethodGet, apiAnalyze, f.env.Bearer(t, sample.AdminUser), nil)
	if got.Body["repair_requested"] != true {
		t.Fatalf("repair_requested %v, want true; logs:\n%s", got.Body["repair_requested"], f.logs.String())
	}
	resp, err := client.SubscriptionAdminClient.Pull(t.Context(), &pubsubpb.PullRequest{Subscription: sub, MaxMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.ReceivedMessages) != 1 || string(resp.ReceivedMessages[0].Message.Data) != `{"repair":true}` {
		t.Errorf("messages on the analytics topic: %v, want one {\"repair\":true}", resp.ReceivedMessages)
	}
}

func TestAPIAnalyticsHistory(t *testing.T) {
	t.Parallel()
	f, _ := analyticsFixture(t)
	env := f.env
	env.SeedSample(t)
	ctx := context.Background()
	admin := env.Bearer(t, sample.AdminUser)

	// No snapshot yet: an empty history, not a missing key.
	got := f.call(t, http.MethodGet, apiAnalyze+"?history=1", admin, nil)
	if h, ok := got.Body["history"].([]any); got.Status != http.StatusOK || !ok || len(h) != 0 {
		t.Errorf("history of nothing: HTTP %d, history %v; want 200 and []", got.Status, got.Body["history"])
	}

	// Three weekly snapshots.
	a, err := env.Service.Analytics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	week := 7 * 24 * time.Hour
	for i, id := range []string{"w1", "w2", "w3"} {
		env.Clock.Set(testenv.Now.Add(time.Duration(i) * week))
		a.TotalTokens = 15 + i
		if _, err := env.Service.SaveAnalyticsSnapshot(ctx, id, a, nil); err != nil {
			t.Fatal(err)
		}
	}
	env.Clock.Set(testenv.Now)
	snapshot := func(at time.Time, total float64) map[string]any {
		an := sampleAnalyticsJSON()
		an["total_tokens"] = total
		return map[string]any{"taken_at": at.Format(time.RFC3339), "analytics": an}
	}
	got = f.call(t, http.MethodGet, apiAnalyze+"?history=2", admin, nil)
	var history []any
	for _, h := range got.Body["history"].([]any) {
		h := h.(map[string]any)
		history = append(history, map[string]any{"taken_at": h["taken_at"], "analytics": countsOf(t, h)})
	}
	if diff := cmp.Diff([]any{snapshot(testenv.Now.Add(2*week), 17), snapshot(testenv.Now.Add(week), 16)}, history); diff != "" {
		t.Errorf("history=2 (-want +got):\n%s", diff)
	}
	got = f.call(t, http.MethodGet, apiAnalyze+"?history=52", admin, nil)
	if h, _ := got.Body["history"].([]any); got.Status != http.StatusOK || len(h) != 3 {
		t.Errorf("history=52: status %d, %d snapshots; want 200 and 3", got.Status, len(h))
	}

	for _, bad := range []string{"0", "53", "-1", "abc", "", "1.5", "2&history=3"} {
		got := f.call(t, http.MethodGet, apiAnalyze+"?history="+bad, admin, nil)
		want := apiResult{Status: http.StatusBadRequest, Body: errorJSON("history must be an integer from 1 to 52", lifecycle.CodeInvalid)}
		if diff := cmp.Diff(want, got, cmpStatusBody); diff != "" {
			t.Errorf("history=%s (-want +got):\n%s", bad, diff)
		}
	}
}

// snapshotCount counts the stored analytics snapshots.
func snapshotCount(t *testing.T, env *testenv.Env) int {
	t.Helper()
	res, err := env.Client.Collection(lifecycle.SnapshotsCollection).NewAggregationQuery().WithCount("n").Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		N int64 `firestore:"n"`
	}
	if err := res.DataTo(&c); err != nil {
		t.Fatal(err)
	}
	return int(c.N)
}

// The weekly run recounts, repairs the counters (the first run backfills
// them), logs the counts and the drift, and stores a snapshot; a
// redelivery stores no second one.
func TestWeeklyAnalyticsEvent(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	env := f.env
	env.SeedSample(t)
	e := testenv.PubSubEvent(t, "1", "plaid-token-weekly-analytics", []byte(`{"days_threshold":90,"dry_run":false}`))

	for range 2 { // a redelivery
		if err := f.server.WeeklyAnalytics(context.Background(), e); err != nil {
			t.Fatalf("WeeklyAnalytics: %v", err)
		}
	}
	if n := snapshotCount(t, env); n != 1 {
		t.Errorf("%d snapshots after a redelivered event, want 1", n)
	}
	wantLog := []map[string]any{{
		"severity": "INFO", "message": "weekly analytics", "event_id": "1", "function": "WeeklyAnalytics",
		"total_tokens": 15.0, "active_tokens": 11.0, "expired_tokens": 3.0, "revoked_tokens": 1.0,
		"error_tokens": 1.0, "unique_users": 5.0, "stale_tokens_30_days": 4.0, "stale_tokens_90_days": 2.0,
		"institutions": map[string]any{"Chase Bank": 5.0, "Bank of America": 3.0, "Wells Fargo": 3.0, "Citi": 3.0, "Unknown": 1.0},
		"environments": map[string]any{"sandbox": 15.0},
		// The first run backfilled the counters: every key drifted.
		"trigger": "schedule", "counters_initialized": false, "drift_keys": 22.0, "users_drifted": 5.0,
	}}
	if diff := cmp.Diff(wantLog, f.logs.Entries(t, "weekly analytics")); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	if n := len(f.logs.Entries(t, "event already handled; redelivery acknowledged")); n != 1 {
		t.Errorf("redelivery logged %d times, want 1", n)
	}
	if n := len(f.logs.Entries(t, "analytics institution")); n != 5 {
		t.Errorf("%d institution lines, want 5", n)
	}
	// The redelivery's repair found the counters exact.
	if n := len(f.logs.Entries(t, "analytics counters exact")); n != 1 {
		t.Errorf("%d \"analytics counters exact\" lines, want 1 (the redelivery's)", n)
	}

	// The snapshot is what ?history=1 shows, with the repair it made.
	got := f.call(t, http.MethodGet, apiAnalyze+"?history=1", env.Bearer(t, sample.AdminUser), nil)
	h := got.Body["history"].([]any)[0].(map[string]any)
	if diff := cmp.Diff(sampleAnalyticsJSON(), countsOf(t, h)); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
	if h["taken_at"] != testenv.Now.Format(time.RFC3339) || h["repair"].(map[string]any)["trigger"] != "schedule" {
		t.Errorf("snapshot taken_at %v repair %v", h["taken_at"], h["repair"])
	}
	// The counters now answer analytics.
	if src := got.Body["analytics"].(map[string]any)["source"]; src != "counters" {
		t.Errorf("analytics source %v after the weekly run, want counters", src)
	}

	// A new event id a week later is a new snapshot.
	env.Clock.Advance(7 * 24 * time.Hour)
	if err := f.server.WeeklyAnalytics(context.Background(), testenv.PubSubEvent(t, "2", "plaid-token-weekly-analytics", nil)); err != nil {
		t.Fatal(err)
	}
	if n := snapshotCount(t, env); n != 2 {
		t.Errorf("%d snapshots after a second week, want 2", n)
	}
	if n := len(env.Plaid.Calls()); n != 0 {
		t.Errorf("weekly analytics made %d Plaid calls", n)
	}
}

// {"repair": true} repairs now; a request published before a repair that
// recounted after it is answered already and does nothing.
func TestWeeklyAnalyticsRepairRequest(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	env := f.env
	env.SeedSample(t)
	request := func(id string, published time.Time) event.Event {
		e := testenv.PubSubEvent(t, id, "plaid-token-weekly-analytics", []byte(`{"repair":true}`))
		e.SetTime(published)
		return e
	}
	if err := f.server.WeeklyAnalytics(t.Context(), request("r1", time.Now())); err != nil {
		t.Fatal(err)
	}
	if n := snapshotCount(t, env); n != 1 {
		t.Errorf("%d snapshots after a repair request, want 1", n)
	}
	logs := f.logs.Entries(t, "weekly analytics")
	if len(logs) != 1 || logs[0]["trigger"] != "repair_request" {
		t.Errorf("weekly analytics log %v, want one of trigger repair_request", logs)
	}
	// Published before the repair above recounted: answered already.
	if err := f.server.WeeklyAnalytics(t.Context(), request("r0", time.Now().Add(-time.Minute))); err != nil {
		t.Fatal(err)
	}
	if n := snapshotCount(t, env); n != 1 || len(f.logs.Entries(t, "analytics repair already done")) != 1 {
		t.Errorf("%d snapshots, %d \"already done\" lines; want 1 and 1", n, len(f.logs.Entries(t, "analytics repair already done")))
	}

	// While another repair holds the lease, the event asks for a retry.
	if err := env.Stats.ClaimRepair(t.Context(), "another", testenv.Now, testenv.Now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := f.server.WeeklyAnalytics(t.Context(), request("r2", time.Now())); err == nil {
		t.Error("a repair request while another repair runs: nil, want an error (retry later)")
	}
}

// An event that is not a Pub/Sub message is dropped without a retry.
func TestWeeklyAnalyticsMalformedEvent(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	e := testenv.PubSubEvent(t, "bad", "plaid-token-weekly-analytics", nil)
	if err := e.SetData("application/json", []byte(`"not an envelope"`)); err != nil {
		t.Fatal(err)
	}
	if err := f.server.WeeklyAnalytics(context.Background(), e); err != nil {
		t.Errorf("WeeklyAnalytics(malformed) = %v, want nil: a retry cannot help", err)
	}
	if n := snapshotCount(t, f.env); n != 0 {
		t.Errorf("%d snapshots from a malformed event", n)
	}
}

// scripts/serve delivers events over HTTP (structured mode here); a
// redelivery there is acknowledged without a second snapshot too.
func TestWeeklyAnalyticsOverHTTP(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	f.env.SeedSample(t)
	e := testenv.PubSubEvent(t, "http-1", "plaid-token-weekly-analytics", []byte(`{}`))
	raw, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r := httptest.NewRequest(http.MethodPost, "/events/WeeklyAnalytics", bytes.NewReader(raw))
		r.RemoteAddr = "127.0.0.1:50000" // the local server takes events from loopback only
		r.Host = "127.0.0.1:8080"
		r.Header.Set("Content-Type", "application/cloudevents+json")
		w := httptest.NewRecorder()
		f.routes.ServeHTTP(w, r)
		if w.Code/100 != 2 {
			t.Fatalf("POST /events/WeeklyAnalytics: %d %s", w.Code, w.Body.String())
		}
	}
	if n := snapshotCount(t, f.env); n != 1 {
		t.Errorf("%d snapshots, want 1", n)
	}

	// From any other address the local server refuses events, unless
	// SERVE_REMOTE_EVENTS opens them.
	r := httptest.NewRequest(http.MethodPost, "/events/DailyCleanup", bytes.NewReader(raw))
	r.Header.Set("Content-Type", "application/cloudevents+json")
	w := httptest.NewRecorder()
	f.routes.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "SERVE_REMOTE_EVENTS") {
		t.Errorf("remote event: %d %s, want 403 naming SERVE_REMOTE_EVENTS", w.Code, w.Body.String())
	}
	if f.env.Plaid.CallCount("/item/get") != 0 || len(f.env.CleanupRuns(t)) != 0 {
		t.Error("a refused remote event ran a cleanup")
	}
}

// A web page whose name an attacker rebinds to 127.0.0.1 reaches the local
// server from the operator's own browser: the peer is loopback, the Host is
// the attacker's name. Scheduled events (real cleanups) are refused then,
// and from any browser page of another site.
func TestLocalEventsRefuseDNSRebinding(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	f.env.SeedSample(t)
	raw, err := json.Marshal(testenv.PubSubEvent(t, "rebound-1", lifecycle.DefaultCleanupTopic, []byte(`{"days_threshold": 30}`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, host string
		header     map[string]string
		want       int
	}{
		{"rebound name", "attacker.example:8080", nil, http.StatusForbidden},
		{"rebound name without port", "attacker.example", nil, http.StatusForbidden},
		{"loopback host, page of another site", "127.0.0.1:8080", map[string]string{"Origin": "http://attacker.example"}, http.StatusForbidden},
		{"loopback host, cross-site fetch", "localhost:8080", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/events/DailyCleanup", bytes.NewReader(raw))
			r.RemoteAddr, r.Host = "127.0.0.1:50000", tc.host
			r.Header.Set("Content-Type", "application/cloudevents+json")
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			f.routes.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Errorf("%d %s, want %d", w.Code, w.Body.String(), tc.want)
			}
		})
	}
	if n := f.env.Plaid.CallCount("/item/remove") + f.env.Plaid.CallCount("/item/get"); n != 0 || len(f.env.CleanupRuns(t)) != 0 {
		t.Fatalf("a refused event reached Plaid (%d calls) or ran a cleanup", n)
	}
	// What dev.sh prints (curl to 127.0.0.1, no Origin) is taken.
	for _, host := range []string{"127.0.0.1:8080", "localhost:8080", "[::1]:8080"} {
		r := httptest.NewRequest(http.MethodPost, "/events/DailyCleanup", bytes.NewReader(raw))
		r.RemoteAddr, r.Host = "127.0.0.1:50000", host
		r.Header.Set("Content-Type", "application/cloudevents+json")
		w := httptest.NewRecorder()
		f.routes.ServeHTTP(w, r)
		if w.Code/100 != 2 {
			t.Errorf("event for Host %s: %d %s, want it taken", host, w.Code, w.Body.String())
		}
	}
}
