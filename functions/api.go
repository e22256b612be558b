package functions

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// revokeAllResponse is RevokeAllTokens' success body (DESIGN §4).
type revokeAllResponse struct {
	Message      string `json:"message"`
	RevokedCount int    `json:"revoked_count"`
}

// revokeItemResponse is RevokeItem's success body (DESIGN §4).
type revokeItemResponse struct {
	Message string `json:"message"`
	ItemID  string `json:"item_id"`
}

// analyticsResponse is TokenAnalytics' success body (DESIGN §4). History is
// there only when ?history=N asked for it (then [] when there is none).
type analyticsResponse struct {
	Analytics *lifecycle.Analytics          `json:"analytics"`
	History   []lifecycle.AnalyticsSnapshot `json:"history,omitzero"`
}

// handleRevokeAll revokes the caller's own tokens: DELETE
// /api/v1/plaid/tokens/revoke-all.
func (s *Server) handleRevokeAll() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := principal(w, r)
		if !ok {
			return
		}
		n, err := s.svc.RevokeAllTokens(r.Context(), p.UserID)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, revokeAllResponse{
			Message: fmt.Sprintf("Revoked %d tokens successfully", n), RevokedCount: n})
	})
}

// handleRevokeItem revokes one of the caller's items: DELETE
// /api/v1/plaid/items/{item_id}. Another user's item answers 404 exactly
// like a missing one, admins included: they revoke for others through the
// CLI.
func (s *Server) handleRevokeItem() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := principal(w, r)
		if !ok {
			return
		}
		itemID, ok := itemIDFromPath(r.URL.Path)
		if !ok {
			writeError(w, r, lifecycle.ErrItemNotFound)
			return
		}
		if _, err := s.svc.RevokeItem(r.Context(), p.UserID, itemID); err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, revokeItemResponse{Message: "Item revoked successfully", ItemID: itemID})
	})
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

// principal returns the caller Require put in the context. Handlers only
// run behind Require; without one the request is refused, never served as
// nobody.
func principal(w http.ResponseWriter, r *http.Request) (Principal, bool) {
	p, ok := PrincipalFrom(r.Context())
	if !ok || p.UserID == "" {
		writeError(w, r, lifecycle.Errorf(lifecycle.CodeUnauthorized, "missing bearer token"))
		return Principal{}, false
	}
	return p, true
}

// WeeklyAnalytics handles the scheduler's weekly message: it computes the
// analytics, logs every count as a field and stores a dated snapshot. A
// redelivered event (same CloudEvent id) does nothing more. It returns an
// error only when Pub/Sub's retry could help.
func (s *Server) WeeklyAnalytics(ctx context.Context, e event.Event) error {
	log := s.log.With(slog.String("event_id", e.ID()), slog.String("function", eventKindAnalytics))
	ctx = lifecycle.WithLogger(ctx, log)

	// The message body carries nothing the run needs; an event that is not
	// a Pub/Sub message is still refused, as a retry would fail the same way.
	if _, err := pubSubMessage(e); err != nil {
		log.ErrorContext(ctx, "malformed WeeklyAnalytics event; dropped", slog.String("error", err.Error()))
		return nil
	}
	// No claim record: the snapshot itself is keyed by the event id, so a
	// redelivery recomputes (read-only) and stores nothing new, and a run
	// that died before storing its snapshot is retried in full.
	fail := func(what string, err error) error {
		log.ErrorContext(ctx, what, slog.String("error", err.Error()), slog.Bool("retry", retryable(err)))
		if !retryable(err) {
			return nil
		}
		return err
	}

	a, err := s.svc.Analytics(ctx)
	if err != nil {
		return fail("weekly analytics failed", err)
	}
	saved, err := s.svc.SaveAnalyticsSnapshot(ctx, e.ID(), a)
	if err != nil {
		return fail("saving the weekly analytics snapshot failed", err)
	}
	if !saved {
		log.InfoContext(ctx, "event already handled; redelivery acknowledged")
		return nil
	}
	log.LogAttrs(ctx, slog.LevelInfo, "weekly analytics", a.LogAttrs()...)
	return nil
}
