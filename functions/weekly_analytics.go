package functions

import (
	"context"
	"log/slog"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// WeeklyAnalytics handles the scheduler's weekly message: it computes the
// analytics, logs every count as a field and stores a dated snapshot. A
// redelivered event (same CloudEvent id) does nothing more. It returns an
// error only when Pub/Sub's retry could help.
func (s *Server) WeeklyAnalytics(ctx context.Context, e event.Event) error {
	log := s.eventLogger(e, "WeeklyAnalytics")
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
