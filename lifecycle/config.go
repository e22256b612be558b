package lifecycle

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config is the service's configuration, read from the environment
// variables of DESIGN §8. The functions, the CLI and the local server all
// load it the same way.
type Config struct {
	Project           string // GOOGLE_CLOUD_PROJECT
	FirestoreDatabase string // FIRESTORE_DATABASE

	EncryptionKey         string   // TOKEN_ENCRYPTION_KEY
	EncryptionKeyPrevious []string // TOKEN_ENCRYPTION_KEY_PREVIOUS
	EncryptionSalt        string   // TOKEN_ENCRYPTION_SALT
	LegacyEncryptionKey   string   // LEGACY_TOKEN_ENCRYPTION_KEY

	PlaidSettings
	// Link is what the app's Link tokens are created with (PLAID_PRODUCTS,
	// PLAID_COUNTRY_CODES, PLAID_CLIENT_NAME, PLAID_LANGUAGE,
	// PLAID_WEBHOOK_URL, PLAID_REDIRECT_URI).
	Link LinkSettings

	AuthJWTSecret string   // AUTH_JWT_SECRET (HS256)
	AuthJWKSURL   string   // AUTH_JWKS_URL (RS256/ES256)
	AuthIssuer    string   // AUTH_ISSUER
	AuthAudience  string   // AUTH_AUDIENCE
	AdminUserIDs  []string // ADMIN_USER_IDS

	StaleDays          int           // STALE_DAYS
	RunTimeBudget      time.Duration // RUN_TIME_BUDGET: event-driven cleanup invocations
	HTTPRunTimeBudget  time.Duration // HTTP_RUN_TIME_BUDGET: a synchronous HTTP cleanup hands over after it
	ValidationInterval time.Duration // VALIDATION_INTERVAL: an active token validated within it is not validated again
	LogLevel           slog.Level    // LOG_LEVEL

	// Cleanup tuning (optional): documents per page, tokens in flight, and
	// how long a run's lease lasts unless renewed.
	CleanupPageSize    int           // CLEANUP_PAGE_SIZE
	CleanupConcurrency int           // CLEANUP_CONCURRENCY
	CleanupLeaseTTL    time.Duration // CLEANUP_LEASE_TTL

	// Topics a function publishes to (Terraform sets them).
	CleanupTopic   string // CLEANUP_TOPIC: continuations and handed-over HTTP runs
	AnalyticsTopic string // ANALYTICS_TOPIC: repair requests of ?exact=true

	// ReportBucket is the Cloud Storage bucket WeeklyAnalytics writes the
	// weekly report into (DESIGN §9); empty: the report is not written.
	ReportBucket string // REPORT_BUCKET
	// StorageEmulatorHost is a Cloud Storage emulator's host:port (the
	// storage client reads it itself; the report's local address names it).
	StorageEmulatorHost string // STORAGE_EMULATOR_HOST
	// FirestoreEmulatorHost is the Firestore emulator's host:port (the
	// client library reads it itself); set, this is a local system, and
	// errors may say how to fix things locally.
	FirestoreEmulatorHost string // FIRESTORE_EMULATOR_HOST

	// The local server only (scripts/serve).
	Host string // HOST
	Port string // PORT
	// ServeRemoteEvents lets scripts/serve take /events/* from any address;
	// by default only loopback callers may trigger scheduled runs.
	ServeRemoteEvents bool // SERVE_REMOTE_EVENTS
}

// PlaidSettings are the PLAID_* variables: what the Plaid adapter is built
// from (NewPlaidClient), part of Config.
type PlaidSettings struct {
	PlaidClientID string // PLAID_CLIENT_ID
	PlaidSecret   string // PLAID_SECRET
	PlaidEnv      string // PLAID_ENV: sandbox | production
	PlaidBaseURL  string // PLAID_BASE_URL: overrides the host of PlaidEnv
	// ItemGetRPM and ItemRemoveRPM are the most /item/get and /item/remove
	// calls a minute the service makes, retries included, all its
	// instances together (PLAID_ITEM_GET_RPM, PLAID_ITEM_REMOVE_RPM).
	ItemGetRPM    int
	ItemRemoveRPM int
}

// Defaults of DESIGN §6 and §8.
const (
	DefaultFirestoreDatabase = "(default)"
	DefaultEncryptionSalt    = "plaid-token-lifecycle/v1"
	DefaultStaleDays         = 90
	DefaultItemGetRPM        = 5000
	DefaultItemRemoveRPM     = 2000
	DefaultRunTimeBudget     = 8 * time.Minute
	DefaultHTTPRunTimeBudget = 50 * time.Minute
	// DefaultValidationInterval keeps the old service's daily validation:
	// a token validated by yesterday's 02:00 run is due again today.
	DefaultValidationInterval = 20 * time.Hour
	DefaultCleanupTopic       = "plaid-token-daily-cleanup"
	DefaultAnalyticsTopic     = "plaid-token-weekly-analytics"
	defaultHost               = "127.0.0.1"
	defaultPort               = "8080"

	// minEncryptionKeyLength is the shortest TOKEN_ENCRYPTION_KEY accepted
	// (DESIGN §8): PBKDF2 slows guessing, it does not make a short password
	// strong.
	minEncryptionKeyLength = 32
)

// Lookuper finds an environment variable; os.LookupEnv is the real one.
type Lookuper func(key string) (string, bool)

// Needs says which parts of the configuration a program requires, so that
// a missing variable is reported at start only by programs that use it.
type Needs struct {
	Store  bool // Firestore project
	Vault  bool // TOKEN_ENCRYPTION_KEY
	Plaid  bool // PLAID_CLIENT_ID, PLAID_SECRET
	Auth   bool // AUTH_JWT_SECRET or AUTH_JWKS_URL with issuer and audience
	Legacy bool // LEGACY_TOKEN_ENCRYPTION_KEY where legacy documents remain (not required at start)
}

// NeedsAll is what the deployed functions require.
var NeedsAll = Needs{Store: true, Vault: true, Plaid: true, Auth: true}

// LoadConfig reads the configuration from the process environment.
func LoadConfig(needs Needs) (Config, error) { return LoadConfigFrom(os.LookupEnv, needs) }

// LoadConfigFrom reads the configuration through lookup and validates it.
// Every missing or malformed variable is reported, joined, each on its own
// line naming the variable.
func LoadConfigFrom(lookup Lookuper, needs Needs) (Config, error) {
	env := &envReader{lookup: lookup}
	c := env.config()
	c.checkValues(env)
	c.checkNeeds(env, needs)
	if len(env.errs) > 0 {
		return c, fmt.Errorf("invalid configuration:\n%w", errors.Join(env.errs...))
	}
	return c, nil
}

// envReader reads variables through lookup, collecting every problem.
type envReader struct {
	lookup Lookuper
	errs   []error
}

func (e *envReader) get(k string) string {
	v, _ := e.lookup(k)
	return strings.TrimSpace(v)
}

func (e *envReader) fail(format string, args ...any) {
	e.errs = append(e.errs, fmt.Errorf(format, args...))
}

func (e *envReader) missing(k, why string) { e.fail("%s is required: %s", k, why) }

// duration reads a positive Go duration, def when unset.
func (e *envReader) duration(k string, def time.Duration) time.Duration {
	v := e.get(k)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		e.fail("%s must be a positive Go duration such as 8m, got %q", k, v)
		return def
	}
	return d
}

// positive reads a positive integer, def when unset.
func (e *envReader) positive(k string, def int) int {
	v := e.get(k)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		e.fail("%s must be a positive integer, got %q", k, v)
		return def
	}
	return n
}

// boolean reads true or false (1 or 0), false when unset.
func (e *envReader) boolean(k string) bool {
	switch v := strings.ToLower(e.get(k)); v {
	case "", "0", "false":
		return false
	case "1", "true":
		return true
	default:
		e.fail("%s must be true or false, got %q", k, v)
		return false
	}
}

// config reads every variable of DESIGN §8 with its default.
func (e *envReader) config() Config {
	get := e.get
	c := Config{
		Project:               get("GOOGLE_CLOUD_PROJECT"),
		FirestoreDatabase:     cmp.Or(get("FIRESTORE_DATABASE"), DefaultFirestoreDatabase),
		EncryptionKey:         get("TOKEN_ENCRYPTION_KEY"),
		EncryptionKeyPrevious: splitList(get("TOKEN_ENCRYPTION_KEY_PREVIOUS")),
		EncryptionSalt:        cmp.Or(get("TOKEN_ENCRYPTION_SALT"), DefaultEncryptionSalt),
		LegacyEncryptionKey:   get("LEGACY_TOKEN_ENCRYPTION_KEY"),
		PlaidSettings: PlaidSettings{
			PlaidClientID: get("PLAID_CLIENT_ID"),
			PlaidSecret:   get("PLAID_SECRET"),
			PlaidEnv:      get("PLAID_ENV"),
			PlaidBaseURL:  get("PLAID_BASE_URL"),
			ItemGetRPM:    e.positive("PLAID_ITEM_GET_RPM", DefaultItemGetRPM),
			ItemRemoveRPM: e.positive("PLAID_ITEM_REMOVE_RPM", DefaultItemRemoveRPM),
		},
		AuthJWTSecret:         get("AUTH_JWT_SECRET"),
		AuthJWKSURL:           get("AUTH_JWKS_URL"),
		AuthIssuer:            get("AUTH_ISSUER"),
		AuthAudience:          get("AUTH_AUDIENCE"),
		AdminUserIDs:          splitList(get("ADMIN_USER_IDS")),
		StaleDays:             e.positive("STALE_DAYS", DefaultStaleDays),
		RunTimeBudget:         e.duration("RUN_TIME_BUDGET", DefaultRunTimeBudget),
		HTTPRunTimeBudget:     e.duration("HTTP_RUN_TIME_BUDGET", DefaultHTTPRunTimeBudget),
		ValidationInterval:    e.validationInterval(),
		LogLevel:              e.logLevel(),
		CleanupPageSize:       e.positive("CLEANUP_PAGE_SIZE", 0),
		CleanupConcurrency:    e.positive("CLEANUP_CONCURRENCY", 0),
		CleanupLeaseTTL:       e.duration("CLEANUP_LEASE_TTL", DefaultCleanupLeaseTTL),
		CleanupTopic:          cmp.Or(get("CLEANUP_TOPIC"), DefaultCleanupTopic),
		AnalyticsTopic:        cmp.Or(get("ANALYTICS_TOPIC"), DefaultAnalyticsTopic),
		Host:                  cmp.Or(get("HOST"), defaultHost),
		Port:                  cmp.Or(get("PORT"), defaultPort),
		ServeRemoteEvents:     e.boolean("SERVE_REMOTE_EVENTS"),
		ReportBucket:          get("REPORT_BUCKET"),
		StorageEmulatorHost:   get("STORAGE_EMULATOR_HOST"),
		FirestoreEmulatorHost: get("FIRESTORE_EMULATOR_HOST"),
	}
	link, linkErrs := loadLinkSettings(get, c.PlaidEnv)
	c.Link = link
	e.errs = append(e.errs, linkErrs...)
	return c
}

// validationInterval reads VALIDATION_INTERVAL, where 0 validates every
// active token on every run.
func (e *envReader) validationInterval() time.Duration {
	v := e.get("VALIDATION_INTERVAL")
	if v == "" {
		return DefaultValidationInterval
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		e.fail("VALIDATION_INTERVAL must be a Go duration such as 20h or 0, got %q", v)
		return DefaultValidationInterval
	}
	return d
}

func (e *envReader) logLevel() slog.Level {
	var l slog.Level
	if v := e.get("LOG_LEVEL"); v != "" {
		if err := l.UnmarshalText([]byte(strings.ToUpper(v))); err != nil {
			e.fail("LOG_LEVEL must be DEBUG, INFO, WARN or ERROR, got %q", v)
		}
	}
	return l
}

// checkValues refuses values no program may run with, whatever it needs.
func (c Config) checkValues(e *envReader) {
	if c.StaleDays > MaxDaysThreshold {
		e.fail("STALE_DAYS must be at most %d, got %d", MaxDaysThreshold, c.StaleDays)
	}
	if c.EncryptionKey != "" && len(c.EncryptionKey) < minEncryptionKeyLength {
		e.fail("TOKEN_ENCRYPTION_KEY must be at least %d bytes", minEncryptionKeyLength)
	}
	if c.AuthJWKSURL != "" {
		if err := ValidateJWKSURL(c.AuthJWKSURL); err != nil {
			e.errs = append(e.errs, err)
		}
	}
	switch c.PlaidEnv {
	case "sandbox", "production":
	case "": // required where Plaid is called (checkNeeds)
	default:
		e.fail("PLAID_ENV must be sandbox or production, got %q", c.PlaidEnv)
	}
	if c.PlaidBaseURL != "" && !strings.HasPrefix(c.PlaidBaseURL, "http://") && !strings.HasPrefix(c.PlaidBaseURL, "https://") {
		e.fail("PLAID_BASE_URL must be an http(s) URL, got %q", c.PlaidBaseURL)
	}
}

// checkNeeds requires what the program needs (needs) and is not set.
func (c Config) checkNeeds(e *envReader, needs Needs) {
	if needs.Store && c.Project == "" {
		e.missing("GOOGLE_CLOUD_PROJECT", "the Firestore project id")
	}
	if needs.Vault && c.EncryptionKey == "" {
		e.missing("TOKEN_ENCRYPTION_KEY", "the password the token encryption key is derived from")
	}
	if needs.Plaid {
		if c.PlaidEnv == "" {
			// No default: tokens of the other environment are never touched
			// (DESIGN §7 rule 0), so a deployment must say which it serves.
			e.missing("PLAID_ENV", "the Plaid environment of these credentials, sandbox or production")
		}
		if c.PlaidClientID == "" {
			e.missing("PLAID_CLIENT_ID", "Plaid API credentials")
		}
		if c.PlaidSecret == "" {
			e.missing("PLAID_SECRET", "Plaid API credentials")
		}
	}
	if !needs.Auth {
		return
	}
	switch {
	case c.AuthJWTSecret == "" && c.AuthJWKSURL == "":
		e.missing("AUTH_JWT_SECRET", "set it (HS256) or AUTH_JWKS_URL with AUTH_ISSUER and AUTH_AUDIENCE")
	case c.AuthJWKSURL != "":
		if c.AuthIssuer == "" {
			e.missing("AUTH_ISSUER", "AUTH_JWKS_URL is set, so tokens' issuer must be pinned")
		}
		if c.AuthAudience == "" {
			e.missing("AUTH_AUDIENCE", "AUTH_JWKS_URL is set, so tokens' audience must be pinned")
		}
	}
	if c.AuthJWTSecret != "" && len(c.AuthJWTSecret) < 32 {
		e.fail("AUTH_JWT_SECRET must be at least 32 bytes: shorter HS256 secrets can be brute-forced")
	}
}

// ValidateJWKSURL requires https for AUTH_JWKS_URL: the keys it serves decide
// who is admin. Plain http is allowed to a loopback host only (tests, a
// local issuer).
func ValidateJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("AUTH_JWKS_URL must be an https URL, got %q", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
	}
	return fmt.Errorf("AUTH_JWKS_URL must be an https URL (http only to a loopback host), got %q", raw)
}

// IsAdmin reports whether userID is listed in ADMIN_USER_IDS.
func (c Config) IsAdmin(userID string) bool {
	for _, id := range c.AdminUserIDs {
		if id == userID {
			return true
		}
	}
	return false
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
