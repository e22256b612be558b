package functions

import (
	"bytes"
	"cloud.google.com/go/firestore"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// webhookFixture is the PlaidWebhook handler over the Firestore emulator
// and a fake Plaid serving one webhook key through the real plaid-go
// adapter, on a pinned clock, logging into a buffer.
type webhookFixture struct {
	plaid   *plaidfake.Server
	kid     string
	clock   *testenv.Clock
	store   *lifecycle.FirestoreTokenStore
	runs    *lifecycle.FirestoreRunStore
	client  *firestore.Client
	handler http.Handler
	logs    *testenv.LogBuffer
}

func newWebhookFixture(t *testing.T) *webhookFixture {
	t.Helper()
	client := emulator.NewClient(t)
	stores := lifecycle.NewFirestoreStores(client)
	wp := testenv.NewWebhookPlaid(t, testNow, stores.WebhookKeys)
	vault, err := lifecycle.NewVault(testenv.EncryptionKey, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := lifecycle.NewService(lifecycle.Config{PlaidSettings: lifecycle.PlaidSettings{PlaidEnv: "sandbox"}}, lifecycle.Deps{Tokens: stores.Tokens, Runs: stores.Runs,
		Plaid: testenv.NewWebhookPlaidClient(t, wp.Fake), Cipher: vault, Clock: wp.Clock})
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.LogBuffer{}
	s, err := New(context.Background(), lifecycle.Config{}, Deps{Service: svc, Webhooks: wp.Verifier,
		Logger: lifecycle.NewJSONLogger(logs, slog.LevelDebug)})
	if err != nil {
		t.Fatal(err)
	}
	return &webhookFixture{plaid: wp.Fake, kid: wp.KeyID, clock: wp.Clock, store: stores.Tokens, runs: stores.Runs,
		client: client, handler: s.webhook, logs: logs}
}

// addToken stores a token for itemID and returns it as read back.
func (f *webhookFixture) addToken(t *testing.T, itemID string, status lifecycle.Status, errorCode string) *lifecycle.Token {
	t.Helper()
	ctx := context.Background()
	created := testNow.Add(-30 * 24 * time.Hour)
	tok := &lifecycle.Token{
		ItemID: itemID, UserID: "user-" + itemID, AccessToken: "v1:0badc0de:ciphertext",
		InstitutionID: "ins_109508", InstitutionName: "First Platypus Bank", Status: status,
		Environment: "sandbox", CreatedAt: created, UpdatedAt: created, ErrorCode: errorCode,
		PlaidRemoved: status == lifecycle.StatusRevoked,
	}
	if err := f.store.Create(ctx, tok); err != nil {
		t.Fatalf("Create(%s): %v", itemID, err)
	}
	got, err := f.store.Get(ctx, itemID)
	if err != nil {
		t.Fatalf("Get(%s): %v", itemID, err)
	}
	return got
}

// token returns the stored token of itemID, nil when there is none.
func (f *webhookFixture) token(t *testing.T, itemID string) *lifecycle.Token {
	t.Helper()
	return testenv.Doc(t, f.store, itemID)
}

// sign returns the Plaid-Verification header Plaid sends with body now.
func (f *webhookFixture) sign(t *testing.T, kid string, body []byte) string {
	t.Helper()
	h, err := f.plaid.SignWebhook(kid, body, f.clock.Now())
	if err != nil {
		t.Fatalf("SignWebhook: %v", err)
	}
	return h
}

func (f *webhookFixture) keyFetches() int {
	return f.plaid.CallCount(plaidfake.PathWebhookVerificationKey)
}

type webhookResponse struct {
	Status int
	Allow  string
	Body   map[string]string
}

// post sends body to the handler at path with the Plaid-Verification
// header (none when empty), as Plaid does.
func (f *webhookFixture) post(t *testing.T, method, path, verification string, body []byte) webhookResponse {
	t.Helper()
	r := httptest.NewRequest(method, path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if verification != "" {
		r.Header.Set("Plaid-Verification", verification)
	}
	return f.serve(t, r)
}

func (f *webhookFixture) serve(t *testing.T, r *http.Request) webhookResponse {
	t.Helper()
	w := httptest.NewRecorder()
	f.handler.ServeHTTP(w, r)
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	got := webhookResponse{Status: w.Code, Allow: w.Header().Get("Allow")}
	if err := json.Unmarshal(w.Body.Bytes(), &got.Body); err != nil {
		t.Fatalf("body %q is not a JSON object of strings: %v", w.Body.String(), err)
	}
	return got
}

// webhookBody is an ITEM webhook as Plaid sends it. Its error_message is a
// marker that must never reach the logs.
func webhookBody(t *testing.T, code, itemID, errorCode string) []byte {
	t.Helper()
	wh := map[string]any{"webhook_type": "ITEM", "webhook_code": code, "item_id": itemID,
		"error": nil, "environment": "sandbox"}
	if errorCode != "" {
		typ, _ := plaidfake.ErrorTypeOf(errorCode)
		wh["error"] = map[string]any{"error_type": typ, "error_code": errorCode,
			"error_message": "body-marker-not-for-logs", "display_message": nil, "status": 400}
	}
	b, err := json.Marshal(wh)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forge signs body's claims with any method and key, naming kid.
func forge(t *testing.T, method jwt.SigningMethod, key any, kid string, body []byte, iat time.Time) string {
	t.Helper()
	return testenv.ForgeWebhookJWT(t, method, key, kid, testenv.WebhookClaims(body, iat))
}

var ok200 = webhookResponse{Status: http.StatusOK, Body: map[string]string{"status": "ok"}}

// noSecretsLogged checks that neither a Plaid-Verification JWT nor the
// body's content reached the logs.
func noSecretsLogged(t *testing.T, f *webhookFixture, jwts ...string) {
	t.Helper()
	logs := f.logs.String()
	if strings.Contains(logs, "body-marker-not-for-logs") {
		t.Errorf("the webhook body reached the logs:\n%s", logs)
	}
	for _, j := range jwts {
		if j != "" && strings.Contains(logs, j) {
			t.Errorf("a Plaid-Verification JWT reached the logs:\n%s", logs)
		}
	}
}

func TestWebhookItemCodes(t *testing.T) {
	t.Parallel()
	f := newWebhookFixture(t)
	const (
		active  = lifecycle.StatusActive
		expired = lifecycle.StatusExpired
		revoked = lifecycle.StatusRevoked
	)
	// fields is what a webhook changes in a document.
	type fields struct {
		Status       lifecycle.Status
		ErrorCode    string
		PlaidRemoved bool
		UpdatedAt    time.Time
	}
	created := testNow.Add(-30 * 24 * time.Hour)
	tests := []struct {
		name, code, errorCode string
		status                lifecycle.Status // before
		errorBefore           string
		want                  fields
		// validated: the webhook changed a live token, which counts as a
		// validation (last_validated_at, DESIGN §12).
		validated bool
	}{
		{name: "ERROR needs the user", validated: true, code: "ERROR", errorCode: "ITEM_LOGIN_REQUIRED", status: active,
			want: fields{active, "ITEM_LOGIN_REQUIRED", false, created}},
		{name: "ERROR ITEM_NOT_FOUND", validated: true, code: "ERROR", errorCode: "ITEM_NOT_FOUND", status: active,
			want: fields{expired, "ITEM_NOT_FOUND", false, testNow}},
		{name: "ERROR INVALID_ACCESS_TOKEN", validated: true, code: "ERROR", errorCode: "INVALID_ACCESS_TOKEN", status: active,
			want: fields{expired, "INVALID_ACCESS_TOKEN", false, testNow}},
		{name: "PENDING_EXPIRATION", validated: true, code: "PENDING_EXPIRATION", status: active,
			want: fields{active, "PENDING_EXPIRATION", false, created}},
		{name: "PENDING_DISCONNECT", validated: true, code: "PENDING_DISCONNECT", status: active,
			want: fields{active, "PENDING_DISCONNECT", false, created}},
		{name: "USER_PERMISSION_REVOKED", validated: true, code: "USER_PERMISSION_REVOKED", status: active,
			want: fields{revoked, "", false, testNow}},
		{name: "USER_ACCOUNT_REVOKED", validated: true, code: "USER_ACCOUNT_REVOKED", status: active, errorBefore: "PENDING_EXPIRATION",
			want: fields{active, "USER_ACCOUNT_REVOKED", false, created}},
		{name: "LOGIN_REPAIRED", validated: true, code: "LOGIN_REPAIRED", status: active, errorBefore: "ITEM_LOGIN_REQUIRED",
			want: fields{active, "", false, created}},
		{name: "NEW_ACCOUNTS_AVAILABLE", code: "NEW_ACCOUNTS_AVAILABLE", status: active, errorBefore: "ITEM_LOGIN_REQUIRED",
			want: fields{active, "ITEM_LOGIN_REQUIRED", false, created}},
		{name: "WEBHOOK_UPDATE_ACKNOWLEDGED", code: "WEBHOOK_UPDATE_ACKNOWLEDGED", status: active,
			want: fields{active, "", false, created}},
		{name: "ERROR on a revoked token changes nothing", code: "ERROR", errorCode: "ITEM_NOT_FOUND", status: revoked,
			want: fields{revoked, "", true, created}},
		{name: "LOGIN_REPAIRED does not revive an expired token", code: "LOGIN_REPAIRED", status: expired, errorBefore: "ITEM_NOT_FOUND",
			want: fields{expired, "ITEM_NOT_FOUND", false, created}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			itemID := fmt.Sprintf("item-code-%02d", i)
			before := f.addToken(t, itemID, tt.status, tt.errorBefore)
			body := webhookBody(t, tt.code, itemID, tt.errorCode)
			header := f.sign(t, f.kid, body)
			if diff := cmp.Diff(ok200, f.post(t, http.MethodPost, PathWebhook, header, body)); diff != "" {
				t.Fatalf("response (-want +got):\n%s", diff)
			}
			after := f.token(t, itemID)
			if after == nil {
				t.Fatalf("document %s is gone", itemID)
			}
			got := fields{after.Status, after.ErrorCode, after.PlaidRemoved, after.UpdatedAt}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("document after %s (-want +got):\n%s", tt.code, diff)
			}
			if validated := after.LastValidatedAt.Equal(testNow); validated != tt.validated {
				t.Errorf("last_validated_at = %v; validated by the webhook: %v, want %v", after.LastValidatedAt, validated, tt.validated)
			}
			// Nothing else in the document moves.
			before.Status, before.ErrorCode, before.PlaidRemoved, before.UpdatedAt = after.Status, after.ErrorCode, after.PlaidRemoved, after.UpdatedAt
			before.LastValidatedAt = after.LastValidatedAt
			if diff := cmp.Diff(before, after, cmpopts.IgnoreFields(lifecycle.Token{}, "Version")); diff != "" {
				t.Errorf("other fields changed (-before +after):\n%s", diff)
			}
			noSecretsLogged(t, f, header)
		})
	}
}

func TestWebhookRefused(t *testing.T) {
	t.Parallel()
	f := newWebhookFixture(t)
	expiredKid := f.plaid.NewWebhookKey()
	f.plaid.ExpireWebhookKey(expiredKid)
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		// request returns the header and the body that arrive for a
		// USER_PERMISSION_REVOKED webhook body for itemID.
		request func(t *testing.T, body []byte) (string, []byte)
	}{
		{"unsigned", func(t *testing.T, body []byte) (string, []byte) { return "", body }},
		{"not a JWT", func(t *testing.T, body []byte) (string, []byte) { return "Bearer nonsense", body }},
		{"wrong key claiming the served kid", func(t *testing.T, body []byte) (string, []byte) {
			return forge(t, jwt.SigningMethodES256, otherKey, f.kid, body, f.clock.Now()), body
		}},
		{"body changed after signing", func(t *testing.T, body []byte) (string, []byte) {
			return f.sign(t, f.kid, body), bytes.Replace(body, []byte("USER_PERMISSION_REVOKED"), []byte("LOGIN_REPAIRED"), 1)
		}},
		{"iat 10 minutes old", func(t *testing.T, body []byte) (string, []byte) {
			priv, _ := f.plaid.WebhookSigningKey(f.kid)
			return forge(t, jwt.SigningMethodES256, priv, f.kid, body, f.clock.Now().Add(-10*time.Minute)), body
		}},
		{"unknown kid", func(t *testing.T, body []byte) (string, []byte) {
			return forge(t, jwt.SigningMethodES256, otherKey, "kid-plaid-never-issued", body, f.clock.Now()), body
		}},
		{"expired key", func(t *testing.T, body []byte) (string, []byte) { return f.sign(t, expiredKid, body), body }},
		{"HS256", func(t *testing.T, body []byte) (string, []byte) {
			return forge(t, jwt.SigningMethodHS256, []byte("shared-secret"), f.kid, body, f.clock.Now()), body
		}},
		{"RS256", func(t *testing.T, body []byte) (string, []byte) {
			return forge(t, jwt.SigningMethodRS256, rsaKey, f.kid, body, f.clock.Now()), body
		}},
		{"alg none", func(t *testing.T, body []byte) (string, []byte) {
			return forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, f.kid, body, f.clock.Now()), body
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			itemID := fmt.Sprintf("item-refused-%02d", i)
			before := f.addToken(t, itemID, lifecycle.StatusActive, "")
			header, body := tt.request(t, webhookBody(t, "USER_PERMISSION_REVOKED", itemID, ""))
			got := f.post(t, http.MethodPost, PathWebhook, header, body)
			if got.Status != http.StatusUnauthorized || got.Body["code"] != string(lifecycle.CodeUnauthorized) ||
				!strings.HasPrefix(got.Body["detail"], "webhook verification failed") {
				t.Errorf("response = %+v, want 401 %s with a reason", got, lifecycle.CodeUnauthorized)
			}
			if diff := cmp.Diff(before, f.token(t, itemID)); diff != "" {
				t.Errorf("refused webhook changed the document (-before +after):\n%s", diff)
			}
			noSecretsLogged(t, f, header)
		})
	}
}

func TestWebhookTooLarge(t *testing.T) {
	t.Parallel()
	f := newWebhookFixture(t)
	for _, tt := range []struct {
		name          string
		contentLength bool // false: chunked, the size is only known by reading
	}{{"with Content-Length", true}, {"chunked", false}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			itemID := "item-large-" + strings.ReplaceAll(tt.name, " ", "-")
			before := f.addToken(t, itemID, lifecycle.StatusActive, "")
			// A genuine, signed webhook: only its size is wrong.
			body, err := json.Marshal(map[string]any{"webhook_type": "ITEM", "webhook_code": "USER_PERMISSION_REVOKED",
				"item_id": itemID, "padding": strings.Repeat("p", maxRequestBody)})
			if err != nil {
				t.Fatal(err)
			}
			r := httptest.NewRequest(http.MethodPost, PathWebhook, bytes.NewReader(body))
			r.Header.Set("Plaid-Verification", f.sign(t, f.kid, body))
			if !tt.contentLength {
				r.ContentLength = -1
			}
			got := f.serve(t, r)
			if got.Status != http.StatusRequestEntityTooLarge || got.Body["code"] != string(lifecycle.CodeTooLarge) {
				t.Errorf("response = %+v, want 413 %s", got, lifecycle.CodeTooLarge)
			}
			if diff := cmp.Diff(before, f.token(t, itemID)); diff != "" {
				t.Errorf("oversized webhook changed the document (-before +after):\n%s", diff)
			}
		})
	}
	if n := f.keyFetches(); n != 0 {
		t.Errorf("key lookups for oversized webhooks = %d, want 0", n)
	}
}

func TestWebhookUnknownItem(t *testing.T) {
	t.Parallel()
	f := newWebhookFixture(t)
	const itemID = "item-plaid-bills-for"
	body := webhookBody(t, "USER_PERMISSION_REVOKED", itemID, "")
	if diff := cmp.Diff(ok200, f.post(t, http.MethodPost, PathWebhook, f.sign(t, f.kid, body), body)); diff != "" {
		t.Fatalf("response (-want +got):\n%s", diff)
	}
	if tok := f.token(t, itemID); tok != nil {
		t.Errorf("a webhook for an unknown item created %+v", tok)
	}
	var found bool
	for line := range strings.Lines(f.logs.String()) {
		var entry struct {
			Severity string `json:"severity"`
			Message  string `json:"message"`
			ItemID   string `json:"item_id"`
		}
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if entry.Message == "verified webhook for unknown item" {
			found = true
			if entry.Severity != "WARNING" || entry.ItemID != itemID {
				t.Errorf("log entry = %+v, want severity WARNING and item_id %s", entry, itemID)
			}
		}
	}
	if !found {
		t.Errorf("no \"verified webhook for unknown item\" log line in:\n%s", f.logs.String())
	}
}

func TestWebhookReplayIsHarmless(t *testing.T) {
	t.Parallel()
	f := newWebhookFixture(t)
	const itemID = "item-replayed"
	f.addToken(t, itemID, lifecycle.StatusActive, "")
	body := webhookBody(t, "ERROR", itemID, "ITEM_NOT_FOUND")
	header := f.sign(t, f.kid, body)

	var states []*lifecycle.Token
	for i := range 3 {
		if diff := cmp.Diff(ok200, f.post(t, http.MethodPost, PathWebhook, header, body)); diff != "" {
			t.Fatalf("delivery %d: response (-want +got):\n%s", i+1, diff)
		}
		states = append(states, f.token(t, itemID))
		f.clock.Advance(time.Minute) // Plaid's retries come later
	}
	if states[0].Status != lifecycle.StatusExpired || states[0].ErrorCode != "ITEM_NOT_FOUND" {
		t.Fatalf("after the first delivery: %+v, want expired with ITEM_NOT_FOUND", states[0])
	}
	for i, s := range states[1:] {
		// The same document, not even rewritten: same update time.
		if diff := cmp.Diff(states[0], s); diff != "" {
			t.Errorf("delivery %d changed the document (-first +now):\n%s", i+2, diff)
		}
	}
}

func TestWebhookMethodNotAllowed(t *testing.T) {
	t.Parallel()
	f := newWebhookFixture(t)
	for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		got := f.post(t, method, PathWebhook, "", nil)
		if got.Status != http.StatusMethodNotAllowed || got.Allow != http.MethodPost || got.Body["code"] != "method_not_allowed" {
			t.Errorf("%s: response = %+v, want 405 method_not_allowed with Allow: POST", method, got)
		}
	}
}

func TestWebhookVerifiedButNotJSON(t *testing.T) {
	t.Parallel()
	f := newWebhookFixture(t)
	for _, body := range []string{`{"webhook_type": "ITEM", `, `webhook_type=ITEM`, `{"item_id": "x"}`} {
		got := f.post(t, http.MethodPost, PathWebhook, f.sign(t, f.kid, []byte(body)), []byte(body))
		if got.Status != http.StatusBadRequest || got.Body["code"] != string(lifecycle.CodeInvalid) {
			t.Errorf("body %q: response = %+v, want 400 %s", body, got, lifecycle.CodeInvalid)
		}
	}
}

func TestWebhookAtAnyPath(t *testing.T) {
	t.Parallel()
	f := newWebhookFixture(t)
	f.addToken(t, "item-path", lifecycle.StatusActive, "")
	body := webhookBody(t, "PENDING_EXPIRATION", "item-path", "")
	// Mounted at the API path locally, at its root when deployed alone.
	for _, path := range []string{PathWebhook, "/"} {
		if diff := cmp.Diff(ok200, f.post(t, http.MethodPost, path, f.sign(t, f.kid, body), body)); diff != "" {
			t.Errorf("POST %s: response (-want +got):\n%s", path, diff)
		}
	}
}

func TestWebhookKeyCache(t *testing.T) {
	t.Parallel()
	f := newWebhookFixture(t)
	f.addToken(t, "item-cache", lifecycle.StatusActive, "")
	for _, code := range []string{"PENDING_EXPIRATION", "LOGIN_REPAIRED"} {
		body := webhookBody(t, code, "item-cache", "")
		if diff := cmp.Diff(ok200, f.post(t, http.MethodPost, PathWebhook, f.sign(t, f.kid, body), body)); diff != "" {
			t.Fatalf("%s: response (-want +got):\n%s", code, diff)
		}
	}
	if n := f.keyFetches(); n != 1 {
		t.Errorf("key lookups for two webhooks with one kid = %d, want 1", n)
	}
}

func TestWebhookKidFloodIsBounded(t *testing.T) {
	t.Parallel()
	f := newWebhookFixture(t)
	before := f.addToken(t, "item-flood", lifecycle.StatusActive, "")
	forger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	body := webhookBody(t, "USER_PERMISSION_REVOKED", "item-flood", "")

	var wg sync.WaitGroup
	got := make([]webhookResponse, 100)
	for i := range got {
		wg.Go(func() {
			kid := fmt.Sprintf("forged-%03d-%s", i, rand.Text())
			got[i] = f.post(t, http.MethodPost, PathWebhook, forge(t, jwt.SigningMethodES256, forger, kid, body, f.clock.Now()), body)
		})
	}
	wg.Wait()
	for i, r := range got {
		// Unknown kids Plaid was asked about are refused; the others could
		// not be checked in the lookup budget: 503, which Plaid retries.
		if r.Status != http.StatusUnauthorized && r.Status != http.StatusServiceUnavailable {
			t.Errorf("forged webhook %d: response %+v, want 401 or 503", i, r)
		}
	}
	if n := f.keyFetches(); n > lifecycle.WebhookKeyFetchBurst {
		t.Errorf("key lookups for 100 forged kids = %d, want at most %d", n, lifecycle.WebhookKeyFetchBurst)
	}
	if diff := cmp.Diff(before, f.token(t, "item-flood")); diff != "" {
		t.Errorf("forged webhooks changed the document (-before +after):\n%s", diff)
	}
}

func TestWebhookPlaidUnavailable(t *testing.T) {
	t.Parallel()
	f := newWebhookFixture(t)
	before := f.addToken(t, "item-outage", lifecycle.StatusActive, "")
	body := webhookBody(t, "USER_PERMISSION_REVOKED", "item-outage", "")
	header := f.sign(t, f.kid, body)

	f.plaid.FailNext(plaidfake.PathWebhookVerificationKey, 1, http.StatusInternalServerError, "API_ERROR", "INTERNAL_SERVER_ERROR")
	got := f.post(t, http.MethodPost, PathWebhook, header, body)
	if got.Status != http.StatusServiceUnavailable || got.Body["code"] != string(lifecycle.CodeUnavailable) {
		t.Errorf("response during a Plaid outage = %+v, want 503 %s", got, lifecycle.CodeUnavailable)
	}
	if diff := cmp.Diff(before, f.token(t, "item-outage")); diff != "" {
		t.Errorf("unverified webhook changed the document (-before +after):\n%s", diff)
	}
	// Plaid's retry, once it is back, goes through.
	if diff := cmp.Diff(ok200, f.post(t, http.MethodPost, PathWebhook, header, body)); diff != "" {
		t.Errorf("retried webhook: response (-want +got):\n%s", diff)
	}
	if tok := f.token(t, "item-outage"); tok.Status != lifecycle.StatusRevoked {
		t.Errorf("status after the retry = %s, want revoked", tok.Status)
	}
}
