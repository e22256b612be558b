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

// AnalyticsRepairRequester asks WeeklyAnalytics for a repair of the
// analytics counters: {"repair": true} on the analytics topic. TokenAnalytics
// asks when ?exact=true found drift or the counters were never initialized:
// its service account only reads Firestore, so it never repairs itself.
type AnalyticsRepairRequester interface {
	RequestAnalyticsRepair(ctx context.Context) error
}

// repairMessage is the body of a repair request on the analytics topic.
type repairMessage struct {
	Repair bool `json:"repair"`
}

// PubSubRepairRequester publishes repair requests to the analytics topic,
// which Eventarc delivers to WeeklyAnalytics.
type PubSubRepairRequester struct {
	Project string
	Topic   string

	once      sync.Once
	publisher *pubsub.Publisher
	err       error
}

// RequestAnalyticsRepair publishes {"repair": true} and waits for Pub/Sub
// to accept it.
func (p *PubSubRepairRequester) RequestAnalyticsRepair(ctx context.Context) error {
	p.once.Do(func() {
		client, err := pubsub.NewClient(context.WithoutCancel(ctx), p.Project)
		if err != nil {
			p.err = fmt.Errorf("opening Pub/Sub client: %w", err)
			return
		}
		p.publisher = client.Publisher(p.Topic)
	})
	if p.err != nil {
		return p.err
	}
	data, err := json.Marshal(repairMessage{Repair: true})
	if err != nil {
		return err
	}
	if _, err := p.publisher.Publish(ctx, &pubsub.Message{Data: data}).Get(ctx); err != nil {
		return fmt.Errorf("publishing an analytics repair request to %s: %w", p.Topic, err)
	}
	return nil
}

// HTTPRepairRequester delivers a repair request to a WeeklyAnalytics
// endpoint as a Pub/Sub-shaped CloudEvent, as Eventarc would: scripts/serve
// posts it to its own /events/WeeklyAnalytics. Delivery is asynchronous;
// failures are logged.
type HTTPRepairRequester struct {
	URL    string
	Client *http.Client
	Logger *slog.Logger
}

// RequestAnalyticsRepair posts the request in the background.
func (h *HTTPRepairRequester) RequestAnalyticsRepair(ctx context.Context) error {
	data, err := json.Marshal(repairMessage{Repair: true})
	if err != nil {
		return err
	}
	req, err := NewPubSubEventRequest(context.WithoutCancel(ctx), h.URL, uuid.NewString(), data)
	if err != nil {
		return err
	}
	client := h.Client
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
		if err != nil && h.Logger != nil {
			h.Logger.Error("delivering the analytics repair request failed", slog.String("error", err.Error()))
		}
	}()
	return nil
}

// repairRequesters are the deployed functions' publishers, one per topic,
// kept for the life of the instance.
var repairRequesters sync.Map // "project/topic" -> *PubSubRepairRequester

// pubSubRepairRequester returns the instance's publisher to topic.
func pubSubRepairRequester(project, topic string) *PubSubRepairRequester {
	r, _ := repairRequesters.LoadOrStore(project+"/"+topic, &PubSubRepairRequester{Project: project, Topic: topic})
	return r.(*PubSubRepairRequester)
}
