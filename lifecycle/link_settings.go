package lifecycle

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"
)

// LinkSettings are the PLAID_* variables of the Link flow (DESIGN §8):
// what every Link token is created with. Plaid checks them only when a
// user opens Link, so LoadConfig checks them at start.
type LinkSettings struct {
	// Products are the Plaid products a new Item is linked for
	// (PLAID_PRODUCTS, comma-separated; Plaid bills each).
	Products []string
	// CountryCodes are the countries whose institutions Link offers
	// (PLAID_COUNTRY_CODES, comma-separated ISO 3166-1 alpha-2).
	CountryCodes []string
	// ClientName is the app's name as Link shows it (PLAID_CLIENT_NAME, at
	// most 30 characters: Plaid shows "This Application" for longer ones).
	ClientName string
	// Language is Link's language (PLAID_LANGUAGE).
	Language string
	// WebhookURL is where Plaid sends the Items' webhooks: PlaidWebhook's
	// URL (PLAID_WEBHOOK_URL, optional; Terraform wires it).
	WebhookURL string
	// RedirectURI is where Link returns after an OAuth institution
	// (PLAID_REDIRECT_URI, optional; registered in Plaid's dashboard).
	RedirectURI string
}

// Defaults of the Link settings.
const (
	defaultPlaidProducts     = "transactions"
	defaultPlaidCountryCodes = "US"
	DefaultPlaidClientName   = "Personal Wealth Management"
	defaultPlaidLanguage     = "en"
	// maxClientName is the longest client_name Link shows.
	maxClientName = 30
)

// linkLanguages are the languages Plaid's /link/token/create documents.
var linkLanguages = []string{"da", "de", "en", "es", "et", "fr", "it", "lt", "lv", "nl", "no", "pl", "pt", "ro", "sv"}

// DefaultLinkSettings are the Link settings of a deployment that sets none
// of their variables.
func DefaultLinkSettings() LinkSettings {
	return LinkSettings{Products: splitList(defaultPlaidProducts), CountryCodes: splitList(defaultPlaidCountryCodes),
		ClientName: DefaultPlaidClientName, Language: defaultPlaidLanguage}
}

// loadLinkSettings reads the Link settings through get and reports every
// problem with them.
func loadLinkSettings(get func(string) string, plaidEnv string) (LinkSettings, []error) {
	l := LinkSettings{
		Products:     splitList(cmp.Or(get("PLAID_PRODUCTS"), defaultPlaidProducts)),
		CountryCodes: splitList(strings.ToUpper(cmp.Or(get("PLAID_COUNTRY_CODES"), defaultPlaidCountryCodes))),
		ClientName:   cmp.Or(get("PLAID_CLIENT_NAME"), DefaultPlaidClientName),
		Language:     strings.ToLower(cmp.Or(get("PLAID_LANGUAGE"), defaultPlaidLanguage)),
		WebhookURL:   get("PLAID_WEBHOOK_URL"),
		RedirectURI:  get("PLAID_REDIRECT_URI"),
	}
	var errs []error
	for _, p := range l.Products {
		if !validLinkProduct(p) {
			errs = append(errs, fmt.Errorf("PLAID_PRODUCTS: %q is not a Plaid product Link takes (e.g. transactions, auth, investments)", p))
		}
	}
	if len(l.Products) == 0 {
		errs = append(errs, errors.New("PLAID_PRODUCTS must name at least one product"))
	}
	for _, cc := range l.CountryCodes {
		if !validCountryCode(cc) {
			errs = append(errs, fmt.Errorf("PLAID_COUNTRY_CODES: %q is not a country Plaid supports (e.g. US, CA, GB)", cc))
		}
	}
	if len(l.CountryCodes) == 0 {
		errs = append(errs, errors.New("PLAID_COUNTRY_CODES must name at least one country"))
	}
	if n := utf8.RuneCountInString(l.ClientName); n > maxClientName {
		errs = append(errs, fmt.Errorf("PLAID_CLIENT_NAME must be at most %d characters (Link shows \"This Application\" instead), got %d", maxClientName, n))
	}
	if !slices.Contains(linkLanguages, l.Language) {
		errs = append(errs, fmt.Errorf("PLAID_LANGUAGE must be one of %s, got %q", strings.Join(linkLanguages, ", "), l.Language))
	}
	if l.WebhookURL != "" {
		if u, err := url.Parse(l.WebhookURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			errs = append(errs, fmt.Errorf("PLAID_WEBHOOK_URL must be an http(s) URL, got %q", l.WebhookURL))
		}
	}
	if l.RedirectURI != "" {
		// Plaid's rules: no query string, and https outside the sandbox.
		u, err := url.Parse(l.RedirectURI)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			errs = append(errs, fmt.Errorf("PLAID_REDIRECT_URI must be an http(s) URL, got %q", l.RedirectURI))
		case u.RawQuery != "" || u.ForceQuery:
			errs = append(errs, fmt.Errorf("PLAID_REDIRECT_URI must not have a query string, got %q", l.RedirectURI))
		case u.Scheme != "https" && plaidEnv == "production":
			errs = append(errs, fmt.Errorf("PLAID_REDIRECT_URI must be https in production, got %q", l.RedirectURI))
		}
	}
	return l, errs
}
