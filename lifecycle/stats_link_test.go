package lifecycle_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// Which writes are an Item linked and an Item repaired (the Link flow's
// key metrics): a token created active on the write's own day, and an
// active token's error cleared.
func TestChangeDeltaLinkedAndRepaired(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC)
	tok := func(status lifecycle.Status, errorCode string, created time.Time) *lifecycle.TokenSummary {
		return &lifecycle.TokenSummary{ItemID: "item-1", UserID: "user-1", Status: status, ErrorCode: errorCode,
			InstitutionName: "First Platypus Bank", Environment: "sandbox", CreatedAt: created, UpdatedAt: created}
	}
	today, earlier := at.Add(-4*time.Hour), at.AddDate(0, -3, 0)
	active, revoked, expired := lifecycle.StatusActive, lifecycle.StatusRevoked, lifecycle.StatusExpired
	for _, tc := range []struct {
		name             string
		old, new         *lifecycle.TokenSummary
		at               time.Time
		linked, repaired int64
	}{
		{"exchanged today: linked", nil, tok(active, "", today), at, 1, 0},
		{"created active just before midnight, committed after: its own day only", nil, tok(active, "", at.Truncate(24*time.Hour).Add(-time.Second)), at, 0, 0},
		{"migrated (created long ago): not a new link", nil, tok(active, "", earlier), at, 0, 0},
		{"created revoked: not linked", nil, tok(revoked, "", today), at, 0, 0},
		{"login repaired: error cleared", tok(active, "ITEM_LOGIN_REQUIRED", earlier), tok(active, "", earlier), at, 0, 1},
		{"legacy error cleared by a validation", tok(active, lifecycle.LegacyErrorCode, earlier), tok(active, "", earlier), at, 0, 1},
		{"one error for another: not repaired", tok(active, "PENDING_EXPIRATION", earlier), tok(active, "ITEM_LOGIN_REQUIRED", earlier), at, 0, 0},
		{"gone: expired, not repaired", tok(active, "ITEM_LOGIN_REQUIRED", earlier), tok(expired, "", earlier), at, 0, 0},
		{"revoked token's error cleared: not repaired", tok(revoked, "ITEM_LOGIN_REQUIRED", earlier), tok(revoked, "", earlier), at, 0, 0},
		{"no commit time: no trend", nil, tok(active, "", today), time.Time{}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := lifecycle.ChangeDelta(lifecycle.TokenChange{EventID: "e", At: tc.at, Old: tc.old, New: tc.new})
			got := []int64{d.Counters.Get(lifecycle.CounterLinked, "2026-11-28"), d.Counters.Get(lifecycle.CounterRepaired, "2026-11-28")}
			if diff := cmp.Diff([]int64{tc.linked, tc.repaired}, got); diff != "" {
				t.Errorf("[linked, repaired] (-want +got):\n%s", diff)
			}
		})
	}
}

// The analytics' trend reports Items linked and repaired per day beside
// created, used and removed.
func TestAnalyticsTrendLinkedAndRepaired(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	// Changes count once the counters' backfill is done, and only those
	// committed after its recount: real times, the clock with them.
	env.Clock.Set(time.Now().UTC())
	res, err := env.Service.ExactAnalytics(t.Context(), lifecycle.ExactOptions{Repair: true, Trigger: "test"})
	if err != nil || res.Repair == nil {
		t.Fatalf("backfill: %+v, %v", res, err)
	}
	now := res.Repair.ReadTime.Add(time.Millisecond).UTC()
	env.Clock.Set(now)
	linked := &lifecycle.TokenSummary{ItemID: "item-1", UserID: "user-1", Status: lifecycle.StatusActive, ErrorCode: "ITEM_LOGIN_REQUIRED",
		InstitutionName: "First Platypus Bank", Environment: "sandbox", CreatedAt: now, UpdatedAt: now}
	repaired := *linked
	repaired.ErrorCode = ""
	apply(t, env,
		lifecycle.TokenChange{EventID: "link-1", At: now, New: linked},
		lifecycle.TokenChange{EventID: "repair-1", At: now, Old: linked, New: &repaired})
	a := analytics(t, env)
	if len(a.Trend) == 0 {
		t.Fatal("no trend")
	}
	want := lifecycle.TrendDay{Date: now.Format(time.DateOnly), Created: 1, Linked: 1, Repaired: 1}
	if diff := cmp.Diff(want, a.Trend[len(a.Trend)-1]); diff != "" {
		t.Errorf("today's trend (-want +got):\n%s", diff)
	}
}
