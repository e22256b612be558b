package functions

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// DefaultCleanupTopic is the daily cleanup topic (DESIGN §3); CLEANUP_TOPIC
// overrides it.
const DefaultCleanupTopic = "plaid-token-daily-cleanup"

// TargetNeeds is the configuration each deployed function requires: the
// secrets Terraform gives it and nothing more (least privilege). A target
// is refused at start only for what it needs itself.
var TargetNeeds = map[string]lifecycle.Needs{
	"TokenCleanup":    {Store: true, Vault: true, Plaid: true, Auth: true},
	"RevokeAllTokens": {Store: true, Vault: true, Plaid: true, Auth: true},
	"RevokeItem":      {Store: true, Vault: true, Plaid: true, Auth: true},
	"TokenAnalytics":  {Store: true, Auth: true},
	"PlaidWebhook":    {Store: true, Plaid: true},
	"DailyCleanup":    {Store: true, Vault: true, Plaid: true},
	"WeeklyAnalytics": {Store: true},
}

// NewFromEnv builds the production server from the environment (DESIGN
// §8): Firestore, the plaid-go adapter, the vault, JWT verification, and
// continuation through continuer (nil: publish to the cleanup topic). needs
// says which variables must be set (lifecycle.NeedsAll for the local server).
func NewFromEnv(ctx context.Context, needs lifecycle.Needs, continuer Continuer) (*Server, error) {
	cfg, err := lifecycle.LoadConfig(needs)
	if err != nil {
		return nil, err
	}
	client, err := lifecycle.NewFirestoreClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	svc, err := lifecycle.NewFirestoreService(ctx, cfg, client)
	if err != nil {
		return nil, err
	}
	if continuer == nil {
		topic := os.Getenv("CLEANUP_TOPIC")
		if topic == "" {
			topic = DefaultCleanupTopic
		}
		continuer = &PubSubContinuer{Project: cfg.Project, Topic: topic}
	}
	return New(ctx, cfg, Deps{Service: svc, Continuer: continuer})
}

// A deployed function builds its server on first use, never in init():
// every deployed function registers every target, and a cold start must not
// open clients it will not use. One instance serves one target, so servers
// are kept per target. A failed build is retried on the next request rather
// than cached.
var deployed struct {
	mu      sync.Mutex
	servers map[string]*Server
}

func deployedServer(target string) (*Server, error) {
	deployed.mu.Lock()
	defer deployed.mu.Unlock()
	if s := deployed.servers[target]; s != nil {
		return s, nil
	}
	s, err := NewFromEnv(context.Background(), TargetNeeds[target], nil)
	if err != nil {
		// One line naming every missing or malformed variable.
		line := strings.ReplaceAll(err.Error(), "\n", "; ")
		lifecycle.NewJSONLogger(os.Stdout, slog.LevelInfo).Error(target + " cannot start: " + line)
		return nil, err
	}
	if deployed.servers == nil {
		deployed.servers = make(map[string]*Server)
	}
	deployed.servers[target] = s
	return s, nil
}

func serveDeployed(w http.ResponseWriter, r *http.Request, target string, handler func(*Server) http.Handler) {
	s, err := deployedServer(target)
	if err != nil {
		writeError(w, r, lifecycle.WrapError(lifecycle.CodeUnavailable, err, "service is misconfigured"))
		return
	}
	handler(s).ServeHTTP(w, r)
}

// TokenCleanup is the deployed TokenCleanup function.
func TokenCleanup(w http.ResponseWriter, r *http.Request) {
	serveDeployed(w, r, "TokenCleanup", (*Server).TokenCleanupHandler)
}

// RevokeAllTokens is the deployed RevokeAllTokens function.
func RevokeAllTokens(w http.ResponseWriter, r *http.Request) {
	serveDeployed(w, r, "RevokeAllTokens", (*Server).RevokeAllTokensHandler)
}

// TokenAnalytics is the deployed TokenAnalytics function.
func TokenAnalytics(w http.ResponseWriter, r *http.Request) {
	serveDeployed(w, r, "TokenAnalytics", (*Server).TokenAnalyticsHandler)
}

// RevokeItem is the deployed RevokeItem function.
func RevokeItem(w http.ResponseWriter, r *http.Request) {
	serveDeployed(w, r, "RevokeItem", (*Server).RevokeItemHandler)
}

// PlaidWebhook is the deployed PlaidWebhook function.
func PlaidWebhook(w http.ResponseWriter, r *http.Request) {
	serveDeployed(w, r, "PlaidWebhook", (*Server).PlaidWebhookHandler)
}

// DailyCleanup is the deployed DailyCleanup function.
func DailyCleanup(ctx context.Context, e event.Event) error {
	s, err := deployedServer("DailyCleanup")
	if err != nil {
		return err // misconfigured: failing makes the metric and alert fire
	}
	return s.DailyCleanup(ctx, e)
}

// WeeklyAnalytics is the deployed WeeklyAnalytics function.
func WeeklyAnalytics(ctx context.Context, e event.Event) error {
	s, err := deployedServer("WeeklyAnalytics")
	if err != nil {
		return err
	}
	return s.WeeklyAnalytics(ctx, e)
}

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
	req.Header.Set("ce-source", "//pubsub.googleapis.com/projects/local/topics/"+DefaultCleanupTopic)
	return req, nil
}
