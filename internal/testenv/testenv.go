// Package testenv builds, for a test, the whole service on real parts: the
// Firestore emulator (a project of its own per test), the fake Plaid server
// spoken to through the real plaid-go adapter, and a real vault.
package testenv

import (
	"context"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"golang.org/x/sync/errgroup"

	"github.com/finwell/plaid-token-lifecycle/internal/fstest"
	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// Now is the pinned "now" of tests: a daily run at 02:00 UTC.
var Now = time.Date(2026, 11, 28, 2, 0, 0, 0, time.UTC)

// EncryptionKey is the tests' TOKEN_ENCRYPTION_KEY.
const EncryptionKey = "test-encryption-key-not-for-production"

// Env is one test's service and everything under it.
type Env struct {
	Project string
	Config  lifecycle.Config
	Client  *firestore.Client
	Store   *lifecycle.FirestoreStore
	Records *lifecycle.Records
	Plaid   *plaidfake.Server
	Adapter *lifecycle.PlaidClient
	Vault   *lifecycle.Vault
	Clock   *lifecycle.FixedClock
	Service *lifecycle.Service
}

// Option adjusts the configuration before the service is built.
type Option func(*lifecycle.Config, *lifecycle.PlaidClientConfig)

// WithPlaidRetries sets the adapter's retry bounds.
func WithPlaidRetries(attempts int, base, max time.Duration) Option {
	return func(_ *lifecycle.Config, p *lifecycle.PlaidClientConfig) {
		p.MaxAttempts, p.BaseBackoff, p.MaxBackoff = attempts, base, max
	}
}

// WithPlaidTimeout bounds the time one Plaid call may take, retries
// included.
func WithPlaidTimeout(d time.Duration) Option {
	return func(_ *lifecycle.Config, p *lifecycle.PlaidClientConfig) { p.MaxRetryTime = d }
}

// WithRPM sets the Plaid pacing.
func WithRPM(itemGet, itemRemove int) Option {
	return func(c *lifecycle.Config, p *lifecycle.PlaidClientConfig) {
		c.ItemGetRPM, c.ItemRemoveRPM = itemGet, itemRemove
		p.ItemGetRPM, p.ItemRemoveRPM = itemGet, itemRemove
	}
}

// New builds an Env. Retries are fast by default (3 attempts, 1-5 ms) so
// fault tests stay quick, pacing is generous, and a call may take up to 20 s:
// on a loaded two-core CI machine running the emulator, the race detector
// and every package's tests at once, a fake Plaid answer can take seconds.
func New(t testing.TB, opts ...Option) *Env {
	t.Helper()
	fstest.EmulatorHost(t)
	project := fstest.ProjectID(t)
	fake := plaidfake.New(t)
	cfg := lifecycle.Config{
		Project: project, FirestoreDatabase: lifecycle.DefaultFirestoreDatabase,
		EncryptionKey: EncryptionKey, EncryptionSalt: lifecycle.DefaultEncryptionSalt,
		PlaidClientID: fake.ClientID, PlaidSecret: fake.Secret, PlaidEnv: "sandbox", PlaidBaseURL: fake.URL(),
		AuthJWTSecret: "test-jwt-secret-0123456789abcdef0123456789", AdminUserIDs: []string{sample.AdminUser},
		StaleDays: lifecycle.DefaultStaleDays, ItemGetRPM: 600000, ItemRemoveRPM: 600000,
		RunTimeBudget: lifecycle.DefaultRunTimeBudget,
	}
	pcfg := lifecycle.PlaidClientConfig{
		ClientID: fake.ClientID, Secret: fake.Secret, BaseURL: fake.URL(),
		ItemGetRPM: cfg.ItemGetRPM, ItemRemoveRPM: cfg.ItemRemoveRPM,
		MaxAttempts: 3, BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, MaxRetryTime: 20 * time.Second,
	}
	for _, o := range opts {
		o(&cfg, &pcfg)
	}
	adapter, err := lifecycle.NewPlaidClient(pcfg)
	if err != nil {
		t.Fatalf("NewPlaidClient: %v", err)
	}
	vault, err := lifecycle.NewVault(cfg.EncryptionKey, nil, cfg.EncryptionSalt)
	if err != nil {
		t.Fatalf("NewVault: %v", err)
	}
	client := fstest.NewClientFor(t, project)
	store := lifecycle.NewFirestoreStore(client)
	records := lifecycle.NewRecords(client)
	clock := lifecycle.NewFixedClock(Now)
	svc, err := lifecycle.NewService(cfg, store, records, adapter, vault, clock)
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	return &Env{Project: project, Config: cfg, Client: client, Store: store, Records: records,
		Plaid: fake, Adapter: adapter, Vault: vault, Clock: clock, Service: svc}
}

// SeedSample stores the sample set and teaches the fake Plaid about it.
func (e *Env) SeedSample(t testing.TB) []sample.Token {
	t.Helper()
	tokens := sample.Tokens(Now)
	e.Seed(t, tokens...)
	return tokens
}

// Seed stores tokens (encrypted) and registers them with the fake Plaid.
func (e *Env) Seed(t testing.TB, tokens ...sample.Token) {
	t.Helper()
	sample.Register(e.Plaid, tokens)
	// Seed in parallel chunks: continuation tests seed thousands.
	var g errgroup.Group
	g.SetLimit(16)
	for start := 0; start < len(tokens); start += 50 {
		chunk := tokens[start:min(start+50, len(tokens))]
		g.Go(func() error { return sample.Seed(context.Background(), e.Store, e.Vault, chunk) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// Doc returns the token document, or nil when it does not exist.
func (e *Env) Doc(t testing.TB, itemID string) *lifecycle.Token {
	t.Helper()
	tok, err := e.Store.Get(context.Background(), itemID)
	if lifecycle.IsCode(err, lifecycle.CodeNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("reading %s: %v", itemID, err)
	}
	return tok
}

// ActiveToken returns a healthy active sample-style token for userID.
func ActiveToken(itemID, userID string, lastUsedDaysAgo int) sample.Token {
	used := Now.Add(-time.Duration(lastUsedDaysAgo) * 24 * time.Hour)
	return sample.Token{
		Token: lifecycle.Token{
			ItemID: itemID, UserID: userID, InstitutionID: "ins_3", InstitutionName: "Chase Bank",
			Status: lifecycle.StatusActive, Environment: "sandbox",
			CreatedAt: used.Add(-24 * time.Hour), UpdatedAt: used.Add(-24 * time.Hour), LastUsedAt: used,
		},
		Plaintext: "access-sandbox-" + itemID,
		Plaid:     sample.Healthy,
	}
}

// NewWebhookPlaidClient returns the real plaid-go adapter speaking to fake
// as webhook verification tests need it: webhook key lookups are not paced
// (the verifier's own bound on them is under test) and a failed call is not
// retried (an outage must fail fast, not back off).
func NewWebhookPlaidClient(t testing.TB, fake *plaidfake.Server) *lifecycle.PlaidClient {
	t.Helper()
	client, err := lifecycle.NewPlaidClient(lifecycle.PlaidClientConfig{
		ClientID:      fake.ClientID,
		Secret:        fake.Secret,
		BaseURL:       fake.URL(),
		WebhookKeyRPM: 60000,
		MaxAttempts:   1,
	})
	if err != nil {
		t.Fatalf("NewPlaidClient: %v", err)
	}
	return client
}
