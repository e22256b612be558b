package lifecycle

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The weekly report's page: one self-contained HTML document, opened
// offline. Its style is inline and its charts are inline SVG drawn here
// (no script, style sheet, font or image from anywhere), and its
// Content-Security-Policy forbids loading anything, so a browser makes no
// request for it.

//go:embed report.html.tmpl
var reportTemplateText string

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"num":  func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
	"signed": func(n int) string {
		if n > 0 {
			return "+" + strconv.Itoa(n)
		}
		return strconv.Itoa(n)
	},
}).Parse(reportTemplateText))

// RenderWeeklyReport writes r as the report's HTML page.
func RenderWeeklyReport(w io.Writer, r *WeeklyReport) error {
	if err := reportTemplate.Execute(w, newReportPage(r)); err != nil {
		return fmt.Errorf("rendering the weekly report: %w", err)
	}
	return nil
}

// reportPage is what the template renders: the report and its charts.
type reportPage struct {
	*WeeklyReport
	Counts []countRow
	Charts []*chart
}

type countRow struct {
	Key   string
	Value int
	Note  string
}

func newReportPage(r *WeeklyReport) reportPage {
	a := r.Analytics
	p := reportPage{WeeklyReport: r, Counts: []countRow{
		{"total_tokens", a.TotalTokens, "every token document"},
		{"active_tokens", a.ActiveTokens, ""},
		{"expired_tokens", a.ExpiredTokens, "removed at Plaid and deleted by the next cleanup"},
		{"revoked_tokens", a.RevokedTokens, "removed at Plaid and deleted by the next cleanup"},
		{"error_tokens", a.ErrorTokens, "active, waiting for their user (update mode)"},
		{"unique_users", a.UniqueUsers, "users with at least one token"},
		{"stale_tokens_30_days", a.StaleTokens30Days, "active, unused for more than 30 days"},
		{"stale_tokens_90_days", a.StaleTokens90Days, "active, unused for more than 90 days"},
	}}
	p.Charts = []*chart{trendChart(a), runsChart(r.Runs), institutionsChart(r.Institutions),
		weeklyActiveChart(r.Weeks), latestUseChart(r.Activity), itemsPerUserChart(r.Activity)}
	return p
}

// Chart geometry, in SVG user units.
const (
	chartW, chartH         = 720.0, 260.0
	chartLeft, chartRight  = 52.0, 12.0
	chartTop, chartBottom  = 14.0, 44.0
	chartPlotW, chartPlotH = chartW - chartLeft - chartRight, chartH - chartTop - chartBottom
)

// chart is one inline SVG chart.
type chart struct {
	ID, Title, Note string
	// Empty, when set, says why there is nothing to draw.
	Empty  string
	W, H   float64
	Grid   []gridLine
	Bars   []bar
	Lines  []line
	Labels []label
	Legend []legendItem
}

type gridLine struct {
	Y     float64
	Value string
}

type bar struct {
	X, Y, W, H float64
	Class      string
	Title      string // the tooltip: what and how many
}

type line struct {
	Points string
	Class  string
	Title  string
}

type label struct {
	X, Y float64
	Text string
}

type legendItem struct {
	Class, Name string
}

// series is one named row of values, one per category.
type series struct {
	Name, Class string
	Values      []float64
}

// gridSteps is how many steps the value axis has.
const gridSteps = 4

// axisStep is the value axis' step for values up to m: a whole 1, 2 or 5
// times a power of ten (the values are counts), so that gridSteps steps
// reach m.
func axisStep(m float64) float64 {
	step := m / gridSteps
	if step <= 1 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(step)))
	for _, f := range []float64{1, 2, 5, 10} {
		if step <= f*p {
			return f * p
		}
	}
	return 10 * p
}

// newChart returns a chart scaled to max with its grid, and the y of a
// value.
func newChart(id, title, note string, max float64) (*chart, func(float64) float64) {
	c := &chart{ID: id, Title: title, Note: note, W: chartW, H: chartH}
	step := axisStep(max)
	top := step * gridSteps
	y := func(v float64) float64 { return chartTop + chartPlotH*(1-v/top) }
	for i := range gridSteps + 1 {
		v := step * float64(i)
		c.Grid = append(c.Grid, gridLine{Y: y(v), Value: strconv.FormatFloat(v, 'f', -1, 64)})
	}
	return c, y
}

// xLabels puts a label under every step-th of n categories of width slot.
func (c *chart) xLabels(labels []string, slot float64) {
	step := max(1, int(math.Ceil(float64(len(labels))/12)))
	for i, l := range labels {
		if i%step == 0 || i == len(labels)-1 && len(labels) <= 12 {
			c.Labels = append(c.Labels, label{X: chartLeft + slot*(float64(i)+0.5), Y: chartH - chartBottom + 16, Text: l})
		}
	}
}

// barChart draws series as bars per category, stacked or side by side.
func barChart(id, title, note, empty string, labels []string, ss []series, stacked bool) *chart {
	var top float64
	for i := range labels {
		var sum float64
		for _, s := range ss {
			if stacked {
				sum += s.Values[i]
			} else {
				sum = max(sum, s.Values[i])
			}
		}
		top = max(top, sum)
	}
	c, y := newChart(id, title, note, top)
	for _, s := range ss {
		c.Legend = append(c.Legend, legendItem{Class: s.Class, Name: s.Name})
	}
	if len(labels) == 0 || top == 0 {
		c.Empty = empty
		return c
	}
	slot := chartPlotW / float64(len(labels))
	width := slot * 0.7
	if !stacked {
		width /= float64(len(ss))
	}
	for i, l := range labels {
		x0 := chartLeft + slot*float64(i) + slot*0.15
		base := 0.0
		for j, s := range ss {
			v := s.Values[i]
			if v == 0 {
				continue
			}
			b := bar{Class: s.Class, Title: fmt.Sprintf("%s: %s %s", l, strconv.FormatFloat(v, 'f', -1, 64), s.Name)}
			if stacked {
				b.X, b.W, b.Y, b.H = x0, width, y(base+v), y(base)-y(base+v)
				base += v
			} else {
				b.X, b.W, b.Y, b.H = x0+width*float64(j), width, y(v), y(0)-y(v)
			}
			c.Bars = append(c.Bars, b)
		}
	}
	c.xLabels(labels, slot)
	return c
}

// lineChart draws series as lines over the categories.
func lineChart(id, title, note, empty string, labels []string, ss []series) *chart {
	var top float64
	for _, s := range ss {
		for _, v := range s.Values {
			top = max(top, v)
		}
	}
	c, y := newChart(id, title, note, top)
	for _, s := range ss {
		c.Legend = append(c.Legend, legendItem{Class: s.Class, Name: s.Name})
	}
	if len(labels) == 0 || top == 0 {
		c.Empty = empty
		return c
	}
	slot := chartPlotW / float64(len(labels))
	for _, s := range ss {
		var pts []string
		var total float64
		for i, v := range s.Values {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", chartLeft+slot*(float64(i)+0.5), y(v)))
			total += v
		}
		c.Lines = append(c.Lines, line{Points: strings.Join(pts, " "), Class: s.Class,
			Title: fmt.Sprintf("%s: %s over %d days", s.Name, strconv.FormatFloat(total, 'f', -1, 64), len(labels))})
	}
	c.xLabels(labels, slot)
	return c
}

func trendChart(a *Analytics) *chart {
	var labels []string
	created, used, removed := series{Name: "created", Class: "s-created"}, series{Name: "used", Class: "s-used"},
		series{Name: "removed", Class: "s-removed"}
	for _, d := range a.Trend {
		labels = append(labels, shortDay(d.Date))
		created.Values = append(created.Values, float64(d.Created))
		used.Values = append(used.Values, float64(d.Used))
		removed.Values = append(removed.Values, float64(d.Removed))
	}
	return lineChart("chart-trend", "Tokens created, used and removed per day",
		"Per UTC day, from TokenStats' counters: tokens created, tokens first used that day, tokens removed.",
		"No trend yet: the counters are not initialized (manage-tokens analytics --exact backfills them) or nothing happened.",
		labels, []series{created, used, removed})
}

func runsChart(runs []*RunRecord) *chart {
	var labels []string
	cleaned, marked, errs := series{Name: "removed", Class: "s-cleaned"}, series{Name: "marked invalid", Class: "s-marked"},
		series{Name: "not finished (kept for the next run)", Class: "s-errors"}
	for _, run := range runs {
		l := run.StartedAt.UTC().Format("01-02 15:04")
		if run.Status == RunFailed || run.Status == RunAbandoned {
			l += " (" + string(run.Status) + ")"
		}
		labels = append(labels, l)
		cleaned.Values = append(cleaned.Values, float64(run.Statistics.TotalCleaned))
		marked.Values = append(marked.Values, float64(run.Statistics.InvalidMarked))
		errs.Values = append(errs.Values, float64(run.Statistics.Errors))
	}
	return barChart("chart-runs", "Cleanup runs: done and not finished",
		fmt.Sprintf("The newest %d cleanup runs (dry runs left out), oldest first. Red: tokens a run could not finish (a Plaid or Firestore fault), retried by the next run.", reportRuns),
		"No cleanup run yet, or none removed, marked or failed anything.",
		labels, []series{cleaned, marked, errs}, true)
}

func institutionsChart(changes []InstitutionChange) *chart {
	var labels []string
	prev, latest := series{Name: "week before", Class: "s-prev"}, series{Name: "latest week", Class: "s-latest"}
	for _, c := range changes {
		labels = append(labels, c.Name)
		prev.Values = append(prev.Values, float64(c.Previous))
		latest.Values = append(latest.Values, float64(c.Latest))
	}
	return barChart("chart-institutions", "Tokens per institution, week over week",
		"From the two newest weekly snapshots (WeeklyAnalytics' recount); the table below gives the change.",
		"No weekly snapshot yet: WeeklyAnalytics takes one every week.",
		labels, []series{prev, latest}, false)
}

func weeklyActiveChart(weeks []AnalyticsSnapshot) *chart {
	var labels []string
	week, day := series{Name: "active in the 7 days before", Class: "s-latest"}, series{Name: "active in the day before", Class: "s-used"}
	for _, w := range weeks {
		if w.Activity == nil {
			continue
		}
		labels = append(labels, w.TakenAt.UTC().Format(time.DateOnly))
		week.Values = append(week.Values, float64(w.Activity.ActiveWeek))
		day.Values = append(day.Values, float64(w.Activity.ActiveDay))
	}
	return barChart("chart-active-users", "Active users per week and per day",
		"At each weekly recount: users who used any of their tokens (last_used_at) in the 7 days, and in the day, before it. Exact as of the recount.",
		"No weekly recount with user activity yet: WeeklyAnalytics counts it every week.",
		labels, []series{week, day}, false)
}

func latestUseChart(a *UserActivity) *chart {
	var labels []string
	users := series{Name: "users whose latest use was that day", Class: "s-used"}
	if a != nil {
		end := a.AsOf.UTC().Truncate(24 * time.Hour)
		for i := activityDays - 1; i >= 0; i-- {
			day := dayKey(end.AddDate(0, 0, -i))
			labels = append(labels, shortDay(day))
			users.Values = append(users.Values, float64(a.LatestUseByDay[day]))
		}
	}
	return barChart("chart-latest-use", "Users by the day of their latest use",
		"Each user counts once, on the UTC day of their most recent token use, as of the latest weekly recount: not the users active on every day (a user active on Monday and Friday counts on Friday).",
		"No weekly recount with user activity yet.",
		labels, []series{users}, false)
}

func itemsPerUserChart(a *UserActivity) *chart {
	var labels []string
	users := series{Name: "users", Class: "s-latest"}
	if a != nil {
		keys := slices.Collect(maps.Keys(a.ItemsPerUser))
		slices.SortFunc(keys, func(x, y string) int { return itemsKeyOrder(x) - itemsKeyOrder(y) })
		for _, k := range keys {
			labels = append(labels, k)
			users.Values = append(users.Values, float64(a.ItemsPerUser[k]))
		}
	}
	return barChart("chart-items-per-user", "Items per user",
		"Users by their number of active tokens (linked banks), as of the latest weekly recount.",
		"No weekly recount with user activity yet.",
		labels, []series{users}, false)
}

// itemsKeyOrder sorts ItemsPerUser keys by their number.
func itemsKeyOrder(k string) int {
	if k == itemsPerUserMax {
		return 10
	}
	n, _ := strconv.Atoi(k)
	return n
}

// shortDay is YYYY-MM-DD as MM-DD.
func shortDay(day string) string {
	if len(day) == len(time.DateOnly) {
		return day[5:]
	}
	return day
}
