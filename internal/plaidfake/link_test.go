package plaidfake_test

import (
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
)

var (
	publicSandbox = regexp.MustCompile(`^public-sandbox-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	accessSandbox = regexp.MustCompile(`^access-sandbox-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	linkSandbox   = regexp.MustCompile(`^link-sandbox-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	plaidItemID   = regexp.MustCompile(`^[A-Za-z0-9]{37}$`)
)

// withoutRequestID checks an answer's request_id and returns its body
// without it.
func withoutRequestID(t *testing.T, a answer) map[string]any {
	t.Helper()
	if rid, _ := a.body["request_id"].(string); rid == "" {
		t.Errorf("no request_id in %v", a.body)
	}
	delete(a.body, "request_id")
	return a.body
}

// A sandbox public token is exchanged once for an access token and an Item
// that /item/get then answers, at the institution the token was minted
// for; a second exchange of the same token is INVALID_PUBLIC_TOKEN.
func TestPublicTokenExchangeIsSingleUse(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	a := mustPost(t, fake.URL(), plaidfake.PathSandboxPublicTokenCreate,
		map[string]any{"institution_id": "ins_109508", "initial_products": []string{"transactions"}}, creds)
	public, _ := a.body["public_token"].(string)
	if a.status != http.StatusOK || !publicSandbox.MatchString(public) {
		t.Fatalf("/sandbox/public_token/create: %d %v, want a public-sandbox-<uuid> token", a.status, a.body)
	}

	a = mustPost(t, fake.URL(), plaidfake.PathPublicTokenExchange, map[string]any{"public_token": public}, creds)
	body := withoutRequestID(t, a)
	access, _ := body["access_token"].(string)
	itemID, _ := body["item_id"].(string)
	if a.status != http.StatusOK || !accessSandbox.MatchString(access) || !plaidItemID.MatchString(itemID) || len(body) != 2 {
		t.Fatalf("exchange: %d %v, want access_token, item_id and request_id", a.status, a.body)
	}
	want := []plaidfake.Exchange{{PublicToken: public, AccessToken: access, ItemID: itemID, InstitutionID: "ins_109508"}}
	if diff := cmp.Diff(want, fake.Exchanges(), cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Time" }, cmp.Ignore())); diff != "" {
		t.Errorf("Exchanges (-want +got):\n%s", diff)
	}

	item := mustPost(t, fake.URL(), plaidfake.PathItemGet, map[string]any{"access_token": access}, creds).body["item"].(map[string]any)
	if item["item_id"] != itemID || item["institution_id"] != "ins_109508" {
		t.Errorf("/item/get of the exchanged token: %v", item)
	}

	again := errOf(mustPost(t, fake.URL(), plaidfake.PathPublicTokenExchange, map[string]any{"public_token": public}, creds))
	if diff := cmp.Diff(wantErr(400, "INVALID_INPUT", "INVALID_PUBLIC_TOKEN"), again); diff != "" {
		t.Errorf("second exchange (-want +got):\n%s", diff)
	}
	if n := len(fake.Exchanges()); n != 1 {
		t.Errorf("%d exchanges recorded, want 1", n)
	}
}

// Every way a public token can be unusable gets Plaid's one answer.
func TestPublicTokenExchangeRefusals(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	expired, err := fake.SandboxPublicToken("ins_109508")
	if err != nil {
		t.Fatal(err)
	}
	fake.ExpirePublicToken(expired)
	production := plaidfake.New(t, plaidfake.WithEnvironment("production"))
	for name, tc := range map[string]struct {
		fake   *plaidfake.Server
		public string
		want   plaidErr
	}{
		"missing":              {fake, "", wantErr(400, "INVALID_REQUEST", "MISSING_FIELDS")},
		"malformed":            {fake, "beb195c7ab7f2f3ed343f822250cc574", wantErr(400, "INVALID_INPUT", "INVALID_PUBLIC_TOKEN")},
		"never issued":         {fake, "public-sandbox-00000000-0000-4000-8000-000000000000", wantErr(400, "INVALID_INPUT", "INVALID_PUBLIC_TOKEN")},
		"expired":              {fake, expired, wantErr(400, "INVALID_INPUT", "INVALID_PUBLIC_TOKEN")},
		"production's sandbox": {production, expired, wantErr(400, "INVALID_INPUT", "INVALID_PUBLIC_TOKEN")},
	} {
		t.Run(name, func(t *testing.T) {
			got := errOf(mustPost(t, tc.fake.URL(), plaidfake.PathPublicTokenExchange, map[string]any{"public_token": tc.public}, creds))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if n := len(fake.Exchanges()) + len(production.Exchanges()); n != 0 {
		t.Errorf("%d exchanges succeeded", n)
	}
	// The production fake mints no sandbox tokens.
	got := errOf(mustPost(t, production.URL(), plaidfake.PathSandboxPublicTokenCreate,
		map[string]any{"institution_id": "ins_109508", "initial_products": []string{"transactions"}}, creds))
	if diff := cmp.Diff(wantErr(400, "INVALID_REQUEST", "SANDBOX_ONLY"), got); diff != "" {
		t.Errorf("sandbox endpoint in production (-want +got):\n%s", diff)
	}
}

// As Plaid does, the sandbox knows no production token and production no
// sandbox token, whatever AddItem said: INVALID_ACCESS_TOKEN everywhere.
func TestAnotherEnvironmentsAccessTokenIsInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env, foreign, own string
	}{
		{"sandbox", "access-production-9a8b7c6d-5e4f-4a2b-8c0d-ffeeddccbbaa", "access-sandbox-1"},
		{"production", "access-sandbox-9a8b7c6d-5e4f-4a2b-8c0d-ffeeddccbbaa", "access-production-1"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Parallel()
			fake := plaidfake.New(t, plaidfake.WithEnvironment(tc.env))
			if fake.Environment() != tc.env {
				t.Fatalf("Environment() = %q", fake.Environment())
			}
			fake.AddItem(tc.foreign, "item-foreign", "ins_3")
			fake.AddItem(tc.own, "item-own", "ins_3")
			for _, path := range []string{plaidfake.PathItemGet, plaidfake.PathItemRemove, plaidfake.PathLinkTokenCreate} {
				body := map[string]any{"access_token": tc.foreign, "client_name": "App", "language": "en",
					"country_codes": []string{"US"}, "user": map[string]any{"client_user_id": "u1"}}
				if diff := cmp.Diff(wantErr(400, "INVALID_INPUT", "INVALID_ACCESS_TOKEN"), errOf(mustPost(t, fake.URL(), path, body, creds))); diff != "" {
					t.Errorf("%s with another environment's token (-want +got):\n%s", path, diff)
				}
			}
			if fake.Removed(tc.foreign) {
				t.Error("another environment's token was removed")
			}
			if a := mustPost(t, fake.URL(), plaidfake.PathItemGet, map[string]any{"access_token": tc.own}, creds); a.status != http.StatusOK {
				t.Errorf("own environment's token: %d %v", a.status, a.body)
			}
		})
	}
}

func TestInstitutionsGetByID(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	fake.AddInstitution(plaidfake.Institution{ID: "ins_test", Name: "Test Bank", URL: "https://bank.example", Logo: "iVBORw0KGgo="})
	a := mustPost(t, fake.URL(), plaidfake.PathInstitutionsGetByID,
		map[string]any{"institution_id": "ins_test", "country_codes": []string{"US"}, "options": map[string]any{"include_optional_metadata": true}}, creds)
	want := map[string]any{"institution": map[string]any{
		"institution_id": "ins_test", "name": "Test Bank", "products": []any{"transactions"}, "country_codes": []any{"US"},
		"routing_numbers": []any{}, "oauth": false, "status": nil,
		"url": "https://bank.example", "primary_color": nil, "logo": "iVBORw0KGgo=",
	}}
	if diff := cmp.Diff(want, withoutRequestID(t, a)); diff != "" {
		t.Errorf("with optional metadata (-want +got):\n%s", diff)
	}
	// Without the option, Plaid leaves the optional metadata out.
	a = mustPost(t, fake.URL(), plaidfake.PathInstitutionsGetByID, map[string]any{"institution_id": "ins_3", "country_codes": []string{"US"}}, creds)
	inst, _ := a.body["institution"].(map[string]any)
	if _, hasURL := inst["url"]; a.status != http.StatusOK || inst["name"] != "Chase Bank" || hasURL {
		t.Errorf("without optional metadata: %d %v", a.status, a.body)
	}
	for name, tc := range map[string]struct {
		body map[string]any
		want plaidErr
	}{
		"unknown":          {map[string]any{"institution_id": "ins_nope", "country_codes": []string{"US"}}, wantErr(400, "INVALID_INPUT", "INVALID_INSTITUTION")},
		"no country codes": {map[string]any{"institution_id": "ins_3"}, wantErr(400, "INVALID_REQUEST", "MISSING_FIELDS")},
	} {
		if diff := cmp.Diff(tc.want, errOf(mustPost(t, fake.URL(), plaidfake.PathInstitutionsGetByID, tc.body, creds))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}

// /link/token/create answers a link token and records what it was asked:
// products for a new Item, the access token in update mode.
func TestLinkTokenCreate(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	fake.AddItem("access-sandbox-1", "item-1", "ins_3")
	base := func(extra map[string]any) map[string]any {
		b := map[string]any{"client_name": "Wealth", "language": "en", "country_codes": []string{"US", "CA"},
			"user": map[string]any{"client_user_id": "u-1"}}
		for k, v := range extra {
			b[k] = v
		}
		return b
	}
	before := time.Now()
	create := mustPost(t, fake.URL(), plaidfake.PathLinkTokenCreate,
		base(map[string]any{"products": []string{"transactions"}, "webhook": "https://hooks.example/plaid", "redirect_uri": "https://app.example/oauth"}), creds)
	update := mustPost(t, fake.URL(), plaidfake.PathLinkTokenCreate, base(map[string]any{"access_token": "access-sandbox-1"}), creds)
	for _, a := range []answer{create, update} {
		lt, _ := a.body["link_token"].(string)
		exp, err := time.Parse(time.RFC3339, a.body["expiration"].(string))
		if a.status != http.StatusOK || !linkSandbox.MatchString(lt) || err != nil || exp.Before(before.Add(plaidfake.LinkTokenTTL-time.Second)) {
			t.Errorf("link token answer %d %v (expiration %v, %v)", a.status, a.body, exp, err)
		}
	}
	got := fake.LinkTokens()
	want := []plaidfake.LinkToken{
		{LinkToken: create.body["link_token"].(string), ClientUserID: "u-1", ClientName: "Wealth", Language: "en",
			CountryCodes: []string{"US", "CA"}, Products: []string{"transactions"}, Webhook: "https://hooks.example/plaid",
			RedirectURI: "https://app.example/oauth"},
		{LinkToken: update.body["link_token"].(string), ClientUserID: "u-1", ClientName: "Wealth", Language: "en",
			CountryCodes: []string{"US", "CA"}, AccessToken: "access-sandbox-1"},
	}
	if diff := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Expiration" }, cmp.Ignore())); diff != "" {
		t.Errorf("LinkTokens (-want +got):\n%s", diff)
	}

	for name, tc := range map[string]struct {
		body map[string]any
		want plaidErr
	}{
		"no products":       {base(nil), wantErr(400, "INVALID_REQUEST", "INVALID_FIELD")},
		"balance":           {base(map[string]any{"products": []string{"balance"}}), wantErr(400, "INVALID_INPUT", "INVALID_PRODUCT")},
		"no client_user_id": {base(map[string]any{"products": []string{"auth"}, "user": map[string]any{}}), wantErr(400, "INVALID_REQUEST", "MISSING_FIELDS")},
		"no language":       {base(map[string]any{"products": []string{"auth"}, "language": ""}), wantErr(400, "INVALID_REQUEST", "MISSING_FIELDS")},
		"unknown Item":      {base(map[string]any{"access_token": "access-sandbox-never"}), wantErr(400, "INVALID_INPUT", "INVALID_ACCESS_TOKEN")},
	} {
		if diff := cmp.Diff(tc.want, errOf(mustPost(t, fake.URL(), plaidfake.PathLinkTokenCreate, tc.body, creds))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	if n := len(fake.LinkTokens()); n != 2 {
		t.Errorf("%d link tokens recorded, want the 2 created", n)
	}
}

// A broken login (the sandbox's reset_login) shows in /item/get until the
// user finishes Link in update mode; finishing Link in create mode gives a
// public token for a new Item.
func TestResetLoginAndCompleteLink(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	fake.AddItem("access-sandbox-1", "item-1", "ins_3")
	if a := mustPost(t, fake.URL(), plaidfake.PathSandboxItemResetLogin, map[string]any{"access_token": "access-sandbox-1"}, creds); a.status != 200 || a.body["reset_login"] != true {
		t.Fatalf("reset_login: %d %v", a.status, a.body)
	}
	itemError := func() any {
		return mustPost(t, fake.URL(), plaidfake.PathItemGet, map[string]any{"access_token": "access-sandbox-1"}, creds).body["item"].(map[string]any)["error"]
	}
	if e, _ := itemError().(map[string]any); e["error_code"] != "ITEM_LOGIN_REQUIRED" {
		t.Fatalf("after reset_login, item.error = %v", e)
	}
	update := mustPost(t, fake.URL(), plaidfake.PathLinkTokenCreate, map[string]any{"client_name": "W", "language": "en",
		"country_codes": []string{"US"}, "user": map[string]any{"client_user_id": "u"}, "access_token": "access-sandbox-1"}, creds)
	if public, err := fake.CompleteLink(update.body["link_token"].(string), ""); err != nil || public != "" {
		t.Fatalf("CompleteLink in update mode = %q, %v", public, err)
	}
	if e := itemError(); e != nil {
		t.Errorf("after update mode, item.error = %v, want null", e)
	}

	// By item id, as the local walk-through breaks it.
	if err := fake.ResetLoginOfItem("item-1"); err != nil {
		t.Fatal(err)
	}
	if e, _ := itemError().(map[string]any); e["error_code"] != "ITEM_LOGIN_REQUIRED" {
		t.Errorf("after ResetLoginOfItem, item.error = %v", e)
	}
	if err := fake.ResetLoginOfItem("item-nope"); err == nil {
		t.Error("ResetLoginOfItem of an unknown Item succeeded")
	}

	create := mustPost(t, fake.URL(), plaidfake.PathLinkTokenCreate, map[string]any{"client_name": "W", "language": "en",
		"country_codes": []string{"US"}, "user": map[string]any{"client_user_id": "u"}, "products": []string{"transactions"}}, creds)
	public, err := fake.CompleteLink(create.body["link_token"].(string), "ins_4")
	if err != nil || !publicSandbox.MatchString(public) {
		t.Fatalf("CompleteLink in create mode = %q, %v", public, err)
	}
	a := mustPost(t, fake.URL(), plaidfake.PathPublicTokenExchange, map[string]any{"public_token": public}, creds)
	if a.status != 200 || fake.Exchanges()[0].InstitutionID != "ins_4" {
		t.Errorf("exchange of Link's public token: %d %v %+v", a.status, a.body, fake.Exchanges())
	}
	if _, err := fake.CompleteLink("link-sandbox-unknown", ""); err == nil {
		t.Error("CompleteLink of an unknown link token succeeded")
	}
}

// Injected faults work on the Link flow's endpoints too; a lost answer of
// an exchange has still used the public token up, as at Plaid.
func TestFaultsOnTheLinkFlow(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	fake.FailNext(plaidfake.PathPublicTokenExchange, 1, 500, "", "INTERNAL_SERVER_ERROR")
	public, _ := fake.SandboxPublicToken("ins_3")
	got := errOf(mustPost(t, fake.URL(), plaidfake.PathPublicTokenExchange, map[string]any{"public_token": public}, creds))
	if diff := cmp.Diff(wantErr(500, "API_ERROR", "INTERNAL_SERVER_ERROR"), got); diff != "" {
		t.Errorf("FailNext (-want +got):\n%s", diff)
	}
	if a := mustPost(t, fake.URL(), plaidfake.PathPublicTokenExchange, map[string]any{"public_token": public}, creds); a.status != 200 {
		t.Errorf("after the injected fault: %d %v", a.status, a.body)
	}

	fake.SetRandomFaults(1, 1, plaidfake.FaultLostAnswer)
	lost, _ := fake.SandboxPublicToken("ins_3")
	if _, err := post(t, t.Context(), fake.URL(), plaidfake.PathPublicTokenExchange, map[string]any{"public_token": lost}, creds); err == nil {
		t.Fatal("a lost answer was answered")
	}
	fake.SetRandomFaults(0, 1)
	got = errOf(mustPost(t, fake.URL(), plaidfake.PathPublicTokenExchange, map[string]any{"public_token": lost}, creds))
	if got.Code != "INVALID_PUBLIC_TOKEN" || len(fake.Exchanges()) != 2 {
		t.Errorf("retry after a lost answer: %+v with %d exchanges, want INVALID_PUBLIC_TOKEN after 2", got, len(fake.Exchanges()))
	}

	fake.FailAlways(plaidfake.PathInstitutionsGetByID, 0, "", "")
	if _, err := post(t, t.Context(), fake.URL(), plaidfake.PathInstitutionsGetByID, map[string]any{"institution_id": "ins_3", "country_codes": []string{"US"}}, creds); err == nil {
		t.Error("FailAlways with status 0 answered")
	}
}
