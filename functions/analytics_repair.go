package functions

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
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

	pub lazyPublisher
}

// RequestAnalyticsRepair publishes {"repair": true} and waits for Pub/Sub
// to accept it.
func (p *PubSubRepairRequester) RequestAnalyticsRepair(ctx context.Context) error {
	if err := p.pub.publish(ctx, p.Project, p.Topic, repairMessage{Repair: true}); err != nil {
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
	return postEvent(ctx, h.Client, h.URL, repairMessage{Repair: true}, h.Logger,
		"delivering the analytics repair request failed")
}

// repairRequesters are the deployed functions' publishers, one per topic,
// kept for the life of the instance.
var repairRequesters sync.Map // "project/topic" -> *PubSubRepairRequester

// pubSubRepairRequester returns the instance's publisher to topic.
func pubSubRepairRequester(project, topic string) *PubSubRepairRequester {
	r, _ := repairRequesters.LoadOrStore(project+"/"+topic, &PubSubRepairRequester{Project: project, Topic: topic})
	return r.(*PubSubRepairRequester)
}
