package functions

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/golang-jwt/jwt/v5"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// Fuzz targets for every parser of untrusted input in the handlers. Their
// seed corpora run in every `go test`; fuzz one with e.g.
//
//	go test ./functions -run '^$' -fuzz FuzzItemIDPath -fuzztime 30s

// An item id taken from a request path is either refused or a valid
// document id that names exactly what the escaped path segment says: an
// encoded "/" or "." never moves it, and nothing invalid reaches Firestore.
func FuzzItemIDPath(f *testing.F) {
	for _, seed := range []string{"item-1", "__x__", "__name__", "__.__", "%2E", "%2e%2e", "%FF", "%C0%AE", "a%2Fb",
		"..", ".", "%00", "a/b", "%", "%zz", strings.Repeat("x", 300), "item%20with%20spaces", "%E2%82%AC"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, segment string) {
		// As the server parses a request line ("?" and "#" end the path).
		if strings.ContainsAny(segment, "?#") {
			return
		}
		u, err := url.ParseRequestURI(PathItemPrefix + segment)
		if err != nil {
			return
		}
		r := httptest.NewRequest(http.MethodDelete, "/", nil)
		r.URL = u
		id, ok := pathParam(r, PathItemPrefix)
		if !ok {
			return
		}
		if strings.Contains(segment, "/") {
			t.Fatalf("segment %q with a / gave id %q", segment, id)
		}
		if unescaped, err := url.PathUnescape(segment); err != nil || unescaped != id {
			t.Fatalf("segment %q gave id %q, want %q (%v)", segment, id, unescaped, err)
		}
		if lifecycle.ValidItemID(id) {
			if !utf8.ValidString(id) || strings.Contains(id, "/") || id == "." || id == ".." || len(id) > lifecycle.MaxItemIDLength {
				t.Fatalf("ValidItemID(%q) = true", id)
			}
		}
	})
}

// Cleanup's query parameters are refused as a 400 or give a request within
// bounds: never a panic, never an out-of-range threshold.
func FuzzCleanupQuery(f *testing.F) {
	for _, seed := range []string{"", "days_threshold=90", "days_threshold=0", "days_threshold=3651", "days_threshold=1.5",
		"days_threshold=9999999999999999999999", "dry_run=true&dry_run=false", "async=maybe", "days_threshold=%zz",
		"dry_run=1&async=T&days_threshold=+7", "days_threshold=-0"} {
		f.Add(seed)
	}
	s := &Server{cfg: lifecycle.Config{StaleDays: 90}}
	f.Fuzz(func(t *testing.T, query string) {
		r := httptest.NewRequest(http.MethodDelete, "/", nil)
		r.URL.RawQuery = query
		req, _, err := s.parseCleanupQuery(r)
		if err != nil {
			if lifecycle.ErrorCode(err) != lifecycle.CodeInvalid {
				t.Fatalf("query %q: error %v is not invalid_argument", query, err)
			}
			return
		}
		if req.DaysThreshold < 1 || req.DaysThreshold > lifecycle.MaxDaysThreshold {
			t.Fatalf("query %q accepted with days_threshold %d", query, req.DaysThreshold)
		}
	})
}

// Any token signed with the secret yields a principal only from the exact
// claims: sub a non-empty string, admin only from a boolean admin claim or
// ADMIN_USER_IDS, an exp in the future required, a refresh token refused.
func FuzzJWTClaims(f *testing.F) {
	for _, seed := range []string{
		`{"sub":"u1","exp":4102444800}`, `{"sub":"u1","exp":4102444800,"admin":true}`,
		`{"sub":"u1","exp":4102444800,"Admin":true}`, `{"SUB":"admin-1","exp":4102444800}`,
		`{"sub":"admin-1","exp":4102444800}`, `{"sub":"u1","EXP":4102444800}`, `{"sub":"u1"}`,
		`{"sub":"u1","exp":4102444800,"type":"refresh_token"}`, `{"sub":"u1","exp":4102444800,"type":"access_token"}`,
		`{"sub":"","exp":4102444800}`, `{"sub":7,"exp":4102444800}`, `{"sub":"u1","exp":"4102444800"}`,
		`{"sub":"u1","exp":1}`, `{"sub":"u1","sub":"admin-1","exp":4102444800}`, `[]`, `null`,
	} {
		f.Add(seed)
	}
	const secret = "fuzz-jwt-secret-0123456789abcdef0123456789"
	a, err := NewAuthenticator(f.Context(), lifecycle.Config{AuthJWTSecret: secret, AdminUserIDs: []string{"admin-1"}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, claimsJSON string) {
		var claims map[string]any
		if json.Unmarshal([]byte(claimsJSON), &claims) != nil || claims == nil {
			return
		}
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims)).SignedString([]byte(secret))
		if err != nil {
			return
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		p, err := a.Authenticate(r)
		if err != nil {
			if c := lifecycle.ErrorCode(err); c != lifecycle.CodeUnauthorized {
				t.Fatalf("claims %s: error code %s, want unauthenticated", claimsJSON, c)
			}
			return
		}
		sub, _ := claims["sub"].(string)
		if sub == "" || p.UserID != sub {
			t.Fatalf("claims %s: principal %q, want the exact sub %q", claimsJSON, p.UserID, sub)
		}
		if want := claims["admin"] == true || sub == "admin-1"; p.Admin != want {
			t.Fatalf("claims %s: admin %v, want %v", claimsJSON, p.Admin, want)
		}
		exp, ok := claims["exp"].(float64)
		if !ok || time.Unix(int64(exp), 0).Before(time.Now().Add(-clockLeeway)) {
			t.Fatalf("claims %s: accepted without a valid exp", claimsJSON)
		}
		if typ, present := claims["type"]; present && typ != accessTokenType {
			t.Fatalf("claims %s: accepted with type %v", claimsJSON, typ)
		}
	})
}

// A CloudEvent's data (the Pub/Sub push envelope) and the message in it are
// refused or decoded, never a panic, and a continuation names its run only
// from the exact key.
func FuzzPubSubEnvelope(f *testing.F) {
	for _, seed := range []string{
		`{"message":{"data":"eyJkYXlzX3RocmVzaG9sZCI6OTB9","messageId":"1"},"subscription":"s"}`,
		`{"message":{"data":"eyJjb250aW51ZV9ydW5faWQiOiJyMSJ9"}}`, `{"message":{"data":"!!"}}`,
		`{"message":null}`, `{}`, `[]`, `"x"`, ``, `{"message":{"data":"e30="}}`,
		`{"message":{"data":"eyJDb250aW51ZV9SdW5fSWQiOiJyMSJ9"}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e := event.New()
		e.SetID("fuzz")
		e.SetType(PubSubEventType)
		e.SetSource("//pubsub.googleapis.com/projects/p/topics/t")
		if err := e.SetData(event.ApplicationJSON, data); err != nil {
			return
		}
		body, err := pubSubMessage(e)
		if err != nil {
			return
		}
		msg, err := parseCleanupMessage(body)
		if err != nil {
			return
		}
		if msg.ContinueRunID != "" && !strings.Contains(string(body), `"continue_run_id"`) {
			t.Fatalf("message %q continues run %q without the exact key", body, msg.ContinueRunID)
		}
	})
}
