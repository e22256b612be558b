// Package functions holds the Cloud Functions' handlers: HTTP endpoints and
// CloudEvent handlers, authentication and JSON errors. Handlers are thin:
// parse, authorize, call lifecycle, render.
package functions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// Paths of the HTTP API (DESIGN §3). The local server mounts each handler
// at its path; a deployed function answers at its root and at its path.
const (
	PathCleanup    = "/api/v1/plaid/tokens/cleanup"
	PathRevokeAll  = "/api/v1/plaid/tokens/revoke-all"
	PathAnalytics  = "/api/v1/plaid/tokens/analytics"
	PathItemPrefix = "/api/v1/plaid/items/"
	PathWebhook    = "/api/v1/plaid/webhook"
)

// maxRequestBody caps request bodies: no endpoint takes more than a small
// JSON object.
const maxRequestBody = 64 << 10

// Continuer delivers a checkpointed cleanup run's continuation to a new
// invocation of DailyCleanup.
type Continuer interface {
	ContinueCleanup(ctx context.Context, runID string) error
}

// Deps are the server's dependencies. Service is required; the others are
// built from the configuration when nil.
type Deps struct {
	Service   *lifecycle.Service
	Auth      *Authenticator
	Webhooks  *lifecycle.WebhookVerifier
	Continuer Continuer
	Logger    *slog.Logger
	// HTTPClient fetches JWKS; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
}

// Server is every function's handler over one set of dependencies. The
// deployed functions, scripts/serve and the tests all build it with New.
type Server struct {
	cfg       lifecycle.Config
	svc       *lifecycle.Service
	auth      *Authenticator
	webhooks  *lifecycle.WebhookVerifier
	continuer Continuer
	log       *slog.Logger

	cleanup, revokeAll, analytics, revokeItem, webhook http.Handler
}

// New validates deps and builds the server's handlers once.
func New(ctx context.Context, cfg lifecycle.Config, deps Deps) (*Server, error) {
	if deps.Service == nil {
		return nil, errors.New("functions.New: no lifecycle service")
	}
	s := &Server{cfg: cfg, svc: deps.Service, auth: deps.Auth, webhooks: deps.Webhooks,
		continuer: deps.Continuer, log: deps.Logger}
	if s.log == nil {
		s.log = lifecycle.NewJSONLogger(os.Stdout, cfg.LogLevel)
	}
	if s.auth == nil && (cfg.AuthJWTSecret != "" || cfg.AuthJWKSURL != "") {
		auth, err := NewAuthenticator(ctx, cfg, deps.HTTPClient)
		if err != nil {
			return nil, fmt.Errorf("functions.New: %w", err)
		}
		s.auth = auth
	}
	if s.webhooks == nil {
		s.webhooks = lifecycle.NewWebhookVerifier(s.svc.Plaid, s.svc.Clock)
	}
	s.cleanup = s.endpoint(http.MethodDelete, s.requireUser(RequireAdmin(s.handleCleanup())))
	s.revokeAll = s.endpoint(http.MethodDelete, s.requireUser(s.handleRevokeAll()))
	s.analytics = s.endpoint(http.MethodGet, s.requireUser(RequireAdmin(s.handleAnalytics())))
	s.revokeItem = s.endpoint(http.MethodDelete, s.requireUser(s.handleRevokeItem()))
	s.webhook = s.withLogger(newWebhookHandler(s.webhooks, s.svc.Store, s.svc.Clock))
	return s, nil
}

// requireUser authenticates the caller. A server built without any
// AUTH_* configuration (a function that serves no users) refuses instead.
func (s *Server) requireUser(next http.Handler) http.Handler {
	if s.auth == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeError(w, r, lifecycle.Errorf(lifecycle.CodeUnavailable,
				"authentication is not configured: set AUTH_JWT_SECRET or AUTH_JWKS_URL"))
		})
	}
	return s.auth.Require(next)
}

// Routes returns every HTTP function at its path and the CloudEvent
// functions at /events/<Target>: what scripts/serve listens with.
func (s *Server) Routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(PathCleanup, s.cleanup)
	mux.Handle(PathRevokeAll, s.revokeAll)
	mux.Handle(PathAnalytics, s.analytics)
	mux.Handle(PathItemPrefix, s.revokeItem)
	mux.Handle(PathWebhook, s.webhook)
	mux.Handle("/events/DailyCleanup", CloudEventHandler(s.DailyCleanup))
	mux.Handle("/events/WeeklyAnalytics", CloudEventHandler(s.WeeklyAnalytics))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, lifecycle.Errorf(lifecycle.CodeNotFound, "no endpoint at %s", r.URL.Path))
	})
	return mux
}

// endpoint wraps an API handler: it carries the logger (with the trace of
// the request) in the context, answers 405 with Allow for other methods and
// caps the request body (413 past it).
func (s *Server) endpoint(method string, next http.Handler) http.Handler {
	return s.withLogger(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			writeJSON(w, http.StatusMethodNotAllowed, errorBody{
				Detail: fmt.Sprintf("method %s not allowed; use %s", r.Method, method), Code: "method_not_allowed"})
			return
		}
		if r.ContentLength > maxRequestBody {
			writeError(w, r, lifecycle.Errorf(lifecycle.CodeTooLarge, "request body larger than %d bytes", maxRequestBody))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
		next.ServeHTTP(w, r)
	}))
}

// withLogger puts the server's logger in the request context, with the
// Cloud Trace id when a trace header came in (DESIGN §11).
func (s *Server) withLogger(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log := s.log
		if trace := traceID(r); trace != "" && s.cfg.Project != "" {
			log = log.With(slog.String("logging.googleapis.com/trace", "projects/"+s.cfg.Project+"/traces/"+trace))
		}
		next.ServeHTTP(w, r.WithContext(lifecycle.WithLogger(r.Context(), log)))
	})
}

// traceID reads the trace id from X-Cloud-Trace-Context ("TRACE/SPAN;o=1")
// or W3C traceparent ("00-TRACE-SPAN-01").
func traceID(r *http.Request) string {
	if h := r.Header.Get("X-Cloud-Trace-Context"); h != "" {
		id, _, _ := strings.Cut(h, "/")
		return sanitizeTrace(id)
	}
	if parts := strings.Split(r.Header.Get("traceparent"), "-"); len(parts) == 4 {
		return sanitizeTrace(parts[1])
	}
	return ""
}

func sanitizeTrace(id string) string {
	if len(id) == 0 || len(id) > 64 {
		return ""
	}
	for _, c := range id {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return ""
		}
	}
	return id
}

// atPath serves h when the request path is the function's root or its
// full API path (a function deployed alone gets requests at its root).
func atPath(path string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" && r.URL.Path != "" && r.URL.Path != path {
			writeError(w, r, lifecycle.Errorf(lifecycle.CodeNotFound, "no endpoint at %s", r.URL.Path))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// TokenCleanupHandler is the TokenCleanup function's handler.
func (s *Server) TokenCleanupHandler() http.Handler { return atPath(PathCleanup, s.cleanup) }

// RevokeAllTokensHandler is the RevokeAllTokens function's handler.
func (s *Server) RevokeAllTokensHandler() http.Handler { return atPath(PathRevokeAll, s.revokeAll) }

// TokenAnalyticsHandler is the TokenAnalytics function's handler.
func (s *Server) TokenAnalyticsHandler() http.Handler { return atPath(PathAnalytics, s.analytics) }

// PlaidWebhookHandler is the PlaidWebhook function's handler.
func (s *Server) PlaidWebhookHandler() http.Handler { return atPath(PathWebhook, s.webhook) }

// RevokeItemHandler is the RevokeItem function's handler. Deployed alone it
// takes the item id as the path (/{item_id}) or the full API path.
func (s *Server) RevokeItemHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, PathItemPrefix) {
			r2 := r.Clone(r.Context())
			r2.URL.Path = PathItemPrefix + strings.TrimPrefix(r.URL.Path, "/")
			r = r2
		}
		s.revokeItem.ServeHTTP(w, r)
	})
}

// itemIDFromPath returns {item_id} of /api/v1/plaid/items/{item_id}.
func itemIDFromPath(path string) (string, bool) {
	id, ok := strings.CutPrefix(path, PathItemPrefix)
	if !ok || id == "" || strings.Contains(id, "/") || len(id) > 256 {
		return "", false
	}
	return id, true
}
