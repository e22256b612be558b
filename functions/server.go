// Package functions holds the Cloud Functions' handlers: HTTP endpoints and
// CloudEvent handlers, authentication and JSON errors. Handlers are thin:
// parse, authorize, call lifecycle, render.
//
// One file per function (cleanup.go, revoke.go, analytics.go, webhook.go,
// daily_cleanup.go, weekly_analytics.go, link_token.go, exchange.go,
// list_items.go, verify_item.go); server.go builds them all over one
// lifecycle.Service; deployed.go is what the deployed functions call.
package functions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// Paths of the HTTP API (DESIGN §3). The local server mounts each handler
// at its path; a deployed function answers at its root and at its path.
const (
	PathCleanup     = "/api/v1/plaid/tokens/cleanup"
	PathCleanupRuns = "/api/v1/plaid/tokens/cleanup/runs/"
	PathRevokeAll   = "/api/v1/plaid/tokens/revoke-all"
	PathAnalytics   = "/api/v1/plaid/tokens/analytics"
	PathItemPrefix  = "/api/v1/plaid/items/"
	PathWebhook     = "/api/v1/plaid/webhook"
	PathLinkToken   = "/api/v1/plaid/link/token"
	// PathItems is ListItems (GET) and ExchangePublicToken (POST).
	PathItems = "/api/v1/plaid/items"
	// PathVerifySuffix ends VerifyItem's path, after PathItemPrefix and
	// the item id.
	PathVerifySuffix = "/verify"
)

// maxRequestBody caps request bodies: no endpoint takes more than a small
// JSON object.
const maxRequestBody = 64 << 10

// Deps are the server's dependencies. Service is required; the others are
// built from the configuration when nil.
type Deps struct {
	Service  *lifecycle.Service
	Auth     *Authenticator
	Webhooks *lifecycle.WebhookVerifier
	// WebhookKeys shares verified webhook keys between instances; used only
	// when Webhooks is nil.
	WebhookKeys lifecycle.WebhookKeyStore
	Logger      *slog.Logger
	// HTTPClient fetches JWKS; nil means a client with a 10 s timeout.
	HTTPClient *http.Client
	// AnalyticsRepairs takes TokenAnalytics' requests for a repair of the
	// counters; nil publishes them to ANALYTICS_TOPIC.
	AnalyticsRepairs AnalyticsRepairRequester
	// Reports keeps the weekly report WeeklyAnalytics renders; nil: the
	// REPORT_BUCKET bucket, or none when it is not set.
	Reports ReportStore
}

// Server is every function's handler over one set of dependencies. The
// deployed functions, scripts/serve and the tests all build it with New.
type Server struct {
	cfg      lifecycle.Config
	svc      *lifecycle.Service
	auth     *Authenticator
	webhooks *lifecycle.WebhookVerifier
	repairs  AnalyticsRepairRequester
	reports  ReportStore // nil: no REPORT_BUCKET
	log      *slog.Logger
	// lastBackfillRequest is when (Unix ns) this instance last asked for
	// the counters' backfill.
	lastBackfillRequest atomic.Int64

	cleanup, cleanupRuns, revokeAll, analytics, revokeItem, webhook http.Handler
	// The app's side of an Item's life.
	createLinkToken, exchange, listItems, verifyItem http.Handler
}

// New validates deps and builds the server's handlers once.
func New(ctx context.Context, cfg lifecycle.Config, deps Deps) (*Server, error) {
	if deps.Service == nil {
		return nil, errors.New("functions.New: no lifecycle service")
	}
	s := &Server{cfg: cfg, svc: deps.Service, auth: deps.Auth, webhooks: deps.Webhooks, repairs: deps.AnalyticsRepairs, log: deps.Logger}
	if s.repairs == nil {
		s.repairs = pubSubRepairRequester(cfg.Project, cfg.AnalyticsTopic)
	}
	s.reports = deps.Reports
	if s.reports == nil && cfg.ReportBucket != "" {
		s.reports = NewStorageReports(nil, cfg.ReportBucket, cfg.StorageEmulatorHost)
	}
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
		s.webhooks = s.svc.WebhookVerifier(deps.WebhookKeys)
	}
	s.cleanup = s.endpoint(http.MethodDelete, accepts{query: []string{"days_threshold", "dry_run", "async"}},
		s.requireUser(RequireAdmin(s.handleCleanup())))
	s.cleanupRuns = s.endpoint(http.MethodGet, accepts{}, s.requireUser(RequireAdmin(s.handleCleanupRun())))
	s.revokeAll = s.endpoint(http.MethodDelete, accepts{}, s.requireUser(s.handleRevokeAll()))
	s.analytics = s.endpoint(http.MethodGet, accepts{query: []string{"exact", "history"}},
		s.requireUser(RequireAdmin(s.handleAnalytics())))
	s.revokeItem = s.endpoint(http.MethodDelete, accepts{}, s.requireUser(s.handleRevokeItem()))
	s.webhook = s.withLogger(s.handleWebhook())
	s.createLinkToken = s.endpoint(http.MethodPost, accepts{body: true}, s.requireUser(s.handleCreateLinkToken()))
	s.exchange = s.endpoint(http.MethodPost, accepts{body: true}, s.requireUser(s.handleExchange()))
	s.listItems = s.endpoint(http.MethodGet, accepts{}, s.requireUser(s.handleListItems()))
	s.verifyItem = s.endpoint(http.MethodPost, accepts{}, s.requireUser(s.handleVerifyItem()))
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
// functions at /events/<Target>: what scripts/serve listens with. Item
// paths go to RevokeItem (or VerifyItem, for .../{item_id}/verify) before
// any path cleaning: an id such as ".." or "%2e%2e" names no item and
// answers 404, like any other. /api/v1/plaid/items itself is two
// functions, ListItems (GET) and ExchangePublicToken (POST).
func (s *Server) Routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(PathCleanup, s.cleanup)
	mux.Handle(PathCleanupRuns, s.cleanupRuns)
	mux.Handle(PathRevokeAll, s.revokeAll)
	mux.Handle(PathAnalytics, s.analytics)
	mux.Handle(PathWebhook, s.webhook)
	mux.Handle(PathLinkToken, s.createLinkToken)
	mux.Handle(PathItems, byMethod(map[string]http.Handler{http.MethodGet: s.listItems, http.MethodPost: s.exchange}))
	// The same handlers as the deployed functions, answering what they did
	// (a person runs them with curl; Eventarc reads only the status).
	mux.Handle("/events/DailyCleanup", s.localEvents(eventSummaryHandler(s.dailyCleanup)))
	mux.Handle("/events/WeeklyAnalytics", s.localEvents(eventSummaryHandler(s.weeklyAnalytics)))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, lifecycle.Errorf(lifecycle.CodeNotFound, "no endpoint at %s", r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.EscapedPath(), PathItemPrefix); ok {
			if strings.HasSuffix(rest, PathVerifySuffix) {
				s.verifyItem.ServeHTTP(w, r)
				return
			}
			s.revokeItem.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// byMethod serves each method with its handler, and any other with 405
// naming them all in Allow: one path, two functions.
func byMethod(handlers map[string]http.Handler) http.Handler {
	allowed := slices.Sorted(maps.Keys(handlers))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := handlers[r.Method]; ok {
			h.ServeHTTP(w, r)
			return
		}
		writeMethodNotAllowed(w, r.Method, allowed...)
	})
}

// writeMethodNotAllowed answers 405 with the methods the path takes.
func writeMethodNotAllowed(w http.ResponseWriter, method string, allowed ...string) {
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeJSON(w, http.StatusMethodNotAllowed, errorBody{
		Detail: fmt.Sprintf("method %s not allowed; use %s", method, strings.Join(allowed, " or ")), Code: "method_not_allowed"})
}

// localEvents guards the local server's /events/* endpoints: they run real
// cleanups and carry no credentials (Eventarc's IAM stands in front of the
// deployed ones), so only loopback callers reach them unless
// SERVE_REMOTE_EVENTS says otherwise. A loopback peer is not enough: a web
// page whose name an attacker rebinds to 127.0.0.1 reaches the server from
// the operator's own browser, so the Host must name the loopback too, and
// a browser's cross-site request (Origin or Sec-Fetch-Site) is refused.
func (s *Server) localEvents(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.ServeRemoteEvents {
			next.ServeHTTP(w, r)
			return
		}
		var why string
		switch {
		case !isLoopback(r.RemoteAddr):
			why = "scheduled events are taken from loopback callers only; set SERVE_REMOTE_EVENTS=true to open them"
		case !loopbackHost(r.Host):
			why = "scheduled events are taken for a loopback Host only (localhost, 127.0.0.1, [::1]); " +
				"a name that resolves to the loopback may be a DNS-rebinding page"
		case r.Header.Get("Origin") != "" && !loopbackOrigin(r.Header.Get("Origin")),
			r.Header.Get("Sec-Fetch-Site") == "cross-site":
			why = "scheduled events are not taken from a web page of another site"
		}
		if why != "" {
			writeError(w, r, lifecycle.Errorf(lifecycle.CodeForbidden, "%s", why))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names the loopback: localhost
// or a loopback address, with or without a port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackOrigin reports whether an Origin header is a page served from
// the loopback.
func loopbackOrigin(origin string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && loopbackHost(u.Host)
}

func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// endpoint wraps an API handler: it carries the logger (with the trace of
// the request) in the context, answers 405 with Allow for other methods,
// caps the request body (413 past it) and refuses what the endpoint does
// not take (400 naming it).
func (s *Server) endpoint(method string, a accepts, next http.Handler) http.Handler {
	return s.withLogger(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			writeMethodNotAllowed(w, r.Method, method)
			return
		}
		if r.ContentLength > maxRequestBody {
			writeError(w, r, lifecycle.Errorf(lifecycle.CodeTooLarge, "request body larger than %d bytes", maxRequestBody))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
		if err := checkRequest(r, a); err != nil {
			writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	}))
}

// withLogger puts the server's logger in the request context, with the
// Cloud Trace ids when a trace header came in (DESIGN §11).
func (s *Server) withLogger(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log := s.requestLogger(r.Header.Get("X-Cloud-Trace-Context"), r.Header.Get("traceparent"))
		next.ServeHTTP(w, r.WithContext(lifecycle.WithLogger(r.Context(), log)))
	})
}

// requestLogger is the server's logger carrying the trace of a request or
// event: X-Cloud-Trace-Context first, else W3C traceparent.
func (s *Server) requestLogger(cloudTrace, traceparent string) *slog.Logger {
	if tc, ok := parseCloudTraceContext(cloudTrace); ok {
		return withTrace(s.log, s.cfg.Project, tc)
	}
	if tc, ok := parseTraceparent(traceparent); ok {
		return withTrace(s.log, s.cfg.Project, tc)
	}
	return s.log
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

// TokenCleanupHandler is the TokenCleanup function's handler: the cleanup
// at its root or full path, and its runs at /runs/{run_id} or the full
// runs path.
func (s *Server) TokenCleanupHandler() http.Handler {
	cleanup := atPath(PathCleanup, s.cleanup)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, PathCleanupRuns):
			s.cleanupRuns.ServeHTTP(w, r)
		case strings.HasPrefix(r.URL.Path, "/runs/"):
			s.cleanupRuns.ServeHTTP(w, withPath(r, PathCleanupRuns+strings.TrimPrefix(r.URL.Path, "/runs/")))
		default:
			cleanup.ServeHTTP(w, r)
		}
	})
}

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
		if !strings.HasPrefix(r.URL.EscapedPath(), PathItemPrefix) {
			r = withPath(r, PathItemPrefix+strings.TrimPrefix(r.URL.EscapedPath(), "/"))
		}
		s.revokeItem.ServeHTTP(w, r)
	})
}

// CreateLinkTokenHandler is the CreateLinkToken function's handler.
func (s *Server) CreateLinkTokenHandler() http.Handler {
	return atPath(PathLinkToken, s.createLinkToken)
}

// ExchangePublicTokenHandler is the ExchangePublicToken function's handler.
// Deployed alone it takes POST only: GET on its path is ListItems'.
func (s *Server) ExchangePublicTokenHandler() http.Handler { return atPath(PathItems, s.exchange) }

// ListItemsHandler is the ListItems function's handler.
func (s *Server) ListItemsHandler() http.Handler { return atPath(PathItems, s.listItems) }

// VerifyItemHandler is the VerifyItem function's handler. Deployed alone it
// takes /{item_id}/verify, /{item_id} or the full API path.
func (s *Server) VerifyItemHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.EscapedPath(), PathItemPrefix) {
			id := strings.TrimSuffix(strings.TrimPrefix(r.URL.EscapedPath(), "/"), PathVerifySuffix)
			r = withPath(r, PathItemPrefix+id+PathVerifySuffix)
		}
		s.verifyItem.ServeHTTP(w, r)
	})
}

// withPath returns r for another escaped path.
func withPath(r *http.Request, escaped string) *http.Request {
	r2 := r.Clone(r.Context())
	r2.URL.RawPath = escaped
	if p, err := pathUnescape(escaped); err == nil {
		r2.URL.Path = p
	} else {
		r2.URL.Path = escaped
	}
	return r2
}
