package functions

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/internal/wait"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

var sampleStatistics = testenv.SampleStatistics

// newTestServer is the functions' server over env's service, handing
// checkpointed runs to continuer when it is not nil.
func newTestServer(t *testing.T, env *testenv.Env, continuer lifecycle.Continuer) *Server {
	t.Helper()
	if continuer != nil {
		env.Rebuild(t, func(d *lifecycle.Deps, _ *lifecycle.Config) { d.Continuer = continuer })
	}
	s, err := New(context.Background(), env.Config, Deps{Service: env.Service,
		Logger: lifecycle.NewJSONLogger(io.Discard, slog.LevelInfo)})
	if err != nil {
		t.Fatalf("functions.New: %v", err)
	}
	return s
}

type httpResult struct {
	status int
	header http.Header
	body   map[string]any
}

func do(t *testing.T, h http.Handler, method, target, authorization string) httpResult {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("%s %s: body is not JSON (%v): %q", method, target, err, rec.Body.String())
	}
	return httpResult{status: rec.Code, header: rec.Header(), body: body}
}

func statisticsOf(t *testing.T, body map[string]any) lifecycle.Statistics {
	t.Helper()
	raw, err := json.Marshal(body["statistics"])
	if err != nil {
		t.Fatal(err)
	}
	var st lifecycle.Statistics
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestTokenCleanupSampleDataset(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	s := newTestServer(t, env, nil)

	for _, h := range map[string]http.Handler{"routes": s.Routes()} {
		res := do(t, h, http.MethodDelete, PathCleanup+"?days_threshold=90&dry_run=false", env.Bearer(t, sample.AdminUser))
		if res.status != http.StatusOK {
			t.Fatalf("status %d, body %v", res.status, res.body)
		}
		if res.body["message"] != "Token cleanup completed" || res.body["dry_run"] != false {
			t.Errorf("body = %v", res.body)
		}
		if diff := cmp.Diff(sampleStatistics, statisticsOf(t, res.body)); diff != "" {
			t.Errorf("statistics (-want +got):\n%s", diff)
		}
		// The §4 keys are all there, by name.
		stats := res.body["statistics"].(map[string]any)
		for _, k := range []string{"total_checked", "expired_removed", "stale_removed", "invalid_marked", "revoked_removed", "total_cleaned"} {
			if _, ok := stats[k]; !ok {
				t.Errorf("statistics lacks %q", k)
			}
		}
	}
	if env.Doc(t, "item-carol-boa") != nil || env.Plaid.CallCount("/item/remove") != 5 {
		t.Errorf("stale token not removed, or /item/remove calls = %d, want 5", env.Plaid.CallCount("/item/remove"))
	}
}

func TestTokenCleanupDeployedHandlerAcceptsRootAndFullPath(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	h := newTestServer(t, env, nil).TokenCleanupHandler()
	admin := env.Bearer(t, sample.AdminUser)
	for _, target := range []string{"/?dry_run=true", PathCleanup + "?dry_run=true"} {
		res := do(t, h, http.MethodDelete, target, admin)
		if res.status != http.StatusOK || res.body["dry_run"] != true {
			t.Errorf("%s: status %d body %v", target, res.status, res.body)
		}
		if diff := cmp.Diff(sampleStatistics, statisticsOf(t, res.body)); diff != "" {
			t.Errorf("%s: dry-run statistics (-want +got):\n%s", target, diff)
		}
	}
	if res := do(t, h, http.MethodDelete, "/elsewhere", admin); res.status != http.StatusNotFound {
		t.Errorf("/elsewhere: status %d", res.status)
	}
	if n := env.Plaid.CallCount("/item/remove"); n != 0 {
		t.Errorf("dry runs made %d /item/remove calls", n)
	}
}

func TestTokenCleanupRefusals(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	h := newTestServer(t, env, nil).Routes()
	admin, user := env.Bearer(t, sample.AdminUser), env.Bearer(t, sample.Alice)
	cases := []struct {
		name, method, target, auth string
		status                     int
		code                       string
	}{
		{"no token", http.MethodDelete, PathCleanup, "", 401, "unauthenticated"},
		{"garbage token", http.MethodDelete, PathCleanup, "Bearer not.a.jwt", 401, "unauthenticated"},
		{"not admin", http.MethodDelete, PathCleanup, user, 403, "forbidden"},
		{"wrong method", http.MethodGet, PathCleanup, admin, 405, "method_not_allowed"},
		{"days zero", http.MethodDelete, PathCleanup + "?days_threshold=0", admin, 400, "invalid_argument"},
		{"days too large", http.MethodDelete, PathCleanup + "?days_threshold=3651", admin, 400, "invalid_argument"},
		{"days not a number", http.MethodDelete, PathCleanup + "?days_threshold=ninety", admin, 400, "invalid_argument"},
		{"days fractional", http.MethodDelete, PathCleanup + "?days_threshold=1.5", admin, 400, "invalid_argument"},
		{"dry_run not a bool", http.MethodDelete, PathCleanup + "?dry_run=maybe", admin, 400, "invalid_argument"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := do(t, h, tc.method, tc.target, tc.auth)
			if res.status != tc.status || res.body["code"] != tc.code || res.body["detail"] == "" {
				t.Errorf("status %d body %v, want %d code %s with a detail", res.status, res.body, tc.status, tc.code)
			}
			if tc.status == 401 && !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without WWW-Authenticate: Bearer (%q)", res.header.Get("WWW-Authenticate"))
			}
			if tc.status == 405 && res.header.Get("Allow") != http.MethodDelete {
				t.Errorf("405 Allow = %q", res.header.Get("Allow"))
			}
		})
	}
	// None of the refused requests changed anything.
	if n := len(env.Plaid.Calls()); n != 0 {
		t.Errorf("refused requests made %d Plaid calls", n)
	}
}

func TestTokenCleanupConflictWhileRunning(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	h := newTestServer(t, env, nil).Routes()
	admin := env.Bearer(t, sample.AdminUser)
	// While a first cleanup is in flight (inside its first Plaid call), a
	// second request arrives.
	var once sync.Once
	var got httpResult
	env.Plaid.OnCall(func(string, string) {
		once.Do(func() { got = do(t, h, http.MethodDelete, PathCleanup, admin) })
	})
	first := do(t, h, http.MethodDelete, PathCleanup, admin)
	if first.status != http.StatusOK {
		t.Errorf("first run: status %d body %v", first.status, first.body)
	}
	if got.status != http.StatusConflict || got.body["code"] != "conflict" {
		t.Errorf("overlapping run: status %d body %v, want 409 conflict", got.status, got.body)
	}
}

func TestDailyCleanupEvent(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	s := newTestServer(t, env, nil)
	ctx := context.Background()

	e := testenv.PubSubEvent(t, "msg-1", lifecycle.DefaultCleanupTopic, []byte(`{"days_threshold": 90, "dry_run": false}`))
	if err := s.DailyCleanup(ctx, e); err != nil {
		t.Fatalf("DailyCleanup: %v", err)
	}
	runs := env.CleanupRuns(t)
	if len(runs) != 1 {
		t.Fatalf("%d runs recorded, want 1", len(runs))
	}
	if diff := cmp.Diff(sampleStatistics, runs[0].Statistics); diff != "" {
		t.Errorf("run statistics (-want +got):\n%s", diff)
	}
	if runs[0].Trigger != lifecycle.TriggerSchedule || runs[0].Status != lifecycle.RunSucceeded {
		t.Errorf("run record = %+v", runs[0])
	}

	// Pub/Sub redelivers the same event: acknowledged, not run again.
	removes := env.Plaid.CallCount("/item/remove")
	if err := s.DailyCleanup(ctx, e); err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	if n := len(env.CleanupRuns(t)); n != 1 {
		t.Errorf("redelivery ran again: %d runs", n)
	}
	if n := env.Plaid.CallCount("/item/remove"); n != removes {
		t.Errorf("redelivery made %d more /item/remove calls", n-removes)
	}

	// A malformed message is dropped without a retry (nil error) and no run.
	if err := s.DailyCleanup(ctx, testenv.PubSubEvent(t, "msg-2", lifecycle.DefaultCleanupTopic, []byte(`{"days_threshold": "x"`))); err != nil {
		t.Errorf("malformed message: err = %v, want nil (no retry)", err)
	}
	if err := s.DailyCleanup(ctx, testenv.PubSubEvent(t, "msg-3", lifecycle.DefaultCleanupTopic, []byte(`{"days_threshold": 0}`))); err != nil {
		t.Errorf("bad threshold: err = %v, want nil (no retry)", err)
	}
	if n := len(env.CleanupRuns(t)); n != 1 {
		t.Errorf("malformed messages started runs: %d runs", n)
	}
}

// Both CloudEvent modes Eventarc uses reach the handler through Routes.
func TestDailyCleanupOverHTTPStructuredAndBinary(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	srv := httptest.NewServer(newTestServer(t, env, nil).Routes())
	t.Cleanup(srv.Close)

	// Binary mode: ce-* headers, Pub/Sub envelope as the body. A dry run
	// first, so the sample set is intact for the structured one.
	req, err := NewPubSubEventRequest(context.Background(), srv.URL+"/events/DailyCleanup", "bin-1", []byte(`{"dry_run": true}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("binary event: HTTP %d", resp.StatusCode)
	}

	// Structured mode: the whole event as application/cloudevents+json.
	e := testenv.PubSubEvent(t, "struct-1", lifecycle.DefaultCleanupTopic, []byte(`{"days_threshold": 90}`))
	body, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.Post(srv.URL+"/events/DailyCleanup", "application/cloudevents+json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("structured event: HTTP %d", resp.StatusCode)
	}

	runs := env.CleanupRuns(t)
	if len(runs) != 2 {
		t.Fatalf("%d runs, want 2", len(runs))
	}
	for _, run := range runs {
		if diff := cmp.Diff(sampleStatistics, run.Statistics); diff != "" {
			t.Errorf("run (dry_run=%v) statistics (-want +got):\n%s", run.DryRun, diff)
		}
	}
}

// A scheduled run over its time budget checkpoints and continues through
// its own endpoint until done; the totals are those of the whole run.
func TestDailyCleanupContinuesOverHTTP(t *testing.T) {
	t.Parallel()
	const n = 1000
	env := testenv.New(t)
	var tokens []sample.Token
	for i := range n {
		tok := testenv.ActiveToken(fmt.Sprintf("item-%04d", i), "u", 3)
		if i%4 == 0 {
			tok = testenv.ActiveToken(tok.ItemID, "u", 200) // stale
		}
		tokens = append(tokens, tok)
	}
	env.Seed(t, tokens...)
	env.Rebuild(t, func(_ *lifecycle.Deps, c *lifecycle.Config) {
		c.CleanupPageSize = 300           // several pages
		c.RunTimeBudget = time.Nanosecond // checkpoint after every page
	})

	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s := newTestServer(t, env, &HTTPContinuer{URL: srv.URL + "/events/DailyCleanup"})
	mux.Handle("/", s.Routes())

	req, err := NewPubSubEventRequest(context.Background(), srv.URL+"/events/DailyCleanup", "first", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	// Continuations arrive asynchronously; wait for the run to finish.
	var run *lifecycle.RunRecord
	wait.Until(t, "the continued run to finish", 60*time.Second, func() bool {
		runs := env.CleanupRuns(t)
		if len(runs) == 1 && runs[0].Status.Finished() {
			run = runs[0]
			return true
		}
		return false
	})
	want := lifecycle.Statistics{TotalChecked: n, StaleRemoved: n / 4, TotalCleaned: n / 4, Validated: n - n/4}
	if diff := cmp.Diff(want, run.Statistics); diff != "" {
		t.Errorf("continued run totals (-want +got):\n%s", diff)
	}
	if run.Status != lifecycle.RunSucceeded || run.Invocations < 3 || len(run.EventIDs) != run.Invocations {
		t.Errorf("run: status %s, %d invocations, %d event ids", run.Status, run.Invocations, len(run.EventIDs))
	}
}
