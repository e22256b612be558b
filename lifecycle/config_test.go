package lifecycle_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

func lookup(vars map[string]string) lifecycle.Lookuper {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// complete is a configuration every program accepts.
func complete() map[string]string {
	return map[string]string{
		"GOOGLE_CLOUD_PROJECT": "p", "TOKEN_ENCRYPTION_KEY": strings.Repeat("k", 32),
		"PLAID_CLIENT_ID": "id", "PLAID_SECRET": "s", "PLAID_ENV": "sandbox", "AUTH_JWT_SECRET": strings.Repeat("j", 32),
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := lifecycle.LoadConfigFrom(lookup(complete()), lifecycle.NeedsAll)
	if err != nil {
		t.Fatal(err)
	}
	got := []any{c.FirestoreDatabase, c.EncryptionSalt, c.PlaidEnv, c.StaleDays, c.ItemGetRPM, c.ItemRemoveRPM,
		c.RunTimeBudget, c.HTTPRunTimeBudget, c.ValidationInterval, c.CleanupLeaseTTL, c.CleanupTopic, c.AnalyticsTopic,
		c.Host, c.Port, c.ServeRemoteEvents}
	want := []any{"(default)", "plaid-token-lifecycle/v1", "sandbox", 90, 5000, 2000,
		8 * time.Minute, 50 * time.Minute, 20 * time.Hour, 5 * time.Minute, "plaid-token-daily-cleanup", "plaid-token-weekly-analytics",
		"127.0.0.1", "8080", false}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

// Every problem is reported at once, one line each, naming the variable;
// each program is refused only for what it needs.
func TestLoadConfigRefusals(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		edit  map[string]string // "" deletes
		needs lifecycle.Needs
		want  []string // substrings, one per reported problem
	}{
		{"nothing set, everything needed", map[string]string{"GOOGLE_CLOUD_PROJECT": "", "TOKEN_ENCRYPTION_KEY": "",
			"PLAID_CLIENT_ID": "", "PLAID_SECRET": "", "PLAID_ENV": "", "AUTH_JWT_SECRET": ""}, lifecycle.NeedsAll,
			[]string{"GOOGLE_CLOUD_PROJECT is required", "TOKEN_ENCRYPTION_KEY is required", "PLAID_ENV is required",
				"PLAID_CLIENT_ID is required", "PLAID_SECRET is required", "AUTH_JWT_SECRET is required"}},
		{"PLAID_ENV has no default where Plaid is called", map[string]string{"PLAID_ENV": ""}, lifecycle.NeedsAll,
			[]string{"PLAID_ENV is required"}},
		{"analytics needs only the store", map[string]string{"TOKEN_ENCRYPTION_KEY": "", "PLAID_CLIENT_ID": "",
			"PLAID_SECRET": "", "PLAID_ENV": "", "AUTH_JWT_SECRET": ""}, lifecycle.Needs{Store: true}, nil},
		{"short encryption key", map[string]string{"TOKEN_ENCRYPTION_KEY": "short"}, lifecycle.NeedsAll,
			[]string{"TOKEN_ENCRYPTION_KEY must be at least 32 bytes"}},
		{"short JWT secret", map[string]string{"AUTH_JWT_SECRET": "short"}, lifecycle.NeedsAll,
			[]string{"AUTH_JWT_SECRET must be at least 32 bytes"}},
		{"JWKS over http", map[string]string{"AUTH_JWKS_URL": "http://issuer.example.com/jwks", "AUTH_ISSUER": "i", "AUTH_AUDIENCE": "a"},
			lifecycle.NeedsAll, []string{"AUTH_JWKS_URL must be an https URL"}},
		{"JWKS over http to loopback", map[string]string{"AUTH_JWKS_URL": "http://127.0.0.1:8000/jwks", "AUTH_ISSUER": "i", "AUTH_AUDIENCE": "a"},
			lifecycle.NeedsAll, nil},
		{"JWKS over https", map[string]string{"AUTH_JWKS_URL": "https://www.googleapis.com/jwks", "AUTH_ISSUER": "i", "AUTH_AUDIENCE": "a"},
			lifecycle.NeedsAll, nil},
		{"JWKS without issuer and audience", map[string]string{"AUTH_JWT_SECRET": "", "AUTH_JWKS_URL": "https://x/jwks"},
			lifecycle.NeedsAll, []string{"AUTH_ISSUER is required", "AUTH_AUDIENCE is required"}},
		{"development is retired", map[string]string{"PLAID_ENV": "development"}, lifecycle.NeedsAll,
			[]string{"PLAID_ENV must be sandbox or production"}},
		{"bad numbers and durations", map[string]string{"STALE_DAYS": "3651", "PLAID_ITEM_GET_RPM": "0",
			"RUN_TIME_BUDGET": "8", "VALIDATION_INTERVAL": "-1h", "CLEANUP_LEASE_TTL": "soon", "SERVE_REMOTE_EVENTS": "maybe"},
			lifecycle.NeedsAll, []string{"STALE_DAYS must be at most 3650", "PLAID_ITEM_GET_RPM must be a positive integer",
				"RUN_TIME_BUDGET must be a positive Go duration", "VALIDATION_INTERVAL must be a Go duration",
				"CLEANUP_LEASE_TTL must be a positive Go duration", "SERVE_REMOTE_EVENTS must be true or false"}},
		{"validation every run", map[string]string{"VALIDATION_INTERVAL": "0"}, lifecycle.NeedsAll, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			vars := complete()
			for k, v := range tc.edit {
				if v == "" {
					delete(vars, k)
				} else {
					vars[k] = v
				}
			}
			_, err := lifecycle.LoadConfigFrom(lookup(vars), tc.needs)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			lines := strings.Split(strings.TrimPrefix(err.Error(), "invalid configuration:\n"), "\n")
			if len(lines) != len(tc.want) {
				t.Errorf("%d problems reported, want %d:\n%v", len(lines), len(tc.want), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}
