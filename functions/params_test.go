package functions

import (
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// TestMisspelledParametersChangeNothing is the typo of the field: a
// misspelled dry_run on a cleanup must not run a real one. Every endpoint
// refuses what it does not take, naming it, before anything happens.
func TestMisspelledParametersChangeNothing(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	f.env.SeedSample(t)
	admin := f.env.Bearer(t, sample.AdminUser)
	user := f.env.Bearer(t, "user-alice")

	tests := []struct {
		name, method, target, auth, body string
		wantDetail                       string
	}{
		{"cleanup typos", "DELETE", apiCleanup + "?days_treshold=30&dryrun=true", admin, "",
			`unknown query parameters "days_treshold", "dryrun"; this endpoint takes "days_threshold", "dry_run", "async"`},
		{"cleanup with a body", "DELETE", apiCleanup, admin, `{"dry_run": true}`,
			`this endpoint takes no request body; this endpoint takes "days_threshold", "dry_run", "async"`},
		{"cleanup query does not parse", "DELETE", apiCleanup + "?dry_run=%zz", admin, "",
			"the query string does not parse: invalid percent-encoding"},
		{"revoke-all with a parameter", "DELETE", apiRevoke + "?dry_run=true", user, "",
			`unknown query parameter "dry_run"; this endpoint takes no query parameters`},
		{"revoke item with a parameter", "DELETE", apiItemPath + "item-alice-chase?force=1", user, "",
			`unknown query parameter "force"; this endpoint takes no query parameters`},
		{"revoke item with a body", "DELETE", apiItemPath + "item-alice-chase", user, `{"item_id":"x"}`,
			"this endpoint takes no request body; this endpoint takes no query parameters"},
		{"analytics typo", "GET", apiAnalyze + "?exactly=true", admin, "",
			`unknown query parameter "exactly"; this endpoint takes "exact", "history"`},
		{"run with a parameter", "GET", apiCleanup + "/runs/some-run?follow=1", admin, "",
			`unknown query parameter "follow"; this endpoint takes no query parameters`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			res := f.call(t, tc.method, tc.target, tc.auth, body)
			if res.Status != 400 {
				t.Fatalf("status %d, want 400: %s", res.Status, res.Raw)
			}
			if diff := cmp.Diff(errorJSON(tc.wantDetail, lifecycle.CodeInvalid), res.Body); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
	if n := len(f.env.Plaid.Calls()); n != 0 {
		t.Errorf("Plaid received %d calls, want none: %+v", n, f.env.Plaid.Calls())
	}
	if runs := f.env.CleanupRuns(t); len(runs) != 0 {
		t.Errorf("%d cleanup runs recorded, want none", len(runs))
	}
	if got := f.env.Doc(t, "item-alice-chase"); got.Status != lifecycle.StatusActive {
		t.Errorf("item-alice-chase is %s, want it untouched (active)", got.Status)
	}
}

func TestUnknownParameterNamesAreCut(t *testing.T) {
	t.Parallel()
	got := shortList([]string{strings.Repeat("a", 100), "b", "c", "d", "e", "f", "g"})
	want := []string{strings.Repeat("a", 40) + "…", "b", "c", "d", "e", "and 2 more"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("shortList (-want +got):\n%s", diff)
	}
}
