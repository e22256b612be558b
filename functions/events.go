package functions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/cloudevents/sdk-go/v2/client"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// PubSubEventType is the CloudEvent type Eventarc delivers Pub/Sub messages as.
const PubSubEventType = "google.cloud.pubsub.topic.v1.messagePublished"

// pubSubEnvelope is the data of a messagePublished CloudEvent.
type pubSubEnvelope struct {
	Message struct {
		Data       []byte            `json:"data"` // base64 in JSON
		Attributes map[string]string `json:"attributes"`
		MessageID  string            `json:"messageId"`
	} `json:"message"`
	Subscription string `json:"subscription"`
}

// cleanupMessage is the optional JSON body of a DailyCleanup message. The
// scheduler sends {"days_threshold": N, "dry_run": false}; a checkpointed
// run sends {"continue_run_id": "..."} to continue.
type cleanupMessage struct {
	DaysThreshold *int   `json:"days_threshold"`
	DryRun        bool   `json:"dry_run"`
	ContinueRunID string `json:"continue_run_id"`
}

// pubSubMessage decodes e's Pub/Sub message body.
func pubSubMessage(e event.Event) ([]byte, error) {
	var env pubSubEnvelope
	if err := json.Unmarshal(e.Data(), &env); err != nil {
		return nil, fmt.Errorf("decoding Pub/Sub CloudEvent data: %w", err)
	}
	return env.Message.Data, nil
}

// Event kinds, for deduplication records.
const (
	eventKindCleanup   = "DailyCleanup"
	eventKindAnalytics = "WeeklyAnalytics"
)

// DailyCleanup handles the scheduler's daily message (and continuation
// messages). A redelivered event (same CloudEvent id) does not run again.
// It returns an error only when Pub/Sub's retry could help.
func (s *Server) DailyCleanup(ctx context.Context, e event.Event) error {
	log := s.log.With(slog.String("event_id", e.ID()), slog.String("function", eventKindCleanup))
	ctx = lifecycle.WithLogger(ctx, log)

	body, err := pubSubMessage(e)
	if err != nil {
		log.ErrorContext(ctx, "malformed DailyCleanup event; dropped", slog.String("error", err.Error()))
		return nil // a retry would fail the same way
	}
	var msg cleanupMessage
	if len(body) > 0 {
		if err := json.Unmarshal(body, &msg); err != nil {
			log.ErrorContext(ctx, "malformed DailyCleanup message; dropped", slog.String("error", err.Error()))
			return nil
		}
	}
	req := lifecycle.CleanupRequest{
		DaysThreshold: s.cfg.StaleDays, DryRun: msg.DryRun, Trigger: lifecycle.TriggerSchedule,
		Actor: "cloud-scheduler", EventID: e.ID(), ContinueRunID: msg.ContinueRunID, Budget: s.cfg.RunTimeBudget,
	}
	if msg.DaysThreshold != nil {
		req.DaysThreshold = *msg.DaysThreshold
	}
	if req.ContinueRunID != "" {
		req.Actor = "continuation"
	} else if err := lifecycle.ValidateDaysThreshold(req.DaysThreshold); err != nil {
		log.ErrorContext(ctx, "invalid DailyCleanup message; dropped", slog.String("error", err.Error()))
		return nil
	}

	claimed, err := s.svc.Records.ClaimEvent(ctx, e.ID(), eventKindCleanup, s.svc.Clock.Now())
	if err != nil {
		return err // Firestore trouble: let Pub/Sub retry
	}
	if !claimed {
		log.InfoContext(ctx, "event already handled; redelivery acknowledged")
		return nil
	}

	res, err := s.svc.Cleanup(ctx, req)
	switch {
	case errors.Is(err, lifecycle.ErrLeaseHeld):
		log.InfoContext(ctx, "another cleanup holds the lease; this run is skipped")
		return nil
	case err != nil && retryable(err) && res == nil:
		// Nothing ran: forget the event so Pub/Sub's retry runs it.
		if uerr := s.svc.Records.UnclaimEvent(context.WithoutCancel(ctx), e.ID(), eventKindCleanup); uerr != nil {
			log.ErrorContext(ctx, "unclaiming event failed", slog.String("error", uerr.Error()))
		}
		return err
	case err != nil:
		// The run record says what failed; a retry would start over.
		return nil
	}
	if res.Done {
		return nil
	}
	if s.continuer == nil {
		log.ErrorContext(ctx, "cleanup run checkpointed but no continuer is configured; it resumes after its lease expires",
			slog.String("run_id", res.RunID))
		return nil
	}
	if err := s.continuer.ContinueCleanup(ctx, res.RunID); err != nil {
		log.ErrorContext(ctx, "publishing the cleanup continuation failed", slog.String("run_id", res.RunID), slog.String("error", err.Error()))
		return fmt.Errorf("continuing run %s: %w", res.RunID, err)
	}
	log.InfoContext(ctx, "cleanup continuation sent", slog.String("run_id", res.RunID))
	return nil
}

// retryable reports whether a retry could help: Firestore or Plaid
// unavailable, not a bad request or a conflict.
func retryable(err error) bool {
	return lifecycle.ErrorCode(err) == lifecycle.CodeUnavailable
}

// CloudEventHandler serves fn over HTTP the way Eventarc delivers events:
// structured (application/cloudevents+json) or binary (ce-* headers) mode.
// A nil error answers 2xx; an error answers 5xx so the sender retries.
func CloudEventHandler(fn func(context.Context, event.Event) error) http.Handler {
	p, err := cehttp.New()
	if err != nil {
		panic(fmt.Sprintf("creating CloudEvents protocol: %v", err)) // only fails on bad options
	}
	h, err := client.NewHTTPReceiveHandler(context.Background(), p, fn)
	if err != nil {
		panic(fmt.Sprintf("creating CloudEvents handler: %v", err))
	}
	return h
}
