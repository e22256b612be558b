package lifecycle_test

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// The weekly recount's user activity: each user counts once, by the
// latest use of any of their tokens, exact as of the recount.
func TestRecountUserActivity(t *testing.T) {
	t.Parallel()
	asOf := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return asOf.Add(-d) }
	day := 24 * time.Hour
	tok := func(user string, status lifecycle.Status, used time.Time) *lifecycle.TokenSummary {
		return &lifecycle.TokenSummary{UserID: user, Status: status, LastUsedAt: used}
	}
	rc := lifecycle.NewRecount()
	for _, t := range []*lifecycle.TokenSummary{
		// ann: three active Items, latest use 2 hours ago (the older
		// uses do not count her again).
		tok("ann", lifecycle.StatusActive, ago(2*time.Hour)), tok("ann", lifecycle.StatusActive, ago(3*day)),
		tok("ann", lifecycle.StatusActive, ago(40*day)),
		// ben: used 3 days ago, through a token revoked since; one active Item.
		tok("ben", lifecycle.StatusRevoked, ago(3*day)), tok("ben", lifecycle.StatusActive, time.Time{}),
		// cal: 20 days ago, an expired token only: no active Item.
		tok("cal", lifecycle.StatusExpired, ago(20*day)),
		// dee: never used, one active Item.
		tok("dee", lifecycle.StatusActive, time.Time{}),
		// eve: 45 days ago (outside the month and the chart); 11 Items.
		tok("eve", lifecycle.StatusActive, ago(45*day)),
		// A document without a user counts for no one.
		tok("", lifecycle.StatusActive, ago(time.Hour)),
	} {
		rc.Add(t)
	}
	for range 10 {
		rc.Add(tok("eve", lifecycle.StatusActive, time.Time{}))
	}
	got := rc.UserActivity(asOf)
	want := &lifecycle.UserActivity{
		AsOf: asOf, Users: 5, ActiveDay: 1, ActiveWeek: 2, ActiveMonth: 3,
		LatestUseByDay: map[string]int{"2026-11-28": 1, "2026-11-25": 1, "2026-11-08": 1},
		ItemsPerUser:   map[string]int{"3": 1, "1": 2, "10+": 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("user activity (-want +got):\n%s", diff)
	}
}

// The page is self-contained: no script, no external reference, a
// Content-Security-Policy that forbids loading anything; every chart is
// drawn as SVG from the data, and an empty one says why.
func TestRenderWeeklyReport(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 1, 0, 0, 0, time.UTC)
	a := &lifecycle.Analytics{TotalTokens: 15, ActiveTokens: 11, UniqueUsers: 5, AsOf: now, Source: lifecycle.SourceCounters,
		Institutions: map[string]int{"Chase Bank": 5}, Environments: map[string]int{"sandbox": 15},
		Trend: []lifecycle.TrendDay{{Date: "2026-11-28", Created: 3, Used: 2}, {Date: "2026-11-29", Used: 4, Removed: 1}}}
	activity := &lifecycle.UserActivity{AsOf: now, Users: 5, ActiveDay: 2, ActiveWeek: 4,
		LatestUseByDay: map[string]int{"2026-11-28": 3}, ItemsPerUser: map[string]int{"1": 3, "2": 2}}
	r := &lifecycle.WeeklyReport{GeneratedAt: now, Analytics: a,
		Runs: []*lifecycle.RunRecord{{ID: "run-1", Status: lifecycle.RunSucceeded, StartedAt: now, Trigger: "schedule",
			Statistics: lifecycle.Statistics{TotalChecked: 15, TotalCleaned: 6, InvalidMarked: 1, Errors: 2}}},
		Weeks: []lifecycle.AnalyticsSnapshot{
			{TakenAt: now.AddDate(0, 0, -7), Analytics: lifecycle.Analytics{Institutions: map[string]int{"Chase Bank": 4, "Citi": 2}}},
			{TakenAt: now, Analytics: lifecycle.Analytics{Institutions: map[string]int{"Chase Bank": 5, "Wells Fargo": 1}}, Activity: activity},
		},
		Institutions: []lifecycle.InstitutionChange{{Name: "Chase Bank", Previous: 4, Latest: 5}, {Name: "Citi", Previous: 2}},
		Activity:     activity,
	}
	var b bytes.Buffer
	if err := lifecycle.RenderWeeklyReport(&b, r); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, bad := range []string{"<script", "<link", "<img", "<iframe", "@import", "url(", "http://", "https://", "src="} {
		if strings.Contains(page, bad) {
			t.Errorf("the page contains %q", bad)
		}
	}
	if !strings.Contains(page, `content="default-src 'none'; style-src 'unsafe-inline'"`) {
		t.Error("the page has no Content-Security-Policy forbidding loads")
	}
	drawn := map[string]string{
		"chart-trend":          `<polyline class="series s-created"`,
		"chart-runs":           `<rect class="bar s-errors"`,
		"chart-institutions":   `<rect class="bar s-prev"`,
		"chart-active-users":   `<rect class="bar s-latest"`,
		"chart-latest-use":     `<rect class="bar s-used"`,
		"chart-items-per-user": `<rect class="bar s-latest"`,
	}
	for id, mark := range drawn {
		svg := regexp.MustCompile(`(?s)<svg id="` + id + `".*?</svg>`).FindString(page)
		if svg == "" || !strings.Contains(svg, mark) || strings.Contains(svg, `class="empty"`) {
			t.Errorf("%s is not drawn (want %s):\n%s", id, mark, svg)
		}
	}
	for _, want := range []string{"<td>Citi</td><td class=\"n\">2</td><td class=\"n\">0</td><td class=\"n down\">-2</td>",
		"<code>run-1</code>", "<code>stale_tokens_90_days</code>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}

	// Before any snapshot or run: the charts say why they are empty.
	b.Reset()
	if err := lifecycle.RenderWeeklyReport(&b, &lifecycle.WeeklyReport{GeneratedAt: now, Analytics: &lifecycle.Analytics{AsOf: now}}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), `class="empty"`); n != 6 {
		t.Errorf("%d empty charts explained, want 6", n)
	}
}
