package functions

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// cleanupStarted is TokenCleanup's 202 body: the run goes on in DailyCleanup
// invocations, and status_url reports it (DESIGN §4).
type cleanupStarted struct {
	Message   string `json:"message"`
	RunID     string `json:"run_id"`
	DryRun    bool   `json:"dry_run"`
	StatusURL string `json:"status_url"`
	// Statistics are the run's totals when it was handed over.
	Statistics *lifecycle.Statistics `json:"statistics,omitempty"`
}

// handleCleanup runs a cleanup: DELETE
// /api/v1/plaid/tokens/cleanup?days_threshold=90&dry_run=false[&async=true]
// (admin). Synchronously it answers 200 with the statistics, or 202 when
// the run reached HTTP_RUN_TIME_BUDGET and went on through the cleanup
// topic; with async=true it answers 202 at once. The run is detached from
// the request: a client that disconnects stops neither the run nor the
// writes that record what Plaid confirmed.
func (s *Server) handleCleanup() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, async, err := s.parseCleanupQuery(r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		p, _ := PrincipalFrom(r.Context())
		req.Trigger, req.Actor = lifecycle.TriggerHTTP, p.UserID
		ctx := context.WithoutCancel(r.Context())
		if async {
			res, err := s.svc.StartCleanup(ctx, req)
			if err != nil {
				writeError(w, r, err)
				return
			}
			writeJSON(w, http.StatusAccepted, cleanupStarted{Message: "Token cleanup started", RunID: res.RunID,
				DryRun: res.DryRun, StatusURL: PathCleanupRuns + res.RunID})
			return
		}
		req.Budget = s.cfg.HTTPRunTimeBudget
		res, err := s.svc.Cleanup(ctx, req)
		if err != nil {
			writeError(w, r, err)
			return
		}
		if !res.Done {
			msg := "Token cleanup continues in the background"
			if !res.HandedOver {
				msg = "Token cleanup checkpointed; it could not be queued, so the next scheduled run resumes it"
			}
			writeJSON(w, http.StatusAccepted, cleanupStarted{Message: msg, RunID: res.RunID, DryRun: res.DryRun,
				StatusURL: PathCleanupRuns + res.RunID, Statistics: &res.Statistics})
			return
		}
		writeJSON(w, http.StatusOK, res.Report())
	})
}

// handleCleanupRun reports a cleanup run: GET
// /api/v1/plaid/tokens/cleanup/runs/{run_id} (admin).
func (s *Server) handleCleanupRun() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathParam(r, PathCleanupRuns)
		if !ok {
			writeError(w, r, lifecycle.Errorf(lifecycle.CodeNotFound, "no such cleanup run"))
			return
		}
		run, err := s.svc.CleanupRun(r.Context(), id)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, run)
	})
}

func (s *Server) parseCleanupQuery(r *http.Request) (lifecycle.CleanupRequest, bool, error) {
	q := r.URL.Query()
	req := lifecycle.CleanupRequest{DaysThreshold: s.cfg.StaleDays}
	if req.DaysThreshold == 0 {
		req.DaysThreshold = lifecycle.DefaultStaleDays
	}
	if v, ok := q["days_threshold"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || len(v) != 1 {
			return req, false, lifecycle.Errorf(lifecycle.CodeInvalid, "days_threshold must be an integer from 1 to %d", lifecycle.MaxDaysThreshold)
		}
		req.DaysThreshold = n
	}
	if err := lifecycle.ValidateDaysThreshold(req.DaysThreshold); err != nil {
		return req, false, err
	}
	var err error
	if req.DryRun, err = boolParam(q, "dry_run"); err != nil {
		return req, false, err
	}
	async, err := boolParam(q, "async")
	return req, async, err
}

// boolParam reads an optional boolean query parameter given at most once.
func boolParam(q map[string][]string, name string) (bool, error) {
	v, ok := q[name]
	if !ok {
		return false, nil
	}
	b, err := strconv.ParseBool(v[0])
	if err != nil || len(v) != 1 {
		return false, lifecycle.Errorf(lifecycle.CodeInvalid, "%s must be true or false", name)
	}
	return b, nil
}

// pathParam returns the one path segment after prefix, unescaped from the
// request's escaped path, so that an encoded "/" or "." cannot move it.
// ok is false when there is none, or more than one.
func pathParam(r *http.Request, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), prefix)
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return "", false
	}
	v, err := pathUnescape(rest)
	if err != nil || v == "" {
		return "", false
	}
	return v, true
}
