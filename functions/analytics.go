package functions

import (
	"net/http"
	"strconv"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// analyticsResponse is TokenAnalytics' success body (DESIGN §4). History is
// there only when ?history=N asked for it (then [] when there is none).
type analyticsResponse struct {
	Analytics *lifecycle.Analytics          `json:"analytics"`
	History   []lifecycle.AnalyticsSnapshot `json:"history,omitzero"`
}

// handleAnalytics reports token health: GET /api/v1/plaid/tokens/analytics
// (admin), with ?history=N (1..52) adding the newest N weekly snapshots.
func (s *Server) handleAnalytics() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		history, err := parseHistory(r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		a, err := s.svc.Analytics(r.Context())
		if err != nil {
			writeError(w, r, err)
			return
		}
		resp := analyticsResponse{Analytics: a}
		if history > 0 {
			if resp.History, err = s.svc.AnalyticsHistory(r.Context(), history); err != nil {
				writeError(w, r, err)
				return
			}
		}
		writeJSON(w, http.StatusOK, resp)
	})
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
