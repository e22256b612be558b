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

// lazyPublisher publishes JSON messages through a Pub/Sub client opened on
// first use and kept for the life of the instance: what the deployed
// continuer and repair requester share.
type lazyPublisher struct {
	once      sync.Once
	publisher *pubsub.Publisher
	err       error
}

// publish publishes msg to project's topic and waits for Pub/Sub to accept
// it.
func (l *lazyPublisher) publish(ctx context.Context, project, topic string, msg any) error {
	l.once.Do(func() {
		client, err := pubsub.NewClient(context.WithoutCancel(ctx), project)
		if err != nil {
			l.err = fmt.Errorf("opening Pub/Sub client: %w", err)
			return
		}
		l.publisher = client.Publisher(topic)
	})
	if l.err != nil {
		return l.err
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	_, err = l.publisher.Publish(ctx, &pubsub.Message{Data: data}).Get(ctx)
	return err
}

// postEvent delivers msg to url as a Pub/Sub-shaped CloudEvent, as Eventarc
// would, in the background: it returns once the request is built, and a
// failed delivery is logged as failed, with attrs. scripts/serve delivers
// continuations and repair requests to its own /events/* this way.
func postEvent(ctx context.Context, client *http.Client, url string, msg any, logger *slog.Logger, failed string, attrs ...any) error {
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	req, err := NewPubSubEventRequest(context.WithoutCancel(ctx), url, uuid.NewString(), data)
	if err != nil {
		return err
	}
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
		if err != nil && logger != nil {
			logger.Error(failed, append(attrs, slog.String("error", err.Error()))...)
		}
	}()
	return nil
}
