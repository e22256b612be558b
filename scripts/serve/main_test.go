package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/functions"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/internal/wait"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// TestServeBinaryEndToEnd builds scripts/serve, starts it as a process the
// way an operator would (configuration from the environment only), and
// drives it over HTTP against the emulator and the fake Plaid.
func TestServeBinaryEndToEnd(t *testing.T) {
	env := testenv.New(t)
	env.SeedSample(t)
	// Enough healthy tokens for three pages, so the scheduled run below
	// checkpoints and continues.
	const bulk = 650
	var extra []sample.Token
	for i := range bulk {
		extra = append(extra, testenv.ActiveToken(fmt.Sprintf("item-zz-bulk-%04d", i), "user-bulk", 5))
	}
	env.Seed(t, extra...)

	base, logs := startServe(t, env, wait.Port(t), []string{
		"RUN_TIME_BUDGET=1ns",   // every scheduled run checkpoints after each page and continues
		"CLEANUP_PAGE_SIZE=300", // and has three pages
	})

	admin, alice := env.Bearer(t, sample.AdminUser), env.Bearer(t, sample.Alice)

	// Unauthenticated, not admin, wrong method: refused with JSON errors.
	assertStatus(t, call(t, http.MethodGet, base+functions.PathAnalytics, "", nil), http.StatusUnauthorized)
	assertStatus(t, call(t, http.MethodGet, base+functions.PathAnalytics, alice, nil), http.StatusForbidden)
	assertStatus(t, call(t, http.MethodPost, base+functions.PathCleanup, admin, nil), http.StatusMethodNotAllowed)
	assertStatus(t, call(t, http.MethodPost, base+functions.PathWebhook, "", []byte(`{}`)), http.StatusUnauthorized)

	// Analytics before any change: every sample token is counted.
	res := call(t, http.MethodGet, base+functions.PathAnalytics, admin, nil)
	assertStatus(t, res, http.StatusOK)
	if got := res.body["analytics"].(map[string]any)["total_tokens"]; got != float64(15+bulk) {
		t.Errorf("analytics total_tokens = %v, want %d", got, 15+bulk)
	}

	// Alice revokes one of her items; Bob's item is not hers.
	res = call(t, http.MethodDelete, base+functions.PathItemPrefix+"item-alice-chase", alice, nil)
	assertStatus(t, res, http.StatusOK)
	if diff := cmp.Diff(map[string]any{"message": "Item revoked successfully", "item_id": "item-alice-chase"}, res.body); diff != "" {
		t.Errorf("revoke body (-want +got):\n%s", diff)
	}
	assertStatus(t, call(t, http.MethodDelete, base+functions.PathItemPrefix+"item-bob-chase", alice, nil), http.StatusNotFound)
	if doc := env.Doc(t, "item-alice-chase"); doc.Status != lifecycle.StatusRevoked || !doc.PlaidRemoved {
		t.Errorf("revoked item = %+v", doc)
	}
	if doc := env.Doc(t, "item-bob-chase"); doc.Status != lifecycle.StatusActive {
		t.Errorf("Bob's item changed: %+v", doc)
	}

	// A dry-run cleanup over HTTP (the revoked item now counts too).
	res = call(t, http.MethodDelete, base+functions.PathCleanup+"?days_threshold=90&dry_run=true", admin, nil)
	assertStatus(t, res, http.StatusOK)
	if got := res.body["statistics"].(map[string]any)["revoked_removed"]; got != float64(2) {
		t.Errorf("dry-run revoked_removed = %v, want 2", got)
	}

	// The scheduled cleanup, as Eventarc delivers it. With a 1ns budget it
	// continues through the server's own /events/DailyCleanup until done.
	req, err := functions.NewPubSubEventRequest(t.Context(), base+"/events/DailyCleanup", "e2e-1", []byte(`{"days_threshold": 90}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("DailyCleanup event: HTTP %d", resp.StatusCode)
	}
	run := waitRunDone(t, env)
	want := lifecycle.Statistics{TotalChecked: 15 + bulk, ExpiredRemoved: 3, StaleRemoved: 2, InvalidMarked: 1,
		RevokedRemoved: 2, TotalCleaned: 7, NeedsUser: 1, Validated: 6 + bulk}
	if diff := cmp.Diff(want, run.Statistics); diff != "" {
		t.Errorf("scheduled run statistics (-want +got):\n%s", diff)
	}
	if run.Status != lifecycle.RunSucceeded || run.Invocations < 3 {
		t.Errorf("run status %s (%s) after %d invocations, want succeeded after at least 3", run.Status, run.Failure, run.Invocations)
	}
	if !strings.Contains(logs.String(), `"severity":"INFO"`) || !strings.Contains(logs.String(), `"message":"cleanup run finished"`) {
		t.Errorf("logs are not Cloud Logging JSON lines with the run's end:\n%s", logs.String())
	}
}

type result struct {
	status int
	body   map[string]any
}

func call(t *testing.T, method, url, authorization string, body []byte) result {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("%s %s: HTTP %d, body is not JSON: %v", method, url, resp.StatusCode, err)
	}
	return result{status: resp.StatusCode, body: m}
}

func assertStatus(t *testing.T, r result, want int) {
	t.Helper()
	if r.status != want {
		t.Errorf("HTTP %d (body %v), want %d", r.status, r.body, want)
	}
}

// waitHealthy polls /healthz until the server answers (it builds its
// clients and derives the vault key first).
func waitHealthy(t *testing.T, base string) {
	t.Helper()
	wait.Until(t, "serve to answer /healthz", 30*time.Second, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// waitRunDone polls the run records until the one cleanup run finishes.
func waitRunDone(t *testing.T, env *testenv.Env) *lifecycle.RunRecord {
	t.Helper()
	var done *lifecycle.RunRecord
	wait.Until(t, "the scheduled cleanup to finish", 60*time.Second, func() bool {
		for _, r := range env.CleanupRuns(t) {
			if !r.DryRun && (r.Status == lifecycle.RunSucceeded || r.Status == lifecycle.RunFailed) {
				done = r
				return true
			}
		}
		return false
	})
	return done
}
