package functions

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
)

// Every deployed target has its needs declared, and a target starts with
// only the variables Terraform gives it.
func TestDeployedTargetsStartWithOnlyTheirOwnConfig(t *testing.T) {
	emulator.Host(t)
	targets := []string{"TokenCleanup", "RevokeAllTokens", "TokenAnalytics", "RevokeItem", "PlaidWebhook", "DailyCleanup", "WeeklyAnalytics", "TokenStats",
		"CreateLinkToken", "ExchangePublicToken", "ListItems", "VerifyItem"}
	if len(TargetNeeds) != len(targets) {
		t.Errorf("TargetNeeds has %d targets, want %d", len(TargetNeeds), len(targets))
	}
	for _, target := range targets {
		if _, ok := TargetNeeds[target]; !ok {
			t.Errorf("TargetNeeds lacks %s", target)
		}
	}

	// Nothing configured: an HTTP function answers 503 in JSON, naming no
	// secret value, and keeps answering (it retries the build per request).
	for _, k := range []string{"GOOGLE_CLOUD_PROJECT", "TOKEN_ENCRYPTION_KEY", "PLAID_CLIENT_ID", "PLAID_SECRET", "PLAID_ENV", "AUTH_JWT_SECRET", "AUTH_JWKS_URL"} {
		t.Setenv(k, "")
	}
	for range 2 {
		rec := httptest.NewRecorder()
		TokenCleanup(rec, httptest.NewRequest(http.MethodDelete, "/", nil))
		var body errorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusServiceUnavailable || body.Code != "unavailable" {
			t.Fatalf("misconfigured TokenCleanup: HTTP %d body %q", rec.Code, rec.Body.String())
		}
	}

	// WeeklyAnalytics needs only the project: no Plaid, vault or JWT secret.
	t.Setenv("GOOGLE_CLOUD_PROJECT", emulator.ProjectID(t))
	if _, err := deployedServer("WeeklyAnalytics"); err != nil {
		t.Errorf("WeeklyAnalytics with only GOOGLE_CLOUD_PROJECT: %v", err)
	}
	// PlaidWebhook needs Plaid credentials but no vault key or JWT secret.
	if _, err := deployedServer("PlaidWebhook"); err == nil || !strings.Contains(err.Error(), "PLAID_SECRET") {
		t.Errorf("PlaidWebhook without Plaid credentials: err = %v, want one naming PLAID_SECRET", err)
	}
	t.Setenv("PLAID_CLIENT_ID", "id")
	t.Setenv("PLAID_SECRET", "secret")
	if _, err := deployedServer("PlaidWebhook"); err == nil || !strings.Contains(err.Error(), "PLAID_ENV") {
		t.Errorf("PlaidWebhook without PLAID_ENV: err = %v, want one naming PLAID_ENV (it has no default)", err)
	}
	t.Setenv("PLAID_ENV", "sandbox")
	s, err := deployedServer("PlaidWebhook")
	if err != nil {
		t.Fatalf("PlaidWebhook with its own config: %v", err)
	}
	// A function without JWT configuration refuses user endpoints rather
	// than serving them unauthenticated.
	rec := httptest.NewRecorder()
	s.TokenAnalyticsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil).WithContext(context.Background()))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("analytics on a server without auth config: HTTP %d, want 503", rec.Code)
	}
}
