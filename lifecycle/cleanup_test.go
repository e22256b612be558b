package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

var sampleStatistics = testenv.SampleStatistics

func cleanup(t *testing.T, env *testenv.Env, req lifecycle.CleanupRequest) *lifecycle.CleanupResult {
	t.Helper()
	if req.DaysThreshold == 0 {
		req.DaysThreshold = 90
	}
	if req.Trigger == "" {
		req.Trigger = lifecycle.TriggerCLI
	}
	res, err := env.Service.Cleanup(context.Background(), req)
	if err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	return res
}

func TestCleanupSampleDataset(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	tokens := env.SeedSample(t)
	res := cleanup(t, env, lifecycle.CleanupRequest{Actor: "test"})

	if diff := cmp.Diff(sampleStatistics, res.Statistics); diff != "" {
		t.Errorf("statistics (-want +got):\n%s", diff)
	}
	if !res.Done {
		t.Error("run not done")
	}
	// Removed at Plaid: expired and revoked ones not yet removed, and the
	// stale ones; never a live one, never one already removed.
	wantRemoved := map[string]bool{
		"access-sandbox-item-alice-old": true, "access-sandbox-item-bob-old": true,
		"access-sandbox-item-dave-revoked": true, "access-sandbox-item-carol-boa": true,
		"access-sandbox-item-erin-wells": true,
	}
	if got := env.Plaid.CallCount("/item/remove"); got != len(wantRemoved) {
		t.Errorf("/item/remove calls = %d, want %d", got, len(wantRemoved))
	}
	for _, tok := range tokens {
		if want := wantRemoved[tok.Plaintext]; env.Plaid.Removed(tok.Plaintext) != want && tok.Plaid != sample.Gone {
			t.Errorf("%s removed at Plaid = %v, want %v", tok.ItemID, !want, want)
		}
	}
	// Documents: removed ones are gone, the invalid one is marked, the
	// needs-user one keeps its error, healthy ones are validated.
	for _, tok := range tokens {
		doc := env.Doc(t, tok.ItemID)
		switch tok.ItemID {
		case "item-alice-old", "item-bob-old", "item-erin-old", "item-dave-revoked", "item-carol-boa", "item-erin-wells":
			if doc != nil {
				t.Errorf("%s still exists (status %s)", tok.ItemID, doc.Status)
			}
		case "item-dave-citi":
			if doc == nil || doc.Status != lifecycle.StatusExpired || doc.ErrorCode != "ITEM_NOT_FOUND" {
				t.Errorf("%s = %+v, want expired with ITEM_NOT_FOUND", tok.ItemID, doc)
			}
		case "item-erin-chase":
			if doc == nil || doc.Status != lifecycle.StatusActive || doc.ErrorCode != "ITEM_LOGIN_REQUIRED" {
				t.Errorf("%s = %+v, want active with ITEM_LOGIN_REQUIRED", tok.ItemID, doc)
			}
		default:
			if doc == nil || doc.Status != lifecycle.StatusActive || doc.ErrorCode != "" || !doc.LastValidatedAt.Equal(testenv.Now) {
				t.Errorf("%s = %+v, want active, validated now, no error", tok.ItemID, doc)
			}
		}
	}
	// The run record and one audit entry per removal.
	run, err := env.Runs.GetRun(context.Background(), res.RunID)
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != lifecycle.RunSucceeded || run.Trigger != lifecycle.TriggerCLI || run.Actor != "test" || run.EndedAt.IsZero() {
		t.Errorf("run record = %+v", run)
	}
	if diff := cmp.Diff(sampleStatistics, run.Statistics); diff != "" {
		t.Errorf("run record statistics (-want +got):\n%s", diff)
	}
	for item, reason := range map[string]string{"item-alice-old": "expired", "item-dave-revoked": "revoked", "item-carol-boa": "stale"} {
		entries := env.AuditEntries(t, item)
		if len(entries) != 1 || entries[0].Reason != reason || entries[0].UserID == "" || entries[0].RunID != res.RunID {
			t.Errorf("audit of %s = %+v, want one %q entry", item, entries, reason)
		}
	}

	// A second run finds nothing more to remove but the token the first
	// marked expired, and does not validate again what the first validated
	// within VALIDATION_INTERVAL.
	again := cleanup(t, env, lifecycle.CleanupRequest{})
	want := lifecycle.Statistics{TotalChecked: 9, ExpiredRemoved: 1, TotalCleaned: 1, ValidationSkipped: 8}
	if diff := cmp.Diff(want, again.Statistics); diff != "" {
		t.Errorf("second run statistics (-want +got):\n%s", diff)
	}
	if got := again.Statistics.Outcomes(); got != again.Statistics.TotalChecked {
		t.Errorf("outcomes add up to %d, total_checked is %d", got, again.Statistics.TotalChecked)
	}
}

// VALIDATION_INTERVAL (DESIGN §12): a token validated within it is not sent
// to /item/get, and is counted; 0 validates every token every run; the
// default (20h) keeps the daily validation of the old service.
func TestCleanupValidationBudget(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name          string
		interval      time.Duration
		validatedAgo  time.Duration // 0: never validated
		wantValidated bool
	}{
		{"never validated", 20 * time.Hour, 0, true},
		{"validated yesterday, daily default", 20 * time.Hour, 24 * time.Hour, true},
		{"validated an hour ago", 20 * time.Hour, time.Hour, false},
		{"validated 3 days ago, weekly budget", 7 * 24 * time.Hour, 72 * time.Hour, false},
		{"interval 0 always validates", 0, time.Minute, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := testenv.New(t, testenv.WithConfig(func(c *lifecycle.Config) { c.ValidationInterval = tc.interval }))
			tok := testenv.ActiveToken("item-1", "u1", 3)
			if tc.validatedAgo > 0 {
				tok.LastValidatedAt = testenv.Now.Add(-tc.validatedAgo)
			}
			env.Seed(t, tok)
			res := cleanup(t, env, lifecycle.CleanupRequest{})
			calls := env.Plaid.CallCount("/item/get")
			want := lifecycle.Statistics{TotalChecked: 1, Validated: 1}
			if !tc.wantValidated {
				want = lifecycle.Statistics{TotalChecked: 1, ValidationSkipped: 1}
			}
			if diff := cmp.Diff(want, res.Statistics); diff != "" {
				t.Errorf("statistics (-want +got):\n%s", diff)
			}
			if wantCalls := map[bool]int{true: 1, false: 0}[tc.wantValidated]; calls != wantCalls {
				t.Errorf("/item/get calls = %d, want %d", calls, wantCalls)
			}
		})
	}
}

func TestCleanupDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	tokens := env.SeedSample(t)
	before := map[string]*lifecycle.Token{}
	for _, tok := range tokens {
		before[tok.ItemID] = env.Doc(t, tok.ItemID)
	}
	res := cleanup(t, env, lifecycle.CleanupRequest{DryRun: true})
	if diff := cmp.Diff(sampleStatistics, res.Statistics); diff != "" {
		t.Errorf("dry-run statistics (-want +got):\n%s", diff)
	}
	if n := env.Plaid.CallCount("/item/remove"); n != 0 {
		t.Errorf("dry run made %d /item/remove calls", n)
	}
	for _, tok := range tokens {
		if diff := cmp.Diff(before[tok.ItemID], env.Doc(t, tok.ItemID)); diff != "" {
			t.Errorf("dry run changed %s (-before +after):\n%s", tok.ItemID, diff)
		}
	}
}

// Transient and configuration faults are never the token's: nothing is
// marked or removed, and the run counts errors.
func TestCleanupPlaidFaultsChangeNothing(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		fault func(env *testenv.Env, tok sample.Token)
	}{
		{"rate limited", func(env *testenv.Env, _ sample.Token) {
			env.Plaid.FailAlways("/item/get", 429, "RATE_LIMIT_EXCEEDED", "ITEM_GET_LIMIT")
		}},
		{"internal server error", func(env *testenv.Env, _ sample.Token) {
			env.Plaid.FailAlways("/item/get", 500, "API_ERROR", "INTERNAL_SERVER_ERROR")
		}},
		{"planned maintenance", func(env *testenv.Env, _ sample.Token) {
			env.Plaid.FailAlways("/item/get", 503, "API_ERROR", "PLANNED_MAINTENANCE")
		}},
		{"institution down", func(env *testenv.Env, tok sample.Token) {
			env.Plaid.SetTokenError(tok.Plaintext, "INSTITUTION_DOWN")
		}},
		{"institution not responding in item.error", func(env *testenv.Env, tok sample.Token) {
			env.Plaid.SetItemError(tok.Plaintext, "INSTITUTION_NOT_RESPONDING")
		}},
		{"invalid api keys", func(env *testenv.Env, _ sample.Token) {
			env.Plaid.FailAlways("/item/get", 400, "INVALID_INPUT", "INVALID_API_KEYS")
		}},
		{"timeout", func(env *testenv.Env, _ sample.Token) {
			env.Plaid.SetLatency(3 * time.Second) // beyond the 1 s this test gives a call
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := testenv.New(t, testenv.WithPlaidTimeout(time.Second))
			tok := testenv.ActiveToken("item-healthy", "u1", 3)
			env.Seed(t, tok)
			tc.fault(env, tok)
			before := env.Doc(t, tok.ItemID)

			res, err := env.Service.Cleanup(context.Background(), lifecycle.CleanupRequest{DaysThreshold: 90, Trigger: "test"})
			if tc.name == "invalid api keys" {
				// The run stops: every further call would fail the same way.
				if lifecycle.ErrorCode(err) != lifecycle.CodeUnavailable {
					t.Fatalf("Cleanup error = %v, want CodeUnavailable", err)
				}
			} else if err != nil {
				t.Fatalf("Cleanup: %v", err)
			}
			if res.Statistics.InvalidMarked != 0 || res.Statistics.TotalCleaned != 0 || res.Statistics.Errors != 1 {
				t.Errorf("statistics = %+v, want 1 error and nothing marked or cleaned", res.Statistics)
			}
			if diff := cmp.Diff(before, env.Doc(t, tok.ItemID)); diff != "" {
				t.Errorf("document changed (-before +after):\n%s", diff)
			}
			if len(res.Errors) != 1 || res.Errors[0].ItemID != tok.ItemID {
				t.Errorf("run errors = %+v", res.Errors)
			}
		})
	}
}

func TestCleanupValidationClasses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		code       string
		inItem     bool // item.error inside a 200 instead of an error answer
		wantStatus lifecycle.Status
		wantCode   string
		wantStats  lifecycle.Statistics
	}{
		{"ITEM_NOT_FOUND", false, lifecycle.StatusExpired, "ITEM_NOT_FOUND", lifecycle.Statistics{InvalidMarked: 1}},
		{"INVALID_ACCESS_TOKEN", false, lifecycle.StatusExpired, "INVALID_ACCESS_TOKEN", lifecycle.Statistics{InvalidMarked: 1}},
		{"USER_PERMISSION_REVOKED", true, lifecycle.StatusExpired, "USER_PERMISSION_REVOKED", lifecycle.Statistics{InvalidMarked: 1}},
		{"ITEM_LOGIN_REQUIRED", true, lifecycle.StatusActive, "ITEM_LOGIN_REQUIRED", lifecycle.Statistics{NeedsUser: 1}},
		{"PENDING_EXPIRATION", true, lifecycle.StatusActive, "PENDING_EXPIRATION", lifecycle.Statistics{NeedsUser: 1}},
		{"PENDING_DISCONNECT", true, lifecycle.StatusActive, "PENDING_DISCONNECT", lifecycle.Statistics{NeedsUser: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			t.Parallel()
			env := testenv.New(t)
			tok := testenv.ActiveToken("item-1", "u1", 3)
			env.Seed(t, tok)
			if tc.inItem {
				env.Plaid.SetItemError(tok.Plaintext, tc.code)
			} else {
				env.Plaid.SetTokenError(tok.Plaintext, tc.code)
			}
			res := cleanup(t, env, lifecycle.CleanupRequest{})
			tc.wantStats.TotalChecked = 1
			if diff := cmp.Diff(tc.wantStats, res.Statistics); diff != "" {
				t.Errorf("statistics (-want +got):\n%s", diff)
			}
			doc := env.Doc(t, tok.ItemID)
			if doc == nil || doc.Status != tc.wantStatus || doc.ErrorCode != tc.wantCode {
				t.Errorf("document = %+v, want status %s error_code %s", doc, tc.wantStatus, tc.wantCode)
			}
			if env.Plaid.CallCount("/item/remove") != 0 {
				t.Error("validation called /item/remove")
			}
		})
	}

	t.Run("successful validation clears error_code", func(t *testing.T) {
		t.Parallel()
		env := testenv.New(t)
		tok := testenv.ActiveToken("item-1", "u1", 3)
		tok.ErrorCode = "LEGACY_ERROR"
		env.Seed(t, tok)
		cleanup(t, env, lifecycle.CleanupRequest{})
		if doc := env.Doc(t, tok.ItemID); doc.ErrorCode != "" || doc.Status != lifecycle.StatusActive {
			t.Errorf("document = %+v, want active without error_code", doc)
		}
	})
}

// A failed /item/remove keeps the document for the next run, for every kind
// of removal.
func TestCleanupRemoveFailureKeepsDocument(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	expired := testenv.ActiveToken("item-expired", "u1", 3)
	expired.Status = lifecycle.StatusExpired
	revoked := testenv.ActiveToken("item-revoked", "u1", 3)
	revoked.Status = lifecycle.StatusRevoked
	stale := testenv.ActiveToken("item-stale", "u1", 200)
	env.Seed(t, expired, revoked, stale)
	env.Plaid.FailAlways("/item/remove", 500, "API_ERROR", "INTERNAL_SERVER_ERROR")

	res := cleanup(t, env, lifecycle.CleanupRequest{})
	if want := (lifecycle.Statistics{TotalChecked: 3, Errors: 3}); !cmp.Equal(want, res.Statistics) {
		t.Errorf("statistics = %+v, want %+v", res.Statistics, want)
	}
	for _, tok := range []sample.Token{expired, revoked, stale} {
		doc := env.Doc(t, tok.ItemID)
		if doc == nil || doc.Status != tok.Status || doc.PlaidRemoved {
			t.Errorf("%s = %+v, want kept unchanged", tok.ItemID, doc)
		}
	}

	// Plaid recovers: the next run finishes all three.
	env.Plaid.ClearFaults()
	res = cleanup(t, env, lifecycle.CleanupRequest{})
	if want := (lifecycle.Statistics{TotalChecked: 3, ExpiredRemoved: 1, RevokedRemoved: 1, StaleRemoved: 1, TotalCleaned: 3}); !cmp.Equal(want, res.Statistics) {
		t.Errorf("recovery statistics = %+v, want %+v", res.Statistics, want)
	}
}

// A token the app uses while the run has it in hand is not deleted.
func TestCleanupTokenTouchedMidRunSurvives(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	stale := testenv.ActiveToken("item-stale", "u1", 200)
	gone := testenv.ActiveToken("item-gone", "u1", 3)
	env.Seed(t, stale, gone)
	env.Plaid.SetTokenError(gone.Plaintext, "ITEM_NOT_FOUND")
	touched := testenv.Now.Add(time.Minute)
	env.Plaid.OnCall(func(path, accessToken string) {
		if accessToken == stale.Plaintext || accessToken == gone.Plaintext {
			itemID := map[string]string{stale.Plaintext: stale.ItemID, gone.Plaintext: gone.ItemID}[accessToken]
			if _, err := env.Tokens.Update(context.Background(), itemID, lifecycle.Patch{LastUsedAt: &touched}, time.Time{}); err != nil {
				t.Errorf("touching %s: %v", itemID, err)
			}
		}
	})

	res := cleanup(t, env, lifecycle.CleanupRequest{})
	if res.Statistics.StaleRemoved != 0 || res.Statistics.InvalidMarked != 0 || res.Statistics.SkippedChanged != 2 {
		t.Errorf("statistics = %+v, want 2 skipped_changed and nothing removed or marked", res.Statistics)
	}
	doc := env.Doc(t, stale.ItemID)
	if doc == nil {
		t.Fatal("stale token touched mid-run was deleted")
	}
	// Plaid did remove it before the app's touch landed: the document must
	// say so rather than pretend the Item is alive.
	if doc.Status != lifecycle.StatusRevoked || !doc.PlaidRemoved || !doc.LastUsedAt.Equal(touched) {
		t.Errorf("stale document = %+v, want revoked, plaid_removed, last_used_at kept", doc)
	}
	if g := env.Doc(t, gone.ItemID); g == nil || g.Status != lifecycle.StatusActive {
		t.Errorf("gone token touched during validation = %+v, want left active for the next run", g)
	}
}

func TestCleanupOneRunAtATime(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.Seed(t, testenv.ActiveToken("item-1", "u1", 3))
	var once sync.Once
	var secondErr error
	env.Plaid.OnCall(func(path, _ string) {
		// While the first run is mid-flight, a second one starts.
		once.Do(func() {
			_, secondErr = env.Service.Cleanup(context.Background(), lifecycle.CleanupRequest{DaysThreshold: 90, Trigger: "test"})
		})
	})
	first := cleanup(t, env, lifecycle.CleanupRequest{})
	if !errors.Is(secondErr, lifecycle.ErrLeaseHeld) || lifecycle.ErrorCode(secondErr) != lifecycle.CodeConflict {
		t.Errorf("overlapping run error = %v, want ErrLeaseHeld (conflict)", secondErr)
	}
	if first.Statistics.TotalChecked != 1 {
		t.Errorf("first run statistics = %+v", first.Statistics)
	}
	// The lease is released: a later run starts.
	cleanup(t, env, lifecycle.CleanupRequest{})
}

func TestCleanupRejectsBadThreshold(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	for _, days := range []int{-1, 0, 3651} {
		_, err := env.Service.Cleanup(context.Background(), lifecycle.CleanupRequest{DaysThreshold: days})
		if lifecycle.ErrorCode(err) != lifecycle.CodeInvalid {
			t.Errorf("days %d: err = %v, want CodeInvalid", days, err)
		}
	}
}

// mixedTokens is a larger dataset with every kind of token.
func mixedTokens(n int) []sample.Token {
	out := make([]sample.Token, 0, n)
	for i := range n {
		tok := testenv.ActiveToken(fmt.Sprintf("item-%05d", i), fmt.Sprintf("user-%03d", i%97), 3)
		switch {
		case i%10 == 0:
			tok.Status = lifecycle.StatusExpired
		case i%20 == 1:
			tok.Status = lifecycle.StatusRevoked
		case i%10 == 2:
			tok = testenv.ActiveToken(tok.ItemID, tok.UserID, 150)
		case i%50 == 3:
			tok.Plaid = sample.Gone
		case i%50 == 4:
			tok.Plaid = sample.NeedsUser
		}
		out = append(out, tok)
	}
	return out
}

// A scheduled run that keeps hitting its budget continues from its
// checkpoint through its continuations, and its totals are exactly those of
// one uninterrupted run.
func TestCleanupContinuationTotalsExact(t *testing.T) {
	t.Parallel()
	tokens := mixedTokens(2000)

	whole := testenv.New(t)
	whole.Seed(t, tokens...)
	wholeRes := cleanup(t, whole, lifecycle.CleanupRequest{})
	want := wholeRes.Statistics
	if len(wholeRes.Errors) > 0 {
		t.Fatalf("uninterrupted run errors: %+v", wholeRes.Errors)
	}
	if want.TotalChecked != 2000 || want.TotalCleaned == 0 || want.InvalidMarked == 0 || want.Outcomes() != 2000 {
		t.Fatalf("uninterrupted run statistics look wrong: %+v", want)
	}

	for _, budget := range []time.Duration{time.Nanosecond, 1500 * time.Millisecond} {
		t.Run(budget.String(), func(t *testing.T) {
			t.Parallel()
			env := testenv.New(t, testenv.WithConfig(func(c *lifecycle.Config) { c.CleanupPageSize = 300 })) // several pages
			continuer := &testenv.Continuer{}
			env.Rebuild(t, func(d *lifecycle.Deps, _ *lifecycle.Config) { d.Continuer = continuer })
			env.Seed(t, tokens...)
			env.Plaid.SetLatency(2 * time.Millisecond)
			out := scheduled(t, env, lifecycle.CleanupEvent{EventID: "evt-0", DaysThreshold: 90, Budget: budget})
			runID := out.RunID
			invocations := 1
			for {
				next := continuer.Take()
				if len(next) == 0 {
					break
				}
				if len(next) != 1 || next[0] != runID {
					t.Fatalf("continuations = %v, want one of run %s", next, runID)
				}
				if invocations > 50 {
					t.Fatal("run never finished")
				}
				// Another run cannot start while this one is checkpointed.
				if _, err := env.Service.Cleanup(context.Background(), lifecycle.CleanupRequest{DaysThreshold: 90}); !errors.Is(err, lifecycle.ErrLeaseHeld) {
					t.Errorf("new run during continuation: err = %v, want ErrLeaseHeld", err)
				}
				invocations++
				out = scheduled(t, env, lifecycle.CleanupEvent{EventID: fmt.Sprintf("evt-%d", invocations), ContinueRunID: runID, Budget: budget})
				if out.Action != "resumed" {
					t.Fatalf("continuation %d: action %q, want resumed", invocations, out.Action)
				}
			}
			if budget == time.Nanosecond && invocations < 5 {
				t.Errorf("only %d invocations with a 1ns budget; want one per page", invocations)
			}
			run := env.Run(t, runID)
			if run.Status != lifecycle.RunSucceeded || run.Invocations != invocations || len(run.EventIDs) != invocations {
				t.Errorf("run record: status %s, invocations %d (want %d), event ids %d", run.Status, run.Invocations, invocations, len(run.EventIDs))
			}
			if diff := cmp.Diff(want, run.Statistics); diff != "" {
				t.Errorf("continued run totals (-uninterrupted +continued):\n%s\nerrors: %+v", diff, run.Errors)
			}
			t.Logf("budget %v: %d invocations", budget, invocations)
		})
	}
}

func scheduled(t *testing.T, env *testenv.Env, ev lifecycle.CleanupEvent) *lifecycle.ScheduledOutcome {
	t.Helper()
	out, err := env.Service.RunScheduledCleanup(context.Background(), ev)
	if err != nil {
		t.Fatalf("RunScheduledCleanup(%+v): %v", ev, err)
	}
	return out
}
