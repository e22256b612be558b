package functions

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"
)

// PubSubContinuer continues a checkpointed run by publishing
// {"continue_run_id": ...} to the cleanup topic, which Eventarc delivers to
// a new DailyCleanup invocation.
type PubSubContinuer struct {
	Project string
	Topic   string

	once      sync.Once
	publisher *pubsub.Publisher
	err       error
}

// ContinueCleanup publishes the continuation and waits for Pub/Sub to
// accept it.
func (c *PubSubContinuer) ContinueCleanup(ctx context.Context, runID string) error {
	c.once.Do(func() {
		client, err := pubsub.NewClient(context.WithoutCancel(ctx), c.Project)
		if err != nil {
			c.err = fmt.Errorf("opening Pub/Sub client: %w", err)
			return
		}
		c.publisher = client.Publisher(c.Topic)
	})
	if c.err != nil {
		return c.err
	}
	data, err := json.Marshal(cleanupMessage{ContinueRunID: runID})
	if err != nil {
		return err
	}
	if _, err := c.publisher.Publish(ctx, &pubsub.Message{Data: data}).Get(ctx); err != nil {
		return fmt.Errorf("publishing continuation of run %s to %s: %w", runID, c.Topic, err)
	}
	return nil
}

// HTTPContinuer continues a run by delivering a Pub/Sub-shaped CloudEvent
// to a DailyCleanup endpoint over HTTP, as Eventarc would: what scripts/serve
// uses so that a long run finishes locally too. Delivery is asynchronous
// (the current invocation returns first); failures are logged.
type HTTPContinuer struct {
	URL    string
	Client *http.Client
	Logger *slog.Logger
}

// ContinueCleanup posts the continuation event in the background.
func (c *HTTPContinuer) ContinueCleanup(ctx context.Context, runID string) error {
	data, err := json.Marshal(cleanupMessage{ContinueRunID: runID})
	if err != nil {
		return err
	}
	req, err := NewPubSubEventRequest(context.WithoutCancel(ctx), c.URL, uuid.NewString(), data)
	if err != nil {
		return err
	}
	client := c.Client
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Minute}
	}
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode >= 300 {
				err = fmt.Errorf("HTTP %d", resp.StatusCode)
			}
		}
		if err != nil && c.Logger != nil {
			c.Logger.Error("delivering cleanup continuation failed", slog.String("run_id", runID), slog.String("error", err.Error()))
		}
	}()
	return nil
}
