package functions

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// PubSubContinuer continues a checkpointed run by publishing
// {"continue_run_id": ...} to the cleanup topic, which Eventarc delivers to
// a new DailyCleanup invocation.
type PubSubContinuer struct {
	Project string
	Topic   string

	pub lazyPublisher
}

// ContinueCleanup publishes the continuation and waits for Pub/Sub to
// accept it.
func (c *PubSubContinuer) ContinueCleanup(ctx context.Context, runID string) error {
	if err := c.pub.publish(ctx, c.Project, c.Topic, cleanupMessage{ContinueRunID: runID}); err != nil {
		return fmt.Errorf("publishing continuation of run %s to %s: %w", runID, c.Topic, err)
	}
	return nil
}

// RequestRemoval publishes {"remove_item": ...} for an early removal.
func (c *PubSubContinuer) RequestRemoval(ctx context.Context, r lifecycle.RemovalRequest) error {
	if err := c.pub.publish(ctx, c.Project, c.Topic, cleanupMessage{RemoveItem: &r}); err != nil {
		return fmt.Errorf("publishing the early removal of item %s to %s: %w", r.ItemID, c.Topic, err)
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
	return postEvent(ctx, c.Client, c.URL, cleanupMessage{ContinueRunID: runID}, c.Logger,
		"delivering cleanup continuation failed", slog.String("run_id", runID))
}

// RequestRemoval posts the early removal event in the background.
func (c *HTTPContinuer) RequestRemoval(ctx context.Context, r lifecycle.RemovalRequest) error {
	return postEvent(ctx, c.Client, c.URL, cleanupMessage{RemoveItem: &r}, c.Logger,
		"delivering an early removal failed", slog.String("item_id", r.ItemID))
}
