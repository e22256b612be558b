package lifecycle_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

func TestLinkSettingsDefaults(t *testing.T) {
	t.Parallel()
	c, err := lifecycle.LoadConfigFrom(lookup(complete()), lifecycle.NeedsAll)
	if err != nil {
		t.Fatal(err)
	}
	want := lifecycle.LinkSettings{Products: []string{"transactions"}, CountryCodes: []string{"US"},
		ClientName: "Personal Wealth Management", Language: "en"}
	if diff := cmp.Diff(want, c.Link); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, lifecycle.DefaultLinkSettings()); diff != "" {
		t.Errorf("DefaultLinkSettings (-want +got):\n%s", diff)
	}
}

func TestLinkSettingsFromTheEnvironment(t *testing.T) {
	t.Parallel()
	vars := complete()
	for k, v := range map[string]string{
		"PLAID_PRODUCTS": "transactions, auth,investments", "PLAID_COUNTRY_CODES": "us,CA", "PLAID_CLIENT_NAME": "Wealth",
		"PLAID_LANGUAGE": "FR", "PLAID_WEBHOOK_URL": "https://region-p.cloudfunctions.net/PlaidWebhook",
		"PLAID_REDIRECT_URI": "https://app.example/oauth-return",
	} {
		vars[k] = v
	}
	c, err := lifecycle.LoadConfigFrom(lookup(vars), lifecycle.NeedsAll)
	if err != nil {
		t.Fatal(err)
	}
	want := lifecycle.LinkSettings{Products: []string{"transactions", "auth", "investments"}, CountryCodes: []string{"US", "CA"},
		ClientName: "Wealth", Language: "fr", WebhookURL: "https://region-p.cloudfunctions.net/PlaidWebhook",
		RedirectURI: "https://app.example/oauth-return"}
	if diff := cmp.Diff(want, c.Link); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// What Plaid would refuse only when a user opens Link is refused at start,
// every problem at once, naming the variable.
func TestLinkSettingsRefusals(t *testing.T) {
	t.Parallel()
	vars := complete()
	for k, v := range map[string]string{
		"PLAID_PRODUCTS": "transactions,balance,transactoins", "PLAID_COUNTRY_CODES": "US,XX",
		"PLAID_CLIENT_NAME": strings.Repeat("n", 31), "PLAID_LANGUAGE": "tlh", "PLAID_WEBHOOK_URL": "hooks.example/plaid",
		"PLAID_REDIRECT_URI": "https://app.example/oauth?next=1",
	} {
		vars[k] = v
	}
	_, err := lifecycle.LoadConfigFrom(lookup(vars), lifecycle.NeedsAll)
	if err == nil {
		t.Fatal("accepted")
	}
	want := []string{
		`PLAID_PRODUCTS: "balance" is not a Plaid product Link takes`,
		`PLAID_PRODUCTS: "transactoins" is not a Plaid product Link takes`,
		`PLAID_COUNTRY_CODES: "XX" is not a country Plaid supports`,
		"PLAID_CLIENT_NAME must be at most 30 characters",
		"PLAID_LANGUAGE must be one of",
		"PLAID_WEBHOOK_URL must be an http(s) URL",
		"PLAID_REDIRECT_URI must not have a query string",
	}
	lines := strings.Split(strings.TrimPrefix(err.Error(), "invalid configuration:\n"), "\n")
	if len(lines) != len(want) {
		t.Errorf("%d problems reported, want %d:\n%v", len(lines), len(want), err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not say %q:\n%v", w, err)
		}
	}

	// Plaid takes only https redirects in production.
	vars = complete()
	vars["PLAID_ENV"], vars["PLAID_REDIRECT_URI"] = "production", "http://app.example/oauth"
	if _, err := lifecycle.LoadConfigFrom(lookup(vars), lifecycle.NeedsAll); err == nil || !strings.Contains(err.Error(), "PLAID_REDIRECT_URI must be https in production") {
		t.Errorf("http redirect in production: %v", err)
	}
}
