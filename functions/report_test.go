package functions

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/option"

	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

const reportBucket = "plaid-token-reports-test"

// newStorageEmulator starts an in-process Cloud Storage emulator that
// speaks the JSON API on a loopback port, with the report bucket, and a
// client that reaches it the way STORAGE_EMULATOR_HOST makes the library
// do: the emulator's endpoint, no credentials.
func newStorageEmulator(t *testing.T) (*fakestorage.Server, *storage.Client) {
	t.Helper()
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", Port: 0})
	if err != nil {
		t.Fatalf("starting the storage emulator: %v", err)
	}
	t.Cleanup(fake.Stop)
	fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: reportBucket})
	client, err := storage.NewClient(t.Context(), option.WithEndpoint(fake.URL()+"/storage/v1/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return fake, client
}

// postLocalEvent posts a Pub/Sub CloudEvent (binary mode, as Eventarc and
// dev.sh's curl lines send it) to the local route and decodes the summary.
func postLocalEvent(t *testing.T, routes http.Handler, path, id string, data []byte) (int, map[string]any) {
	t.Helper()
	r, err := NewPubSubEventRequest(t.Context(), "http://127.0.0.1"+path, id, data)
	if err != nil {
		t.Fatal(err)
	}
	r.RemoteAddr = "127.0.0.1:50000"
	w := httptest.NewRecorder()
	routes.ServeHTTP(w, r)
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("POST %s: %d, not JSON: %v\n%s", path, w.Code, err, w.Body.String())
	}
	return w.Code, body
}

// The weekly run renders the weekly report into the report bucket: the
// day's page and latest.html, HTML with every chart, read back through
// the emulator's JSON API at the address the summary gives. A redelivery
// writes the same objects again.
func TestWeeklyAnalyticsWritesReport(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	fake, client := newStorageEmulator(t)
	cfg := env.Config
	cfg.ReportBucket = reportBucket
	logs := &testenv.LogBuffer{}
	s, err := New(t.Context(), cfg, Deps{Service: env.Service, Logger: lifecycle.NewJSONLogger(logs, slog.LevelInfo),
		Reports: NewStorageReports(client, reportBucket, strings.TrimPrefix(fake.URL(), "http://"))})
	if err != nil {
		t.Fatal(err)
	}
	routes := s.Routes()

	for _, id := range []string{"w1", "w1"} { // a redelivery
		code, body := postLocalEvent(t, routes, "/events/WeeklyAnalytics", id, nil)
		if code != http.StatusOK {
			t.Fatalf("POST /events/WeeklyAnalytics: %d %v", code, body)
		}
		report, _ := body["report"].(map[string]any)
		day := "reports/weekly/" + testenv.Now.UTC().Format("2006-01-02") + ".html"
		wantObjects := []any{day, "reports/weekly/latest.html"}
		if report == nil || !cmp.Equal(wantObjects, report["objects"]) || report["bucket"] != reportBucket {
			t.Fatalf("summary report = %v, want objects %v", body["report"], wantObjects)
		}
		if body["trigger"] != "schedule" || body["analytics"].(map[string]any)["total_tokens"] != 15.0 {
			t.Errorf("summary = %v", body)
		}
		// The address the summary gives opens the page.
		resp, err := http.Get(report["open"].(string))
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("GET %s: %d %s", report["open"], resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		for _, chart := range []string{"chart-trend", "chart-runs", "chart-institutions", "chart-active-users", "chart-latest-use", "chart-items-per-user"} {
			if !bytes.Contains(page, []byte(`<svg id="`+chart+`"`)) {
				t.Errorf("the report has no %s", chart)
			}
		}
		for _, name := range []string{day, "reports/weekly/latest.html"} {
			obj, err := fake.GetObject(reportBucket, name)
			if err != nil || obj.ContentType != "text/html; charset=utf-8" || !bytes.Equal(obj.Content, page) {
				t.Errorf("%s: %v, content type %q, same page %v", name, err, obj.ContentType, bytes.Equal(obj.Content, page))
			}
		}
	}
	if got := len(logs.Entries(t, "event already handled; redelivery acknowledged")); got != 1 {
		t.Errorf("redelivery acknowledged %d times, want 1", got)
	}
	if n := len(logs.Entries(t, "weekly report written")); n != 2 {
		t.Errorf("%d \"weekly report written\" lines, want 2 (the redelivery writes again)", n)
	}

	// A repair request renders no report.
	code, sum := postLocalEvent(t, routes, "/events/WeeklyAnalytics", "r1", []byte(`{"repair":true}`))
	if code != http.StatusOK || sum["report"] != nil || sum["report_skipped"] != "a repair request renders no weekly report" {
		t.Errorf("repair request: %d %v", code, sum)
	}
}

// Without REPORT_BUCKET the weekly run still recounts and snapshots, and
// its summary says the report was not written.
func TestWeeklyAnalyticsWithoutReportBucket(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	f.env.SeedSample(t)
	code, sum := postLocalEvent(t, f.routes, "/events/WeeklyAnalytics", "w1", nil)
	if code != http.StatusOK || sum["outcome"] != "done" || sum["report_skipped"] != "REPORT_BUCKET is not set" {
		t.Errorf("POST /events/WeeklyAnalytics: %d %v", code, sum)
	}
	if n := len(f.logs.Entries(t, "weekly report not written: REPORT_BUCKET is not set")); n != 1 {
		t.Errorf("%d warnings about REPORT_BUCKET, want 1", n)
	}
}

// The local /events/DailyCleanup answers what the run did, not an empty
// 200: a person reading curl's output sees the statistics.
func TestDailyCleanupAnswersSummary(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	f.env.SeedSample(t)
	code, sum := postLocalEvent(t, f.routes, "/events/DailyCleanup", "d1", []byte(`{"days_threshold":90,"dry_run":true}`))
	if code != http.StatusOK {
		t.Fatalf("POST /events/DailyCleanup: %d %v", code, sum)
	}
	runID, _ := sum["run_id"].(string)
	stats, _ := json.Marshal(sum["statistics"])
	var st lifecycle.Statistics
	if err := json.Unmarshal(stats, &st); err != nil {
		t.Fatal(err)
	}
	if sum["action"] != "started" || runID == "" || sum["status_url"] != PathCleanupRuns+runID ||
		sum["dry_run"] != true || sum["done"] != true || st != testenv.SampleStatistics {
		t.Errorf("summary = %v", sum)
	}
	// The same event again runs nothing, and says so.
	_, again := postLocalEvent(t, f.routes, "/events/DailyCleanup", "d1", []byte(`{"days_threshold":90,"dry_run":true}`))
	if again["action"] == "started" || again["statistics"] != nil {
		t.Errorf("redelivery summary = %v, want nothing run", again)
	}
	if n := len(f.env.CleanupRuns(t)); n != 1 {
		t.Errorf("%d runs after a redelivery, want 1", n)
	}
	// Not a CloudEvent: 400 with the error body.
	r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/events/DailyCleanup", strings.NewReader("{}"))
	r.RemoteAddr = "127.0.0.1:50000"
	w := httptest.NewRecorder()
	f.routes.ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "not a CloudEvent") {
		t.Errorf("a request that is no CloudEvent: %d %s", w.Code, w.Body.String())
	}
}
