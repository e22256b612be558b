package lifecycle

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"
)

// The weekly report (DESIGN §9): what `manage-tokens report` and
// WeeklyAnalytics render into one HTML page (report_html.go). Every figure
// comes from what the service keeps already, read cheaply whatever the
// number of tokens: the analytics counters (a handful of documents), the
// newest run records and the weekly snapshots, whose recount also counted
// the users' activity (user_activity.go).

// Bounds of what the report reads.
const (
	// reportDays is how many days of the created / used / removed trend
	// the report charts.
	reportDays = 28
	// reportRuns is how many of the newest cleanup runs it charts.
	reportRuns = 30
	// reportWeeks is how many weekly snapshots it reads.
	reportWeeks = 12
	// reportInstitutions is how many institutions it charts by name; the
	// others are summed as otherInstitutions.
	reportInstitutions = 8
)

// otherInstitutions is the report's row of the institutions past
// reportInstitutions.
const otherInstitutions = "Other institutions"

// WeeklyReport is the data of the weekly report.
type WeeklyReport struct {
	GeneratedAt time.Time
	// Analytics are the current counts, with reportDays days of trend when
	// the counters are initialized (none when counted from every token).
	Analytics *Analytics
	// Runs are the newest cleanup runs that are not dry runs, oldest first.
	Runs []*RunRecord
	// Weeks are the weekly snapshots, oldest first.
	Weeks []AnalyticsSnapshot
	// Institutions compares the two newest snapshots' institutions.
	Institutions []InstitutionChange
	// Activity is the users' activity of the newest snapshot that has it;
	// nil before the first weekly recount.
	Activity *UserActivity
}

// InstitutionChange is one institution's tokens in the newest weekly
// snapshot and the one before.
type InstitutionChange struct {
	Name     string
	Previous int // 0 when there was no previous snapshot
	Latest   int
}

// Change is Latest minus Previous.
func (c InstitutionChange) Change() int { return c.Latest - c.Previous }

// WeeklyReport gathers the report's data as of now.
func (s *Service) WeeklyReport(ctx context.Context) (*WeeklyReport, error) {
	r := &WeeklyReport{GeneratedAt: s.clock.Now()}
	var err error
	if r.Analytics, err = s.reportAnalytics(ctx); err != nil {
		return nil, err
	}
	runs, err := s.RecentRuns(ctx, reportRuns*2)
	if err != nil {
		return nil, fmt.Errorf("reading the recent runs: %w", err)
	}
	for _, run := range runs {
		// A dry run changes nothing: charting it would count removals
		// that did not happen.
		if run.DryRun || (run.Kind != "" && run.Kind != "cleanup") {
			continue
		}
		r.Runs = append(r.Runs, run)
		if len(r.Runs) == reportRuns {
			break
		}
	}
	slices.Reverse(r.Runs)
	if r.Weeks, err = s.runs.Snapshots(ctx, reportWeeks); err != nil {
		return nil, fmt.Errorf("reading the weekly snapshots: %w", err)
	}
	slices.Reverse(r.Weeks)
	r.Institutions = institutionChanges(r.Weeks)
	for i := len(r.Weeks) - 1; i >= 0 && r.Activity == nil; i-- {
		r.Activity = r.Weeks[i].Activity
	}
	return r, nil
}

// reportAnalytics is the analytics with reportDays days of trend: from the
// counters, or, until they are initialized, as Analytics counts them.
func (s *Service) reportAnalytics(ctx context.Context) (*Analytics, error) {
	if s.stats != nil {
		st, err := s.stats.ReadStats(ctx, StatsRead{})
		if err != nil {
			return nil, fmt.Errorf("reading the analytics counters: %w", err)
		}
		if !st.State.InitializedAt.IsZero() {
			a := analyticsFrom(st.Counters, s.clock.Now(), reportDays)
			a.AsOf, a.Source = st.ReadTime, SourceCounters
			return a, nil
		}
	}
	return s.Analytics(ctx)
}

// institutionChanges compares the newest two of weeks (oldest first): the
// reportInstitutions largest institutions of the newest, then the rest
// summed. With one snapshot Previous is 0; with none, nothing.
func institutionChanges(weeks []AnalyticsSnapshot) []InstitutionChange {
	if len(weeks) == 0 {
		return nil
	}
	latest := weeks[len(weeks)-1].Analytics.Institutions
	var previous map[string]int
	if len(weeks) > 1 {
		previous = weeks[len(weeks)-2].Analytics.Institutions
	}
	names := slices.Collect(maps.Keys(latest))
	for name := range previous {
		if _, ok := latest[name]; !ok {
			names = append(names, name) // gone since: a change too
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(latest[b], latest[a]), cmp.Compare(previous[b], previous[a]), cmp.Compare(a, b))
	})
	var out []InstitutionChange
	other := InstitutionChange{Name: otherInstitutions}
	for i, name := range names {
		if i < reportInstitutions {
			out = append(out, InstitutionChange{Name: name, Previous: previous[name], Latest: latest[name]})
			continue
		}
		other.Previous += previous[name]
		other.Latest += latest[name]
	}
	if len(names) > reportInstitutions {
		out = append(out, other)
	}
	return out
}
