package lifecycle_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// sampleAnalytics are the analytics of the sample set at testenv.Now,
// counted by hand from internal/sample:
//   - 15 tokens: 11 active, 3 expired (alice-old, bob-old, erin-old),
//     1 revoked (dave-revoked); 5 users (Alice..Erin).
//   - error_tokens 1: item-erin-chase (ITEM_LOGIN_REQUIRED).
//   - stale, active only, idle > 30 days: bob-wells (used 45 days ago),
//     carol-chase (35), carol-boa (120), erin-wells (never used, created
//     200 days ago) = 4; of those idle > 90 days: carol-boa, erin-wells = 2.
//     (dave-unknown, never used, created 20 days ago, is not stale.)
//   - institutions: Chase Bank 5 (alice-chase, bob-chase, carol-chase,
//     erin-chase, alice-old), Bank of America 3 (alice-boa, carol-boa,
//     bob-old), Wells Fargo 3 (bob-wells, erin-wells, dave-revoked), Citi 3
//     (carol-citi, dave-citi, erin-old), Unknown 1 (dave-unknown).
//   - environments: production 4 (bob-chase, bob-wells, erin-chase,
//     erin-old), sandbox 11.
func sampleAnalytics() *lifecycle.Analytics {
	return &lifecycle.Analytics{
		TotalTokens: 15, ActiveTokens: 11, ExpiredTokens: 3, RevokedTokens: 1, ErrorTokens: 1, UniqueUsers: 5,
		StaleTokens30Days: 4, StaleTokens90Days: 2,
		Institutions: map[string]int{"Chase Bank": 5, "Bank of America": 3, "Wells Fargo": 3, "Citi": 3, "Unknown": 1},
		Environments: map[string]int{"sandbox": 15},
	}
}

func analytics(t *testing.T, env *testenv.Env) *lifecycle.Analytics {
	t.Helper()
	a, err := env.Service.Analytics(context.Background())
	if err != nil {
		t.Fatalf("Analytics: %v", err)
	}
	return a
}

// countsOnly compares analytics by their counts: DESIGN §4's keys.
var countsOnly = cmpopts.IgnoreFields(lifecycle.Analytics{}, "AsOf", "Source", "Trend")

func TestAnalyticsSampleDataset(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	before := time.Now()
	got := analytics(t, env)
	if diff := cmp.Diff(sampleAnalytics(), got, countsOnly); diff != "" {
		t.Errorf("analytics (-want +got):\n%s", diff)
	}
	// Counters never initialized (the tokens were stored without events):
	// counted from every token, as of a read time after the seeding.
	if got.Source != lifecycle.SourceRecount || got.AsOf.Before(before) {
		t.Errorf("source %q as of %v, want a recount as of %v or later", got.Source, got.AsOf, before)
	}
	if n := len(env.Plaid.Calls()); n != 0 {
		t.Errorf("analytics made %d Plaid calls, want none", n)
	}
}

// The keys are DESIGN §4's, exactly.
func TestAnalyticsJSONKeys(t *testing.T) {
	t.Parallel()
	raw, err := json.Marshal(sampleAnalytics())
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"total_tokens": 15.0, "active_tokens": 11.0, "expired_tokens": 3.0, "revoked_tokens": 1.0,
		"error_tokens": 1.0, "unique_users": 5.0, "stale_tokens_30_days": 4.0, "stale_tokens_90_days": 2.0,
		"institutions": map[string]any{"Chase Bank": 5.0, "Bank of America": 3.0, "Wells Fargo": 3.0, "Citi": 3.0, "Unknown": 1.0},
		"environments": map[string]any{"sandbox": 15.0},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("JSON (-want +got):\n%s", diff)
	}
}

func TestAnalyticsEmpty(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	want := &lifecycle.Analytics{Institutions: map[string]int{}, Environments: map[string]int{}}
	if diff := cmp.Diff(want, analytics(t, env), countsOnly); diff != "" {
		t.Errorf("analytics of no tokens (-want +got):\n%s", diff)
	}
}

// Extra tokens on top of the sample pin the edges: error_tokens counts
// active tokens only; staleness counts whole UTC days of last activity
// (last_used_at, else updated_at, else created_at), only for active
// tokens: at testenv.Now (2026-11-28 02:00 UTC) a token is stale for 30
// days when it was last active on 2026-10-28 or before, and for 90 days on
// 2026-08-29 or before; "Unknown" and "unknown" collect missing names.
func TestAnalyticsEdges(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	day := 24 * time.Hour
	at := func(date string, clock string) time.Time {
		v, err := time.Parse(time.DateTime, date+" "+clock)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tok := func(item, user string, status lifecycle.Status, mutate func(*lifecycle.Token)) sample.Token {
		st := testenv.ActiveToken(item, user, 1)
		st.Status = status
		if mutate != nil {
			mutate(&st.Token)
		}
		return st
	}
	env.Seed(t,
		// error_tokens: active with an error counts, an expired one with an
		// error does not.
		tok("x-pending", "user-x1", lifecycle.StatusActive, func(tk *lifecycle.Token) { tk.ErrorCode = "PENDING_EXPIRATION" }),
		tok("x-expired-error", "user-x1", lifecycle.StatusExpired, func(tk *lifecycle.Token) { tk.ErrorCode = "ITEM_NOT_FOUND" }),
		// 2026-10-29, the day 30 days before today, at its first second: not
		// stale (although more than 30 times 24 hours ago); the last
		// second of the day before: stale 30.
		tok("x-30d", "user-x2", lifecycle.StatusActive, func(tk *lifecycle.Token) { tk.LastUsedAt = at("2026-10-29", "00:00:00") }),
		tok("x-31d", "user-x2", lifecycle.StatusActive, func(tk *lifecycle.Token) { tk.LastUsedAt = at("2026-10-28", "23:59:59") }),
		// The day 90 days before, 2026-08-30: stale 30 only; the day
		// before: both.
		tok("x-90d", "user-x2", lifecycle.StatusActive, func(tk *lifecycle.Token) { tk.LastUsedAt = at("2026-08-30", "00:00:00") }),
		tok("x-91d", "user-x2", lifecycle.StatusActive, func(tk *lifecycle.Token) { tk.LastUsedAt = at("2026-08-29", "23:59:59") }),
		// Never used, updated recently although created long ago: updated_at
		// counts, not stale.
		tok("x-updated", "user-x3", lifecycle.StatusActive, func(tk *lifecycle.Token) {
			tk.LastUsedAt, tk.UpdatedAt, tk.CreatedAt = time.Time{}, testenv.Now.Add(-2*day), testenv.Now.Add(-400*day)
		}),
		// Only created_at, 100 days ago: stale 30 and 90.
		tok("x-created", "user-x3", lifecycle.StatusActive, func(tk *lifecycle.Token) {
			tk.LastUsedAt, tk.UpdatedAt, tk.CreatedAt = time.Time{}, time.Time{}, testenv.Now.Add(-100*day)
		}),
		// Revoked and idle for a year: not stale (only active tokens are).
		tok("x-revoked-idle", "user-x3", lifecycle.StatusRevoked, func(tk *lifecycle.Token) { tk.LastUsedAt = testenv.Now.Add(-365 * day) }),
		// No institution name, no environment.
		tok("x-nameless", "user-x4", lifecycle.StatusActive, func(tk *lifecycle.Token) { tk.InstitutionName, tk.Environment = "", "" }),
	)

	want := sampleAnalytics()
	want.TotalTokens += 10
	want.ActiveTokens += 8
	want.ExpiredTokens++
	want.RevokedTokens++
	want.ErrorTokens++          // x-pending
	want.UniqueUsers += 4       // user-x1..x4
	want.StaleTokens30Days += 4 // x-31d, x-90d, x-91d, x-created
	want.StaleTokens90Days += 2 // x-91d, x-created
	want.Institutions["Chase Bank"] += 9
	want.Institutions["Unknown"]++
	want.Environments["sandbox"] += 9
	want.Environments["unknown"] = 1
	if diff := cmp.Diff(want, analytics(t, env), countsOnly); diff != "" {
		t.Errorf("analytics recounted (-want +got):\n%s", diff)
	}
	// The counters, backfilled by a repair, apply the very same rule.
	if _, err := env.Service.ExactAnalytics(context.Background(), lifecycle.ExactOptions{Repair: true, Trigger: "test"}); err != nil {
		t.Fatal(err)
	}
	got := analytics(t, env)
	if diff := cmp.Diff(want, got, countsOnly); diff != "" {
		t.Errorf("analytics from the counters (-want +got):\n%s", diff)
	}
	if got.Source != lifecycle.SourceCounters {
		t.Errorf("source %q, want counters", got.Source)
	}
}

// Legacy documents may lack fields or hold them with other types: they
// are still counted, never fail the report.
func TestAnalyticsToleratesOddDocuments(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	docs := map[string]map[string]any{
		"odd-bare":        {"status": "active"},                                                                // nothing else
		"odd-typed":       {"status": "active", "user_id": 42, "last_used_at": "2020-01-01", "environment": 7}, // wrong types
		"odd-null-times":  {"status": "active", "user_id": "user-odd", "created_at": nil, "last_used_at": nil},
		"odd-empty-error": {"status": "active", "user_id": "user-odd", "error_code": "", "created_at": testenv.Now},
	}
	for id, d := range docs {
		if _, err := env.Client.Collection(lifecycle.TokensCollection).Doc(id).Set(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	want := &lifecycle.Analytics{
		TotalTokens: 4, ActiveTokens: 4, UniqueUsers: 1,
		// No activity time at all reads as idle since forever.
		StaleTokens30Days: 3, StaleTokens90Days: 3,
		Institutions: map[string]int{"Unknown": 4}, Environments: map[string]int{"unknown": 4},
	}
	if diff := cmp.Diff(want, analytics(t, env), countsOnly); diff != "" {
		t.Errorf("analytics (-want +got):\n%s", diff)
	}
}

func TestAnalyticsSnapshots(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	ctx := context.Background()
	a := analytics(t, env)

	// Four weekly runs, one redelivered.
	for week := range 4 {
		env.Clock.Set(testenv.Now.Add(time.Duration(week) * 7 * 24 * time.Hour))
		a.TotalTokens = 15 + week
		saved, err := env.Service.SaveAnalyticsSnapshot(ctx, fmt.Sprintf("event-%d", week), a, nil)
		if err != nil || !saved {
			t.Fatalf("SaveAnalyticsSnapshot week %d = %v, %v; want saved", week, saved, err)
		}
	}
	env.Clock.Advance(time.Hour)
	a.TotalTokens = 99
	saved, err := env.Service.SaveAnalyticsSnapshot(ctx, "event-3", a, nil)
	if err != nil || saved {
		t.Fatalf("redelivered SaveAnalyticsSnapshot = %v, %v; want not saved, no error", saved, err)
	}
	res, err := env.Client.Collection(lifecycle.SnapshotsCollection).NewAggregationQuery().WithCount("n").Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var count struct {
		N int64 `firestore:"n"`
	}
	if err := res.DataTo(&count); err != nil {
		t.Fatal(err)
	}
	if count.N != 4 {
		t.Errorf("snapshot documents = %d, want 4", count.N)
	}

	history, err := env.Service.AnalyticsHistory(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	type point struct {
		TakenAt time.Time
		Total   int
	}
	var got []point
	for _, h := range history {
		got = append(got, point{h.TakenAt, h.Analytics.TotalTokens})
		if diff := cmp.Diff(sampleAnalytics().Institutions, h.Analytics.Institutions); diff != "" {
			t.Errorf("snapshot institutions (-want +got):\n%s", diff)
		}
	}
	week := 7 * 24 * time.Hour
	want := []point{{testenv.Now.Add(3 * week), 18}, {testenv.Now.Add(2 * week), 17}, {testenv.Now.Add(week), 16}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("history, newest first (-want +got):\n%s", diff)
	}

	all, err := env.Service.AnalyticsHistory(ctx, lifecycle.MaxAnalyticsHistory)
	if err != nil || len(all) != 4 {
		t.Errorf("AnalyticsHistory(52) = %d snapshots, %v; want 4", len(all), err)
	}
	for _, bad := range []int{0, -1, 53} {
		if _, err := env.Service.AnalyticsHistory(ctx, bad); !lifecycle.IsCode(err, lifecycle.CodeInvalid) {
			t.Errorf("AnalyticsHistory(%d): err = %v, want invalid", bad, err)
		}
	}
	if _, err := env.Service.SaveAnalyticsSnapshot(ctx, "", a, nil); !lifecycle.IsCode(err, lifecycle.CodeInvalid) {
		t.Errorf("SaveAnalyticsSnapshot without an event id: err = %v, want invalid", err)
	}
}

// Institution names are whatever writers stored: one Firestore reserves as
// a field name (__x__), or that starts with the escape, still makes a
// weekly snapshot, and reads back as it was.
func TestAnalyticsSnapshotOfReservedNames(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	a := &lifecycle.Analytics{TotalTokens: 3, ActiveTokens: 3,
		Institutions: map[string]int{"__x__": 1, "~tilde": 1, "Chase Bank": 1},
		Environments: map[string]int{"__sandbox__": 3}}
	if saved, err := env.Service.SaveAnalyticsSnapshot(ctx, "event-reserved", a, nil); err != nil || !saved {
		t.Fatalf("SaveAnalyticsSnapshot = %v, %v; want saved", saved, err)
	}
	history, err := env.Service.AnalyticsHistory(ctx, 1)
	if err != nil || len(history) != 1 {
		t.Fatalf("AnalyticsHistory = %d, %v; want one snapshot", len(history), err)
	}
	if diff := cmp.Diff(a.Institutions, history[0].Analytics.Institutions); diff != "" {
		t.Errorf("institutions read back (-saved +read):\n%s", diff)
	}
	if diff := cmp.Diff(a.Environments, history[0].Analytics.Environments); diff != "" {
		t.Errorf("environments read back (-saved +read):\n%s", diff)
	}
}
