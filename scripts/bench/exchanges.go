package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// exchanges is the exchange workload: new users each link o.exchangesPerUser
// Items at once (scripts/loadtest -mode exchange mints their public tokens
// at the stand-in before the timed part), into the store of the benchmark
// dataset (the Items join a store that is not empty, and analytics has it
// to count). After it, every Item the stand-in exchanged must be either
// stored once, for the user whose exchange answered 201, encrypted, with
// its institution, or removed at Plaid with its audit entry: never billed
// without a document (Plaid's Items exchanged minus those removed equal the
// new documents).
type exchanges struct {
	*dataset
	// warmed are the warm-up exchanges' items and their users, which the
	// check expects beside the load test's.
	warmed map[string]string
}

func prepareExchanges(ctx context.Context, cfg lifecycle.Config, o loadOptions) (workload, error) {
	d, err := prepareDataset(ctx, cfg, o)
	if err != nil {
		return nil, err
	}
	return &exchanges{dataset: d, warmed: map[string]string{}}, nil
}

func (e *exchanges) loadFlags(o loadOptions) []string {
	return []string{"-mode", "exchange", "-exchanges-per-user", fmt.Sprint(o.exchangesPerUser),
		"-plaid-url", e.fake.URL(), "-plaid-client-id", e.prod.cfg.PlaidClientID, "-plaid-secret", e.prod.cfg.PlaidSecret}
}

// warm links one Item, every step of an exchange once: 201.
func (e *exchanges) warm(ctx context.Context, baseURL, jwtSecret string) error {
	public, err := e.fake.SandboxPublicToken(plaidfake.DefaultInstitutions[0].ID)
	if err != nil {
		return err
	}
	body, err := json.Marshal(map[string]any{"public_token": public, "accounts": []map[string]string{{"mask": "0000"}}})
	if err != nil {
		return err
	}
	const user = "bench-warm-user"
	answer, err := requestAs(ctx, jwtSecret, user, false, http.MethodPost, baseURL+"/api/v1/plaid/items", body, http.StatusCreated)
	if err != nil {
		return err
	}
	var created struct {
		ItemID string `json:"item_id"`
	}
	if err := json.Unmarshal(answer, &created); err != nil || created.ItemID == "" {
		return fmt.Errorf("the warm-up exchange answered 201 without an item_id: %s", answer)
	}
	e.warmed[created.ItemID] = user
	return nil
}

func (e *exchanges) check(ctx context.Context, o loadOptions, rep *loadTestReport, outPath string) (Result, error) {
	answered, err := readDone(outPath) // item → the user whose exchange answered 201
	if err != nil {
		return nil, err
	}
	created := len(answered)
	for item, user := range e.warmed {
		answered[item] = user
	}
	// The new documents: every one but the dataset's.
	seeded := map[string]bool{}
	for _, t := range e.tokens {
		seeded[t.ItemID] = true
	}
	refs, err := e.prod.client.Collection(lifecycle.TokensCollection).DocumentRefs(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("listing the token documents: %w", err)
	}
	documents := map[string]bool{}
	for _, ref := range refs {
		if !seeded[ref.ID] {
			documents[ref.ID] = true
		}
	}
	removed := map[string]bool{}
	for _, tok := range e.fake.RemovedTokens() {
		removed[tok] = true
	}
	audited, err := e.auditEntries(ctx, lifecycle.ReasonExchangeNotStored, lifecycle.ReasonDuplicateItem)
	if err != nil {
		return nil, err
	}
	institutions := map[string]string{}
	for _, inst := range plaidfake.DefaultInstitutions {
		institutions[inst.ID] = inst.Name
	}
	var gets []time.Time
	for _, c := range e.fake.Calls() {
		if c.Path == plaidfake.PathItemGet && !c.RateLimited {
			gets = append(gets, c.Time)
		}
	}

	wrongf := func(format string, args ...any) {
		progressf("wrong: "+format, args...)
	}
	exchanged := e.fake.Exchanges()
	var stored, removedAtPlaid, billed, wrong int
	for _, x := range exchanged {
		user, ok := answered[x.ItemID]
		delete(answered, x.ItemID)
		isStored := documents[x.ItemID]
		delete(documents, x.ItemID)
		switch {
		case removed[x.AccessToken] && isStored:
			wrong++
			wrongf("item %s is stored and removed at Plaid", x.ItemID)
		case removed[x.AccessToken]:
			removedAtPlaid++
			if ok {
				wrong++
				wrongf("item %s was removed at Plaid after its exchange answered 201", x.ItemID)
			}
			if audited[x.ItemID] != 1 {
				wrong++
				wrongf("item %s removed at its exchange has %d audit entries, want 1", x.ItemID, audited[x.ItemID])
			}
		case !isStored:
			billed++
			wrongf("item %s is billed at Plaid without a document (its exchange answered 201: %v)", x.ItemID, ok)
		case !ok:
			wrong++
			wrongf("item %s is stored, but no exchange answered 201 for it", x.ItemID)
		default:
			stored++
			problem, err := e.storedWrong(ctx, x, user, institutions[x.InstitutionID])
			if err != nil {
				return nil, err
			}
			if problem != "" {
				wrong++
				wrongf("item %s: %s", x.ItemID, problem)
			}
		}
	}
	for item := range answered {
		wrong++
		wrongf("item %s answered 201 but Plaid never exchanged it", item)
	}
	for item := range documents {
		wrong++
		wrongf("document %s is of no exchange", item)
	}
	want := o.users * o.exchangesPerUser
	return Result{
		"created": created, "exchanged_at_plaid": len(exchanged), "stored": stored, "removed_at_plaid": removedAtPlaid,
		"billed_unstored": billed, "wrong": wrong, "item_get_max_60s": windows(gets).max,
		"pass": rep.ServerErrors == 0 && rep.NoAnswer == 0 && wrong == 0 && billed == 0 && created == want,
	}, nil
}

// storedWrong says what is wrong with the document of the exchanged Item
// x, which user's exchange answered 201 for: "" when it is the user's,
// active, its access token x's and encrypted, its institution x's and
// named.
func (e *exchanges) storedWrong(ctx context.Context, x plaidfake.Exchange, user, institutionName string) (string, error) {
	tok, err := e.prod.deps.Tokens.Get(ctx, x.ItemID)
	if err != nil {
		return "", fmt.Errorf("reading exchanged item %s: %w", x.ItemID, err)
	}
	var problems []string
	if tok.UserID != user {
		problems = append(problems, fmt.Sprintf("stored for %s, exchanged for %s", tok.UserID, user))
	}
	if tok.Status != lifecycle.StatusActive {
		problems = append(problems, "status "+string(tok.Status))
	}
	if strings.Contains(tok.AccessToken, x.AccessToken) {
		problems = append(problems, "the access token is stored in plaintext")
	} else if plain, err := e.prod.deps.Cipher.Decrypt(x.ItemID, tok.AccessToken); err != nil || plain != x.AccessToken {
		problems = append(problems, fmt.Sprintf("the stored access token does not decrypt to the exchanged one (%v)", err))
	}
	if tok.InstitutionID != x.InstitutionID || tok.InstitutionName != institutionName {
		problems = append(problems, fmt.Sprintf("institution %s %q, want %s %q", tok.InstitutionID, tok.InstitutionName, x.InstitutionID, institutionName))
	}
	return strings.Join(problems, "; "), nil
}
