package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// exchangeFloor is ExchangePublicToken's floor: it verifies the HS256 JWT,
// exchanges the public token at Plaid (/item/public_token/exchange), reads
// the Item's institution (/item/get, then /institutions/get_by_id),
// encrypts the access token with the vault and creates the token's
// document. No quota (its Plaid client paces at the rate it is given), no
// priority, no duplicate check, no validation of the body beyond JSON, no
// context detached from the caller's, no removal of an Item it fails to
// store, no transaction, no log: the work alone.
type exchangeFloor struct {
	floorDeps
	env       string   // PLAID_ENV, the documents' environment
	countries []string // PLAID_COUNTRY_CODES, for /institutions/get_by_id
}

func newExchangeFloor(ctx context.Context, cfg lifecycle.Config) (floorHandler, error) {
	deps, err := newFloorDeps(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &exchangeFloor{floorDeps: deps, env: cfg.PlaidEnv, countries: cfg.Link.CountryCodes}, nil
}

func (f *exchangeFloor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.Method != http.MethodPost || (r.URL.Path != "/api/v1/plaid/items" && r.URL.Path != "/") {
		http.NotFound(w, r)
		return
	}
	subject, ok := verifiedSubject(w, r, f.secret)
	if !ok {
		return
	}
	var body struct {
		PublicToken string `json:"public_token"`
		Accounts    []struct {
			Mask string `json:"mask"`
		} `json:"accounts"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ex, err := f.plaid.ExchangePublicToken(ctx, body.PublicToken)
	if pe := (*lifecycle.PlaidError)(nil); errors.As(err, &pe) && pe.Code == "INVALID_PUBLIC_TOKEN" {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	item, err := f.plaid.GetItem(ctx, ex.AccessToken)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	inst, err := f.plaid.GetInstitution(ctx, item.InstitutionID, f.countries)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	enc, err := f.cipher.Encrypt(ex.ItemID, ex.AccessToken)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	var masks []string
	for _, a := range body.Accounts {
		masks = append(masks, a.Mask)
	}
	now := time.Now()
	tok := lifecycle.Token{ItemID: ex.ItemID, UserID: subject, AccessToken: enc, InstitutionID: inst.ID, InstitutionName: inst.Name,
		Status: lifecycle.StatusActive, Environment: f.env, CreatedAt: now, UpdatedAt: now, Metadata: inst.Metadata, AccountMasks: masks}
	if _, err := f.client.Collection(lifecycle.TokensCollection).Doc(ex.ItemID).Create(ctx, tok); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(map[string]string{"item_id": ex.ItemID, "institution_id": inst.ID,
		"institution_name": inst.Name, "status": string(lifecycle.StatusActive)})
}
