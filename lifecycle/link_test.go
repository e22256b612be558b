package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// priorityPacer paces nothing and records the priority of every Plaid call
// (the adapter asks its pacer before every attempt, paced endpoint or not).
type priorityPacer struct {
	mu    sync.Mutex
	calls []string // "<endpoint> <batch|interactive|committed>"
}

func (p *priorityPacer) Wait(ctx context.Context, endpoint string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, endpoint+" "+lifecycle.PlaidPriorityFrom(ctx).String())
	return nil
}

func (p *priorityPacer) Calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

// serviceOver builds a service over env's emulator, vault and fake Plaid,
// with tokens as its token store and pacer pacing its Plaid calls.
func serviceOver(t *testing.T, env *testenv.Env, tokens lifecycle.TokenStore, pacer lifecycle.Pacer, queue ...lifecycle.Continuer) *lifecycle.Service {
	t.Helper()
	adapter, err := lifecycle.NewPlaidClient(lifecycle.PlaidClientConfig{PlaidSettings: env.Config.PlaidSettings, Pacer: pacer,
		MaxAttempts: 3, BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, MaxRetryTime: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	deps := lifecycle.Deps{Tokens: tokens, Runs: env.Runs, Legacy: env.Legacy,
		Stats: env.Stats, Plaid: adapter, Cipher: env.Vault, Clock: env.Clock}
	if len(queue) > 0 {
		deps.Continuer = queue[0]
	}
	svc, err := lifecycle.NewService(env.Config, deps)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// failingCreates is the real token store whose document creations fail as
// Firestore does when it is unavailable: the write between the exchange
// and the store.
type failingCreates struct {
	lifecycle.TokenStore
}

func (failingCreates) Create(context.Context, *lifecycle.Token) error {
	return errInjectedUnavailable
}

// Mutate fails as Firestore does when it becomes unavailable: StoreToken
// writes through it.
func (failingCreates) Mutate(context.Context, string, func(*lifecycle.Token) (lifecycle.Mutation, error)) (*lifecycle.Token, error) {
	return nil, errInjectedUnavailable
}

var errInjectedUnavailable = lifecycle.WrapError(lifecycle.CodeUnavailable, errors.New("rpc error: code = Unavailable (injected)"), "Firestore is unavailable")

func accounts(masks ...string) []lifecycle.LinkedAccount {
	out := make([]lifecycle.LinkedAccount, len(masks))
	for i, m := range masks {
		out[i] = lifecycle.LinkedAccount{Mask: m, Name: "Plaid Checking " + m, Subtype: "checking"}
	}
	return out
}

// exchange mints a sandbox public token at institutionID and exchanges it
// for userID with the given account masks.
func exchange(t *testing.T, env *testenv.Env, svc *lifecycle.Service, ctx context.Context, userID, institutionID string, masks ...string) (*lifecycle.ItemState, error) {
	t.Helper()
	public, err := env.Plaid.SandboxPublicToken(institutionID)
	if err != nil {
		t.Fatal(err)
	}
	return svc.ExchangePublicToken(ctx, lifecycle.ExchangeRequest{UserID: userID, PublicToken: public, Accounts: accounts(masks...)})
}

// lastExchange is the fake's record of the latest exchange: the only place
// a test sees the access token Plaid issued.
func lastExchange(t *testing.T, env *testenv.Env) plaidfake.Exchange {
	t.Helper()
	ex := env.Plaid.Exchanges()
	if len(ex) == 0 {
		t.Fatal("no exchange reached the fake Plaid")
	}
	return ex[len(ex)-1]
}

func paths(env *testenv.Env) []string {
	var out []string
	for _, c := range env.Plaid.Calls() {
		out = append(out, c.Path)
	}
	return out
}

// erinProductionToken is Erin's active token of Plaid's production
// environment: on the tests' sandbox deployment, rule 0's to leave alone.
func erinProductionToken(item string) sample.Token {
	tok := testenv.ActiveToken(item, sample.Erin, 1)
	tok.Environment, tok.Plaintext = "production", "access-production-"+item
	return tok
}

func TestClientUserIDIsStableAndRevealsNothing(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	other := testenv.New(t, testenv.WithConfig(func(c *lifecycle.Config) { c.EncryptionKey = "another-encryption-key-0123456789abcdef" }))
	id := func(svc *lifecycle.Service, user string) string {
		t.Helper()
		v, err := svc.ClientUserID(user)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	alice := id(env.Service, sample.Alice)
	if again := id(env.Service, sample.Alice); again != alice {
		t.Errorf("client_user_id not stable: %q then %q", alice, again)
	}
	if strings.Contains(alice, sample.Alice) || strings.Contains(strings.ToLower(alice), "alice") {
		t.Errorf("client_user_id %q reveals the user id", alice)
	}
	if bob := id(env.Service, sample.Bob); bob == alice {
		t.Error("two users share a client_user_id")
	}
	if rotated := id(other.Service, sample.Alice); rotated == alice {
		t.Error("another TOKEN_ENCRYPTION_KEY gives the same client_user_id")
	}
}

func TestCreateLinkToken(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.WithConfig(func(c *lifecycle.Config) {
		c.Link.WebhookURL = "https://functions.example/PlaidWebhook"
		c.Link.RedirectURI = "https://app.example/oauth"
		c.Link.CountryCodes = []string{"US", "CA"}
	}))
	env.SeedSample(t)
	env.Seed(t, erinProductionToken("item-erin-production"))
	pacer := &priorityPacer{}
	svc := serviceOver(t, env, env.Tokens, pacer)
	clientUserID, _ := svc.ClientUserID(sample.Alice)

	created, err := svc.CreateLinkToken(t.Context(), sample.Alice, "")
	if err != nil {
		t.Fatalf("create mode: %v", err)
	}
	updated, err := svc.CreateLinkToken(t.Context(), sample.Alice, "item-alice-chase")
	if err != nil {
		t.Fatalf("update mode: %v", err)
	}
	sent := env.Plaid.LinkTokens()
	want := []plaidfake.LinkToken{
		{LinkToken: created.LinkToken, ClientUserID: clientUserID, ClientName: lifecycle.DefaultPlaidClientName, Language: "en",
			CountryCodes: []string{"US", "CA"}, Products: []string{"transactions"},
			Webhook: "https://functions.example/PlaidWebhook", RedirectURI: "https://app.example/oauth"},
		// Update mode: the Item's token, no products (Plaid's rule).
		{LinkToken: updated.LinkToken, ClientUserID: clientUserID, ClientName: lifecycle.DefaultPlaidClientName, Language: "en",
			CountryCodes: []string{"US", "CA"}, Webhook: "https://functions.example/PlaidWebhook",
			RedirectURI: "https://app.example/oauth", AccessToken: "access-sandbox-item-alice-chase"},
	}
	if diff := cmp.Diff(want, sent, cmpopts.IgnoreFields(plaidfake.LinkToken{}, "Expiration")); diff != "" {
		t.Errorf("link tokens Plaid received (-want +got):\n%s", diff)
	}
	if created.Mode != lifecycle.LinkModeCreate || updated.Mode != lifecycle.LinkModeUpdate ||
		!created.Expiration.Equal(sent[0].Expiration) {
		t.Errorf("answers: %+v, %+v", created, updated)
	}
	if diff := cmp.Diff([]string{"/link/token/create interactive", "/link/token/create interactive"}, pacer.Calls()); diff != "" {
		t.Errorf("Plaid calls and their priority (-want +got):\n%s", diff)
	}

	// Update mode only for the caller's own active Item of this
	// environment; none of these reaches Plaid.
	for _, tc := range []struct {
		name, item string
		want       lifecycle.Code
	}{
		{"another user's", "item-bob-wells", lifecycle.CodeNotFound},
		{"missing", "item-nobody", lifecycle.CodeNotFound},
		{"not a document id", "a/b", lifecycle.CodeNotFound},
		{"revoked", "item-dave-revoked", lifecycle.CodeConflict},
		{"expired", "item-alice-old", lifecycle.CodeConflict},
		{"production Item on a sandbox deployment", "item-erin-production", lifecycle.CodeConflict},
	} {
		user := sample.Dave
		switch tc.item {
		case "item-alice-old":
			user = sample.Alice
		case "item-erin-production":
			user = sample.Erin
		}
		_, err := svc.CreateLinkToken(t.Context(), user, tc.item)
		if got := lifecycle.ErrorCode(err); got != tc.want {
			t.Errorf("%s: %v (code %s), want %s", tc.name, err, got, tc.want)
		}
		if tc.want == lifecycle.CodeNotFound && err != lifecycle.ErrItemNotFound {
			t.Errorf("%s: %v, want exactly ErrItemNotFound", tc.name, err)
		}
	}
	if n := len(env.Plaid.LinkTokens()); n != 2 {
		t.Errorf("%d link tokens created, want only the first 2", n)
	}

	// Plaid refusing the deployment's settings is our fault, not the
	// user's: 503, never 400.
	env.Plaid.FailNext(plaidfake.PathLinkTokenCreate, 1, http.StatusBadRequest, "INVALID_INPUT", "INVALID_PRODUCT")
	if _, err := svc.CreateLinkToken(t.Context(), sample.Alice, ""); lifecycle.ErrorCode(err) != lifecycle.CodeUnavailable {
		t.Errorf("Plaid refusing the products: %v, want unavailable", err)
	}
}

func TestExchangePublicTokenStoresTheItem(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	pacer := &priorityPacer{}
	svc := serviceOver(t, env, env.Tokens, pacer)
	ctx, logs := loggedContext()

	got, err := exchange(t, env, svc, ctx, sample.Alice, "ins_109508", "0000", "1111", "0000", "")
	if err != nil {
		t.Fatalf("ExchangePublicToken: %v", err)
	}
	ex := lastExchange(t, env)
	want := &lifecycle.ItemState{ItemID: ex.ItemID, InstitutionID: "ins_109508", InstitutionName: "First Platypus Bank",
		Status: lifecycle.StatusActive, CreatedAt: testenv.Now}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answer (-want +got):\n%s", diff)
	}
	doc := env.Doc(t, ex.ItemID)
	wantDoc := &lifecycle.Token{ItemID: ex.ItemID, UserID: sample.Alice, InstitutionID: "ins_109508",
		InstitutionName: "First Platypus Bank", Status: lifecycle.StatusActive, Environment: "sandbox",
		CreatedAt: testenv.Now, UpdatedAt: testenv.Now, AccountMasks: []string{"0000", "1111"},
		Metadata: lifecycle.Metadata{Name: "First Platypus Bank", URL: "https://www.platypus.example", PrimaryColor: "#1f1f1f"}}
	if diff := cmp.Diff(wantDoc, doc, ignoreVersion); diff != "" {
		t.Errorf("stored document (-want +got):\n%s", diff)
	}
	if doc.AccessToken == ex.AccessToken || decrypt(t, env, doc) != ex.AccessToken {
		t.Error("the stored access token is not the exchanged one, encrypted")
	}
	if diff := cmp.Diff([]string{"/item/public_token/exchange", "/item/get", "/institutions/get_by_id"}, paths(env)); diff != "" {
		t.Errorf("Plaid calls (-want +got):\n%s", diff)
	}
	// The user's calls go first; the reading of the billed Item waits for
	// the quota rather than give it up.
	wantCalls := []string{"/item/public_token/exchange interactive", "/item/get committed", "/institutions/get_by_id interactive"}
	if diff := cmp.Diff(wantCalls, pacer.Calls()); diff != "" {
		t.Errorf("Plaid calls and their priorities (-want +got):\n%s", diff)
	}
	if strings.Contains(logs.String(), ex.AccessToken) || strings.Contains(logs.String(), ex.PublicToken) {
		t.Error("the logs contain a token")
	}
	if len(logs.Entries(t, "item linked")) != 1 {
		t.Errorf("no 'item linked' line:\n%s", logs)
	}
}

// A public token is used once: the same one again is the caller's error,
// and Plaid's only Item stays stored, not removed.
func TestExchangePublicTokenReused(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	public, _ := env.Plaid.SandboxPublicToken("ins_109508")
	req := lifecycle.ExchangeRequest{UserID: sample.Alice, PublicToken: public, Accounts: accounts("0000")}
	first, err := env.Service.ExchangePublicToken(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = env.Service.ExchangePublicToken(t.Context(), req)
	if lifecycle.ErrorCode(err) != lifecycle.CodeInvalid || !strings.Contains(err.Error(), "public_token is expired, already exchanged or invalid") {
		t.Fatalf("second exchange: %v, want invalid_argument naming the public token", err)
	}
	if doc := env.Doc(t, first.ItemID); doc == nil || doc.Status != lifecycle.StatusActive {
		t.Errorf("first Item after the refused reuse: %+v", doc)
	}
	if n := env.Plaid.CallCount("/item/remove"); n != 0 {
		t.Errorf("%d removals", n)
	}
}

// What is wrong with the request is refused before Plaid is called: the
// public token of another environment (rule 0), one that is no public
// token at all, oversized account fields.
func TestExchangePublicTokenRefusedBeforePlaid(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	long := strings.Repeat("x", 200)
	for _, tc := range []struct {
		name string
		req  lifecycle.ExchangeRequest
		want string
	}{
		{"missing", lifecycle.ExchangeRequest{UserID: sample.Alice}, "public_token is required"},
		{"production token", lifecycle.ExchangeRequest{UserID: sample.Alice, PublicToken: "public-production-de3ce8ef-33f8-452c-a685-8671031fc0f6"},
			"public_token is a production token; this service serves sandbox"},
		{"development token", lifecycle.ExchangeRequest{UserID: sample.Alice, PublicToken: "public-development-de3ce8ef"},
			"public_token is a development token; this service serves sandbox"},
		{"an access token", lifecycle.ExchangeRequest{UserID: sample.Alice, PublicToken: "access-sandbox-de3ce8ef"},
			"public_token is not a Plaid public token"},
		{"oversized mask", lifecycle.ExchangeRequest{UserID: sample.Alice, PublicToken: "public-sandbox-1",
			Accounts: []lifecycle.LinkedAccount{{Mask: "0000"}, {Mask: long}}}, "accounts[1].mask is longer than 128 bytes"},
	} {
		_, err := env.Service.ExchangePublicToken(t.Context(), tc.req)
		if lifecycle.ErrorCode(err) != lifecycle.CodeInvalid || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want invalid_argument saying %q", tc.name, err, tc.want)
		}
	}
	if calls := env.Plaid.Calls(); len(calls) != 0 {
		t.Errorf("Plaid was called: %+v", calls)
	}
}

// A second Item at the same institution sharing an account mask is removed
// at Plaid at once and refused with the existing item id; other Items are
// no duplicates.
func TestExchangePublicTokenDuplicate(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := t.Context()
	first, err := exchange(t, env, env.Service, ctx, sample.Alice, "ins_109508", "0000", "1111")
	if err != nil {
		t.Fatal(err)
	}

	_, err = exchange(t, env, env.Service, ctx, sample.Alice, "ins_109508", "2222", "1111")
	var dup *lifecycle.DuplicateItemError
	if !errors.As(err, &dup) || dup.ExistingItemID != first.ItemID || lifecycle.ErrorCode(err) != lifecycle.CodeDuplicateItem {
		t.Fatalf("second link of the same account: %v, want a duplicate of %s", err, first.ItemID)
	}
	second := lastExchange(t, env)
	if !env.Plaid.Removed(second.AccessToken) {
		t.Error("the duplicate Item was not removed at Plaid: it stays billed")
	}
	if doc := env.Doc(t, second.ItemID); doc != nil {
		t.Errorf("the duplicate was stored: %+v", doc)
	}
	audit := env.AuditEntries(t, second.ItemID)
	if len(audit) != 1 || audit[0].Reason != lifecycle.ReasonDuplicateItem || !audit[0].PlaidRemoved || audit[0].UserID != sample.Alice {
		t.Errorf("audit of the removed duplicate: %+v", audit)
	}

	// Not duplicates: another institution, no shared mask, another user.
	for _, tc := range []struct {
		user, institution string
		masks             []string
	}{
		{sample.Alice, "ins_109509", []string{"0000"}},
		{sample.Alice, "ins_109508", []string{"3333"}},
		{sample.Bob, "ins_109508", []string{"0000"}},
		{sample.Alice, "ins_109512", nil},
	} {
		if _, err := exchange(t, env, env.Service, ctx, tc.user, tc.institution, tc.masks...); err != nil {
			t.Errorf("%s at %s with %v: %v", tc.user, tc.institution, tc.masks, err)
		}
	}
	// A revoked Item is no duplicate either: the user links the bank anew.
	if _, err := env.Service.RevokeItem(ctx, sample.Alice, first.ItemID); err != nil {
		t.Fatal(err)
	}
	if _, err := exchange(t, env, env.Service, ctx, sample.Alice, "ins_109508", "0000"); err != nil {
		t.Errorf("relinking after revoking: %v", err)
	}
	if n := len(env.Plaid.Removals()); n != 2 {
		t.Errorf("%d removals at Plaid, want the duplicate's and the revocation's", n)
	}
}

// Firestore failing between the exchange and the store: the Item is
// removed at Plaid (it would be billed with no token to remove it), and
// the caller learns to link again.
func TestExchangePublicTokenStoreFailsRemovesTheItem(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	svc := serviceOver(t, env, failingCreates{env.Tokens}, nil)
	ctx, logs := loggedContext()

	_, err := exchange(t, env, svc, ctx, sample.Alice, "ins_109508", "0000")
	if lifecycle.ErrorCode(err) != lifecycle.CodeUnavailable {
		t.Fatalf("ExchangePublicToken: %v, want unavailable", err)
	}
	ex := lastExchange(t, env)
	if diff := cmp.Diff([]string{ex.AccessToken}, env.Plaid.RemovedTokens()); diff != "" {
		t.Errorf("removed at Plaid (-want +got):\n%s", diff)
	}
	if doc := env.Doc(t, ex.ItemID); doc != nil {
		t.Errorf("document exists: %+v", doc)
	}
	audit := env.AuditEntries(t, ex.ItemID)
	if len(audit) != 1 || audit[0].Reason != lifecycle.ReasonExchangeNotStored || !audit[0].PlaidRemoved {
		t.Errorf("audit: %+v", audit)
	}
	if strings.Contains(logs.String(), `"severity":"ERROR"`) {
		t.Errorf("an Item removed as it should be logged an ERROR:\n%s", logs)
	}
}

// When the removal fails too, the Item is billed with no token: an ERROR
// line names the item (never the token) for whoever must finish it.
func TestExchangePublicTokenStoreAndRemovalFail(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	svc := serviceOver(t, env, failingCreates{env.Tokens}, nil)
	env.Plaid.FailAlways(plaidfake.PathItemRemove, http.StatusInternalServerError, "API_ERROR", "INTERNAL_SERVER_ERROR")
	ctx, logs := loggedContext()

	_, err := exchange(t, env, svc, ctx, sample.Alice, "ins_109508", "0000")
	if lifecycle.ErrorCode(err) != lifecycle.CodeUnavailable {
		t.Fatalf("ExchangePublicToken: %v, want unavailable", err)
	}
	ex := lastExchange(t, env)
	var alarm []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(line, `"severity":"ERROR"`) && strings.Contains(line, "NOT removed at Plaid") {
			alarm = append(alarm, map[string]any{"line": line})
		}
	}
	if len(alarm) != 1 || !strings.Contains(alarm[0]["line"].(string), `"item_id":"`+ex.ItemID+`"`) {
		t.Errorf("want one ERROR line naming item %s, got:\n%s", ex.ItemID, logs)
	}
	if strings.Contains(logs.String(), ex.AccessToken) {
		t.Error("the logs contain the access token")
	}
	// Both priorities were tried: the user's, then in line with batch work.
	if n := env.Plaid.CallCount(plaidfake.PathItemRemove); n < 2 {
		t.Errorf("%d /item/remove attempts", n)
	}
	if audit := env.AuditEntries(t, ex.ItemID); len(audit) != 1 || audit[0].PlaidRemoved {
		t.Errorf("audit: %+v, want one entry with plaid_removed false", audit)
	}
}

// With the early-removal queue there, a removal that fails after a failed
// store is queued with the token sealed for its item id, and the queued
// removal removes the Item once Plaid is back: never billed for good.
func TestExchangePublicTokenUnstoredItemRemovedLater(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	queue := &testenv.Continuer{}
	svc := serviceOver(t, env, failingCreates{env.Tokens}, nil, queue)
	env.Plaid.FailAlways(plaidfake.PathItemRemove, http.StatusInternalServerError, "API_ERROR", "INTERNAL_SERVER_ERROR")
	ctx, logs := loggedContext()

	if _, err := exchange(t, env, svc, ctx, sample.Alice, "ins_109508", "0000"); lifecycle.ErrorCode(err) != lifecycle.CodeUnavailable {
		t.Fatalf("ExchangePublicToken: %v, want unavailable", err)
	}
	ex := lastExchange(t, env)
	reqs := queue.TakeRemovals()
	if len(reqs) != 1 || reqs[0].ItemID != ex.ItemID || reqs[0].SealedToken == "" {
		t.Fatalf("queued removals = %+v, want one for %s with its sealed token", reqs, ex.ItemID)
	}
	if strings.Contains(reqs[0].SealedToken, ex.AccessToken) || strings.Contains(logs.String(), ex.AccessToken) {
		t.Error("the access token travels or is logged in the clear")
	}
	if strings.Contains(logs.String(), "NOT removed at Plaid") {
		t.Errorf("a queued removal raised the alarm meant for an Item left billed:\n%s", logs)
	}
	env.Plaid.ClearFaults()
	if out, err := env.Service.RemoveOwedItem(context.Background(), reqs[0]); err != nil || out != lifecycle.RemovalDone {
		t.Fatalf("the queued removal: %q, %v; want removed", out, err)
	}
	if !env.Plaid.Removed(ex.AccessToken) {
		t.Error("the unstored Item was not removed at Plaid")
	}
}

// The exchange uses the public token up: a caller who goes away meanwhile
// must not leave the Item behind unstored.
func TestExchangePublicTokenCallerGoneMidway(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env.Plaid.SetLatency(200 * time.Millisecond)
	env.Plaid.OnCall(func(path, _ string) {
		if path == plaidfake.PathPublicTokenExchange {
			cancel()
		}
	})
	got, err := exchange(t, env, env.Service, ctx, sample.Alice, "ins_109508", "0000")
	if err != nil {
		t.Fatalf("ExchangePublicToken: %v", err)
	}
	if doc := env.Doc(t, lastExchange(t, env).ItemID); doc == nil || got.ItemID != doc.ItemID {
		t.Errorf("the Item was not stored after the caller left: %+v", doc)
	}
}

// An exchange whose answer was lost and whose retry found the token used
// may have created an Item we hold no token for: an ERROR, and 503.
func TestExchangePublicTokenLostAnswer(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.Plaid.SetRandomFaults(1, 1, plaidfake.FaultLostAnswer)
	env.Plaid.OnCall(func(path, _ string) {
		if path == plaidfake.PathPublicTokenExchange && env.Plaid.CallCount(path) == 2 {
			env.Plaid.SetRandomFaults(0, 1) // the retry is answered
		}
	})
	ctx, logs := loggedContext()
	_, err := exchange(t, env, env.Service, ctx, sample.Alice, "ins_109508", "0000")
	if lifecycle.ErrorCode(err) != lifecycle.CodeUnavailable || !errors.Is(err, lifecycle.ErrExchangeOutcomeUnknown) {
		t.Fatalf("ExchangePublicToken: %v, want unavailable, outcome unknown", err)
	}
	if n := len(env.Plaid.Exchanges()); n != 1 {
		t.Errorf("%d exchanges at Plaid, want the lost one", n)
	}
	if !strings.Contains(logs.String(), `"severity":"ERROR"`) || !strings.Contains(logs.String(), "outcome unknown") {
		t.Errorf("no ERROR about the unknown outcome:\n%s", logs)
	}
}

// The Item's institution is needed: without /item/get the Item is removed;
// without its name it is kept, nameless.
func TestExchangePublicTokenInstitutionLookups(t *testing.T) {
	t.Parallel()
	t.Run("item get fails", func(t *testing.T) {
		t.Parallel()
		env := testenv.New(t)
		env.Plaid.FailAlways(plaidfake.PathItemGet, http.StatusInternalServerError, "API_ERROR", "INTERNAL_SERVER_ERROR")
		_, err := exchange(t, env, env.Service, t.Context(), sample.Alice, "ins_109508", "0000")
		if lifecycle.ErrorCode(err) != lifecycle.CodeUnavailable {
			t.Fatalf("%v, want unavailable", err)
		}
		ex := lastExchange(t, env)
		if !env.Plaid.Removed(ex.AccessToken) || env.Doc(t, ex.ItemID) != nil {
			t.Errorf("removed %v, document %+v: want removed and not stored", env.Plaid.Removed(ex.AccessToken), env.Doc(t, ex.ItemID))
		}
	})
	t.Run("institution name fails", func(t *testing.T) {
		t.Parallel()
		env := testenv.New(t)
		env.Plaid.FailAlways(plaidfake.PathInstitutionsGetByID, http.StatusInternalServerError, "API_ERROR", "INTERNAL_SERVER_ERROR")
		got, err := exchange(t, env, env.Service, t.Context(), sample.Alice, "ins_109508", "0000")
		if err != nil {
			t.Fatal(err)
		}
		if got.InstitutionID != "ins_109508" || got.InstitutionName != "" || env.Plaid.CallCount(plaidfake.PathItemRemove) != 0 {
			t.Errorf("answer %+v, %d removals", got, env.Plaid.CallCount(plaidfake.PathItemRemove))
		}
	})
}

func TestListItems(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	// The old service's per-user document of Alice is no Item.
	legacy := map[string]any{"items": map[string]any{"item-legacy": map[string]any{"user_id": sample.Alice, "status": "active"}},
		"user_id": sample.Alice}
	if _, err := env.Client.Collection(lifecycle.TokensCollection).Doc(sample.Alice).Set(t.Context(), legacy); err != nil {
		t.Fatal(err)
	}
	got, err := env.Service.ListItems(t.Context(), sample.Alice)
	if err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	want := []lifecycle.ItemState{
		{ItemID: "item-alice-old", InstitutionID: "ins_3", InstitutionName: "Chase Bank", Status: lifecycle.StatusExpired,
			CreatedAt: testenv.Now.Add(-500 * day), LastUsedAt: testenv.Now.Add(-200 * day)},
		{ItemID: "item-alice-chase", InstitutionID: "ins_3", InstitutionName: "Chase Bank", Status: lifecycle.StatusActive,
			CreatedAt: testenv.Now.Add(-300 * day), LastUsedAt: testenv.Now.Add(-1 * day)},
		{ItemID: "item-alice-boa", InstitutionID: "ins_1", InstitutionName: "Bank of America", Status: lifecycle.StatusActive,
			CreatedAt: testenv.Now.Add(-200 * day), LastUsedAt: testenv.Now.Add(-5 * day)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Alice's items (-want +got):\n%s", diff)
	}
	erin, err := env.Service.ListItems(t.Context(), sample.Erin)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(erin, func(s lifecycle.ItemState) bool { return s.ItemID == "item-erin-chase" })
	if i < 0 || erin[i].ErrorCode != "ITEM_LOGIN_REQUIRED" || !erin[i].NeedsRepair {
		t.Errorf("Erin's item needing her login: %+v", erin)
	}
	if none, err := env.Service.ListItems(t.Context(), "user-nobody"); err != nil || len(none) != 0 {
		t.Errorf("a user without items: %v, %v", none, err)
	}
}

func TestNeedsRepair(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status lifecycle.Status
		code   string
		want   bool
	}{
		{lifecycle.StatusActive, "", false},
		{lifecycle.StatusActive, "ITEM_LOGIN_REQUIRED", true},
		{lifecycle.StatusActive, "PENDING_EXPIRATION", true},
		{lifecycle.StatusActive, "PENDING_DISCONNECT", true},
		{lifecycle.StatusActive, "USER_ACCOUNT_REVOKED", true},
		{lifecycle.StatusActive, lifecycle.LegacyErrorCode, true},
		{lifecycle.StatusActive, "INVALID_CREDENTIALS", true},
		{lifecycle.StatusActive, "INSTITUTION_DOWN", false},
		{lifecycle.StatusActive, "SOMETHING_NEW", false},
		{lifecycle.StatusExpired, "ITEM_NOT_FOUND", false},
		{lifecycle.StatusExpired, "ITEM_LOGIN_REQUIRED", false},
		{lifecycle.StatusRevoked, "ITEM_LOGIN_REQUIRED", false},
	} {
		if got := lifecycle.NeedsRepair(tc.status, tc.code); got != tc.want {
			t.Errorf("NeedsRepair(%s, %q) = %v, want %v", tc.status, tc.code, got, tc.want)
		}
	}
}

// verifyToken is a sandbox token of Alice's whose document carries
// errorCode and whose Item is in state at Plaid.
func verifyToken(item, errorCode string, state sample.PlaidState) sample.Token {
	tok := testenv.ActiveToken(item, sample.Alice, 1)
	tok.ErrorCode, tok.Plaid = errorCode, state
	return tok
}

// Verify asks Plaid now and records its answer as a validation: the
// repaired Item's error is cleared, an unrepaired one's kept, a gone one
// is expired; the next cleanup counts it validated and does not ask again.
func TestVerifyItem(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.Clock.Set(testenv.Now.Add(time.Hour))
	now := env.Clock.Now()
	env.Seed(t,
		verifyToken("item-repaired", "ITEM_LOGIN_REQUIRED", sample.Healthy),
		verifyToken("item-still-broken", "ITEM_LOGIN_REQUIRED", sample.NeedsUser),
		verifyToken("item-newly-broken", "", sample.NeedsUser),
		verifyToken("item-gone", "PENDING_EXPIRATION", sample.Gone),
	)
	pacer := &priorityPacer{}
	svc := serviceOver(t, env, env.Tokens, pacer)
	for _, tc := range []struct {
		item string
		want lifecycle.ItemState
	}{
		{"item-repaired", lifecycle.ItemState{Status: lifecycle.StatusActive}},
		{"item-still-broken", lifecycle.ItemState{Status: lifecycle.StatusActive, ErrorCode: "ITEM_LOGIN_REQUIRED", NeedsRepair: true}},
		{"item-newly-broken", lifecycle.ItemState{Status: lifecycle.StatusActive, ErrorCode: "ITEM_LOGIN_REQUIRED", NeedsRepair: true}},
		{"item-gone", lifecycle.ItemState{Status: lifecycle.StatusExpired, ErrorCode: "ITEM_NOT_FOUND"}},
	} {
		got, err := svc.VerifyItem(t.Context(), sample.Alice, tc.item)
		if err != nil {
			t.Fatalf("%s: %v", tc.item, err)
		}
		tc.want.ItemID, tc.want.InstitutionID, tc.want.InstitutionName = tc.item, "ins_3", "Chase Bank"
		tc.want.CreatedAt, tc.want.LastUsedAt = testenv.Now.Add(-48*time.Hour), testenv.Now.Add(-24*time.Hour)
		if diff := cmp.Diff(&tc.want, got); diff != "" {
			t.Errorf("%s: answer (-want +got):\n%s", tc.item, diff)
		}
		doc := env.Doc(t, tc.item)
		if doc.Status != tc.want.Status || doc.ErrorCode != tc.want.ErrorCode || !doc.LastValidatedAt.Equal(now) {
			t.Errorf("%s: document status %s, error_code %q, last_validated_at %v; want %s, %q, %v",
				tc.item, doc.Status, doc.ErrorCode, doc.LastValidatedAt, tc.want.Status, tc.want.ErrorCode, now)
		}
	}
	for _, c := range pacer.Calls() {
		if c != "/item/get interactive" {
			t.Errorf("Plaid call %q, want /item/get as the user's call", c)
		}
	}

	// Within VALIDATION_INTERVAL the next cleanup takes these as
	// validated and does not ask Plaid again.
	gets := env.Plaid.CallCount(plaidfake.PathItemGet)
	res, err := env.Service.Cleanup(t.Context(), lifecycle.CleanupRequest{DaysThreshold: 90, DryRun: true, Trigger: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Statistics.ValidationSkipped != 3 || env.Plaid.CallCount(plaidfake.PathItemGet) != gets {
		t.Errorf("cleanup after verification: %+v, %d more /item/get calls; want 3 skipped, none",
			res.Statistics, env.Plaid.CallCount(plaidfake.PathItemGet)-gets)
	}
}

// Another user's or a missing Item is the same not found; an Item that is
// not active is answered as it is; another environment's is never sent to
// Plaid; Plaid's outage changes nothing.
func TestVerifyItemRefusals(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	env.Seed(t, erinProductionToken("item-erin-production"))
	before := map[string]*lifecycle.Token{}
	for _, id := range []string{"item-bob-wells", "item-dave-revoked", "item-erin-production", "item-alice-chase"} {
		before[id] = env.Doc(t, id)
	}
	for _, tc := range []struct {
		user, item string
		want       error
	}{
		{sample.Alice, "item-bob-wells", lifecycle.ErrItemNotFound},
		{sample.Alice, "item-nobody", lifecycle.ErrItemNotFound},
		{sample.Alice, "..", lifecycle.ErrItemNotFound},
		{sample.AdminUser, "item-bob-wells", lifecycle.ErrItemNotFound},
	} {
		if _, err := env.Service.VerifyItem(t.Context(), tc.user, tc.item); err != tc.want {
			t.Errorf("%s verifying %s: %v, want %v", tc.user, tc.item, err, tc.want)
		}
	}
	revoked, err := env.Service.VerifyItem(t.Context(), sample.Dave, "item-dave-revoked")
	if err != nil || revoked.Status != lifecycle.StatusRevoked || revoked.NeedsRepair {
		t.Errorf("revoked item: %+v, %v", revoked, err)
	}
	if _, err := env.Service.VerifyItem(t.Context(), sample.Erin, "item-erin-production"); lifecycle.ErrorCode(err) != lifecycle.CodeConflict ||
		!strings.Contains(err.Error(), "production") {
		t.Errorf("production item on a sandbox deployment: %v, want a conflict naming production", err)
	}
	if n := env.Plaid.CallCount(plaidfake.PathItemGet); n != 0 {
		t.Errorf("%d /item/get calls for items that must not reach Plaid", n)
	}

	env.Plaid.FailAlways(plaidfake.PathItemGet, http.StatusInternalServerError, "API_ERROR", "INTERNAL_SERVER_ERROR")
	if _, err := env.Service.VerifyItem(t.Context(), sample.Alice, "item-alice-chase"); lifecycle.ErrorCode(err) != lifecycle.CodeUnavailable {
		t.Errorf("Plaid down: %v, want unavailable", err)
	}
	for id, doc := range before {
		if diff := cmp.Diff(doc, env.Doc(t, id)); diff != "" {
			t.Errorf("%s changed (-before +after):\n%s", id, diff)
		}
	}
}

// A webhook's write between the verification's read and its write is not
// overwritten blindly: the verification starts again on what is stored.
func TestVerifyItemDocumentChangedMeanwhile(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.Seed(t, verifyToken("item-a", "ITEM_LOGIN_REQUIRED", sample.Healthy))
	revoked := false
	env.Plaid.OnCall(func(path, _ string) {
		if path == plaidfake.PathItemGet && !revoked {
			revoked = true
			if _, err := env.Tokens.Update(context.Background(), "item-a",
				lifecycle.Patch{Status: new(lifecycle.StatusRevoked), PlaidRemoved: new(false)}, time.Time{}); err != nil {
				panic(fmt.Sprint("revoking meanwhile: ", err))
			}
		}
	})
	got, err := env.Service.VerifyItem(t.Context(), sample.Alice, "item-a")
	if err != nil {
		t.Fatal(err)
	}
	doc := env.Doc(t, "item-a")
	if got.Status != lifecycle.StatusRevoked || doc.Status != lifecycle.StatusRevoked || doc.ErrorCode != "ITEM_LOGIN_REQUIRED" {
		t.Errorf("answer %+v, document %+v: the revocation made meanwhile must stand", got, doc)
	}
}
