package functions

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// FirestoreWrittenEventType is the CloudEvent type of TokenStats' Eventarc
// Firestore trigger.
const FirestoreWrittenEventType = "google.cloud.firestore.document.v1.written"

// PathEmulatorTriggers is where the Firestore emulator's own trigger
// delivers events (its --functions_emulator flag):
// POST /functions/projects/{project}/triggers/{trigger}.
const PathEmulatorTriggers = "/functions/projects/"

// TokenStats handles one Eventarc Firestore event (every write to
// plaid_tokens/{item_id}, by any writer): it decodes the document before
// and after the write and has the service count the change into the
// analytics counters, exactly once per event id (DESIGN §12). Events of
// other documents are ignored. It returns an error only when a retry could
// help (Firestore unavailable, a transaction that kept conflicting): a
// malformed event is logged and dropped, as a retry would fail the same
// way, and the weekly repair counts what it missed.
func (s *Server) TokenStats(ctx context.Context, e event.Event) error {
	log := s.eventLogger(e, "TokenStats")
	ctx = lifecycle.WithLogger(ctx, log)
	change, ok, err := tokenChangeFromEvent(e)
	if err != nil {
		log.ErrorContext(ctx, "malformed TokenStats event; dropped", slog.String("error", err.Error()),
			slog.String("subject", e.Subject()))
		return nil
	}
	if !ok {
		log.DebugContext(ctx, "not a plaid_tokens document; ignored", slog.String("subject", e.Subject()))
		return nil
	}
	got, err := s.svc.CountTokenChanges(ctx, []lifecycle.TokenChange{change})
	if err != nil {
		retry := retryable(err)
		log.ErrorContext(ctx, "counting a token change failed", slog.String("item_id", change.ItemID()),
			slog.String("error", err.Error()), slog.Bool("retry", retry))
		if retry {
			return err
		}
		return nil
	}
	log.DebugContext(ctx, "token change counted", slog.String("item_id", change.ItemID()),
		slog.Int("applied", got.Applied), slog.Int("duplicates", got.Duplicates), slog.Int("covered", got.Covered))
	return nil
}

// tokenChangeFromEvent decodes a Firestore document event (protobuf, or
// JSON when its data content type says so) into the write it reports. ok
// is false for a document outside plaid_tokens/{item_id}.
func tokenChangeFromEvent(e event.Event) (lifecycle.TokenChange, bool, error) {
	if e.ID() == "" {
		return lifecycle.TokenChange{}, false, errors.New("the event has no id")
	}
	ev, err := lifecycle.DecodeDocumentEvent(e.Data(), e.DataContentType())
	if err != nil {
		return lifecycle.TokenChange{}, false, err
	}
	change, ok := lifecycle.TokenChangeFromEvent(e.ID(), e.Time(), ev)
	if change.At.IsZero() {
		// A delete without the event's time: count it as of now, after
		// any repair's recount (which saw the document still there or not,
		// the counters are exact again at the next repair either way).
		change.At = time.Now().UTC()
	}
	return change, ok, nil
}

// TokenStats is the deployed TokenStats function.
func TokenStats(ctx context.Context, e event.Event) error {
	return eventDeployed(ctx, e, "TokenStats", (*Server).TokenStats)
}

// CountTokenChanges counts changes into the analytics counters, as
// TokenStats does one event at a time: scripts/serve feeds it batches from
// its listener and from the emulator's trigger deliveries.
func (s *Server) CountTokenChanges(ctx context.Context, changes []lifecycle.TokenChange) (lifecycle.StatsApplied, error) {
	return s.svc.CountTokenChanges(ctx, changes)
}

// RepairCounters brings the counters up to date with what is stored (the
// recount with repair of DESIGN §12), recounting no earlier than notBefore:
// what scripts/serve does on start, since no trigger counted the writes
// made while it was not running.
func (s *Server) RepairCounters(ctx context.Context, notBefore time.Time) (*lifecycle.ExactResult, error) {
	return s.svc.ExactAnalytics(lifecycle.WithLogger(ctx, s.log),
		lifecycle.ExactOptions{Repair: true, Trigger: lifecycle.TriggerServe, NotBefore: notBefore})
}

// EmulatorTriggerHandler takes the Firestore emulator's trigger deliveries
// at PathEmulatorTriggers{project}/triggers/{trigger}: binary-mode
// CloudEvents of Eventarc's shape, except that the body is the base64 text
// of the protobuf data although the content type says
// application/protobuf, and that a ce-datacontenttype header repeats the
// content type. It decodes each as TokenStats does and hands the
// change to count (scripts/serve queues it for its batching applier).
// Loopback callers only, like /events/*.
func (s *Server) EmulatorTriggerHandler(count func(context.Context, lifecycle.TokenChange) error) http.Handler {
	return s.localEvents(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// /functions/projects/{project}/triggers/{trigger}: the emulator
		// delivers every project's events to one address; only this
		// server's project counts here.
		project, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, PathEmulatorTriggers), "/")
		if project != s.cfg.Project {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeJSON(w, http.StatusMethodNotAllowed, errorBody{
				Detail: fmt.Sprintf("method %s not allowed; use POST", r.Method), Code: "method_not_allowed"})
			return
		}
		// The body is at most MaxDocumentEventBytes of protobuf in base64.
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, lifecycle.MaxDocumentEventBytes/3*4+8))
		if err != nil {
			writeError(w, r, lifecycle.Errorf(lifecycle.CodeTooLarge, "event body: %v", err))
			return
		}
		if raw, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(body))); err == nil {
			body = raw
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		// The emulator also sends ce-datacontenttype, which binary mode
		// carries in Content-Type: the CloudEvents SDK refuses it as an
		// extension overwriting the attribute.
		if dct := r.Header.Get("Ce-Datacontenttype"); dct != "" {
			if r.Header.Get("Content-Type") == "" {
				r.Header.Set("Content-Type", dct)
			}
			r.Header.Del("Ce-Datacontenttype")
		}
		e, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
		if err != nil {
			writeError(w, r, lifecycle.Errorf(lifecycle.CodeInvalid, "not a CloudEvent: %v", err))
			return
		}
		change, ok, err := tokenChangeFromEvent(*e)
		if err != nil {
			s.log.ErrorContext(r.Context(), "malformed emulator trigger event; dropped", slog.String("error", err.Error()),
				slog.String("event_id", e.ID()), slog.String("function", "TokenStats"))
			writeError(w, r, err)
			return
		}
		if ok {
			if err := count(r.Context(), change); err != nil {
				writeError(w, r, fmt.Errorf("counting the change: %w", err))
				return
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
}
