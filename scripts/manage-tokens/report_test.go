package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// reportData gives env what every chart of the weekly report draws: a
// trend of 21 days (token changes counted as TokenStats counts them), two
// cleanup runs (one left work), and two weekly snapshots a week apart with
// different institutions.
func reportData(t *testing.T, env *cliEnv) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	var changes []lifecycle.TokenChange
	for i := range 21 {
		at := now.AddDate(0, 0, -i)
		token := func(n int) *lifecycle.TokenSummary {
			return &lifecycle.TokenSummary{ItemID: fmt.Sprintf("trend-%d-%d", i, n), UserID: "user-trend", Status: lifecycle.StatusActive,
				InstitutionName: "Chase Bank", Environment: "sandbox", CreatedAt: at, LastUsedAt: at.AddDate(0, 0, -1)}
		}
		for n := range i%3 + 1 {
			changes = append(changes, lifecycle.TokenChange{EventID: fmt.Sprintf("c-%d-%d", i, n), At: at, New: token(n)})
		}
		for n := range i%4 + 2 {
			used := *token(n)
			used.LastUsedAt = at
			changes = append(changes, lifecycle.TokenChange{EventID: fmt.Sprintf("u-%d-%d", i, n), At: at, Old: token(n), New: &used})
		}
		if i%5 == 0 {
			changes = append(changes, lifecycle.TokenChange{EventID: fmt.Sprintf("r-%d", i), At: at, Old: token(9)})
		}
	}
	if _, err := env.Service.CountTokenChanges(ctx, changes); err != nil {
		t.Fatal(err)
	}
	week := func(id string, at time.Time) {
		env.Clock.Set(at)
		res, err := env.Service.ExactAnalytics(ctx, lifecycle.ExactOptions{Repair: true, Trigger: lifecycle.TriggerSchedule})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Service.SaveWeeklySnapshot(ctx, id, res); err != nil {
			t.Fatal(err)
		}
	}
	week("week-1", now.AddDate(0, 0, -7))
	failRemovals(env)
	if res := runCLI(t, env.getenv, "cleanup", "--days", "90"); res.code != exitLater {
		t.Fatalf("cleanup with failing removals: exit %d\n%s", res.code, res.stderr)
	}
	env.Plaid.ClearFaults()
	runCLI(t, env.getenv, "cleanup", "--days", "90").mustSucceed(t)
	week("week-2", now)
}

// artifactsDir is where tests keep what a person looks at afterwards:
// $TEST_ARTIFACTS_DIR (scripts/test.sh sets it and prints it), else
// test-artifacts/ at the module root (gitignored).
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TEST_ARTIFACTS_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "test-artifacts")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chromium finds Debian's Chromium: $CHROMIUM, else chromium on PATH. It
// fails the test, loudly, when there is none: the report's test is the
// browser's.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium: the weekly report is tested in a real headless browser. Install Debian's " +
		"(apt-get update && apt-get install -y chromium; scripts/test.sh does) or set CHROMIUM to its path")
	return ""
}

// The weekly report, as an operator gets it (report --out), opened from the
// file in a real headless Chromium: it loads with no network request at
// all, every chart is drawn with marks of a size, and a screenshot is kept.
func TestReportInBrowser(t *testing.T) {
	t.Parallel()
	browser := chromium(t)
	env := newCLIEnv(t, true)
	reportData(t, env)

	out := filepath.Join(artifactsDir(t), "weekly-report.html")
	res := runCLI(t, env.getenv, "report", "--out", out)
	res.mustSucceed(t)
	if res.stdout != "" || !strings.Contains(res.stderr, "open file://"+out) {
		t.Errorf("report --out: stdout %q, stderr %q", res.stdout, res.stderr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	profile, err := os.MkdirTemp("", "report-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// Chromium's children may still write there for a moment after it
		// stops; what is left is in the system's temporary directory.
		for range 20 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(profile), chromedp.WindowSize(1280, 1000))
	defer cancelAlloc()
	tab, cancelTab := chromedp.NewContext(allocCtx)
	defer cancelTab()

	// Every request the page's target sends, the navigation to the file
	// itself included, is recorded from before the navigation.
	page := "file://" + out
	var mu sync.Mutex
	var requests []string
	if err := chromedp.Do(tab); err != nil { // opens the tab
		t.Fatalf("starting Chromium: %v", err)
	}
	if err := chromedp.Listen(tab, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			requests = append(requests, e.Request.URL)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(tab, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(tab, chromedp.Navigate(page), chromedp.WaitReady(chromedp.CSS("#analytics-table"))); err != nil {
		t.Fatalf("loading %s in Chromium: %v", page, err)
	}
	type svgChart struct {
		ID     string  `json:"id"`
		Marks  int     `json:"marks"`
		Drawn  int     `json:"drawn"` // marks with a size on the screen
		Width  float64 `json:"width"`
		Empty  bool    `json:"empty"`
		Labels int     `json:"labels"`
	}
	charts, err := chromedp.Run(tab, chromedp.Evaluate[[]svgChart](`Array.from(document.querySelectorAll('svg')).map(s => {
		const marks = Array.from(s.querySelectorAll('rect.bar, polyline.series'));
		return {id: s.id, marks: marks.length, width: s.getBoundingClientRect().width,
			drawn: marks.filter(m => { const b = m.getBBox(); return b.width > 0 && (b.height > 0 || m.tagName == 'polyline'); }).length,
			empty: s.querySelector('text.empty') !== null, labels: s.querySelectorAll('text').length};
	})`))
	if err != nil {
		t.Fatalf("reading the charts: %v", err)
	}
	shot, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shotPath := filepath.Join(artifactsDir(t), "weekly-report.png")
	if err := os.WriteFile(shotPath, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("weekly report: %s, screenshot: %s", out, shotPath)

	mu.Lock()
	defer mu.Unlock()
	// The listener saw the navigation itself: it was listening.
	if !slices.Contains(requests, page) {
		t.Errorf("no request recorded for the page itself (%v): the listener saw nothing", requests)
	}
	for _, u := range requests {
		if u != page {
			t.Errorf("the page made a request: %s", u)
		}
	}
	want := []string{"chart-trend", "chart-runs", "chart-institutions", "chart-active-users", "chart-latest-use", "chart-items-per-user"}
	if len(charts) != len(want) {
		t.Fatalf("%d charts, want %d: %+v", len(charts), len(want), charts)
	}
	for i, c := range charts {
		if c.ID != want[i] || c.Empty || c.Marks == 0 || c.Drawn != c.Marks || c.Width < 300 || c.Labels < 5 {
			t.Errorf("chart %d = %+v; want %s drawn: marks of a size, axis labels, not empty", i, c, want[i])
		}
	}
	if len(shot) < 20000 {
		t.Errorf("screenshot of %d bytes: nothing drawn?", len(shot))
	}
}
