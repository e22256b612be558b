package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/plaid/plaid-go/v20/plaid"
	"github.com/sethvargo/go-retry"
	"golang.org/x/time/rate"
)

// Defaults of PlaidClientConfig.
const (
	defaultPlaidHTTPTimeout  = 30 * time.Second // per attempt
	defaultPlaidMaxAttempts  = 5
	defaultPlaidBaseBackoff  = 500 * time.Millisecond
	defaultPlaidMaxBackoff   = 20 * time.Second
	defaultPlaidMaxRetryTime = time.Minute
	defaultWebhookKeyRPM     = 60
)

const (
	plaidAPIVersion = "2020-09-14" // the Plaid-Version header; response shapes depend on it

	plaidEndpointItemGet    = "/item/get"
	plaidEndpointItemRemove = "/item/remove"
	plaidEndpointWebhookKey = "/webhook_verification_key/get"

	webhookKeyBurst           = 5  // a key rotation fetches a new kid or two, not more
	plaidMaxIdleConnsPerHost  = 64 // connections kept for concurrent workers
	plaidErrorMessageMaxChars = 300
)

// PlaidClientConfig configures NewPlaidClient: the PLAID_* settings of the
// service's Config, and how the adapter behaves. Zero values take the
// defaults named after each field.
type PlaidClientConfig struct {
	// PlaidSettings: PlaidClientID and PlaidSecret are required; PlaidEnv is
	// "sandbox" (the default) or "production" (Plaid retired Development,
	// so it is refused); PlaidBaseURL, when set, replaces the environment's
	// host (tests, proxies); ItemGetRPM and ItemRemoveRPM pace /item/get and
	// /item/remove (DefaultItemGetRPM, DefaultItemRemoveRPM) unless Pacer
	// does.
	PlaidSettings

	// Pacer paces /item/get and /item/remove; nil: a LocalPacer at the
	// settings' rates (one process).
	Pacer Pacer

	// WebhookKeyRPM paces /webhook_verification_key/get
	// (defaultWebhookKeyRPM): keys are cached by kid, so a flood of key
	// lookups means forged webhooks, not real work.
	WebhookKeyRPM int

	// HTTPClient makes the calls; nil means a client with a
	// defaultPlaidHTTPTimeout timeout per attempt.
	HTTPClient *http.Client

	// MaxAttempts bounds the attempts of one call, the first included
	// (defaultPlaidMaxAttempts). BaseBackoff doubles after every transient
	// failure up to MaxBackoff, with jitter (defaultPlaidBaseBackoff,
	// defaultPlaidMaxBackoff). MaxRetryTime bounds the time a call spends,
	// pacing, attempts and retries included (defaultPlaidMaxRetryTime): the
	// call then fails as transient.
	MaxAttempts  int
	BaseBackoff  time.Duration
	MaxBackoff   time.Duration
	MaxRetryTime time.Duration
}

// PlaidClient implements PlaidAPI over plaid-go: it paces calls to stay
// under Plaid's per-client rate limits, retries transient failures with
// backoff, and classifies every failure once into a *PlaidError. It is safe
// for concurrent use; share one per process so the pacing is shared.
type PlaidClient struct {
	api    *plaid.APIClient
	secret string // redacted from Plaid's messages, like access tokens
	// env is the Plaid environment the credentials belong to (PLAID_ENV),
	// whatever host PlaidBaseURL points at: an access token of another
	// environment is never sent (DESIGN §7 rule 0).
	env string

	pacer             Pacer
	webhookKeyLimiter *rate.Limiter

	maxAttempts  int
	baseBackoff  time.Duration
	maxBackoff   time.Duration
	maxRetryTime time.Duration
}

var _ PlaidAPI = (*PlaidClient)(nil)

// NewPlaidClient validates cfg and returns a client. It makes no network
// call, so it is cheap enough for a function's first request.
func NewPlaidClient(cfg PlaidClientConfig) (*PlaidClient, error) {
	var errs []error
	if cfg.PlaidClientID == "" {
		errs = append(errs, errors.New("plaid client: PlaidClientID is required"))
	}
	if cfg.PlaidSecret == "" {
		errs = append(errs, errors.New("plaid client: PlaidSecret is required"))
	}
	var env plaid.Environment
	switch cfg.PlaidEnv {
	case "sandbox":
		env = plaid.Sandbox
	case "production":
		env = plaid.Production
	case "development":
		errs = append(errs, errors.New(`plaid client: PlaidEnv "development" was retired by Plaid; use sandbox or production`))
	case "":
		errs = append(errs, errors.New("plaid client: PlaidEnv is required: sandbox or production"))
	default:
		errs = append(errs, fmt.Errorf("plaid client: PlaidEnv must be sandbox or production, got %q", cfg.PlaidEnv))
	}
	if cfg.PlaidBaseURL != "" {
		if !strings.HasPrefix(cfg.PlaidBaseURL, "http://") && !strings.HasPrefix(cfg.PlaidBaseURL, "https://") {
			errs = append(errs, fmt.Errorf("plaid client: PlaidBaseURL must be an http(s) URL, got %q", cfg.PlaidBaseURL))
		}
		env = plaid.Environment(strings.TrimRight(cfg.PlaidBaseURL, "/"))
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"ItemGetRPM", cfg.ItemGetRPM}, {"ItemRemoveRPM", cfg.ItemRemoveRPM}, {"WebhookKeyRPM", cfg.WebhookKeyRPM}, {"MaxAttempts", cfg.MaxAttempts}} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("plaid client: %s must not be negative, got %d", f.name, f.v))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	pacer := cfg.Pacer
	if pacer == nil {
		pacer = NewLocalPacer(cfg.PlaidSettings)
	}
	httpClient := cfg.HTTPClient
	if httpClient == nil {
		transport := http.DefaultTransport.(*http.Transport).Clone()
		// Calls run concurrently up to the rate limit; keep their
		// connections instead of redialling Plaid for most of them.
		transport.MaxIdleConnsPerHost = plaidMaxIdleConnsPerHost
		httpClient = &http.Client{Timeout: defaultPlaidHTTPTimeout, Transport: transport}
	}
	pc := plaid.NewConfiguration()
	pc.UseEnvironment(env)
	pc.HTTPClient = httpClient
	pc.AddDefaultHeader("PLAID-CLIENT-ID", cfg.PlaidClientID)
	pc.AddDefaultHeader("PLAID-SECRET", cfg.PlaidSecret)
	pc.AddDefaultHeader("Plaid-Version", plaidAPIVersion)

	return &PlaidClient{
		api:               plaid.NewAPIClient(pc),
		secret:            cfg.PlaidSecret,
		env:               cfg.PlaidEnv,
		pacer:             pacer,
		webhookKeyLimiter: newPerMinuteLimiter(orDefault(cfg.WebhookKeyRPM, defaultWebhookKeyRPM), webhookKeyBurst),
		maxAttempts:       orDefault(cfg.MaxAttempts, defaultPlaidMaxAttempts),
		baseBackoff:       orDefault(cfg.BaseBackoff, defaultPlaidBaseBackoff),
		maxBackoff:        orDefault(cfg.MaxBackoff, defaultPlaidMaxBackoff),
		maxRetryTime:      orDefault(cfg.MaxRetryTime, defaultPlaidMaxRetryTime),
	}, nil
}

// limiterPacer paces every call of an endpoint on one limiter.
type limiterPacer struct{ *rate.Limiter }

func (l limiterPacer) Wait(ctx context.Context, _ string) error { return l.Limiter.Wait(ctx) }

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// newPerMinuteLimiter paces calls so that no 60-second window holds more
// than rpm of them, which is how Plaid counts. The burst (0 means the
// default) is one second's worth, max(1, rpm/60): small enough that a cold
// start does not slam Plaid, large enough to keep concurrent workers busy.
// A token bucket lets burst + rate×W calls through in any window W, so the
// refill rate is (rpm − burst)/60 per second, keeping a full minute at rpm.
func newPerMinuteLimiter(rpm, burst int) *rate.Limiter {
	if burst <= 0 {
		burst = max(1, rpm/60)
	}
	refill := rpm - burst
	if refill <= 0 {
		// rpm ≤ burst (rpm of 1): the minute allows rpm+1 calls, not a stall.
		refill = rpm
	}
	return rate.NewLimiter(rate.Limit(float64(refill)/60), burst)
}

// GetItem calls /item/get. An Item in an error state comes back as a
// *PlaidError with Status 0 and the class of its item.error code.
func (c *PlaidClient) GetItem(ctx context.Context, accessToken string) (*Item, error) {
	if err := c.checkEnvironment(accessToken); err != nil {
		return nil, err
	}
	var resp plaid.ItemGetResponse
	err := c.call(ctx, plaidEndpointItemGet, c.pacer, accessToken, func(ctx context.Context) (*http.Response, error) {
		var httpResp *http.Response
		var err error
		resp, httpResp, err = c.api.PlaidApi.ItemGet(ctx).ItemGetRequest(*plaid.NewItemGetRequest(accessToken)).Execute()
		return httpResp, err
	})
	if err != nil {
		return nil, err
	}
	// item.error is the Item's state, not a failed call: it is not retried,
	// since the next seconds will not change it (DESIGN §7: a 200 whose
	// item.error is set counts as that error code).
	if ie := resp.Item.Error.Get(); ie != nil {
		pe := c.fromPlaidModel(*ie, 0, accessToken)
		if pe.RequestID == "" {
			pe.RequestID = resp.GetRequestId()
		}
		return nil, pe
	}
	if resp.Item.GetItemId() == "" {
		return nil, incompleteAnswer(plaidEndpointItemGet, "no item_id")
	}
	return &Item{ItemID: resp.Item.GetItemId(), InstitutionID: resp.Item.GetInstitutionId()}, nil
}

// RemoveItem calls /item/remove, which stops Plaid billing for the Item.
// ITEM_NOT_FOUND and INVALID_ACCESS_TOKEN (for a token of this environment:
// see fromPlaidModel) mean the Item is already gone (a retried removal may
// meet them after the first attempt succeeded unseen), so they return nil.
func (c *PlaidClient) RemoveItem(ctx context.Context, accessToken string) error {
	if err := c.checkEnvironment(accessToken); err != nil {
		return err
	}
	var resp plaid.ItemRemoveResponse
	err := c.call(ctx, plaidEndpointItemRemove, c.pacer, accessToken, func(ctx context.Context) (*http.Response, error) {
		var httpResp *http.Response
		var err error
		resp, httpResp, err = c.api.PlaidApi.ItemRemove(ctx).ItemRemoveRequest(*plaid.NewItemRemoveRequest(accessToken)).Execute()
		return httpResp, err
	})
	if err == nil && resp.GetRequestId() == "" {
		// plaid-go decodes an empty 200 as success. Removal is what stops
		// the billing, and the caller deletes the token after it, so only
		// Plaid's own answer (it always has a request_id) counts.
		return incompleteAnswer(plaidEndpointItemRemove, "no request_id")
	}
	var pe *PlaidError
	if errors.As(err, &pe) && pe.Class == ClassGone && (pe.Code == "ITEM_NOT_FOUND" || pe.Code == "INVALID_ACCESS_TOKEN") {
		return nil
	}
	return err
}

// checkEnvironment refuses, without calling Plaid, an access token whose
// access-<env>- prefix names another Plaid environment than the client's:
// Plaid would answer INVALID_ACCESS_TOKEN, which must not read as "gone"
// (DESIGN §7 rule 0: a wrong PLAID_ENV must not destroy the other
// environment's tokens).
func (c *PlaidClient) checkEnvironment(accessToken string) error {
	if env := TokenEnvironment(accessToken); env != "" && env != c.env {
		return &PlaidError{Class: ClassConfig, Code: CodeWrongEnvironment,
			Err: fmt.Errorf("the access token belongs to Plaid's %s environment; this client talks to %s (PLAID_ENV)", env, c.env)}
	}
	return nil
}

// WebhookVerificationKey calls /webhook_verification_key/get. An unknown
// key id is an INVALID_INPUT error (ClassConfig): the webhook is unverified.
func (c *PlaidClient) WebhookVerificationKey(ctx context.Context, keyID string) (*WebhookKey, error) {
	var key *WebhookKey
	err := c.call(ctx, plaidEndpointWebhookKey, limiterPacer{c.webhookKeyLimiter}, "", func(ctx context.Context) (*http.Response, error) {
		resp, httpResp, err := c.api.PlaidApi.WebhookVerificationKeyGet(ctx).
			WebhookVerificationKeyGetRequest(*plaid.NewWebhookVerificationKeyGetRequest(keyID)).Execute()
		if err == nil {
			k := resp.GetKey()
			key = &WebhookKey{
				Alg: k.GetAlg(), Crv: k.GetCrv(), KeyID: k.GetKid(), Kty: k.GetKty(), Use: k.GetUse(),
				X: k.GetX(), Y: k.GetY(),
				CreatedAt: int64(k.GetCreatedAt()),
				ExpiredAt: int64(k.GetExpiredAt()), // 0 when null
			}
		}
		return httpResp, err
	})
	if err != nil {
		return nil, err
	}
	if key.KeyID == "" || key.X == "" || key.Y == "" {
		return nil, incompleteAnswer(plaidEndpointWebhookKey, "no key")
	}
	return key, nil
}

// call runs attempt, one HTTP call to endpoint, pacing every attempt on
// limiter and retrying transient failures with exponential backoff and
// jitter, up to maxAttempts (github.com/sethvargo/go-retry runs the loop).
// The whole call, pacing and retries included, ends after maxRetryTime: a
// hung Plaid must not hold a cleanup worker past the run's budget. It
// returns nil or a *PlaidError: the first non-transient one, or the last
// transient one. accessToken is only used to redact it from Plaid's
// messages.
func (c *PlaidClient) call(ctx context.Context, endpoint string, pacer Pacer, accessToken string, attempt func(context.Context) (*http.Response, error)) error {
	ctx, cancel := context.WithTimeout(ctx, c.maxRetryTime)
	defer cancel()
	pc := &plaidCall{endpoint: endpoint}
	err := retry.Do(ctx, c.retryBackoff(ctx, pc), func(ctx context.Context) error {
		if err := pacer.Wait(ctx, endpoint); err != nil {
			if errors.Is(err, errQuotaSaturated) {
				// A user's call that found no room: no retry, the caller
				// falls back (a revocation revokes locally).
				return &PlaidError{Class: ClassTransient, Code: "QUOTA_SATURATED", Err: fmt.Errorf("plaid %s: %w", endpoint, err)}
			}
			return c.stopped(ctx, endpoint, "waiting for the rate limit", err)
		}
		pc.attempts++
		httpResp, err := attempt(ctx)
		if err == nil {
			return nil
		}
		pc.last = c.toPlaidError(err, httpResp, accessToken)
		if pc.last.Class != ClassTransient || ctx.Err() != nil {
			return pc.last
		}
		return retry.RetryableError(pc.last)
	})
	var pe *PlaidError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &pe):
		return pe
	case pc.last == nil:
		// go-retry found ctx ended before the first attempt.
		return c.stopped(ctx, endpoint, "waiting for the rate limit", err)
	default:
		// ctx ended while waiting to retry.
		return c.stopped(ctx, endpoint, "waiting to retry after "+pc.last.Error(), err)
	}
}

// plaidCall is what the attempts of one call share with its backoff.
type plaidCall struct {
	endpoint string
	attempts int         // made so far
	last     *PlaidError // the last attempt's error
}

// retryBackoff is the wait before each retry of pc: BaseBackoff doubled
// per failed attempt, capped at MaxBackoff, with "equal jitter" (half
// fixed, half random) so that concurrent workers hit by one outage do not
// retry in step; no retry after maxAttempts attempts, nor one that could
// not start before ctx's deadline (the call returns Plaid's error then, not
// a timeout). Each retry it allows is logged as a WARNING (DESIGN §11).
func (c *PlaidClient) retryBackoff(ctx context.Context, pc *plaidCall) retry.Backoff {
	b := retry.NewExponential(c.baseBackoff)
	b = retry.WithCappedDuration(c.maxBackoff, b)
	b = withEqualJitter(b)
	b = retry.WithMaxRetries(uint64(c.maxAttempts-1), b)
	return retry.BackoffFunc(func() (time.Duration, bool) {
		delay, stop := b.Next()
		if stop {
			return 0, true
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < delay {
			return 0, true // the time bound ends before the retry could start
		}
		// The logger travels in ctx (log.go).
		Logger(ctx).LogAttrs(ctx, slog.LevelWarn, "retrying Plaid call",
			slog.String("endpoint", pc.endpoint),
			slog.Int("attempt", pc.attempts),
			slog.String("error_type", pc.last.Type),
			slog.String("error_code", pc.last.Code),
			slog.Int("status", pc.last.Status),
			slog.String("request_id", pc.last.RequestID),
			slog.Duration("backoff", delay),
			slog.String("error", pc.last.Error()),
		)
		return delay, false
	})
}

// withEqualJitter returns next's delays d as a random wait in [d/2, d]. It
// never exceeds d, so MaxBackoff stays the longest wait; go-retry's own
// jitters add up to as much as they take away.
func withEqualJitter(next retry.Backoff) retry.Backoff {
	return retry.BackoffFunc(func() (time.Duration, bool) {
		d, stop := next.Next()
		if stop {
			return 0, true
		}
		half := d / 2
		return half + rand.N(d-half+1), false
	})
}

// stopped is the error of a call the caller's context ended (or whose
// deadline the rate limiter could not meet) before Plaid answered it.
func (c *PlaidClient) stopped(ctx context.Context, endpoint, while string, err error) *PlaidError {
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = ctxErr
	} else if _, ok := ctx.Deadline(); ok {
		// rate.Limiter refuses a wait that would outlast the deadline.
		err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return &PlaidError{Class: ClassTransient, Err: fmt.Errorf("plaid %s: %s: %w", endpoint, while, err)}
}

// toPlaidError classifies what a plaid-go call returned. plaid-go returns a
// plaid.GenericOpenAPIError for every HTTP answer it could not use (status
// ≥ 300, or a body it could not decode, even on a 200) and the HTTP
// client's own error when nothing came back.
func (c *PlaidClient) toPlaidError(err error, httpResp *http.Response, accessToken string) *PlaidError {
	var generic plaid.GenericOpenAPIError
	if !errors.As(err, &generic) {
		// No answer: connection refused or reset, timeout, cancellation, or
		// a body cut short. *url.Error names the URL, never the body.
		return &PlaidError{Class: ClassifyPlaidError("", "", 0, true), Err: err}
	}
	status := 0
	if httpResp != nil {
		status = httpResp.StatusCode
	}
	if status >= 300 {
		// ToPlaidError needs the GenericOpenAPIError itself, not a wrapper.
		if model, perr := plaid.ToPlaidError(generic); perr == nil && model.ErrorCode != "" {
			return c.fromPlaidModel(model, status, accessToken)
		}
	}
	// Not Plaid's JSON: a proxy's or load balancer's error page, or a
	// BaseURL that is not Plaid. Only the decoder's message is kept.
	return &PlaidError{
		Class:  ClassifyPlaidError("", "", status, false),
		Status: status,
		Err:    fmt.Errorf("undecodable Plaid answer: %s", generic.Error()),
	}
}

// incompleteAnswer is the error of a 200 that lacks what Plaid always sends:
// not Plaid, or not a whole answer, so it proves nothing.
func incompleteAnswer(endpoint, what string) *PlaidError {
	return &PlaidError{
		Class:  ClassifyPlaidError("", "", http.StatusOK, false),
		Status: http.StatusOK,
		Err:    fmt.Errorf("incomplete Plaid %s answer: %s", endpoint, what),
	}
}

// fromPlaidModel turns Plaid's error object into a *PlaidError. Plaid's
// error_message is kept for operators, without the access token or secret.
func (c *PlaidClient) fromPlaidModel(m plaid.PlaidError, status int, accessToken string) *PlaidError {
	pe := &PlaidError{
		Class:     ClassifyPlaidError(string(m.ErrorType), m.ErrorCode, status, false),
		Type:      string(m.ErrorType),
		Code:      m.ErrorCode,
		RequestID: m.GetRequestId(),
		Status:    status,
	}
	if msg := c.redact(m.ErrorMessage, accessToken); msg != "" {
		pe.Err = errors.New(msg)
	}
	if pe.Code == "INVALID_ACCESS_TOKEN" && TokenEnvironment(accessToken) != c.env {
		// Plaid says the same of a token of another environment and of a
		// malformed one: only a token that is provably of this environment
		// is gone (DESIGN §7 rule 0). Anything else changes nothing.
		pe.Class = ClassConfig
	}
	return pe
}

func (c *PlaidClient) redact(msg, accessToken string) string {
	for _, secret := range []string{accessToken, c.secret} {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "[redacted]")
		}
	}
	if len(msg) > plaidErrorMessageMaxChars {
		msg = msg[:plaidErrorMessageMaxChars] + "…"
	}
	return msg
}

// Plaid error codes the service acts on (DESIGN §7, PLAID.md).
var (
	plaidGoneCodes = map[string]bool{
		"ITEM_NOT_FOUND":          true,
		"INVALID_ACCESS_TOKEN":    true,
		"USER_PERMISSION_REVOKED": true,
	}
	// The three codes of DESIGN §7, and the ITEM_ERROR codes Plaid
	// documents as resolved by the user in Link's update mode: the Item is
	// alive and must not be removed, and error_code tells the app to ask
	// the user. Without them these would read as configuration faults.
	plaidNeedsUserCodes = map[string]bool{
		"ITEM_LOGIN_REQUIRED":      true,
		"PENDING_EXPIRATION":       true,
		"PENDING_DISCONNECT":       true,
		"ITEM_LOCKED":              true,
		"INVALID_CREDENTIALS":      true,
		"INVALID_MFA":              true,
		"INVALID_UPDATED_USERNAME": true,
		"INSUFFICIENT_CREDENTIALS": true,
		"USER_SETUP_REQUIRED":      true,
		"MFA_NOT_SUPPORTED":        true,
		"ACCESS_NOT_GRANTED":       true,
		// One account's access withdrawn: the Item works, and update mode
		// grants it again (DESIGN §7).
		"USER_ACCOUNT_REVOKED": true,
	}
	plaidTransientTypes = map[string]bool{
		"RATE_LIMIT_EXCEEDED": true, // 429, any code: ITEM_GET_LIMIT, RATE_LIMIT...
		"API_ERROR":           true, // INTERNAL_SERVER_ERROR 500, PLANNED_MAINTENANCE 503
		"INSTITUTION_ERROR":   true, // the bank is down, not the token (a 400)
	}
)

// ClassifyPlaidError is the one mapping from a Plaid failure to what it
// means for the token (DESIGN §7, PLAID.md): errorType and errorCode from
// Plaid's error object (empty when the answer was not Plaid's JSON), status
// the HTTP status (0 for item.error in a 200 and for webhooks), noAnswer
// whether the call got no HTTP answer at all (connection error, timeout).
//
// Classification goes by code, then type, then status: INSTITUTION_DOWN is
// a 400, yet transient. What is left over, an unknown code or an
// undecodable 2xx/4xx, is ClassConfig: an error the service does not
// understand must never mark a token dead, and it must not be retried
// forever either; "change nothing, report loudly" is the safe reading.
func ClassifyPlaidError(errorType, errorCode string, status int, noAnswer bool) ErrorClass {
	switch {
	case noAnswer:
		return ClassTransient
	case plaidGoneCodes[errorCode]:
		return ClassGone
	case plaidNeedsUserCodes[errorCode]:
		return ClassNeedsUser
	case errorCode == "INVALID_API_KEYS":
		return ClassConfig
	case plaidTransientTypes[errorType], strings.HasPrefix(errorCode, "INSTITUTION_"):
		return ClassTransient
	case status == http.StatusTooManyRequests, status == http.StatusRequestTimeout, status >= 500:
		// Rate limits, gateway errors and outages, decodable or not.
		return ClassTransient
	default:
		return ClassConfig
	}
}

// The Link flow's calls. They are not paced: Plaid's per-client
// limits that bind the service are those of /item/get and /item/remove,
// and a user makes these calls one at a time.

const (
	plaidEndpointLinkTokenCreate     = "/link/token/create"
	plaidEndpointPublicTokenExchange = "/item/public_token/exchange"
	plaidEndpointInstitutionsGetByID = "/institutions/get_by_id"
)

// CreateLinkToken calls /link/token/create: for a new Item with the
// settings' products, or in update mode (req.AccessToken) without them.
func (c *PlaidClient) CreateLinkToken(ctx context.Context, req LinkTokenRequest) (*LinkToken, error) {
	countries := make([]plaid.CountryCode, len(req.CountryCodes))
	for i, cc := range req.CountryCodes {
		countries[i] = plaid.CountryCode(cc)
	}
	body := plaid.NewLinkTokenCreateRequest(req.ClientName, req.Language, countries,
		*plaid.NewLinkTokenCreateRequestUser(req.ClientUserID))
	if req.AccessToken != "" {
		body.SetAccessToken(req.AccessToken)
	} else {
		products := make([]plaid.Products, len(req.Products))
		for i, p := range req.Products {
			products[i] = plaid.Products(p)
		}
		body.SetProducts(products)
	}
	if req.WebhookURL != "" {
		body.SetWebhook(req.WebhookURL)
	}
	if req.RedirectURI != "" {
		body.SetRedirectUri(req.RedirectURI)
	}
	var resp plaid.LinkTokenCreateResponse
	err := c.call(ctx, plaidEndpointLinkTokenCreate, c.pacer, req.AccessToken, func(ctx context.Context) (*http.Response, error) {
		var httpResp *http.Response
		var err error
		resp, httpResp, err = c.api.PlaidApi.LinkTokenCreate(ctx).LinkTokenCreateRequest(*body).Execute()
		return httpResp, err
	})
	if err != nil {
		return nil, err
	}
	if resp.GetLinkToken() == "" {
		return nil, incompleteAnswer(plaidEndpointLinkTokenCreate, "no link_token")
	}
	return &LinkToken{LinkToken: resp.GetLinkToken(), Expiration: resp.GetExpiration()}, nil
}

// ExchangePublicToken calls /item/public_token/exchange. The public token
// is redacted from Plaid's messages like an access token.
func (c *PlaidClient) ExchangePublicToken(ctx context.Context, publicToken string) (*ExchangedItem, error) {
	var resp plaid.ItemPublicTokenExchangeResponse
	// Set once an attempt failed without an answer that proves nothing
	// happened: Plaid may have exchanged the token all the same.
	maybeExchanged := false
	err := c.call(ctx, plaidEndpointPublicTokenExchange, c.pacer, publicToken, func(ctx context.Context) (*http.Response, error) {
		var httpResp *http.Response
		var err error
		resp, httpResp, err = c.api.PlaidApi.ItemPublicTokenExchange(ctx).
			ItemPublicTokenExchangeRequest(*plaid.NewItemPublicTokenExchangeRequest(publicToken)).Execute()
		if err != nil && (httpResp == nil || httpResp.StatusCode >= 500) {
			maybeExchanged = true
		}
		return httpResp, err
	})
	var pe *PlaidError
	if errors.As(err, &pe) && pe.Code == "INVALID_PUBLIC_TOKEN" && maybeExchanged {
		lost := *pe
		lost.Class = ClassTransient
		lost.Err = ErrExchangeOutcomeUnknown
		return nil, &lost
	}
	if err != nil {
		return nil, err
	}
	if resp.GetAccessToken() == "" || resp.GetItemId() == "" {
		return nil, incompleteAnswer(plaidEndpointPublicTokenExchange, "no access_token or item_id")
	}
	return &ExchangedItem{ItemID: resp.GetItemId(), AccessToken: resp.GetAccessToken()}, nil
}

// GetInstitution calls /institutions/get_by_id with the institution's
// optional metadata (url, primary_color, logo), which token documents keep.
func (c *PlaidClient) GetInstitution(ctx context.Context, institutionID string, countryCodes []string) (*Institution, error) {
	countries := make([]plaid.CountryCode, len(countryCodes))
	for i, cc := range countryCodes {
		countries[i] = plaid.CountryCode(cc)
	}
	body := plaid.NewInstitutionsGetByIdRequest(institutionID, countries)
	opts := plaid.NewInstitutionsGetByIdRequestOptions()
	opts.SetIncludeOptionalMetadata(true)
	body.SetOptions(*opts)
	var resp plaid.InstitutionsGetByIdResponse
	err := c.call(ctx, plaidEndpointInstitutionsGetByID, c.pacer, "", func(ctx context.Context) (*http.Response, error) {
		var httpResp *http.Response
		var err error
		resp, httpResp, err = c.api.PlaidApi.InstitutionsGetById(ctx).InstitutionsGetByIdRequest(*body).Execute()
		return httpResp, err
	})
	if err != nil {
		return nil, err
	}
	inst := resp.GetInstitution()
	if inst.GetInstitutionId() == "" || inst.GetName() == "" {
		return nil, incompleteAnswer(plaidEndpointInstitutionsGetByID, "no institution")
	}
	return &Institution{ID: inst.GetInstitutionId(), Name: inst.GetName(), Metadata: Metadata{
		Name: inst.GetName(), URL: inst.GetUrl(), PrimaryColor: inst.GetPrimaryColor(), Logo: inst.GetLogo(),
	}}, nil
}

// validLinkProduct reports whether Plaid's API knows product as one a Link
// token is created with (Balance is not one: Plaid refuses it there).
func validLinkProduct(product string) bool {
	return product != string(plaid.PRODUCTS_BALANCE) && plaid.Products(product).IsValid()
}

// validCountryCode reports whether Plaid's API knows country code cc.
func validCountryCode(cc string) bool { return plaid.CountryCode(cc).IsValid() }
