package functions

import (
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"slices"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// dashboardInstitutions is how many institutions the weekly run logs one
// line for (the dashboard's institution chart); the rest are summed under
// otherInstitutions.
const (
	dashboardInstitutions = 20
	otherInstitutions     = "(other institutions)"
)

// WeeklyAnalytics handles the analytics topic: the scheduler's weekly
// message and TokenAnalytics' repair requests ({"repair": true}). Both
// recount every token, repair the counters (DESIGN §12: the drift found is
// recorded, it should be none; the first run on existing data backfills
// them), log the counts as fields and store a dated snapshot; the weekly
// one then renders the weekly report into REPORT_BUCKET (DESIGN §9). A
// repair request that a repair since already answered does nothing. A
// redelivered event repairs again (harmless) and writes the report again
// (the same objects) but stores no second snapshot. It returns an error
// only when Pub/Sub's retry could help, including while another repair
// holds the lease.
func (s *Server) WeeklyAnalytics(ctx context.Context, e event.Event) error {
	_, err := s.weeklyAnalytics(ctx, e)
	return err
}

// weeklySummary is what a WeeklyAnalytics delivery did: the answer of a
// local /events/WeeklyAnalytics call.
type weeklySummary struct {
	Function string `json:"function"`
	EventID  string `json:"event_id"`
	Trigger  string `json:"trigger,omitempty"`
	// Outcome: done, skipped (a repair request answered already),
	// redelivery (the snapshot existed), dropped (not a Pub/Sub message).
	Outcome             string               `json:"outcome"`
	CountersInitialized bool                 `json:"counters_initialized"`
	DriftKeys           int                  `json:"drift_keys"`
	UsersDrifted        int                  `json:"users_drifted"`
	Analytics           *lifecycle.Analytics `json:"analytics,omitempty"`
	// Report is where the weekly report went; ReportSkipped says why it
	// did not.
	Report        *weeklyReport `json:"report,omitempty"`
	ReportSkipped string        `json:"report_skipped,omitempty"`
}

func (s *Server) weeklyAnalytics(ctx context.Context, e event.Event) (*weeklySummary, error) {
	log := s.eventLogger(e, "WeeklyAnalytics")
	ctx = lifecycle.WithLogger(ctx, log)
	sum := &weeklySummary{Function: "WeeklyAnalytics", EventID: e.ID()}

	// An event that is not a Pub/Sub message is refused, as a retry would
	// fail the same way.
	body, err := pubSubMessage(e)
	if err != nil {
		log.ErrorContext(ctx, "malformed WeeklyAnalytics event; dropped", slog.String("error", err.Error()))
		sum.Outcome = "dropped"
		return sum, nil
	}
	opts := lifecycle.ExactOptions{Repair: true, Trigger: lifecycle.TriggerSchedule}
	if isRepairRequest(body) {
		opts.Trigger, opts.UnlessRepairedSince = lifecycle.TriggerRepairRequest, e.Time()
	}
	sum.Trigger = opts.Trigger
	fail := func(what string, err error) (*weeklySummary, error) {
		busy := lifecycle.IsCode(err, lifecycle.CodeConflict)
		retry := retryable(err) || busy
		level := slog.LevelError
		if busy {
			level = slog.LevelWarn // expected while a backfill runs; retried
		}
		log.Log(ctx, level, what, slog.String("error", err.Error()), slog.Bool("retry", retry))
		if !retry {
			return sum, nil
		}
		return sum, err
	}

	res, err := s.svc.ExactAnalytics(ctx, opts)
	if err != nil {
		// A conflict: another repair holds the lease; Pub/Sub brings this
		// event back once it is done (a request it answered then skips).
		return fail("weekly analytics failed", err)
	}
	if res.Skipped {
		sum.Outcome = "skipped"
		return sum, nil
	}
	sum.Analytics, sum.CountersInitialized = res.Analytics, res.CountersInitialized
	sum.DriftKeys, sum.UsersDrifted = res.Drift.Keys(), res.UsersDrifted
	saved, err := s.svc.SaveWeeklySnapshot(ctx, e.ID(), res)
	if err != nil {
		return fail("saving the weekly analytics snapshot failed", err)
	}
	sum.Outcome = "done"
	if !saved {
		log.InfoContext(ctx, "event already handled; redelivery acknowledged")
		sum.Outcome = "redelivery"
	} else {
		a := res.Analytics
		attrs := append(a.LogAttrs(), slog.String("trigger", opts.Trigger), slog.Bool("counters_initialized", res.CountersInitialized),
			slog.Int("drift_keys", res.Drift.Keys()), slog.Int("users_drifted", res.UsersDrifted))
		log.LogAttrs(ctx, slog.LevelInfo, "weekly analytics", attrs...)
		logInstitutions(ctx, log.With(slog.String("trigger", opts.Trigger)), a.Institutions)
	}

	// The weekly report, also on a redelivery: the first delivery may have
	// saved the snapshot and failed to write it.
	switch {
	case opts.Trigger != lifecycle.TriggerSchedule:
		sum.ReportSkipped = "a repair request renders no weekly report"
	case s.reports == nil:
		sum.ReportSkipped = "REPORT_BUCKET is not set"
		log.WarnContext(ctx, "weekly report not written: REPORT_BUCKET is not set")
	default:
		at := e.Time()
		if at.IsZero() {
			at = s.svc.Now()
		}
		if sum.Report, err = s.writeWeeklyReport(ctx, at); err != nil {
			return fail("writing the weekly report failed", err)
		}
		log.InfoContext(ctx, "weekly report written", slog.String("bucket", sum.Report.Bucket),
			slog.Any("objects", sum.Report.Objects))
	}
	return sum, nil
}

// isRepairRequest reports whether a message body is {"repair": true}; the
// scheduler's body ({"days_threshold": ...}) and anything else is not.
func isRepairRequest(body []byte) bool {
	var msg repairMessage
	return json.Unmarshal(body, &msg) == nil && msg.Repair
}

// logInstitutions logs the largest institutions' token counts, one line
// each ("analytics institution", fields institution and tokens): the
// dashboard charts the distribution from the weekly run's (trigger
// schedule).
func logInstitutions(ctx context.Context, log *slog.Logger, counts map[string]int) {
	names := slices.SortedFunc(maps.Keys(counts), func(a, b string) int {
		return cmp.Or(cmp.Compare(counts[b], counts[a]), cmp.Compare(a, b))
	})
	other := 0
	for i, name := range names {
		if i >= dashboardInstitutions {
			other += counts[name]
			continue
		}
		log.LogAttrs(ctx, slog.LevelInfo, "analytics institution", slog.String("institution", name), slog.Int("tokens", counts[name]))
	}
	if other > 0 {
		log.LogAttrs(ctx, slog.LevelInfo, "analytics institution", slog.String("institution", otherInstitutions), slog.Int("tokens", other))
	}
}
