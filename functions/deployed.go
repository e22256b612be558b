package functions

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// TargetNeeds is the configuration each deployed function requires: the
// secrets Terraform gives it and nothing more (least privilege). A target
// is refused at start only for what it needs itself. scripts/tfcheck's
// tests check Terraform gives each exactly these secrets.
var TargetNeeds = map[string]lifecycle.Needs{
	"TokenCleanup":    {Store: true, Vault: true, Plaid: true, Auth: true},
	"RevokeAllTokens": {Store: true, Vault: true, Plaid: true, Auth: true, Legacy: true}, // migrates a caller's legacy document first
	"RevokeItem":      {Store: true, Vault: true, Plaid: true, Auth: true},
	"TokenAnalytics":  {Store: true, Auth: true},
	"PlaidWebhook":    {Store: true, Plaid: true},
	"DailyCleanup":    {Store: true, Vault: true, Plaid: true},
	"WeeklyAnalytics": {Store: true},
	"TokenStats":      {Store: true},
	// The app's side of an Item's life. ListItems reads documents only:
	// no token is decrypted, no Plaid call made.
	"CreateLinkToken":     {Store: true, Vault: true, Plaid: true, Auth: true},
	"ExchangePublicToken": {Store: true, Vault: true, Plaid: true, Auth: true},
	"ListItems":           {Store: true, Auth: true},
	"VerifyItem":          {Store: true, Vault: true, Plaid: true, Auth: true},
}

// Delivery is where a server sends what Pub/Sub carries for the deployed
// functions: a checkpointed cleanup's continuation and an analytics repair
// request. A nil field publishes to CLEANUP_TOPIC or ANALYTICS_TOPIC;
// scripts/serve delivers both to its own /events/* endpoints.
type Delivery struct {
	Continuer lifecycle.Continuer
	Repairs   AnalyticsRepairRequester
}

// NewFromEnv builds the production server from the environment (DESIGN
// §8): Firestore, the plaid-go adapter, the vault, JWT verification, and
// delivery of continuations and repair requests (the zero Delivery
// publishes them). needs says which variables must be set
// (lifecycle.NeedsAll for the local server).
func NewFromEnv(ctx context.Context, needs lifecycle.Needs, delivery Delivery) (*Server, error) {
	cfg, err := lifecycle.LoadConfig(needs)
	if err != nil {
		return nil, err
	}
	return NewFromConfig(ctx, cfg, delivery)
}

// NewFromConfig is NewFromEnv with the configuration already loaded.
func NewFromConfig(ctx context.Context, cfg lifecycle.Config, delivery Delivery) (*Server, error) {
	client, err := lifecycle.NewFirestoreClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	continuer := delivery.Continuer
	if continuer == nil {
		continuer = &PubSubContinuer{Project: cfg.Project, Topic: cfg.CleanupTopic}
	}
	svc, err := lifecycle.NewFirestoreService(cfg, client, continuer)
	if err != nil {
		return nil, err
	}
	return New(ctx, cfg, Deps{Service: svc, WebhookKeys: lifecycle.NewFirestoreWebhookKeyStore(client),
		AnalyticsRepairs: delivery.Repairs, Logger: lifecycle.NewJSONLogger(os.Stdout, cfg.LogLevel)})
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
	jsonLogs()
	deployed.mu.Lock()
	defer deployed.mu.Unlock()
	if s := deployed.servers[target]; s != nil {
		return s, nil
	}
	s, err := NewFromEnv(context.Background(), TargetNeeds[target], Delivery{})
	if err != nil {
		// One line naming every missing or malformed variable.
		line := strings.ReplaceAll(err.Error(), "\n", "; ")
		slog.Error(target+" cannot start: "+line, slog.String("function", target))
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

func eventDeployed(ctx context.Context, e event.Event, target string, handler func(*Server, context.Context, event.Event) error) error {
	s, err := deployedServer(target)
	if err != nil {
		return err // misconfigured: failing makes the metric and alert fire
	}
	return handler(s, ctx, e)
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

// CreateLinkToken is the deployed CreateLinkToken function.
func CreateLinkToken(w http.ResponseWriter, r *http.Request) {
	serveDeployed(w, r, "CreateLinkToken", (*Server).CreateLinkTokenHandler)
}

// ExchangePublicToken is the deployed ExchangePublicToken function.
func ExchangePublicToken(w http.ResponseWriter, r *http.Request) {
	serveDeployed(w, r, "ExchangePublicToken", (*Server).ExchangePublicTokenHandler)
}

// ListItems is the deployed ListItems function.
func ListItems(w http.ResponseWriter, r *http.Request) {
	serveDeployed(w, r, "ListItems", (*Server).ListItemsHandler)
}

// VerifyItem is the deployed VerifyItem function.
func VerifyItem(w http.ResponseWriter, r *http.Request) {
	serveDeployed(w, r, "VerifyItem", (*Server).VerifyItemHandler)
}

// DailyCleanup is the deployed DailyCleanup function.
func DailyCleanup(ctx context.Context, e event.Event) error {
	return eventDeployed(ctx, e, "DailyCleanup", (*Server).DailyCleanup)
}

// WeeklyAnalytics is the deployed WeeklyAnalytics function.
func WeeklyAnalytics(ctx context.Context, e event.Event) error {
	return eventDeployed(ctx, e, "WeeklyAnalytics", (*Server).WeeklyAnalytics)
}
