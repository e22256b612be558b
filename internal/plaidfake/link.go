package plaidfake

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// The Link flow, as Plaid's API shapes it: the app's server creates a Link
// token (/link/token/create), the user finishes Link in the browser and the
// app receives a single-use public token, which the server exchanges for
// the Item's access token (/item/public_token/exchange) and names its
// institution (/institutions/get_by_id). The sandbox mints public tokens
// without Link (/sandbox/public_token/create) and breaks an Item's login
// (/sandbox/item/reset_login); Link's update mode, for a link token made
// with the Item's access token, repairs it. There is no browser here:
// CompleteLink is what the user finishing Link does.

// Plaid endpoints of the Link flow the fake serves.
const (
	PathLinkTokenCreate          = "/link/token/create"
	PathPublicTokenExchange      = "/item/public_token/exchange"
	PathInstitutionsGetByID      = "/institutions/get_by_id"
	PathSandboxPublicTokenCreate = "/sandbox/public_token/create"
	PathSandboxItemResetLogin    = "/sandbox/item/reset_login"
)

var linkPaths = map[string]bool{
	PathLinkTokenCreate: true, PathPublicTokenExchange: true, PathInstitutionsGetByID: true,
	PathSandboxPublicTokenCreate: true, PathSandboxItemResetLogin: true,
}

// Lifetimes Plaid gives its tokens: a public token can be exchanged once,
// within 30 minutes; a Link token opens Link for 4 hours.
const (
	PublicTokenTTL = 30 * time.Minute
	LinkTokenTTL   = 4 * time.Hour
)

// Institution is an institution /institutions/get_by_id knows.
type Institution struct {
	ID           string
	Name         string
	URL          string   // optional metadata, sent when asked for
	PrimaryColor string   // optional metadata
	Logo         string   // optional metadata: base64 PNG
	Products     []string // what it supports; transactions when empty
}

// DefaultInstitutions are the institutions the fake knows from the start:
// the sandbox's test banks and those of the sample token set.
var DefaultInstitutions = []Institution{
	{ID: "ins_109508", Name: "First Platypus Bank", URL: "https://www.platypus.example", PrimaryColor: "#1f1f1f"},
	{ID: "ins_109509", Name: "First Gingham Credit Union", URL: "https://www.gingham.example", PrimaryColor: "#004966"},
	{ID: "ins_109510", Name: "Tattersall Federal Credit Union", URL: "https://www.tattersall.example", PrimaryColor: "#174a8c"},
	{ID: "ins_109511", Name: "Tartan Bank", URL: "https://www.tartan.example", PrimaryColor: "#a61c1c"},
	{ID: "ins_109512", Name: "Houndstooth Bank", URL: "https://www.houndstooth.example", PrimaryColor: "#333333"},
	{ID: "ins_1", Name: "Bank of America", URL: "https://www.bankofamerica.com", PrimaryColor: "#012169"},
	{ID: "ins_3", Name: "Chase Bank", URL: "https://www.chase.com", PrimaryColor: "#095aa6"},
	{ID: "ins_4", Name: "Wells Fargo", URL: "https://www.wellsfargo.com", PrimaryColor: "#d71e28"},
	{ID: "ins_5", Name: "Citi", URL: "https://www.citi.com", PrimaryColor: "#056dae"},
}

// linkProducts are the products /link/token/create and
// /sandbox/public_token/create take. Balance is not one: Plaid initializes
// it with any other product and refuses it here.
var linkProducts = map[string]bool{
	"assets": true, "auth": true, "identity": true, "identity_match": true, "investments": true,
	"investments_auth": true, "liabilities": true, "payment_initiation": true, "identity_verification": true,
	"transactions": true, "credit_details": true, "income": true, "income_verification": true,
	"deposit_switch": true, "standing_orders": true, "transfer": true, "employment": true,
	"recurring_transactions": true, "signal": true, "statements": true,
}

// LinkToken is a Link token the fake created, with what its request said.
type LinkToken struct {
	LinkToken    string
	Expiration   time.Time
	ClientUserID string
	ClientName   string
	Language     string
	CountryCodes []string
	Products     []string
	Webhook      string
	RedirectURI  string
	// AccessToken is the Item's access token in update mode, else empty.
	AccessToken string
}

// Exchange is one successful /item/public_token/exchange.
type Exchange struct {
	PublicToken   string
	AccessToken   string
	ItemID        string
	InstitutionID string
	Time          time.Time
}

// linkRequest holds the fields of the Link flow's request bodies.
type linkRequest struct {
	PublicToken     string         `json:"public_token"`
	InstitutionID   string         `json:"institution_id"`
	InitialProducts []string       `json:"initial_products"`
	CountryCodes    []string       `json:"country_codes"`
	Products        []string       `json:"products"`
	ClientName      string         `json:"client_name"`
	Language        string         `json:"language"`
	User            linkUser       `json:"user"`
	Webhook         string         `json:"webhook"`
	RedirectURI     string         `json:"redirect_uri"`
	Options         requestOptions `json:"options"`
}

type linkUser struct {
	ClientUserID string `json:"client_user_id"`
}

// requestOptions are the options of /sandbox/public_token/create and
// /institutions/get_by_id.
type requestOptions struct {
	IncludeOptionalMetadata bool `json:"include_optional_metadata"`
}

type publicToken struct {
	institutionID string
	created       time.Time
	used          bool
}

// linkState is the Link flow's state. Guarded by Server.mu.
type linkState struct {
	institutions map[string]Institution
	publicTokens map[string]*publicToken
	linkTokens   []LinkToken
	exchanges    []Exchange
}

func newLinkState() linkState {
	st := linkState{institutions: map[string]Institution{}, publicTokens: map[string]*publicToken{}}
	for _, inst := range DefaultInstitutions {
		st.institutions[inst.ID] = inst
	}
	return st
}

// AddInstitution makes /institutions/get_by_id and the sandbox know inst,
// replacing one with the same id.
func (s *Server) AddInstitution(inst Institution) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.link.institutions[inst.ID] = inst
}

// SandboxPublicToken mints a public token for a new Item at institutionID,
// as /sandbox/public_token/create does.
func (s *Server) SandboxPublicToken(institutionID string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.link.institutions[institutionID]; !ok {
		return "", fmt.Errorf("plaidfake: no institution %q", institutionID)
	}
	return s.mintPublicToken(institutionID), nil
}

// mintPublicToken registers a new public token. s.mu must be held.
func (s *Server) mintPublicToken(institutionID string) string {
	tok := "public-" + s.env + "-" + randomUUID()
	s.link.publicTokens[tok] = &publicToken{institutionID: institutionID, created: time.Now()}
	return tok
}

// ExpirePublicToken ages publicToken past PublicTokenTTL: an exchange then
// fails as it does 30 minutes after Link.
func (s *Server) ExpirePublicToken(publicToken string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if pt, ok := s.link.publicTokens[publicToken]; ok {
		pt.created = time.Now().Add(-PublicTokenTTL - time.Second)
	}
}

// LinkTokens returns every Link token created so far, in order.
func (s *Server) LinkTokens() []LinkToken {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.link.linkTokens)
}

// Exchanges returns every successful public token exchange so far, in
// order: the access tokens and Items they created.
func (s *Server) Exchanges() []Exchange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.link.exchanges)
}

// ResetLoginOfItem puts the Item itemID into ITEM_LOGIN_REQUIRED, as
// /sandbox/item/reset_login does for its access token: for a local
// walk-through, where the caller knows the item id and never the token.
func (s *Server) ResetLoginOfItem(itemID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for tok, it := range s.items {
		if it.itemID == itemID && !s.removed[tok] {
			s.itemErrs[tok] = "ITEM_LOGIN_REQUIRED"
			return nil
		}
	}
	return fmt.Errorf("plaidfake: no live Item %q", itemID)
}

// CompleteLink does what the user finishing Link does with linkToken: in
// update mode it repairs the Item (its login error is cleared) and returns
// ""; otherwise it links a new Item at institutionID (the first default
// institution when empty) and returns its public token, as Link's
// onSuccess hands it to the app.
func (s *Server) CompleteLink(linkToken, institutionID string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.link.linkTokens, func(lt LinkToken) bool { return lt.LinkToken == linkToken })
	if i < 0 {
		return "", errors.New("plaidfake: unknown link token")
	}
	lt := s.link.linkTokens[i]
	if time.Now().After(lt.Expiration) {
		return "", errors.New("plaidfake: the link token has expired")
	}
	if lt.AccessToken != "" {
		if _, errCode, _, _ := s.lookupItem(lt.AccessToken, ""); errCode != "" {
			return "", fmt.Errorf("plaidfake: the Item cannot be repaired: %s", errCode)
		}
		delete(s.itemErrs, lt.AccessToken)
		return "", nil
	}
	if institutionID == "" {
		institutionID = DefaultInstitutions[0].ID
	}
	if _, ok := s.link.institutions[institutionID]; !ok {
		return "", fmt.Errorf("plaidfake: no institution %q", institutionID)
	}
	return s.mintPublicToken(institutionID), nil
}

// answerLink answers the Link flow's endpoints, credentials checked.
func (s *Server) answerLink(w http.ResponseWriter, path string, body requestBody, requestID string) {
	switch path {
	case PathLinkTokenCreate:
		s.linkTokenCreate(w, body, requestID)
	case PathPublicTokenExchange:
		s.publicTokenExchange(w, body.PublicToken, requestID)
	case PathInstitutionsGetByID:
		s.institutionsGetByID(w, body.linkRequest, requestID)
	case PathSandboxPublicTokenCreate:
		s.sandboxPublicTokenCreate(w, body.linkRequest, requestID)
	case PathSandboxItemResetLogin:
		s.sandboxItemResetLogin(w, body.AccessToken, requestID)
	}
}

func (s *Server) linkTokenCreate(w http.ResponseWriter, body requestBody, requestID string) {
	switch {
	case body.ClientName == "", body.Language == "", len(body.CountryCodes) == 0, body.User.ClientUserID == "":
		writeError(w, http.StatusBadRequest, newErrorBody("INVALID_REQUEST", "MISSING_FIELDS", requestID))
		return
	case body.AccessToken == "" && len(body.Products) == 0:
		// Products are required except in update mode.
		writeError(w, http.StatusBadRequest, newErrorBody("INVALID_REQUEST", "INVALID_FIELD", requestID))
		return
	}
	for _, p := range body.Products {
		if !linkProducts[p] {
			writeError(w, http.StatusBadRequest, newErrorBody("INVALID_INPUT", "INVALID_PRODUCT", requestID))
			return
		}
	}
	now := time.Now()
	lt := LinkToken{
		LinkToken: "link-" + s.env + "-" + randomUUID(), Expiration: now.Add(LinkTokenTTL).UTC().Truncate(time.Second),
		ClientUserID: body.User.ClientUserID, ClientName: body.ClientName, Language: body.Language,
		CountryCodes: body.CountryCodes, Products: body.Products, Webhook: body.Webhook, RedirectURI: body.RedirectURI,
		AccessToken: body.AccessToken,
	}
	s.mu.Lock()
	if lt.AccessToken != "" {
		// Update mode: the Item must be one Plaid answers for.
		if _, errCode, status, errBody := s.lookupItem(lt.AccessToken, requestID); errCode != "" {
			s.mu.Unlock()
			writeError(w, status, errBody)
			return
		}
	}
	s.link.linkTokens = append(s.link.linkTokens, lt)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"link_token": lt.LinkToken,
		"expiration": lt.Expiration.Format(time.RFC3339),
		"request_id": requestID,
	})
}

func (s *Server) publicTokenExchange(w http.ResponseWriter, public, requestID string) {
	if public == "" {
		writeError(w, http.StatusBadRequest, newErrorBody("INVALID_REQUEST", "MISSING_FIELDS", requestID))
		return
	}
	s.mu.Lock()
	pt, ok := s.link.publicTokens[public]
	if !ok || pt.used || time.Since(pt.created) > PublicTokenTTL || s.otherEnvironment(public, "public-") {
		s.mu.Unlock()
		// Malformed, never issued, another environment's, expired or
		// already exchanged: Plaid answers them all alike.
		writeError(w, http.StatusBadRequest, newErrorBody("INVALID_INPUT", "INVALID_PUBLIC_TOKEN", requestID))
		return
	}
	pt.used = true
	ex := Exchange{PublicToken: public, AccessToken: "access-" + s.env + "-" + randomUUID(), ItemID: randomID(37),
		InstitutionID: pt.institutionID, Time: time.Now()}
	s.items[ex.AccessToken] = item{itemID: ex.ItemID, institutionID: ex.InstitutionID}
	s.link.exchanges = append(s.link.exchanges, ex)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": ex.AccessToken,
		"item_id":      ex.ItemID,
		"request_id":   requestID,
	})
}

func (s *Server) institutionsGetByID(w http.ResponseWriter, body linkRequest, requestID string) {
	if body.InstitutionID == "" || len(body.CountryCodes) == 0 {
		writeError(w, http.StatusBadRequest, newErrorBody("INVALID_REQUEST", "MISSING_FIELDS", requestID))
		return
	}
	s.mu.Lock()
	inst, ok := s.link.institutions[body.InstitutionID]
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusBadRequest, newErrorBody("INVALID_INPUT", "INVALID_INSTITUTION", requestID))
		return
	}
	products := inst.Products
	if len(products) == 0 {
		products = []string{"transactions"}
	}
	answer := map[string]any{
		"institution_id":  inst.ID,
		"name":            inst.Name,
		"products":        products,
		"country_codes":   []string{"US"},
		"routing_numbers": []string{},
		"oauth":           false,
		"status":          nil,
	}
	// Plaid sends url, primary_color and logo only when asked, null when
	// it has none.
	if body.Options.IncludeOptionalMetadata {
		for k, v := range map[string]string{"url": inst.URL, "primary_color": inst.PrimaryColor, "logo": inst.Logo} {
			if v == "" {
				answer[k] = nil
			} else {
				answer[k] = v
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"institution": answer, "request_id": requestID})
}

func (s *Server) sandboxPublicTokenCreate(w http.ResponseWriter, body linkRequest, requestID string) {
	switch {
	case s.env != "sandbox":
		writeError(w, http.StatusBadRequest, newErrorBody("INVALID_REQUEST", "SANDBOX_ONLY", requestID))
		return
	case body.InstitutionID == "" || len(body.InitialProducts) == 0:
		writeError(w, http.StatusBadRequest, newErrorBody("INVALID_REQUEST", "MISSING_FIELDS", requestID))
		return
	}
	for _, p := range body.InitialProducts {
		if !linkProducts[p] {
			writeError(w, http.StatusBadRequest, newErrorBody("INVALID_INPUT", "INVALID_PRODUCT", requestID))
			return
		}
	}
	s.mu.Lock()
	if _, ok := s.link.institutions[body.InstitutionID]; !ok {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, newErrorBody("INVALID_INPUT", "INVALID_INSTITUTION", requestID))
		return
	}
	tok := s.mintPublicToken(body.InstitutionID)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"public_token": tok, "request_id": requestID})
}

func (s *Server) sandboxItemResetLogin(w http.ResponseWriter, accessToken, requestID string) {
	if s.env != "sandbox" {
		writeError(w, http.StatusBadRequest, newErrorBody("INVALID_REQUEST", "SANDBOX_ONLY", requestID))
		return
	}
	s.mu.Lock()
	_, errCode, status, errBody := s.lookupItem(accessToken, requestID)
	if errCode == "" {
		s.itemErrs[accessToken] = "ITEM_LOGIN_REQUIRED"
	}
	s.mu.Unlock()
	if errCode != "" {
		writeError(w, status, errBody)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"reset_login": true, "request_id": requestID})
}

// otherEnvironment reports whether tok, a token of the given kind
// ("access-", "public-"), names a Plaid environment other than the fake's.
func (s *Server) otherEnvironment(tok, kind string) bool {
	rest, ok := strings.CutPrefix(tok, kind)
	if !ok {
		return false
	}
	env, _, ok := strings.Cut(rest, "-")
	switch env {
	case "sandbox", "development", "production":
		return ok && env != s.env
	}
	return false
}

// randomUUID returns a random (version 4) UUID, the identifier part of
// Plaid's tokens.
func randomUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
