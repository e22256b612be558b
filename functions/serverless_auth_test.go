package functions

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// Where an organization refuses allUsers (domain-restricted sharing), the
// user-facing functions are invoked only by named principals, such as the
// app backend's service account (terraform: user_invoker_members). Cloud
// Run checks that caller's Google identity token in
// X-Serverless-Authorization and passes Authorization, the user's JWT,
// through untouched. These tests show the functions never read the other
// header: the user's JWT in Authorization decides, whatever
// X-Serverless-Authorization holds.

// serverlessCall serves one request with both headers ("" leaves one out).
func serverlessCall(t *testing.T, h http.Handler, method, target, authorization, serverless string) apiResult {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	if serverless != "" {
		r.Header.Set("X-Serverless-Authorization", serverless)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	res := apiResult{Status: w.Code, Header: w.Header(), Raw: w.Body.String()}
	if err := json.Unmarshal(w.Body.Bytes(), &res.Body); err != nil {
		t.Fatalf("%s %s: body is not a JSON object (%v): %q", method, target, err, w.Body.String())
	}
	return res
}

func TestServerlessAuthorizationNeverDecides(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	env := f.env
	env.SeedSample(t)
	bobBefore := env.Doc(t, "item-bob-chase")
	aliceBefore := env.Doc(t, "item-alice-boa")

	// What the app backend's identity token looks like to the function: an
	// RS256 token from Google's issuer for the function's URL. Signed here
	// by the fixture's JWKS key, so only its claims make it not a user's.
	googleIDToken := "Bearer " + f.jwks.Sign(t, jwt.MapClaims{
		"iss": "https://accounts.google.com", "aud": "https://plaid-revoke-item-abc-uc.a.run.app",
		"sub": "112233445566778899", "email": "app-backend@finwell-lifecycle.iam.gserviceaccount.com",
		"iat": time.Now().Add(-time.Minute).Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	})
	serverless := []struct{ name, value string }{
		{"absent", ""},
		{"garbage", "not a token at all"},
		{"malformed bearer", "Bearer not.a.jwt"},
		{"the backend's Google identity token", googleIDToken},
		{"another user's valid JWT", env.Bearer(t, sample.Bob)},
		{"an admin JWT", env.Bearer(t, sample.AdminUser)},
	}
	deployedRevokeItem := f.server.RevokeItemHandler()

	for _, s := range serverless {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()

			// An admin in Authorization is an admin.
			if got := serverlessCall(t, f.routes, http.MethodGet, apiAnalyze, env.Bearer(t, sample.AdminUser), s.value); got.Status != http.StatusOK {
				t.Errorf("admin JWT in Authorization: analytics HTTP %d %s, want 200", got.Status, got.Raw)
			}

			// A user in Authorization is that user, never the admin or the
			// other user of X-Serverless-Authorization.
			got := serverlessCall(t, f.routes, http.MethodGet, apiAnalyze, env.Bearer(t, sample.Alice), s.value)
			if got.Status != http.StatusForbidden || got.Body["code"] != string(lifecycle.CodeForbidden) {
				t.Errorf("Alice's JWT in Authorization: analytics HTTP %d %s, want 403 forbidden", got.Status, got.Raw)
			}
			for name, h := range map[string]http.Handler{"routes": f.routes, "deployed RevokeItem": deployedRevokeItem} {
				target := apiItemPath + "item-bob-chase"
				if name == "deployed RevokeItem" {
					target = "/item-bob-chase" // deployed alone, the item id is the path
				}
				got = serverlessCall(t, h, http.MethodDelete, target, env.Bearer(t, sample.Alice), s.value)
				if got.Status != http.StatusNotFound || got.Body["code"] != string(lifecycle.CodeNotFound) {
					t.Errorf("%s: Alice revoking Bob's item: HTTP %d %s, want 404 not_found", name, got.Status, got.Raw)
				}
			}

			// No Authorization: nobody, whatever the other header vouches for.
			got = serverlessCall(t, f.routes, http.MethodDelete, apiItemPath+"item-alice-boa", "", s.value)
			if got.Status != http.StatusUnauthorized || got.Body["code"] != string(lifecycle.CodeUnauthorized) {
				t.Errorf("no Authorization: HTTP %d %s, want 401 unauthorized", got.Status, got.Raw)
			}
		})
	}

	t.Cleanup(func() {
		if diff := cmp.Diff(bobBefore, env.Doc(t, "item-bob-chase")); diff != "" {
			t.Errorf("Bob's item changed (-before +after):\n%s", diff)
		}
		if diff := cmp.Diff(aliceBefore, env.Doc(t, "item-alice-boa")); diff != "" {
			t.Errorf("Alice's item changed without her JWT in Authorization (-before +after):\n%s", diff)
		}
		if n := env.Plaid.CallCount("/item/remove"); n != 0 {
			t.Errorf("%d /item/remove calls, want none", n)
		}
	})
}

// The user of Authorization acts on their own items even when the other
// header carries someone else's valid JWT.
func TestServerlessAuthorizationUserActs(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	env := f.env
	env.SeedSample(t)
	bobBefore := env.Doc(t, "item-bob-chase")

	got := serverlessCall(t, f.routes, http.MethodDelete, apiItemPath+"item-alice-chase", env.Bearer(t, sample.Alice), env.Bearer(t, sample.Bob))
	want := apiResult{Status: http.StatusOK, Body: map[string]any{"message": "Item revoked successfully", "item_id": "item-alice-chase"}}
	if diff := cmp.Diff(want, got, cmpStatusBody); diff != "" {
		t.Errorf("Alice revoking her item (-want +got):\n%s", diff)
	}
	if doc := env.Doc(t, "item-alice-chase"); doc.Status != lifecycle.StatusRevoked || doc.UserID != sample.Alice {
		t.Errorf("item-alice-chase = %+v, want Alice's, revoked", doc)
	}
	if !env.Plaid.Removed("access-sandbox-item-alice-chase") || env.Plaid.CallCount("/item/remove") != 1 {
		t.Errorf("Plaid: Alice's Item removed %v after %d calls, want removed after 1", env.Plaid.Removed("access-sandbox-item-alice-chase"), env.Plaid.CallCount("/item/remove"))
	}

	// Revoke-all takes Authorization's user's tokens: Alice has none left
	// to revoke but her other two; Bob's are untouched.
	got = serverlessCall(t, f.routes, http.MethodDelete, apiRevoke, env.Bearer(t, sample.Alice), env.Bearer(t, sample.Bob))
	if got.Status != http.StatusOK || got.Body["revoked_count"] != 2.0 {
		t.Errorf("Alice's revoke-all: HTTP %d %s, want 200 with revoked_count 2", got.Status, got.Raw)
	}
	if diff := cmp.Diff(bobBefore, env.Doc(t, "item-bob-chase")); diff != "" {
		t.Errorf("Bob's item changed (-before +after):\n%s", diff)
	}
}
