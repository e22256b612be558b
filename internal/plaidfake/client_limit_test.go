package plaidfake_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
)

// A per-client limit holds for every caller together: calls past it are
// answered 429 RATE_LIMIT_EXCEEDED with the endpoint's code, have no
// effect, are recorded as refused, and each endpoint counts on its own.
func TestClientRateLimit(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t, plaidfake.WithClientRateLimit("/item/remove", 3))
	fake.SetClientRateLimit("item/get", 2)
	for i := range 5 {
		fake.AddItem(fmt.Sprintf("access-%d", i), fmt.Sprintf("item-%d", i), "ins_1")
	}

	var got []int
	for i := range 5 {
		a := mustPost(t, fake.URL(), "/item/remove", map[string]string{"access_token": fmt.Sprintf("access-%d", i)}, creds)
		got = append(got, a.status)
		if i == 4 {
			if diff := cmp.Diff(wantErr(429, "RATE_LIMIT_EXCEEDED", "ITEM_REMOVE_LIMIT"), errOf(a)); diff != "" {
				t.Errorf("call past the limit (-want +got):\n%s", diff)
			}
		}
	}
	if diff := cmp.Diff([]int{200, 200, 200, 429, 429}, got); diff != "" {
		t.Errorf("/item/remove statuses (-want +got):\n%s", diff)
	}
	if fake.Removed("access-3") || fake.Removed("access-4") {
		t.Error("a refused /item/remove removed its Item")
	}

	got = nil
	for range 3 {
		got = append(got, mustPost(t, fake.URL(), "/item/get", map[string]string{"access_token": "access-0"}, creds).status)
	}
	// access-0 was removed: within the limit the answer is Plaid's own.
	if diff := cmp.Diff([]int{400, 400, 429}, got); diff != "" {
		t.Errorf("/item/get statuses (-want +got):\n%s", diff)
	}

	if diff := cmp.Diff([]int{2, 1, 0}, []int{fake.RateLimited("/item/remove"), fake.RateLimited("/item/get"), fake.RateLimited("/webhook_verification_key/get")}); diff != "" {
		t.Errorf("RateLimited remove, get, key (-want +got):\n%s", diff)
	}
	limited := 0
	for _, c := range fake.Calls() {
		if c.RateLimited {
			limited++
		}
	}
	if limited != 3 {
		t.Errorf("calls recorded as rate limited = %d, want 3", limited)
	}

	fake.SetClientRateLimit("/item/get", 0)
	if a := mustPost(t, fake.URL(), "/item/get", map[string]string{"access_token": "access-3"}, creds); a.status != 200 {
		t.Errorf("after removing the limit: %d, want 200", a.status)
	}
}
