package functions

import (
	"net/http"
	"strconv"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// handleCleanup runs a cleanup to its end: DELETE
// /api/v1/plaid/tokens/cleanup?days_threshold=90&dry_run=false (admin).
func (s *Server) handleCleanup() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := s.parseCleanupQuery(r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		p, _ := PrincipalFrom(r.Context())
		req.Trigger, req.Actor = lifecycle.TriggerHTTP, p.UserID
		res, err := s.svc.Cleanup(r.Context(), req)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, res.Report())
	})
}

func (s *Server) parseCleanupQuery(r *http.Request) (lifecycle.CleanupRequest, error) {
	q := r.URL.Query()
	req := lifecycle.CleanupRequest{DaysThreshold: s.cfg.StaleDays}
	if req.DaysThreshold == 0 {
		req.DaysThreshold = lifecycle.DefaultStaleDays
	}
	if v, ok := q["days_threshold"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || len(v) != 1 {
			return req, lifecycle.Errorf(lifecycle.CodeInvalid, "days_threshold must be an integer from 1 to %d", lifecycle.MaxDaysThreshold)
		}
		req.DaysThreshold = n
	}
	if err := lifecycle.ValidateDaysThreshold(req.DaysThreshold); err != nil {
		return req, err
	}
	if v, ok := q["dry_run"]; ok {
		b, err := strconv.ParseBool(v[0])
		if err != nil || len(v) != 1 {
			return req, lifecycle.Errorf(lifecycle.CodeInvalid, "dry_run must be true or false")
		}
		req.DryRun = b
	}
	return req, nil
}
