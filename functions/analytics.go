package functions

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// analyticsResponse is TokenAnalytics' success body (DESIGN §4). History is
// there only when ?history=N asked for it (then [] when there is none),
// Exact only with ?exact=true. RepairRequested says a repair was asked of
// WeeklyAnalytics (the counters drifted, or were never initialized: then
// by this call or by another of this instance within backfillRequestEvery).
type analyticsResponse struct {
	Analytics       *lifecycle.Analytics          `json:"analytics"`
	History         []lifecycle.AnalyticsSnapshot `json:"history,omitzero"`
	Exact           *exactReport                  `json:"exact,omitempty"`
	RepairRequested bool                          `json:"repair_requested,omitempty"`
}

// exactReport is what ?exact=true adds: the counters compared with the
// recount as of its read time (analytics.as_of).
type exactReport struct {
	Drift               lifecycle.Counters `json:"drift"`
	UsersDrifted        int                `json:"users_drifted"`
	CountersInitialized bool               `json:"counters_initialized"`
}

// handleAnalytics reports token health: GET /api/v1/plaid/tokens/analytics
// (admin), from the counters; ?exact=true recounts every token and compares
// (reading only); ?history=N (1..52) adds the newest N weekly snapshots.
func (s *Server) handleAnalytics() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		history, err := parseHistory(r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		exact, err := boolParam(r.URL.Query(), "exact")
		if err != nil {
			writeError(w, r, err)
			return
		}
		ctx := r.Context()
		var resp analyticsResponse
		var needsRepair bool
		if exact {
			res, err := s.svc.ExactAnalytics(ctx, lifecycle.ExactOptions{Trigger: lifecycle.TriggerHTTP})
			if err != nil {
				writeError(w, r, err)
				return
			}
			resp.Analytics = res.Analytics
			resp.Exact = &exactReport{Drift: res.Drift, UsersDrifted: res.UsersDrifted, CountersInitialized: res.CountersInitialized}
			needsRepair = !res.Exact()
		} else {
			if resp.Analytics, err = s.svc.Analytics(ctx); err != nil {
				writeError(w, r, err)
				return
			}
			needsRepair = resp.Analytics.Source == lifecycle.SourceRecount
		}
		switch {
		case needsRepair && !exact && s.backfillRequestedRecently():
			// Until the backfill has run every call recounts; one request
			// a minute is enough to get it going.
			resp.RepairRequested = true
		case needsRepair:
			if resp.RepairRequested = s.requestRepair(ctx); resp.RepairRequested && !exact {
				s.lastBackfillRequest.Store(time.Now().UnixNano())
			}
		}
		if history > 0 {
			if resp.History, err = s.svc.AnalyticsHistory(ctx, history); err != nil {
				writeError(w, r, err)
				return
			}
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

const (
	// repairRequestTimeout bounds the publishing of a repair request: the
	// caller's answer does not wait on Pub/Sub longer than this.
	repairRequestTimeout = 10 * time.Second
	// backfillRequestEvery spaces an instance's requests for the backfill
	// (counters never initialized): every analytics call before it would
	// ask otherwise.
	backfillRequestEvery = time.Minute
)

// backfillRequestedRecently reports whether this instance asked for the
// backfill within backfillRequestEvery.
func (s *Server) backfillRequestedRecently() bool {
	last := s.lastBackfillRequest.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < backfillRequestEvery
}

// requestRepair asks WeeklyAnalytics for a repair; a failure is logged,
// not the caller's: the weekly run repairs anyway.
func (s *Server) requestRepair(ctx context.Context) bool {
	log := lifecycle.Logger(ctx)
	ctx, cancel := context.WithTimeout(ctx, repairRequestTimeout)
	defer cancel()
	if err := s.repairs.RequestAnalyticsRepair(ctx); err != nil {
		log.ErrorContext(ctx, "requesting an analytics repair failed", slog.String("error", err.Error()))
		return false
	}
	log.InfoContext(ctx, "analytics repair requested")
	return true
}

// parseHistory reads ?history=N; 0 when absent.
func parseHistory(r *http.Request) (int, error) {
	v, ok := r.URL.Query()["history"]
	if !ok {
		return 0, nil
	}
	n, err := strconv.Atoi(v[0])
	if err != nil || len(v) != 1 || n < 1 || n > lifecycle.MaxAnalyticsHistory {
		return 0, lifecycle.Errorf(lifecycle.CodeInvalid, "history must be an integer from 1 to %d", lifecycle.MaxAnalyticsHistory)
	}
	return n, nil
}
