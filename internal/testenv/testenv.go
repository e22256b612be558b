// Package testenv builds, for a test, the whole service on real parts: the
// Firestore emulator (a project of its own per test), the fake Plaid server
// spoken to through the real plaid-go adapter, and a real vault.
package testenv

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/iterator"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// Now is the pinned "now" of tests: a daily run at 02:00 UTC.
var Now = time.Date(2026, 11, 28, 2, 0, 0, 0, time.UTC)

// EncryptionKey is the tests' TOKEN_ENCRYPTION_KEY.
const EncryptionKey = "test-encryption-key-not-for-production"

// SampleStatistics are the statistics DESIGN §4 gives for the sample set
// (15 checked, 3 expired, 2 stale, 1 invalid, 1 revoked, 6 cleaned), with
// the outcomes of the tokens that stay: 1 needing the user, 7 validated.
var SampleStatistics = lifecycle.Statistics{
	TotalChecked: 15, ExpiredRemoved: 3, StaleRemoved: 2, InvalidMarked: 1, RevokedRemoved: 1,
	TotalCleaned: 6, NeedsUser: 1, Validated: 7,
}

// Clock is a lifecycle.Clock for tests that returns a settable time.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Env is one test's service and everything under it.
type Env struct {
	Project     string
	Config      lifecycle.Config
	Client      *firestore.Client
	Tokens      *lifecycle.FirestoreTokenStore
	Runs        *lifecycle.FirestoreRunStore
	Legacy      *lifecycle.FirestoreLegacyStore
	Stats       *lifecycle.FirestoreStatsStore
	WebhookKeys *lifecycle.FirestoreWebhookKeyStore
	Plaid       *plaidfake.Server
	Adapter     *lifecycle.PlaidClient
	Vault       *lifecycle.Vault
	Clock       *Clock
	// Deps are Service's dependencies (Rebuild changes them).
	Deps    lifecycle.Deps
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

// WithConfig changes the service's configuration.
func WithConfig(change func(*lifecycle.Config)) Option {
	return func(c *lifecycle.Config, _ *lifecycle.PlaidClientConfig) { change(c) }
}

// WithRPM sets the Plaid pacing.
func WithRPM(itemGet, itemRemove int) Option {
	return func(c *lifecycle.Config, _ *lifecycle.PlaidClientConfig) {
		c.ItemGetRPM, c.ItemRemoveRPM = itemGet, itemRemove
	}
}

// New builds an Env. Retries are fast by default (3 attempts, 1-5 ms) so
// fault tests stay quick, pacing is generous, and a call may take up to 20 s:
// on a loaded two-core CI machine running the emulator, the race detector
// and every package's tests at once, a fake Plaid answer can take seconds.
func New(t testing.TB, opts ...Option) *Env {
	t.Helper()
	emulator.Host(t)
	project := emulator.ProjectID(t)
	fake := plaidfake.New(t)
	cfg := lifecycle.Config{
		Project: project, FirestoreDatabase: lifecycle.DefaultFirestoreDatabase,
		EncryptionKey: EncryptionKey, EncryptionSalt: lifecycle.DefaultEncryptionSalt,
		PlaidSettings: lifecycle.PlaidSettings{PlaidClientID: fake.ClientID, PlaidSecret: fake.Secret, PlaidEnv: "sandbox",
			PlaidBaseURL: fake.URL(), ItemGetRPM: 600000, ItemRemoveRPM: 600000},
		Link:          lifecycle.DefaultLinkSettings(),
		AuthJWTSecret: "test-jwt-secret-0123456789abcdef0123456789", AdminUserIDs: []string{sample.AdminUser},
		StaleDays:     lifecycle.DefaultStaleDays,
		RunTimeBudget: lifecycle.DefaultRunTimeBudget, HTTPRunTimeBudget: lifecycle.DefaultHTTPRunTimeBudget,
		ValidationInterval: lifecycle.DefaultValidationInterval, CleanupLeaseTTL: lifecycle.DefaultCleanupLeaseTTL,
		CleanupTopic: lifecycle.DefaultCleanupTopic, AnalyticsTopic: lifecycle.DefaultAnalyticsTopic,
	}
	pcfg := lifecycle.PlaidClientConfig{
		MaxAttempts: 3, BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, MaxRetryTime: 20 * time.Second,
	}
	for _, o := range opts {
		o(&cfg, &pcfg)
	}
	pcfg.PlaidSettings = cfg.PlaidSettings
	adapter, err := lifecycle.NewPlaidClient(pcfg)
	if err != nil {
		t.Fatalf("NewPlaidClient: %v", err)
	}
	vault, err := lifecycle.NewVault(cfg.EncryptionKey, nil, cfg.EncryptionSalt)
	if err != nil {
		t.Fatalf("NewVault: %v", err)
	}
	client := emulator.NewClientFor(t, project)
	stores := lifecycle.NewFirestoreStores(client)
	clock := NewClock(Now)
	e := &Env{Project: project, Config: cfg, Client: client, Tokens: stores.Tokens, Runs: stores.Runs,
		Legacy: stores.Legacy, Stats: stores.Stats, WebhookKeys: stores.WebhookKeys,
		Plaid: fake, Adapter: adapter, Vault: vault, Clock: clock}
	e.Deps = lifecycle.Deps{Tokens: stores.Tokens, Runs: stores.Runs, Legacy: stores.Legacy, Stats: stores.Stats,
		Plaid: adapter, Cipher: vault, Clock: clock}
	e.Rebuild(t, nil)
	return e
}

// Rebuild builds the Env's Service anew after change (nil: none) has
// changed its dependencies or configuration: a test wraps a store, or
// gives the service a continuer.
func (e *Env) Rebuild(t testing.TB, change func(*lifecycle.Deps, *lifecycle.Config)) *lifecycle.Service {
	t.Helper()
	if change != nil {
		change(&e.Deps, &e.Config)
	}
	svc, err := lifecycle.NewService(e.Config, e.Deps)
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	e.Service = svc
	return svc
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
		g.Go(func() error { return sample.Seed(context.Background(), e.Tokens, e.Vault, chunk) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// Doc returns the token document, or nil when it does not exist.
func (e *Env) Doc(t testing.TB, itemID string) *lifecycle.Token {
	t.Helper()
	return Doc(t, e.Tokens, itemID)
}

// Doc returns the token itemID of store, or nil when it does not exist.
func Doc(t testing.TB, store lifecycle.TokenStore, itemID string) *lifecycle.Token {
	t.Helper()
	tok, err := store.Get(context.Background(), itemID)
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

// AuditEntries returns the audit entries of itemID, read from Firestore.
func (e *Env) AuditEntries(t testing.TB, itemID string) []lifecycle.AuditEntry {
	t.Helper()
	return AuditEntries(t, e.Client, itemID)
}

// AuditEntries returns the audit entries of itemID in client's database.
func AuditEntries(t testing.TB, client *firestore.Client, itemID string) []lifecycle.AuditEntry {
	t.Helper()
	snaps, err := client.Collection(lifecycle.AuditCollection).Where("item_id", "==", itemID).Documents(context.Background()).GetAll()
	if err != nil {
		t.Fatalf("reading audit of %s: %v", itemID, err)
	}
	out := make([]lifecycle.AuditEntry, 0, len(snaps))
	for _, s := range snaps {
		var a lifecycle.AuditEntry
		if err := s.DataTo(&a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// Run returns a run record.
func (e *Env) Run(t testing.TB, id string) *lifecycle.RunRecord {
	t.Helper()
	run, err := e.Runs.GetRun(context.Background(), id)
	if err != nil {
		t.Fatalf("reading run %s: %v", id, err)
	}
	return run
}

// CleanupRuns returns every cleanup run record, newest first.
func (e *Env) CleanupRuns(t testing.TB) []*lifecycle.RunRecord {
	t.Helper()
	iter := e.Client.Collection(lifecycle.RunsCollection).Documents(context.Background())
	defer iter.Stop()
	var out []*lifecycle.RunRecord
	for {
		snap, err := iter.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			t.Fatalf("listing runs: %v", err)
		}
		var run lifecycle.RunRecord
		if err := snap.DataTo(&run); err != nil {
			t.Fatal(err)
		}
		out = append(out, &run)
	}
	slices.SortFunc(out, func(a, b *lifecycle.RunRecord) int { return b.StartedAt.Compare(a.StartedAt) })
	return out
}

// Continuer is a lifecycle.Continuer that records the continuations it is
// given, for the test to deliver, and fails the next ones when told to (a
// Pub/Sub outage).
type Continuer struct {
	mu       sync.Mutex
	runIDs   []string
	removals []lifecycle.RemovalRequest
	failNext int
}

// RequestRemoval records r, or fails like ContinueCleanup.
func (c *Continuer) RequestRemoval(_ context.Context, r lifecycle.RemovalRequest) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failNext > 0 {
		c.failNext--
		return lifecycle.Errorf(lifecycle.CodeUnavailable, "publishing the removal of %s failed (test)", r.ItemID)
	}
	c.removals = append(c.removals, r)
	return nil
}

// TakeRemovals returns the removal requests recorded since the last call.
func (c *Continuer) TakeRemovals() []lifecycle.RemovalRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.removals
	c.removals = nil
	return out
}

// ContinueCleanup records runID, or fails.
func (c *Continuer) ContinueCleanup(_ context.Context, runID string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failNext > 0 {
		c.failNext--
		return lifecycle.Errorf(lifecycle.CodeUnavailable, "publishing the continuation of %s failed (test)", runID)
	}
	c.runIDs = append(c.runIDs, runID)
	return nil
}

// FailNext makes the next n continuations fail.
func (c *Continuer) FailNext(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failNext = n
}

// Take returns the continuations recorded since the last Take.
func (c *Continuer) Take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.runIDs
	c.runIDs = nil
	return out
}
