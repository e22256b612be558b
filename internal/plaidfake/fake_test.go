package plaidfake_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
)

// answer is one HTTP answer of the fake, decoded.
type answer struct {
	status      int
	contentType string
	body        map[string]any
}

// creds sends the fake's default credentials as plaid-go does, in headers.
var creds = map[string]string{
	"PLAID-CLIENT-ID": plaidfake.DefaultClientID,
	"PLAID-SECRET":    plaidfake.DefaultSecret,
	"Plaid-Version":   plaidfake.PlaidVersion,
}

func post(t *testing.T, ctx context.Context, baseURL, path string, body any, headers map[string]string) (answer, error) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	a := answer{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type")}
	if a.contentType == "application/json" {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			t.Fatalf("decoding %s answer %q: %v", path, raw, err)
		}
	}
	return a, nil
}

func mustPost(t *testing.T, baseURL, path string, body any, headers map[string]string) answer {
	t.Helper()
	a, err := post(t, context.Background(), baseURL, path, body, headers)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return a
}

// plaidErr is the part of Plaid's error object a test compares.
type plaidErr struct {
	Status           int
	Type, Code       string
	HasAllKeys       bool
	DisplayIsNull    bool
	ContentTypeJSON  bool
	RequestIDPresent bool
}

func errOf(a answer) plaidErr {
	keys := []string{"error_type", "error_code", "error_message", "display_message", "request_id", "documentation_url", "suggested_action"}
	all := true
	for _, k := range keys {
		if _, ok := a.body[k]; !ok {
			all = false
		}
	}
	typ, _ := a.body["error_type"].(string)
	code, _ := a.body["error_code"].(string)
	rid, _ := a.body["request_id"].(string)
	return plaidErr{
		Status: a.status, Type: typ, Code: code,
		HasAllKeys:       all,
		DisplayIsNull:    a.body["display_message"] == nil,
		ContentTypeJSON:  a.contentType == "application/json",
		RequestIDPresent: rid != "",
	}
}

func wantErr(status int, typ, code string) plaidErr {
	return plaidErr{Status: status, Type: typ, Code: code, HasAllKeys: true, DisplayIsNull: true, ContentTypeJSON: true, RequestIDPresent: true}
}

func TestItemGetAnswersPlaidShape(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	fake.AddItem("access-sandbox-1", "item-1", "ins_109508")

	a := mustPost(t, fake.URL(), "/item/get", map[string]string{"access_token": "access-sandbox-1"}, creds)

	if a.status != http.StatusOK || a.contentType != "application/json" {
		t.Fatalf("status %d, Content-Type %q; want 200 application/json", a.status, a.contentType)
	}
	rid, _ := a.body["request_id"].(string)
	if rid == "" {
		t.Errorf("request_id missing in %v", a.body)
	}
	delete(a.body, "request_id")
	want := map[string]any{
		"item": map[string]any{
			"item_id": "item-1", "institution_id": "ins_109508", "webhook": "", "error": nil,
			"available_products": []any{"balance"}, "billed_products": []any{"transactions"},
			"products": []any{"transactions"}, "update_type": "background", "consent_expiration_time": nil,
		},
		"status": map[string]any{
			"transactions": map[string]any{"last_successful_update": nil, "last_failed_update": nil},
			"last_webhook": nil,
		},
	}
	if diff := cmp.Diff(want, a.body); diff != "" {
		t.Errorf("/item/get body (-want +got):\n%s", diff)
	}
}

func TestErrorsHavePlaidTypesAndStatuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(*plaidfake.Server)
		path    string
		body    map[string]string
		headers map[string]string
		want    plaidErr
	}{
		{
			name: "unknown token", path: "/item/get",
			body: map[string]string{"access_token": "access-sandbox-never"}, headers: creds,
			want: wantErr(400, "INVALID_INPUT", "INVALID_ACCESS_TOKEN"),
		},
		{
			name:  "removed item",
			setup: func(f *plaidfake.Server) { f.AddItem("tok", "item", "ins_1") },
			path:  "/item/remove", body: map[string]string{"access_token": "tok"}, headers: creds,
			want: wantErr(400, "ITEM_ERROR", "ITEM_NOT_FOUND"), // second removal, below
		},
		{
			name: "wrong secret", path: "/item/get",
			body:    map[string]string{"access_token": "tok"},
			headers: map[string]string{"PLAID-CLIENT-ID": plaidfake.DefaultClientID, "PLAID-SECRET": "wrong"},
			want:    wantErr(400, "INVALID_INPUT", "INVALID_API_KEYS"),
		},
		{
			name: "wrong client id in body", path: "/item/get",
			body: map[string]string{"access_token": "tok", "client_id": "nope", "secret": plaidfake.DefaultSecret},
			want: wantErr(400, "INVALID_INPUT", "INVALID_API_KEYS"),
		},
		{
			name: "no credentials", path: "/item/get",
			body: map[string]string{"access_token": "tok"},
			want: wantErr(400, "INVALID_REQUEST", "MISSING_FIELDS"),
		},
		{
			name: "unknown endpoint", path: "/transactions/sync",
			body: map[string]string{"access_token": "tok"}, headers: creds,
			want: wantErr(404, "INVALID_REQUEST", "NOT_FOUND"),
		},
		{
			name: "unknown key id", path: "/webhook_verification_key/get",
			body: map[string]string{"key_id": "nope"}, headers: creds,
			want: wantErr(400, "INVALID_INPUT", "INVALID_WEBHOOK_VERIFICATION_KEY_ID"),
		},
		{
			name: "token error ITEM_LOGIN_REQUIRED", path: "/item/get",
			setup: func(f *plaidfake.Server) { f.SetTokenError("tok", "ITEM_LOGIN_REQUIRED") },
			body:  map[string]string{"access_token": "tok"}, headers: creds,
			want: wantErr(400, "ITEM_ERROR", "ITEM_LOGIN_REQUIRED"),
		},
		{
			name: "token error INSTITUTION_DOWN", path: "/item/get",
			setup: func(f *plaidfake.Server) { f.SetTokenError("tok", "INSTITUTION_DOWN") },
			body:  map[string]string{"access_token": "tok"}, headers: creds,
			want: wantErr(400, "INSTITUTION_ERROR", "INSTITUTION_DOWN"),
		},
		{
			name: "token error ITEM_GET_LIMIT", path: "/item/get",
			setup: func(f *plaidfake.Server) { f.SetTokenError("tok", "ITEM_GET_LIMIT") },
			body:  map[string]string{"access_token": "tok"}, headers: creds,
			want: wantErr(429, "RATE_LIMIT_EXCEEDED", "ITEM_GET_LIMIT"),
		},
		{
			name: "token error PLANNED_MAINTENANCE on remove", path: "/item/remove",
			setup: func(f *plaidfake.Server) { f.SetTokenError("tok", "PLANNED_MAINTENANCE") },
			body:  map[string]string{"access_token": "tok"}, headers: creds,
			want: wantErr(503, "API_ERROR", "PLANNED_MAINTENANCE"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := plaidfake.New(t)
			if tt.setup != nil {
				tt.setup(fake)
			}
			if tt.name == "removed item" {
				if a := mustPost(t, fake.URL(), tt.path, tt.body, tt.headers); a.status != 200 {
					t.Fatalf("first removal: status %d, body %v", a.status, a.body)
				}
			}
			got := errOf(mustPost(t, fake.URL(), tt.path, tt.body, tt.headers))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("error answer (-want +got):\n%s", diff)
			}
		})
	}
}

func TestErrorTypeOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code, wantType string
		wantStatus     int
	}{
		{"ITEM_NOT_FOUND", "ITEM_ERROR", 400},
		{"INVALID_ACCESS_TOKEN", "INVALID_INPUT", 400},
		{"INVALID_API_KEYS", "INVALID_INPUT", 400},
		{"USER_PERMISSION_REVOKED", "ITEM_ERROR", 400},
		{"ITEM_LOGIN_REQUIRED", "ITEM_ERROR", 400},
		{"PENDING_EXPIRATION", "ITEM_ERROR", 400},
		{"PENDING_DISCONNECT", "ITEM_ERROR", 400},
		{"RATE_LIMIT", "RATE_LIMIT_EXCEEDED", 429},
		{"ITEM_GET_LIMIT", "RATE_LIMIT_EXCEEDED", 429},
		{"TRANSACTIONS_LIMIT", "RATE_LIMIT_EXCEEDED", 429},
		{"INTERNAL_SERVER_ERROR", "API_ERROR", 500},
		{"PLANNED_MAINTENANCE", "API_ERROR", 503},
		{"INSTITUTION_DOWN", "INSTITUTION_ERROR", 400},
		{"INSTITUTION_NOT_RESPONDING", "INSTITUTION_ERROR", 400},
		{"INSTITUTION_SOMETHING_NEW", "INSTITUTION_ERROR", 400},
		{"INVALID_FIELD", "INVALID_REQUEST", 400},
	}
	for _, tt := range tests {
		typ, status := plaidfake.ErrorTypeOf(tt.code)
		if typ != tt.wantType || status != tt.wantStatus {
			t.Errorf("ErrorTypeOf(%s) = %s, %d; want %s, %d", tt.code, typ, status, tt.wantType, tt.wantStatus)
		}
	}
}

func TestItemErrorIsA200WithItemError(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	fake.AddItem("tok", "item-1", "ins_1")
	fake.SetItemError("tok", "ITEM_LOGIN_REQUIRED")

	a := mustPost(t, fake.URL(), "/item/get", map[string]string{"access_token": "tok"}, creds)
	if a.status != http.StatusOK {
		t.Fatalf("status %d, want 200", a.status)
	}
	ie, _ := a.body["item"].(map[string]any)["error"].(map[string]any)
	if ie["error_type"] != "ITEM_ERROR" || ie["error_code"] != "ITEM_LOGIN_REQUIRED" {
		t.Errorf("item.error = %v, want ITEM_ERROR / ITEM_LOGIN_REQUIRED", ie)
	}

	// An Item in an error state can still be removed; then it is gone.
	if a := mustPost(t, fake.URL(), "/item/remove", map[string]string{"access_token": "tok"}, creds); a.status != 200 {
		t.Fatalf("/item/remove status %d, body %v", a.status, a.body)
	}
	if got := errOf(mustPost(t, fake.URL(), "/item/get", map[string]string{"access_token": "tok"}, creds)); got.Code != "ITEM_NOT_FOUND" {
		t.Errorf("after removal: %+v, want ITEM_NOT_FOUND", got)
	}

	fake.SetItemError("tok", "")
	fake.AddItem("tok", "item-1", "ins_1")
	a = mustPost(t, fake.URL(), "/item/get", map[string]string{"access_token": "tok"}, creds)
	if a.status != 200 || a.body["item"].(map[string]any)["error"] != nil {
		t.Errorf("cleared and re-added: status %d, item %v", a.status, a.body["item"])
	}
}

func TestFaults(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	fake.AddItem("tok", "item-1", "ins_1")
	get := func() answer {
		return mustPost(t, fake.URL(), "/item/get", map[string]string{"access_token": "tok"}, creds)
	}

	fake.FailNext("/item/get", 2, 429, "RATE_LIMIT_EXCEEDED", "ITEM_GET_LIMIT")
	fake.FailNext("item/get", 1, 503, "API_ERROR", "PLANNED_MAINTENANCE")
	for i, want := range []plaidErr{
		wantErr(429, "RATE_LIMIT_EXCEEDED", "ITEM_GET_LIMIT"),
		wantErr(429, "RATE_LIMIT_EXCEEDED", "ITEM_GET_LIMIT"),
		wantErr(503, "API_ERROR", "PLANNED_MAINTENANCE"),
	} {
		if diff := cmp.Diff(want, errOf(get())); diff != "" {
			t.Errorf("call %d (-want +got):\n%s", i+1, diff)
		}
	}
	if a := get(); a.status != 200 {
		t.Errorf("after the queued faults: status %d, want 200", a.status)
	}

	// Faults of one path leave the others alone.
	fake.FailAlways("/item/remove", 500, "API_ERROR", "INTERNAL_SERVER_ERROR")
	for range 3 {
		if a := get(); a.status != 200 {
			t.Fatalf("/item/get with a fault on /item/remove: status %d", a.status)
		}
		a := mustPost(t, fake.URL(), "/item/remove", map[string]string{"access_token": "tok"}, creds)
		if diff := cmp.Diff(wantErr(500, "API_ERROR", "INTERNAL_SERVER_ERROR"), errOf(a)); diff != "" {
			t.Fatalf("FailAlways (-want +got):\n%s", diff)
		}
	}
	if fake.Removed("tok") {
		t.Error("a failed removal removed the Item")
	}
	fake.ClearFaults()
	if a := mustPost(t, fake.URL(), "/item/remove", map[string]string{"access_token": "tok"}, creds); a.status != 200 {
		t.Errorf("after ClearFaults: status %d", a.status)
	}

	// An empty code sends a proxy's HTML page.
	fake.FailNext("/item/get", 1, 502, "", "")
	if a := get(); a.status != 502 || a.contentType == "application/json" {
		t.Errorf("non-JSON fault: status %d, Content-Type %q", a.status, a.contentType)
	}

	// Status 0 drops the connection.
	fake.FailNext("/item/get", 1, 0, "", "")
	if _, err := post(t, context.Background(), fake.URL(), "/item/get", map[string]string{"access_token": "tok"}, creds); err == nil {
		t.Error("dropped connection: got an answer, want a transport error")
	}
}

func TestLatencyHonoursCancellation(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t, plaidfake.WithLatency(time.Hour))
	fake.AddItem("tok", "item-1", "ins_1")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := post(t, ctx, fake.URL(), "/item/get", map[string]string{"access_token": "tok"}, creds)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context deadline exceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancelled call took %v", d)
	}

	fake.SetLatency(20 * time.Millisecond)
	if a := mustPost(t, fake.URL(), "/item/get", map[string]string{"access_token": "tok"}, creds); a.status != 200 {
		t.Errorf("with short latency: status %d", a.status)
	}
}

func TestCloseEndsLatencyWaits(t *testing.T) {
	t.Parallel()
	fake := plaidfake.NewServer("id", "secret", plaidfake.WithLatency(time.Hour))
	done := make(chan error, 1)
	go func() {
		_, err := post(t, context.Background(), fake.URL(), "/item/get", map[string]string{"access_token": "tok"}, nil)
		done <- err
	}()
	for fake.CallCount("/item/get") == 0 {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { fake.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while a request waited out its latency")
	}
	<-done
	fake.Close() // twice is fine
}

func TestOnCallRunsBeforeTheAnswer(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	fake.AddItem("tok", "item-1", "ins_1")
	var mu sync.Mutex
	var seen []string
	fake.OnCall(func(path, accessToken string) {
		mu.Lock()
		seen = append(seen, path+" "+accessToken)
		mu.Unlock()
		fake.SetTokenError(accessToken, "ITEM_NOT_FOUND") // the hook may call the fake
	})

	got := errOf(mustPost(t, fake.URL(), "/item/get", map[string]string{"access_token": "tok"}, creds))
	if got.Code != "ITEM_NOT_FOUND" {
		t.Errorf("answer after the hook changed state: %+v, want ITEM_NOT_FOUND", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"/item/get tok"}, seen); diff != "" {
		t.Errorf("hook calls (-want +got):\n%s", diff)
	}
	fake.OnCall(nil)
}

func TestRecording(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	fake.AddItem("tok-a", "item-a", "ins_1")
	fake.AddItem("tok-b", "item-b", "ins_1")
	before := time.Now()

	mustPost(t, fake.URL(), "/item/get", map[string]string{"access_token": "tok-a"}, creds)
	mustPost(t, fake.URL(), "/item/remove", map[string]string{"access_token": "tok-b"}, creds)
	mustPost(t, fake.URL(), "/item/remove", map[string]string{"access_token": "tok-a"}, creds)
	mustPost(t, fake.URL(), "/item/remove", map[string]string{"access_token": "tok-a"}, creds) // ITEM_NOT_FOUND

	calls := fake.Calls()
	type rec struct{ Path, AccessToken, PlaidVersion string }
	var got []rec
	for _, c := range calls {
		got = append(got, rec{c.Path, c.AccessToken, c.PlaidVersion})
		if c.Time.Before(before) || c.Time.After(time.Now()) {
			t.Errorf("call time %v outside the test", c.Time)
		}
	}
	want := []rec{
		{"/item/get", "tok-a", "2020-09-14"},
		{"/item/remove", "tok-b", "2020-09-14"},
		{"/item/remove", "tok-a", "2020-09-14"},
		{"/item/remove", "tok-a", "2020-09-14"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Calls (-want +got):\n%s", diff)
	}
	if n := fake.CallCount("/item/remove"); n != 3 {
		t.Errorf("CallCount(/item/remove) = %d, want 3", n)
	}
	if diff := cmp.Diff([]string{"tok-b", "tok-a"}, fake.RemovedTokens()); diff != "" {
		t.Errorf("RemovedTokens (-want +got):\n%s", diff)
	}
	if !fake.Removed("tok-a") || fake.Removed("tok-c") {
		t.Error("Removed disagrees with the calls made")
	}
}

func TestWebhookKeysAndSignatures(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	kid := fake.NewWebhookKey()

	a := mustPost(t, fake.URL(), "/webhook_verification_key/get", map[string]string{"key_id": kid}, creds)
	if a.status != 200 || a.contentType != "application/json" {
		t.Fatalf("status %d, Content-Type %q", a.status, a.contentType)
	}
	key := a.body["key"].(map[string]any)
	for k, want := range map[string]any{"alg": "ES256", "crv": "P-256", "kid": kid, "kty": "EC", "use": "sig", "expired_at": nil} {
		if key[k] != want {
			t.Errorf("key[%s] = %v, want %v", k, key[k], want)
		}
	}
	if created, _ := key["created_at"].(float64); created < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("created_at = %v", key["created_at"])
	}
	pub := publicKeyFromJWK(t, key)

	body := []byte(`{"webhook_type":"ITEM","webhook_code":"ERROR","item_id":"item-1"}`)
	iat := time.Now().Add(-time.Minute).Truncate(time.Second)
	signed, err := fake.SignWebhook(kid, body, iat)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Parse(signed, func(tok *jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{"ES256"}))
	if err != nil {
		t.Fatalf("verifying the signed webhook with the served JWK: %v", err)
	}
	if tok.Header["kid"] != kid || tok.Header["typ"] != "JWT" || tok.Header["alg"] != "ES256" {
		t.Errorf("JWT header = %v", tok.Header)
	}
	claims := tok.Claims.(jwt.MapClaims)
	sum := sha256.Sum256(body)
	if claims["request_body_sha256"] != hex.EncodeToString(sum[:]) {
		t.Errorf("request_body_sha256 = %v", claims["request_body_sha256"])
	}
	if got, _ := claims.GetIssuedAt(); got == nil || !got.Time.Equal(iat) {
		t.Errorf("iat = %v, want %v", got, iat)
	}
	if priv, ok := fake.WebhookSigningKey(kid); !ok || !priv.PublicKey.Equal(pub) {
		t.Error("WebhookSigningKey does not match the served key")
	}

	if _, err := fake.SignWebhook("nope", body, iat); err == nil {
		t.Error("SignWebhook with an unknown kid: no error")
	}

	fake.ExpireWebhookKey(kid)
	a = mustPost(t, fake.URL(), "/webhook_verification_key/get", map[string]string{"key_id": kid}, creds)
	if exp, _ := a.body["key"].(map[string]any)["expired_at"].(float64); exp == 0 {
		t.Errorf("expired key served with expired_at %v", a.body["key"].(map[string]any)["expired_at"])
	}
	if n := fake.CallCount("/webhook_verification_key/get"); n != 2 {
		t.Errorf("CallCount = %d, want 2", n)
	}
	if calls := fake.Calls(); calls[0].KeyID != kid {
		t.Errorf("recorded key id %q, want %q", calls[0].KeyID, kid)
	}
}

func publicKeyFromJWK(t *testing.T, key map[string]any) *ecdsa.PublicKey {
	t.Helper()
	x, errX := base64.RawURLEncoding.DecodeString(key["x"].(string))
	y, errY := base64.RawURLEncoding.DecodeString(key["y"].(string))
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		t.Fatalf("x, y not 32-byte unpadded base64url: %v %v (%d, %d bytes)", errX, errY, len(x), len(y))
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func TestNewServerAndListenWorkWithoutTesting(t *testing.T) {
	t.Parallel()
	s := plaidfake.NewServer("dev-id", "dev-secret")
	defer s.Close()
	s.AddItem("tok", "item-1", "ins_1")
	devCreds := map[string]string{"PLAID-CLIENT-ID": "dev-id", "PLAID-SECRET": "dev-secret"}
	if a := mustPost(t, s.URL(), "/item/get", map[string]string{"access_token": "tok"}, devCreds); a.status != 200 {
		t.Errorf("NewServer: status %d", a.status)
	}
	if s.ClientID != "dev-id" || s.Secret != "dev-secret" {
		t.Errorf("credentials %q %q", s.ClientID, s.Secret)
	}

	l, err := plaidfake.Listen("127.0.0.1:0", "dev-id", "dev-secret")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.AddItem("tok", "item-1", "ins_1")
	if a := mustPost(t, l.URL(), "/item/get", map[string]string{"access_token": "tok"}, devCreds); a.status != 200 {
		t.Errorf("Listen: status %d", a.status)
	}
}

// TestConcurrentUse is for -race: requests and every mutator at once.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	kid := fake.NewWebhookKey()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(2)
		tok := fmt.Sprintf("tok-%d", i)
		go func() {
			defer wg.Done()
			for j := range 10 {
				fake.AddItem(tok, "item", "ins")
				fake.SetItemError(tok, "ITEM_LOGIN_REQUIRED")
				fake.FailNext("/item/get", 1, 429, "RATE_LIMIT_EXCEEDED", "RATE_LIMIT")
				fake.SetLatency(time.Duration(j) * time.Microsecond)
				fake.OnCall(func(string, string) {})
				fake.ExpireWebhookKey(kid)
				fake.SignWebhook(kid, []byte("{}"), time.Now())
				fake.ClearFaults()
				_ = fake.Calls()
				_ = fake.RemovedTokens()
			}
		}()
		go func() {
			defer wg.Done()
			for range 10 {
				mustPost(t, fake.URL(), "/item/get", map[string]string{"access_token": tok}, creds)
				mustPost(t, fake.URL(), "/item/remove", map[string]string{"access_token": tok}, creds)
				mustPost(t, fake.URL(), "/webhook_verification_key/get", map[string]string{"key_id": kid}, creds)
			}
		}()
	}
	wg.Wait()
	if n := len(fake.Calls()); n != 8*10*3 {
		t.Errorf("recorded %d calls, want %d", n, 8*10*3)
	}
}

// outcome is what a client saw of one call: the HTTP status and Plaid
// error code, or "transport error" when no answer came.
func outcome(t *testing.T, ctx context.Context, baseURL, path, token string) string {
	t.Helper()
	a, err := post(t, ctx, baseURL, path, map[string]string{"access_token": token}, creds)
	if err != nil {
		return "transport error"
	}
	code, _ := a.body["error_code"].(string)
	return fmt.Sprintf("%d %s", a.status, code)
}

// randomFaultRun calls /item/get twice for each of n tokens, the tokens
// concurrently when concurrent is set, and returns what each call saw, by
// token and attempt.
func randomFaultRun(t *testing.T, seed int64, n int, concurrent bool) (map[string]string, *plaidfake.Server) {
	t.Helper()
	fake := plaidfake.New(t)
	for i := range n {
		fake.AddItem(fmt.Sprintf("tok-%03d", i), fmt.Sprintf("item-%03d", i), "ins_1")
	}
	fake.SetRandomFaults(0.3, seed, plaidfake.FaultRateLimit, plaidfake.FaultServerError, plaidfake.FaultReset)
	var mu sync.Mutex
	got := make(map[string]string)
	var wg sync.WaitGroup
	for i := range n {
		tok := fmt.Sprintf("tok-%03d", i)
		call := func() {
			for attempt := range 2 {
				o := outcome(t, context.Background(), fake.URL(), "/item/get", tok)
				mu.Lock()
				got[fmt.Sprintf("%s#%d", tok, attempt)] = o
				mu.Unlock()
			}
		}
		if concurrent {
			wg.Go(call)
		} else {
			call()
		}
	}
	wg.Wait()
	return got, fake
}

func TestRandomFaultsAreDeterministicBySeed(t *testing.T) {
	t.Parallel()
	const n = 100
	first, fake := randomFaultRun(t, 7, n, false)
	again, _ := randomFaultRun(t, 7, n, true) // another arrival order, same seed
	if diff := cmp.Diff(first, again); diff != "" {
		t.Errorf("same seed, concurrent arrival: outcomes differ (-sequential +concurrent):\n%s", diff)
	}
	other, _ := randomFaultRun(t, 8, n, false)
	if cmp.Equal(first, other) {
		t.Error("seeds 7 and 8 failed exactly the same calls")
	}

	failed := 0
	kinds := map[string]bool{}
	for _, o := range first {
		if o != "200 " {
			failed++
			kinds[o] = true
		}
	}
	// 200 calls at rate 0.3: 60 expected; the bounds are 5 standard deviations.
	if failed < 28 || failed > 92 {
		t.Errorf("%d of %d calls failed at rate 0.3", failed, 2*n)
	}
	if got := fake.FaultsInjected(); got != failed {
		t.Errorf("FaultsInjected = %d, the client saw %d failed calls", got, failed)
	}
	for _, want := range []string{"429 ITEM_GET_LIMIT", "500 INTERNAL_SERVER_ERROR", "transport error"} {
		if !kinds[want] {
			t.Errorf("no call saw %q among the faults %v", want, kinds)
		}
	}
	byKind := fake.InjectedFaults()
	if byKind[plaidfake.FaultTimeout] != 0 || byKind[plaidfake.FaultLostAnswer] != 0 {
		t.Errorf("kinds not asked for were injected: %v", byKind)
	}
}

func TestRandomFaultKinds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind       plaidfake.FaultKind
		get        string // what /item/get saw
		remove     string // what /item/remove saw
		removed    bool   // whether the Item was removed all the same
		afterRetry string // a retried /item/remove once faults are off
	}{
		{plaidfake.FaultRateLimit, "429 ITEM_GET_LIMIT", "429 ITEM_REMOVE_LIMIT", false, "200 "},
		{plaidfake.FaultServerError, "500 INTERNAL_SERVER_ERROR", "500 INTERNAL_SERVER_ERROR", false, "200 "},
		{plaidfake.FaultReset, "transport error", "transport error", false, "200 "},
		{plaidfake.FaultTimeout, "transport error", "transport error", false, "200 "},
		{plaidfake.FaultLostAnswer, "transport error", "transport error", true, "400 ITEM_NOT_FOUND"},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			t.Parallel()
			fake := plaidfake.New(t)
			fake.AddItem("tok", "item-1", "ins_1")
			fake.SetRandomFaults(1, 1, tc.kind)
			call := func(path string) string {
				// A timeout fault holds the request until the client gives up.
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				defer cancel()
				return outcome(t, ctx, fake.URL(), path, "tok")
			}
			if got := call("/item/get"); got != tc.get {
				t.Errorf("/item/get: %q, want %q", got, tc.get)
			}
			if got := call("/item/remove"); got != tc.remove {
				t.Errorf("/item/remove: %q, want %q", got, tc.remove)
			}
			if fake.Removed("tok") != tc.removed {
				t.Errorf("Removed = %v, want %v", fake.Removed("tok"), tc.removed)
			}
			if diff := cmp.Diff(map[plaidfake.FaultKind]int{tc.kind: 2}, fake.InjectedFaults()); diff != "" {
				t.Errorf("InjectedFaults (-want +got):\n%s", diff)
			}
			fake.SetRandomFaults(0, 1)
			if got := call("/item/remove"); got != tc.afterRetry {
				t.Errorf("retried /item/remove with faults off: %q, want %q", got, tc.afterRetry)
			}
			if got := fake.FaultsInjected(); got != 2 {
				t.Errorf("FaultsInjected = %d after turning faults off, want 2", got)
			}
		})
	}
}

func TestQueuedFaultsComeBeforeRandomOnes(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	fake.AddItem("tok", "item-1", "ins_1")
	fake.SetRandomFaults(1, 3, plaidfake.FaultServerError)
	fake.FailNext("/item/get", 1, 503, "API_ERROR", "PLANNED_MAINTENANCE")
	ctx := context.Background()
	if got := outcome(t, ctx, fake.URL(), "/item/get", "tok"); got != "503 PLANNED_MAINTENANCE" {
		t.Errorf("first call: %q, want the queued fault", got)
	}
	if got := outcome(t, ctx, fake.URL(), "/item/get", "tok"); got != "500 INTERNAL_SERVER_ERROR" {
		t.Errorf("second call: %q, want the random fault", got)
	}
	if got := fake.FaultsInjected(); got != 1 {
		t.Errorf("FaultsInjected = %d, want 1 (queued faults are not random ones)", got)
	}
}

func TestParseFaultKind(t *testing.T) {
	t.Parallel()
	for _, k := range plaidfake.AllFaultKinds {
		got, err := plaidfake.ParseFaultKind(k.String())
		if err != nil || got != k {
			t.Errorf("ParseFaultKind(%q) = %v, %v; want %v", k.String(), got, err, k)
		}
	}
	if _, err := plaidfake.ParseFaultKind("meteor"); err == nil {
		t.Error("ParseFaultKind(meteor) succeeded")
	}
}

func TestTimeoutFaultEndsWhenTheFakeCloses(t *testing.T) {
	t.Parallel()
	fake := plaidfake.NewServer("id", "secret")
	fake.SetRandomFaults(1, 1, plaidfake.FaultTimeout)
	done := make(chan error, 1)
	go func() {
		_, err := post(t, context.Background(), fake.URL(), "/item/get", map[string]string{"access_token": "tok"}, nil)
		done <- err
	}()
	for fake.FaultsInjected() == 0 {
		time.Sleep(time.Millisecond)
	}
	fake.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a held request got an answer")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a request held by a timeout fault")
	}
}

func TestRemovalsAndOnRemoved(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	fake.AddItem("tok-a", "item-a", "ins_1")
	fake.AddItem("tok-b", "item-b", "ins_1")
	release := make(chan struct{})
	hooked := make(chan plaidfake.Removal, 2)
	fake.OnRemoved(func(r plaidfake.Removal) {
		if !fake.Removed(r.AccessToken) {
			t.Errorf("hook for %s ran before the Item was removed", r.AccessToken)
		}
		hooked <- r
		<-release
	})
	before := time.Now()
	answered := make(chan string, 1)
	go func() { answered <- outcome(t, context.Background(), fake.URL(), "/item/remove", "tok-a") }()
	r := <-hooked
	select {
	case o := <-answered:
		t.Fatalf("the caller got %q while the OnRemoved hook was still running", o)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if o := <-answered; o != "200 " {
		t.Errorf("removal answered %q", o)
	}
	if r.AccessToken != "tok-a" || r.ItemID != "item-a" || r.Time.Before(before) || r.Time.After(time.Now()) {
		t.Errorf("hook got %+v", r)
	}

	// A removal that fails (already removed, never issued) is no removal.
	fake.OnRemoved(nil)
	for _, tok := range []string{"tok-a", "tok-unknown"} {
		if o := outcome(t, context.Background(), fake.URL(), "/item/remove", tok); o == "200 " {
			t.Errorf("removing %s again: %q", tok, o)
		}
	}
	outcome(t, context.Background(), fake.URL(), "/item/remove", "tok-b")
	var got []string
	for _, rem := range fake.Removals() {
		got = append(got, rem.AccessToken+" "+rem.ItemID)
	}
	if diff := cmp.Diff([]string{"tok-a item-a", "tok-b item-b"}, got); diff != "" {
		t.Errorf("Removals (-want +got):\n%s", diff)
	}
}
