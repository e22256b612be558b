package functions

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

const (
	apiLinkToken = "/api/v1/plaid/link/token"
	apiItems     = "/api/v1/plaid/items"
)

// jsonBody marshals v as a request body.
func jsonBody(t *testing.T, v any) *strings.Reader {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReader(string(b))
}

// publicToken mints a sandbox public token at the fake Plaid.
func publicToken(t *testing.T, env *testenv.Env, institutionID string) string {
	t.Helper()
	tok, err := env.Plaid.SandboxPublicToken(institutionID)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// linkAccounts is Link's onSuccess metadata.accounts as Plaid Link hands
// it to the app, every field included.
func linkAccounts(masks ...string) []map[string]any {
	out := make([]map[string]any, len(masks))
	for i, m := range masks {
		out[i] = map[string]any{"id": "acc-" + m, "name": "Plaid Checking", "mask": m, "type": "depository",
			"subtype": "checking", "verification_status": nil, "class_type": nil}
	}
	return out
}

var rfc3339 = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)

// The whole of an Item's life through the routes scripts/serve listens
// with: a Link token, the exchange, the list, a reused public token, a
// duplicate, the Item broken at Plaid, repaired in update mode, verified.
func TestAPIItemLife(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	env := f.env
	alice := env.Bearer(t, sample.Alice)

	got := f.call(t, http.MethodPost, apiLinkToken, alice, strings.NewReader(`{}`))
	if got.Status != http.StatusOK || got.Body["mode"] != "create" || !rfc3339.MatchString(got.Body["expiration"].(string)) ||
		!strings.HasPrefix(got.Body["link_token"].(string), "link-sandbox-") || len(got.Body) != 3 {
		t.Fatalf("link token: %d %s", got.Status, got.Raw)
	}
	if lt := env.Plaid.LinkTokens(); len(lt) != 1 || lt[0].LinkToken != got.Body["link_token"] || lt[0].AccessToken != "" {
		t.Errorf("Plaid's link tokens: %+v", lt)
	}
	// No body at all is the empty object.
	if got := f.call(t, http.MethodPost, apiLinkToken, alice, nil); got.Status != http.StatusOK || got.Body["mode"] != "create" {
		t.Errorf("link token without a body: %d %s", got.Status, got.Raw)
	}

	public := publicToken(t, env, "ins_109508")
	exchange := map[string]any{"public_token": public, "accounts": linkAccounts("0000", "1111")}
	got = f.call(t, http.MethodPost, apiItems, alice, jsonBody(t, exchange))
	ex := env.Plaid.Exchanges()
	if len(ex) != 1 {
		t.Fatalf("exchange: %d %s; %d exchanges at Plaid", got.Status, got.Raw, len(ex))
	}
	itemID := ex[0].ItemID
	want := apiResult{Status: http.StatusCreated, Body: map[string]any{"item_id": itemID, "institution_id": "ins_109508",
		"institution_name": "First Platypus Bank", "status": "active"}}
	if diff := cmp.Diff(want, got, cmpStatusBody); diff != "" {
		t.Errorf("exchange (-want +got):\n%s", diff)
	}
	if strings.Contains(got.Raw, ex[0].AccessToken) || strings.Contains(f.logs.String(), ex[0].AccessToken) {
		t.Error("the access token is in the answer or the logs")
	}
	if doc := env.Doc(t, itemID); doc == nil || doc.UserID != sample.Alice || doc.Status != lifecycle.StatusActive {
		t.Fatalf("stored: %+v", doc)
	}

	// The same public token again: 400 naming it; the Item stays.
	got = f.call(t, http.MethodPost, apiItems, alice, jsonBody(t, exchange))
	want = apiResult{Status: http.StatusBadRequest, Body: errorJSON(
		"public_token is expired, already exchanged or invalid; open Link again for a new one", lifecycle.CodeInvalid)}
	if diff := cmp.Diff(want, got, cmpStatusBody); diff != "" {
		t.Errorf("reused public token (-want +got):\n%s", diff)
	}

	// The same account linked again: removed at Plaid, 409 naming the
	// Item the user has.
	got = f.call(t, http.MethodPost, apiItems, alice, jsonBody(t,
		map[string]any{"public_token": publicToken(t, env, "ins_109508"), "accounts": linkAccounts("1111")}))
	want = apiResult{Status: http.StatusConflict, Body: map[string]any{"code": "duplicate_item", "existing_item_id": itemID,
		"detail": "this account is already linked; repair the existing item with update mode instead of linking it again"}}
	if diff := cmp.Diff(want, got, cmpStatusBody); diff != "" {
		t.Errorf("duplicate (-want +got):\n%s", diff)
	}
	if dup := env.Plaid.Exchanges()[1]; !env.Plaid.Removed(dup.AccessToken) || env.Doc(t, dup.ItemID) != nil {
		t.Errorf("the duplicate Item is not removed at Plaid, or stored")
	}

	listed := func() map[string]any {
		t.Helper()
		got := f.call(t, http.MethodGet, apiItems, alice, nil)
		items, _ := got.Body["items"].([]any)
		if got.Status != http.StatusOK || len(items) != 1 {
			t.Fatalf("list: %d %s", got.Status, got.Raw)
		}
		return items[0].(map[string]any)
	}
	wantItem := map[string]any{"item_id": itemID, "institution_id": "ins_109508", "institution_name": "First Platypus Bank",
		"status": "active", "error_code": nil, "needs_repair": false, "created_at": testenv.Now.Format(time.RFC3339Nano),
		"last_used_at": nil}
	if diff := cmp.Diff(wantItem, listed()); diff != "" {
		t.Errorf("listed item (-want +got):\n%s", diff)
	}

	// Broken at the bank: verify finds it, the list says to repair it.
	if err := env.Plaid.ResetLoginOfItem(itemID); err != nil {
		t.Fatal(err)
	}
	verify := apiItemPath + itemID + "/verify"
	got = f.call(t, http.MethodPost, verify, alice, nil)
	want = apiResult{Status: http.StatusOK, Body: map[string]any{"item_id": itemID, "status": "active",
		"error_code": "ITEM_LOGIN_REQUIRED", "needs_repair": true}}
	if diff := cmp.Diff(want, got, cmpStatusBody); diff != "" {
		t.Errorf("verify a broken Item (-want +got):\n%s", diff)
	}
	wantItem["error_code"], wantItem["needs_repair"] = "ITEM_LOGIN_REQUIRED", true
	if diff := cmp.Diff(wantItem, listed()); diff != "" {
		t.Errorf("listed broken item (-want +got):\n%s", diff)
	}

	// Repair: update mode for that Item, the user finishes Link, verify.
	got = f.call(t, http.MethodPost, apiLinkToken, alice, jsonBody(t, map[string]any{"item_id": itemID}))
	if got.Status != http.StatusOK || got.Body["mode"] != "update" {
		t.Fatalf("update-mode link token: %d %s", got.Status, got.Raw)
	}
	lts := env.Plaid.LinkTokens()
	if last := lts[len(lts)-1]; last.LinkToken != got.Body["link_token"] || last.AccessToken != env.Plaid.Exchanges()[0].AccessToken || len(last.Products) != 0 {
		t.Errorf("update mode at Plaid: %+v", last)
	}
	if _, err := env.Plaid.CompleteLink(got.Body["link_token"].(string), ""); err != nil {
		t.Fatal(err)
	}
	got = f.call(t, http.MethodPost, verify, alice, nil)
	want = apiResult{Status: http.StatusOK, Body: map[string]any{"item_id": itemID, "status": "active", "error_code": nil, "needs_repair": false}}
	if diff := cmp.Diff(want, got, cmpStatusBody); diff != "" {
		t.Errorf("verify the repaired Item (-want +got):\n%s", diff)
	}
	if doc := env.Doc(t, itemID); doc.ErrorCode != "" || !doc.LastValidatedAt.Equal(testenv.Now) {
		t.Errorf("document after the repair: error_code %q, last_validated_at %v", doc.ErrorCode, doc.LastValidatedAt)
	}
}

// Another user's item, a missing one and an id that names none answer
// update mode and verify exactly as RevokeItem answers them, through the
// routes and the functions deployed alone, and nothing reaches Plaid.
func TestAPIItemsOfAnotherUserAre404(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	f.env.SeedSample(t)
	alice := f.env.Bearer(t, sample.Alice)
	notFound := f.call(t, http.MethodDelete, apiItemPath+"item-bob-chase", alice, nil)
	if notFound.Status != http.StatusNotFound {
		t.Fatalf("RevokeItem of another user's item: %d %s", notFound.Status, notFound.Raw)
	}
	linkToken, verify := f.server.CreateLinkTokenHandler(), f.server.VerifyItemHandler()
	for _, id := range []string{"item-bob-chase", "item-nobody", sample.Alice, "__x__", "..", strings.Repeat("i", lifecycle.MaxItemIDLength+1)} {
		body := func() *strings.Reader { return jsonBody(t, map[string]any{"item_id": id}) }
		results := map[string]apiResult{
			"update mode":          f.call(t, http.MethodPost, apiLinkToken, alice, body()),
			"update mode deployed": apiCall(t, linkToken, http.MethodPost, "/", alice, body()),
		}
		if id != ".." { // a path segment of its own; the hostile paths are below
			results["verify"] = f.call(t, http.MethodPost, apiItemPath+id+"/verify", alice, nil)
			results["verify deployed"] = apiCall(t, verify, http.MethodPost, "/"+id+"/verify", alice, nil)
		}
		for name, res := range results {
			if res.Status != notFound.Status || res.Raw != notFound.Raw {
				t.Errorf("%s of %.20q: %d %s, want RevokeItem's %d %s", name, id, res.Status, res.Raw, notFound.Status, notFound.Raw)
			}
		}
	}
	for _, path := range []string{"%2e%2e/verify", "%2F/verify", "a%2Fb/verify", "%FF/verify", "/verify", "a/b/verify"} {
		for name, res := range map[string]apiResult{
			"routes":   f.call(t, http.MethodPost, apiItemPath+path, alice, nil),
			"deployed": apiCall(t, verify, http.MethodPost, "/"+path, alice, nil),
		} {
			if res.Status != notFound.Status || res.Raw != notFound.Raw {
				t.Errorf("%s POST %s: %d %s, want RevokeItem's 404", name, path, res.Status, res.Raw)
			}
		}
	}
	if calls := f.env.Plaid.Calls(); len(calls) != 0 {
		t.Errorf("Plaid was called: %+v", calls)
	}
	if logs := f.logs.String(); strings.Contains(logs, `"severity":"ERROR"`) {
		t.Errorf("refusals logged errors:\n%s", logs)
	}
}

// /api/v1/plaid/items is two functions by method; the verify path takes
// POST only; DELETE of an item is still RevokeItem.
func TestAPIItemsRoutingByMethod(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	f.env.SeedSample(t)
	alice := f.env.Bearer(t, sample.Alice)
	for _, tc := range []struct{ method, target, allow string }{
		{http.MethodPut, apiItems, "GET, POST"},
		{http.MethodDelete, apiItems, "GET, POST"},
		{http.MethodGet, apiLinkToken, "POST"},
		{http.MethodGet, apiItemPath + "item-alice-chase/verify", "POST"},
		{http.MethodDelete, apiItemPath + "item-alice-chase/verify", "POST"},
		{http.MethodPost, apiItemPath + "item-alice-chase", "DELETE"},
	} {
		for _, auth := range []string{"", alice} {
			got := f.call(t, tc.method, tc.target, auth, nil)
			if got.Status != http.StatusMethodNotAllowed || got.Header.Get("Allow") != tc.allow ||
				got.Body["code"] != "method_not_allowed" || len(got.Body) != 2 {
				t.Errorf("%s %s: %d Allow %q %s, want 405 Allow %q", tc.method, tc.target, got.Status, got.Header.Get("Allow"), got.Raw, tc.allow)
			}
		}
	}
	if got := f.call(t, http.MethodDelete, apiItemPath+"item-alice-chase", alice, nil); got.Status != http.StatusOK {
		t.Errorf("DELETE of an item: %d %s", got.Status, got.Raw)
	}
	for _, tc := range []struct{ method, target string }{
		{http.MethodPost, apiLinkToken}, {http.MethodPost, apiItems}, {http.MethodGet, apiItems},
		{http.MethodPost, apiItemPath + "item-alice-chase/verify"},
	} {
		got := f.call(t, tc.method, tc.target, "", nil)
		if got.Status != http.StatusUnauthorized || got.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s %s without a token: %d %s", tc.method, tc.target, got.Status, got.Raw)
		}
	}
}

// The new endpoints refuse what they do not take, naming it, before any
// Plaid call: a misspelled field must never be taken for a missing one.
func TestAPIItemsRefuseUnknownInput(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	f.env.SeedSample(t)
	alice := f.env.Bearer(t, sample.Alice)
	for _, tc := range []struct {
		name, method, target, body, detail string
	}{
		{"link token typo", http.MethodPost, apiLinkToken, `{"itemid":"item-alice-chase"}`, `unknown field "itemid" in the request body`},
		{"link token wrong type", http.MethodPost, apiLinkToken, `{"item_id":7}`, `field "item_id" of the request body must be a string`},
		{"link token query", http.MethodPost, apiLinkToken + "?mode=update", `{}`, `unknown query parameter "mode"; this endpoint takes no query parameters`},
		{"exchange typo", http.MethodPost, apiItems, `{"publictoken":"public-sandbox-1"}`, `unknown field "publictoken" in the request body`},
		{"exchange account typo", http.MethodPost, apiItems, `{"public_token":"public-sandbox-1","accounts":[{"maks":"0000"}]}`,
			`unknown field "maks" in the request body`},
		{"exchange trailing data", http.MethodPost, apiItems, `{"public_token":"public-sandbox-1"} {}`, "the request body must be a single JSON object"},
		{"exchange of another environment's token", http.MethodPost, apiItems, `{"public_token":"public-production-1"}`,
			"invalid request: public_token is a production token; this service serves sandbox"},
		{"list query", http.MethodGet, apiItems + "?status=active", "", `unknown query parameter "status"; this endpoint takes no query parameters`},
		{"verify body", http.MethodPost, apiItemPath + "item-alice-chase/verify", `{"force":true}`,
			"this endpoint takes no request body; this endpoint takes no query parameters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body *strings.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			} else {
				body = strings.NewReader("")
			}
			got := f.call(t, tc.method, tc.target, alice, body)
			want := apiResult{Status: http.StatusBadRequest, Body: errorJSON(tc.detail, lifecycle.CodeInvalid)}
			if diff := cmp.Diff(want, got, cmpStatusBody); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if calls := f.env.Plaid.Calls(); len(calls) != 0 {
		t.Errorf("Plaid was called: %+v", calls)
	}
}

// Each function deployed alone answers at its root and at its full path.
func TestAPIItemFunctionsDeployedAlone(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	env := f.env
	env.SeedSample(t)
	alice := env.Bearer(t, sample.Alice)
	s := f.server

	for _, path := range []string{"/", apiLinkToken} {
		if got := apiCall(t, s.CreateLinkTokenHandler(), http.MethodPost, path, alice, nil); got.Status != http.StatusOK {
			t.Errorf("CreateLinkToken at %s: %d %s", path, got.Status, got.Raw)
		}
	}
	for _, path := range []string{"/", apiItems} {
		body := jsonBody(t, map[string]any{"public_token": publicToken(t, env, "ins_109509")})
		if got := apiCall(t, s.ExchangePublicTokenHandler(), http.MethodPost, path, alice, body); got.Status != http.StatusCreated {
			t.Errorf("ExchangePublicToken at %s: %d %s", path, got.Status, got.Raw)
		}
		if got := apiCall(t, s.ExchangePublicTokenHandler(), http.MethodGet, path, alice, nil); got.Status != http.StatusMethodNotAllowed || got.Header.Get("Allow") != "POST" {
			t.Errorf("ExchangePublicToken GET at %s: %d Allow %q", path, got.Status, got.Header.Get("Allow"))
		}
		got := apiCall(t, s.ListItemsHandler(), http.MethodGet, path, alice, nil)
		if items, _ := got.Body["items"].([]any); got.Status != http.StatusOK || len(items) < 3 {
			t.Errorf("ListItems at %s: %d %s", path, got.Status, got.Raw)
		}
	}
	if got := apiCall(t, s.ListItemsHandler(), http.MethodGet, "/elsewhere", alice, nil); got.Status != http.StatusNotFound {
		t.Errorf("ListItems at another path: %d", got.Status)
	}
	for _, path := range []string{"/item-alice-chase/verify", "/item-alice-chase", apiItemPath + "item-alice-chase/verify"} {
		got := apiCall(t, s.VerifyItemHandler(), http.MethodPost, path, alice, nil)
		if got.Status != http.StatusOK || got.Body["item_id"] != "item-alice-chase" {
			t.Errorf("VerifyItem at %s: %d %s", path, got.Status, got.Raw)
		}
	}
	if n := env.Plaid.CallCount(plaidfake.PathItemGet); n != 5 {
		t.Errorf("%d /item/get calls, want 2 exchanges' and 3 verifications'", n)
	}
}
