package functions

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/client"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// PubSubEventType is the CloudEvent type Eventarc delivers Pub/Sub messages as.
const PubSubEventType = "google.cloud.pubsub.topic.v1.messagePublished"

// pubSubEnvelope is the data of a messagePublished CloudEvent: the Pub/Sub
// push envelope. It is written out here because no Go module the proxy
// serves defines it (google-cloudevents-go is not served), and it is three
// fields.
type pubSubEnvelope struct {
	Message struct {
		Data       []byte            `json:"data"` // base64 in JSON
		Attributes map[string]string `json:"attributes"`
		MessageID  string            `json:"messageId"`
	} `json:"message"`
	Subscription string `json:"subscription"`
}

// maxEventData bounds the CloudEvent data read: the messages are a few
// dozen bytes.
const maxEventData = 64 << 10

// pubSubMessage decodes e's Pub/Sub message body. An event that is not a
// Pub/Sub message is refused: a retry would fail the same way.
func pubSubMessage(e event.Event) ([]byte, error) {
	data := e.Data()
	if len(data) > maxEventData {
		return nil, fmt.Errorf("CloudEvent data is %d bytes, more than %d", len(data), maxEventData)
	}
	var env pubSubEnvelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("decoding Pub/Sub CloudEvent data: %w", err)
	}
	return env.Message.Data, nil
}

// eventLogger is the server's logger for event e of function fn: with its
// id and, from its traceparent extension, its trace.
func (s *Server) eventLogger(e event.Event, fn string) *slog.Logger {
	traceparent, _ := e.Extensions()["traceparent"].(string)
	return s.requestLogger("", traceparent).With(slog.String("event_id", e.ID()), slog.String("function", fn))
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

// eventSummaryHandler serves a CloudEvent function over HTTP as
// CloudEventHandler does, structured or binary mode, and answers 200 with
// the JSON summary of what it did; an error answers as any error of the
// API does (5xx when a retry could help), so a sender retries as Eventarc
// would.
func eventSummaryHandler[T any](fn func(context.Context, event.Event) (T, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeJSON(w, http.StatusMethodNotAllowed, errorBody{
				Detail: fmt.Sprintf("method %s not allowed; use POST", r.Method), Code: "method_not_allowed"})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxEventData*2)
		e, err := binding.ToEvent(r.Context(), cehttp.NewMessageFromHttpRequest(r))
		if err != nil {
			writeError(w, r, lifecycle.Errorf(lifecycle.CodeInvalid, "not a CloudEvent: %v", err))
			return
		}
		sum, err := fn(r.Context(), *e)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, sum)
	})
}

// NewPubSubEventRequest builds a binary-mode CloudEvent request carrying a
// Pub/Sub message with data, as Eventarc delivers it.
func NewPubSubEventRequest(ctx context.Context, url, id string, data []byte) (*http.Request, error) {
	body, err := json.Marshal(map[string]any{
		"message": map[string]any{
			"data": data, "messageId": id, "publishTime": time.Now().UTC().Format(time.RFC3339Nano),
		},
		"subscription": "projects/local/subscriptions/eventarc-local",
	})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("ce-specversion", "1.0")
	req.Header.Set("ce-id", id)
	req.Header.Set("ce-type", PubSubEventType)
	req.Header.Set("ce-source", "//pubsub.googleapis.com/projects/local/topics/"+lifecycle.DefaultCleanupTopic)
	return req, nil
}
