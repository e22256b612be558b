package functions

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// cleanupMessage is the optional JSON body of a DailyCleanup message. The
// scheduler sends {"days_threshold": N, "dry_run": false}; a checkpointed
// run sends {"continue_run_id": "..."} to continue; a revocation that could
// not remove its Item at Plaid sends {"remove_item": {"item_id": "..."}}.
type cleanupMessage struct {
	DaysThreshold *int                      `json:"days_threshold,omitempty"`
	DryRun        bool                      `json:"dry_run,omitempty"`
	ContinueRunID string                    `json:"continue_run_id,omitempty"`
	RemoveItem    *lifecycle.RemovalRequest `json:"remove_item,omitempty"`
}

// parseCleanupMessage decodes the body of a DailyCleanup message, reading
// its keys by their exact names (encoding/json into a struct would also take
// "Continue_Run_Id"). Other keys are ignored.
func parseCleanupMessage(body []byte) (cleanupMessage, error) {
	var msg cleanupMessage
	if len(body) == 0 {
		return msg, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return msg, err
	}
	if v, ok := fields["days_threshold"]; ok {
		var n int
		if err := json.Unmarshal(v, &n); err != nil {
			return msg, fmt.Errorf("days_threshold: %w", err)
		}
		msg.DaysThreshold = &n
	}
	if v, ok := fields["dry_run"]; ok {
		if err := json.Unmarshal(v, &msg.DryRun); err != nil {
			return msg, fmt.Errorf("dry_run: %w", err)
		}
	}
	if v, ok := fields["continue_run_id"]; ok {
		if err := json.Unmarshal(v, &msg.ContinueRunID); err != nil {
			return msg, fmt.Errorf("continue_run_id: %w", err)
		}
	}
	if v, ok := fields["remove_item"]; ok {
		var r lifecycle.RemovalRequest
		if err := json.Unmarshal(v, &r); err != nil || !lifecycle.ValidItemID(r.ItemID) {
			return msg, fmt.Errorf("remove_item: needs a valid item_id")
		}
		msg.RemoveItem = &r
	}
	return msg, nil
}

// DailyCleanup handles the scheduler's daily message and continuation
// messages: it decodes the event and hands it to the service, which runs
// each segment of a run exactly once, continues checkpointed runs and
// resumes stranded ones (lifecycle.Service.RunScheduledCleanup). It
// returns an error only when Pub/Sub's retry could help.
func (s *Server) DailyCleanup(ctx context.Context, e event.Event) error {
	_, err := s.dailyCleanup(ctx, e)
	return err
}

// dailySummary is what a DailyCleanup delivery did: the answer of a local
// /events/DailyCleanup call.
type dailySummary struct {
	Function string `json:"function"`
	EventID  string `json:"event_id"`
	// Action: started, resumed, continued, skipped (another run holds
	// the lease), duplicate, in_progress, finished, dropped; remove_item
	// for an early removal, whose outcome Removal says.
	Action     string                `json:"action"`
	Removal    string                `json:"removal,omitempty"`
	RunID      string                `json:"run_id,omitempty"`
	StatusURL  string                `json:"status_url,omitempty"`
	DryRun     bool                  `json:"dry_run"`
	Done       bool                  `json:"done"`
	Statistics *lifecycle.Statistics `json:"statistics,omitempty"`
}

func (s *Server) dailyCleanup(ctx context.Context, e event.Event) (*dailySummary, error) {
	log := s.eventLogger(e, "DailyCleanup")
	ctx = lifecycle.WithLogger(ctx, log)
	sum := &dailySummary{Function: "DailyCleanup", EventID: e.ID(), Action: "dropped"}

	body, err := pubSubMessage(e)
	if err != nil {
		log.ErrorContext(ctx, "malformed DailyCleanup event; dropped", slog.String("error", err.Error()))
		return sum, nil // a retry would fail the same way
	}
	msg, err := parseCleanupMessage(body)
	if err != nil {
		log.ErrorContext(ctx, "malformed DailyCleanup message; dropped", slog.String("error", err.Error()))
		return sum, nil
	}
	if msg.RemoveItem != nil {
		// Idempotent: a redelivery finds the Item removed.
		sum.Action = "remove_item"
		out, err := s.svc.RemoveOwedItem(ctx, *msg.RemoveItem)
		sum.Removal = string(out)
		if err != nil {
			log.WarnContext(ctx, "early removal asks for a retry", slog.String("error", err.Error()))
			return sum, err
		}
		return sum, nil
	}
	ev := lifecycle.CleanupEvent{EventID: e.ID(), ContinueRunID: msg.ContinueRunID, DaysThreshold: s.cfg.StaleDays,
		DryRun: msg.DryRun, Budget: s.cfg.RunTimeBudget}
	if msg.DaysThreshold != nil {
		ev.DaysThreshold = *msg.DaysThreshold
	}
	out, err := s.svc.RunScheduledCleanup(ctx, ev)
	if err != nil {
		log.WarnContext(ctx, "DailyCleanup asks for a retry", slog.String("error", err.Error()))
		return sum, err
	}
	if out != nil {
		sum.Action, sum.RunID = out.Action, out.RunID
		if out.RunID != "" {
			sum.StatusURL = PathCleanupRuns + out.RunID
		}
		if r := out.Result; r != nil {
			sum.DryRun, sum.Done, sum.Statistics = r.DryRun, r.Done, &r.Statistics
		}
	}
	return sum, nil
}
