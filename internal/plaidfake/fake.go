// Package plaidfake is a fake Plaid API server for tests and local
// development. It speaks Plaid's JSON (PLAID.md) for the endpoints the
// service uses, /item/get, /item/remove and /webhook_verification_key/get,
// and those of the Link flow (link.go: /link/token/create,
// /item/public_token/exchange, /institutions/get_by_id and the sandbox's
// /sandbox/public_token/create and /sandbox/item/reset_login). It answers as
// one Plaid environment (sandbox unless WithEnvironment says otherwise):
// another environment's tokens are unknown to it, as they are to Plaid. It
// checks API credentials the way Plaid does, injects faults (Plaid errors,
// Items in an error state, rate limits, outages, dropped connections,
// latency, and random faults at a rate, deterministic by seed:
// random_faults.go), records every call and every removal, and signs
// webhooks with ES256 keys it serves as JWKs.
//
// It is a normal package, not a _test.go file, so tests of any package and
// the local development server (scripts/dev.sh) can use it. Every method is
// safe for concurrent use.
package plaidfake

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Plaid endpoints the fake serves.
const (
	PathItemGet                = "/item/get"
	PathItemRemove             = "/item/remove"
	PathWebhookVerificationKey = "/webhook_verification_key/get"
)

// Credentials New uses unless WithCredentials says otherwise.
const (
	DefaultClientID = "plaidfake-client-id"
	DefaultSecret   = "plaidfake-secret"
)

// PlaidVersion is the API version Plaid's clients send in the Plaid-Version
// header; Call records what each request sent.
const PlaidVersion = "2020-09-14"

// Call is one request the fake received, recorded before it was answered.
type Call struct {
	Path         string    // e.g. /item/get
	AccessToken  string    // access_token of the body, if any
	KeyID        string    // key_id of the body (webhook key requests)
	PublicToken  string    // public_token of the body (exchanges)
	PlaidVersion string    // the Plaid-Version header
	Time         time.Time // when the request arrived
	// RateLimited: the per-client limit (SetClientRateLimit) refused it.
	RateLimited bool
}

// Server is a running fake Plaid API. Create it with New (tests) or
// NewServer / Listen (programs). ClientID and Secret are the credentials it
// accepts; they are fixed at construction and must not be changed.
type Server struct {
	// ClientID is the client id the fake accepts.
	ClientID string
	// Secret is the secret the fake accepts.
	Secret string

	srv  *httptest.Server
	done chan struct{} // closed by Close: ends latency waits
	once sync.Once
	env  string // the Plaid environment it plays: sandbox or production

	mu         sync.Mutex
	items      map[string]item   // by access token
	removed    map[string]bool   // access tokens removed by /item/remove
	removedSeq []string          // the same, in removal order
	tokenErrs  map[string]string // access token → error code answered as an HTTP error
	itemErrs   map[string]string // access token → error code put in item.error
	next       map[string][]fault
	always     map[string]fault
	latency    time.Duration
	onCall     func(path, accessToken string)
	calls      []Call
	keys       map[string]*webhookKey

	link linkState // the Link flow's tokens and institutions (link.go)

	random       randomFaults            // SetRandomFaults (random_faults.go)
	clientLimits map[string]*clientLimit // SetClientRateLimit (client_limit.go)
	removals     []Removal               // successful /item/remove calls, in order
	onRemoved    func(r Removal)         // OnRemoved
}

type item struct {
	itemID, institutionID string
}

// fault is an injected failure of one endpoint. An empty code sends a body
// that is not JSON (a proxy's error page); status 0 drops the connection.
type fault struct {
	status        int
	errType, code string
}

type webhookKey struct {
	priv      *ecdsa.PrivateKey
	createdAt int64
	expiredAt int64 // 0 while valid
}

// Option configures a Server made by New, NewServer or Listen.
type Option func(*Server)

// WithCredentials sets the client id and secret the fake accepts.
func WithCredentials(clientID, secret string) Option {
	return func(s *Server) { s.ClientID, s.Secret = clientID, secret }
}

// WithEnvironment makes the fake play Plaid's production environment
// ("production") instead of the sandbox: the environment its tokens name
// (access-production-…) and the only one whose tokens it knows.
func WithEnvironment(env string) Option {
	return func(s *Server) { s.env = env }
}

// WithLatency delays every answer by d (see SetLatency).
func WithLatency(d time.Duration) Option {
	return func(s *Server) { s.latency = d }
}

// New starts a fake Plaid server for a test and closes it when the test
// ends. It accepts DefaultClientID and DefaultSecret unless an option says
// otherwise.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := NewServer(DefaultClientID, DefaultSecret, opts...)
	t.Cleanup(s.Close)
	return s
}

// NewServer starts a fake Plaid server on a random loopback port, accepting
// clientID and secret. It needs no testing.T; call Close when done.
func NewServer(clientID, secret string, opts ...Option) *Server {
	s := newServer(clientID, secret, opts)
	s.srv = httptest.NewServer(s)
	return s
}

// Listen starts a fake Plaid server on addr (e.g. "127.0.0.1:8089"), for a
// local stand-in with a fixed address. Call Close when done.
func Listen(addr, clientID, secret string, opts ...Option) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("plaidfake: listening on %s: %w", addr, err)
	}
	s := newServer(clientID, secret, opts)
	s.srv = httptest.NewUnstartedServer(s)
	s.srv.Listener.Close()
	s.srv.Listener = l
	s.srv.Start()
	return s, nil
}

func newServer(clientID, secret string, opts []Option) *Server {
	s := &Server{
		ClientID:  clientID,
		Secret:    secret,
		env:       "sandbox",
		done:      make(chan struct{}),
		items:     make(map[string]item),
		removed:   make(map[string]bool),
		tokenErrs: make(map[string]string),
		itemErrs:  make(map[string]string),
		next:      make(map[string][]fault),
		always:    make(map[string]fault),
		keys:      make(map[string]*webhookKey),
	}
	s.link = newLinkState()
	for _, o := range opts {
		o(s)
	}
	return s
}

// Environment is the Plaid environment the fake plays: sandbox or
// production.
func (s *Server) Environment() string { return s.env }

// URL is the server's base URL, e.g. http://127.0.0.1:41234: the value for
// PLAID_BASE_URL.
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server. Requests waiting out a latency end at once.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.done)
		s.srv.Close()
	})
}

// AddItem registers an Item: /item/get answers it in good standing until a
// fault is set, and /item/remove removes it. Adding a removed token again
// brings it back.
func (s *Server) AddItem(accessToken, itemID, institutionID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.items[accessToken] = item{itemID: itemID, institutionID: institutionID}
	delete(s.removed, accessToken)
}

// SetTokenError makes every call with accessToken answer the Plaid error
// errorCode, with the error_type and HTTP status Plaid uses for it (see
// ErrorTypeOf). It works for tokens never added. An empty code clears it.
func (s *Server) SetTokenError(accessToken, errorCode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	setOrDelete(s.tokenErrs, accessToken, errorCode)
}

// SetItemError puts the Item in an error state: /item/get answers 200 with
// item.error set to errorCode (as Plaid does, e.g. for ITEM_LOGIN_REQUIRED).
// /item/remove still succeeds. An empty code clears it.
func (s *Server) SetItemError(accessToken, errorCode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	setOrDelete(s.itemErrs, accessToken, errorCode)
}

func setOrDelete(m map[string]string, k, v string) {
	if v == "" {
		delete(m, k)
	} else {
		m[k] = v
	}
}

// FailNext makes the next n requests to path (e.g. "/item/get") fail with
// the given HTTP status and Plaid error, whatever their token, before
// credentials are checked (an outage or rate limit comes first). Calls queue:
// FailNext(p, 1, 429, ...) then FailNext(p, 1, 500, ...) fails with 429, then
// 500. An empty errorType takes the code's usual one (ErrorTypeOf). An empty
// errorCode sends a non-JSON body, like a proxy's error page; status 0 drops
// the connection without an answer.
func (s *Server) FailNext(path string, n int, status int, errorType, errorCode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := normalizePath(path)
	for range n {
		s.next[p] = append(s.next[p], fault{status: status, errType: errorType, code: errorCode})
	}
}

// FailAlways makes every request to path fail as FailNext describes, after
// any queued FailNext faults, until ClearFaults.
func (s *Server) FailAlways(path string, status int, errorType, errorCode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.always[normalizePath(path)] = fault{status: status, errType: errorType, code: errorCode}
}

// ClearFaults removes every FailNext and FailAlways fault. Token and Item
// errors stay (clear them with an empty code).
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.next)
	clear(s.always)
}

// SetLatency delays every answer by d. A request whose context ends (the
// client gave up) or a server that closes stops waiting.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// OnCall sets a hook run for every request after it is recorded and before
// it is answered, outside the fake's lock (the hook may call the fake). Tests
// use it to change state mid-run. nil removes it.
func (s *Server) OnCall(hook func(path, accessToken string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onCall = hook
}

// Calls returns every request received so far, in arrival order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// CallCount returns how many requests path received.
func (s *Server) CallCount(path string) int {
	p := normalizePath(path)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if c.Path == p {
			n++
		}
	}
	return n
}

// Removed reports whether /item/remove succeeded for accessToken.
func (s *Server) Removed(accessToken string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.removed[accessToken]
}

// RemovedTokens returns the access tokens removed so far, in removal order.
func (s *Server) RemovedTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.removedSeq)
}

// NewWebhookKey creates an ECDSA P-256 signing key, served by
// /webhook_verification_key/get, and returns its key id.
func (s *Server) NewWebhookKey() (kid string) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic("plaidfake: generating a P-256 key: " + err.Error()) // crypto/rand does not fail
	}
	kid = "plaidfake-" + randomID(16)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[kid] = &webhookKey{priv: priv, createdAt: time.Now().Unix()}
	return kid
}

// ExpireWebhookKey marks the key expired: /webhook_verification_key/get then
// serves it with expired_at set. Unknown key ids are ignored.
func (s *Server) ExpireWebhookKey(kid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k, ok := s.keys[kid]; ok && k.expiredAt == 0 {
		k.expiredAt = time.Now().Unix()
	}
}

// WebhookSigningKey returns the private key of kid, for tests that craft
// their own (malformed) Plaid-Verification JWTs.
func (s *Server) WebhookSigningKey(kid string) (*ecdsa.PrivateKey, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[kid]
	if !ok {
		return nil, false
	}
	return k.priv, true
}

// SignWebhook returns the Plaid-Verification header value Plaid would send
// with body: a compact ES256 JWT whose header carries kid and whose claims
// are iat and request_body_sha256 (hex SHA-256 of body).
func (s *Server) SignWebhook(kid string, body []byte, iat time.Time) (string, error) {
	priv, ok := s.WebhookSigningKey(kid)
	if !ok {
		return "", fmt.Errorf("plaidfake: no webhook key %q", kid)
	}
	sum := sha256.Sum256(body)
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iat":                 iat.Unix(),
		"request_body_sha256": hex.EncodeToString(sum[:]),
	})
	tok.Header["kid"] = kid
	signed, err := tok.SignedString(priv)
	if err != nil {
		return "", fmt.Errorf("plaidfake: signing webhook: %w", err)
	}
	return signed, nil
}

// ErrorTypeOf returns the error_type and HTTP status Plaid answers errorCode
// with. Codes it does not know are classified by shape: INSTITUTION_* is an
// INSTITUTION_ERROR (400), *_LIMIT a RATE_LIMIT_EXCEEDED (429), anything else
// an ITEM_ERROR (400).
func ErrorTypeOf(errorCode string) (errorType string, status int) {
	if e, ok := knownErrors[errorCode]; ok {
		return e.errType, e.status
	}
	switch {
	case strings.HasPrefix(errorCode, "INSTITUTION_"):
		return "INSTITUTION_ERROR", http.StatusBadRequest
	case strings.HasSuffix(errorCode, "_LIMIT"):
		return "RATE_LIMIT_EXCEEDED", http.StatusTooManyRequests
	default:
		return "ITEM_ERROR", http.StatusBadRequest
	}
}

type knownError struct {
	errType string
	status  int
	message string
}

// knownErrors are the Plaid error codes the service meets, with the type,
// status and (abridged) message Plaid documents for them.
var knownErrors = map[string]knownError{
	// ITEM_ERROR
	"ITEM_NOT_FOUND":          {"ITEM_ERROR", 400, "the Item you requested cannot be found. This Item does not exist, has been previously removed via /item/remove, or has had access removed by the user"},
	"ITEM_LOGIN_REQUIRED":     {"ITEM_ERROR", 400, "the login details of this item have changed (credentials, MFA, or required user action) and a user login is required to update this information"},
	"PENDING_EXPIRATION":      {"ITEM_ERROR", 400, "the access consent for this Item is expiring soon"},
	"PENDING_DISCONNECT":      {"ITEM_ERROR", 400, "the Item will be disconnected soon unless the user re-authenticates"},
	"USER_PERMISSION_REVOKED": {"ITEM_ERROR", 400, "the user has revoked access to this Item"},
	"ITEM_LOCKED":             {"ITEM_ERROR", 400, "the account is locked"},
	"INVALID_CREDENTIALS":     {"ITEM_ERROR", 400, "the provided credentials were not correct"},
	"PRODUCT_NOT_READY":       {"ITEM_ERROR", 400, "the requested product is not yet ready"},
	// INVALID_INPUT
	"INVALID_ACCESS_TOKEN":                {"INVALID_INPUT", 400, "provided access token is in an invalid format. expected format: access-<environment>-<identifier>"},
	"INVALID_API_KEYS":                    {"INVALID_INPUT", 400, "invalid client_id or secret provided"},
	"UNAUTHORIZED_ENVIRONMENT":            {"INVALID_INPUT", 400, "you are not authorized to create items for this environment"},
	"INVALID_WEBHOOK_VERIFICATION_KEY_ID": {"INVALID_INPUT", 400, "invalid key_id provided"},
	"INVALID_PRODUCT":                     {"INVALID_INPUT", 400, "the requested product is not available for this Item"},
	"INVALID_PUBLIC_TOKEN":                {"INVALID_INPUT", 400, "could not find matching public token: it is expired, already exchanged, or not in the format public-<environment>-<identifier>"},
	"INVALID_INSTITUTION":                 {"INVALID_INPUT", 400, "invalid institution_id provided"},
	// INVALID_REQUEST
	"MISSING_FIELDS":           {"INVALID_REQUEST", 400, "the following required fields are missing"},
	"INVALID_FIELD":            {"INVALID_REQUEST", 400, "a field has an invalid value"},
	"INVALID_BODY":             {"INVALID_REQUEST", 400, "body could not be parsed as JSON"},
	"INVALID_HEADERS":          {"INVALID_REQUEST", 400, "the request headers are invalid"},
	"UNKNOWN_FIELDS":           {"INVALID_REQUEST", 400, "the request contains unknown fields"},
	"NOT_FOUND":                {"INVALID_REQUEST", 404, "the requested endpoint does not exist"},
	"INCOMPATIBLE_API_VERSION": {"INVALID_REQUEST", 400, "the Plaid-Version header is not compatible with this request"},
	"SANDBOX_ONLY":             {"INVALID_REQUEST", 400, "the requested endpoint is only available in the sandbox"},
	// INSTITUTION_ERROR
	"INSTITUTION_DOWN":           {"INSTITUTION_ERROR", 400, "this institution is not currently responding to this request. Please try again soon"},
	"INSTITUTION_NOT_RESPONDING": {"INSTITUTION_ERROR", 400, "this institution is not currently responding to this request. Please try again soon"},
	"INSTITUTION_NOT_AVAILABLE":  {"INSTITUTION_ERROR", 400, "this institution is not currently available"},
	// RATE_LIMIT_EXCEEDED
	"RATE_LIMIT":        {"RATE_LIMIT_EXCEEDED", 429, "rate limit exceeded"},
	"ITEM_GET_LIMIT":    {"RATE_LIMIT_EXCEEDED", 429, "rate limit exceeded for attempts to access this item. please try again later"},
	"ITEM_REMOVE_LIMIT": {"RATE_LIMIT_EXCEEDED", 429, "rate limit exceeded for attempts to remove this item. please try again later"},
	// API_ERROR
	"INTERNAL_SERVER_ERROR": {"API_ERROR", 500, "an unexpected error occurred"},
	"PLANNED_MAINTENANCE":   {"API_ERROR", 503, "this service is currently undergoing planned maintenance"},
}

// errorBody is Plaid's error object.
type errorBody struct {
	ErrorType        string  `json:"error_type"`
	ErrorCode        string  `json:"error_code"`
	ErrorMessage     string  `json:"error_message"`
	DisplayMessage   *string `json:"display_message"`
	RequestID        string  `json:"request_id,omitempty"`
	DocumentationURL string  `json:"documentation_url"`
	SuggestedAction  *string `json:"suggested_action"`
}

func newErrorBody(errType, code, requestID string) errorBody {
	msg := knownErrors[code].message
	if msg == "" {
		msg = "plaidfake error " + code
	}
	slug := strings.ToLower(strings.TrimSuffix(errType, "_ERROR"))
	return errorBody{
		ErrorType:        errType,
		ErrorCode:        code,
		ErrorMessage:     msg,
		RequestID:        requestID,
		DocumentationURL: "https://plaid.com/docs/errors/" + strings.ReplaceAll(slug, "_", "-") + "/#" + strings.ToLower(code),
	}
}

// requestBody holds every field the served endpoints read.
type requestBody struct {
	ClientID    string `json:"client_id"`
	Secret      string `json:"secret"`
	AccessToken string `json:"access_token"`
	KeyID       string `json:"key_id"`
	linkRequest        // the Link flow's fields (link.go)
}

// ServeHTTP answers a Plaid API request. Server is an http.Handler so a
// program can also mount it on its own listener.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := normalizePath(r.URL.Path)
	var body requestBody
	raw, readErr := readBody(r)
	decodeErr := readErr
	if readErr == nil && len(raw) > 0 {
		decodeErr = json.Unmarshal(raw, &body)
	}

	s.mu.Lock()
	now := time.Now()
	limited := s.overClientLimit(path, now)
	s.calls = append(s.calls, Call{
		Path:         path,
		AccessToken:  body.AccessToken,
		KeyID:        body.KeyID,
		PublicToken:  body.PublicToken,
		PlaidVersion: r.Header.Get("Plaid-Version"),
		Time:         now,
		RateLimited:  limited,
	})
	hook, latency := s.onCall, s.latency
	s.mu.Unlock()

	if hook != nil {
		hook(path, body.AccessToken)
	}
	if latency > 0 && !s.wait(r.Context(), latency) {
		// The client gave up or the server is closing. Drop the connection:
		// returning normally would send an empty 200, which plaid-go decodes
		// as a success.
		panic(http.ErrAbortHandler)
	}

	requestID := randomID(15)
	if limited {
		s.writeFault(w, FaultRateLimit.fault(path), requestID)
		return
	}
	if f, ok := s.takeFault(path); ok {
		s.writeFault(w, f, requestID)
		return
	}
	if kind, ok := s.randomFault(path, body); ok {
		switch kind {
		case FaultTimeout:
			// No answer until the client's timeout ends the request.
			s.wait(r.Context(), maxTimeoutHold)
			panic(http.ErrAbortHandler)
		case FaultLostAnswer:
			// The request takes effect; its answer is lost on the way.
			s.answer(httptest.NewRecorder(), r, path, body, decodeErr, requestID)
			s.writeFault(w, fault{status: 0}, requestID)
		default:
			s.writeFault(w, kind.fault(path), requestID)
		}
		return
	}
	s.answer(w, r, path, body, decodeErr, requestID)
}

// answer answers a request that met no injected fault.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, path string, body requestBody, decodeErr error, requestID string) {
	if r.Method != http.MethodPost || !knownPath(path) {
		writeError(w, http.StatusNotFound, newErrorBody("INVALID_REQUEST", "NOT_FOUND", requestID))
		return
	}
	if decodeErr != nil {
		writeError(w, http.StatusBadRequest, newErrorBody("INVALID_REQUEST", "INVALID_BODY", requestID))
		return
	}

	// Credentials: headers first, as plaid-go sends them, else the body.
	clientID, secret := r.Header.Get("PLAID-CLIENT-ID"), r.Header.Get("PLAID-SECRET")
	if clientID == "" {
		clientID = body.ClientID
	}
	if secret == "" {
		secret = body.Secret
	}
	switch {
	case clientID == "" || secret == "":
		writeError(w, http.StatusBadRequest, newErrorBody("INVALID_REQUEST", "MISSING_FIELDS", requestID))
		return
	case clientID != s.ClientID || secret != s.Secret:
		writeError(w, http.StatusBadRequest, newErrorBody("INVALID_INPUT", "INVALID_API_KEYS", requestID))
		return
	}

	switch path {
	case PathItemGet:
		s.itemGet(w, body.AccessToken, requestID)
	case PathItemRemove:
		s.itemRemove(w, body.AccessToken, requestID)
	case PathWebhookVerificationKey:
		s.webhookKeyGet(w, body.KeyID, requestID)
	default:
		s.answerLink(w, path, body, requestID)
	}
}

func (s *Server) itemGet(w http.ResponseWriter, accessToken, requestID string) {
	s.mu.Lock()
	it, errCode, status, errBody := s.lookupItem(accessToken, requestID)
	itemErr := s.itemErrs[accessToken]
	s.mu.Unlock()
	if errCode != "" {
		writeError(w, status, errBody)
		return
	}

	var itemError *errorBody
	if itemErr != "" {
		typ, _ := ErrorTypeOf(itemErr)
		e := newErrorBody(typ, itemErr, "")
		itemError = &e
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"item": map[string]any{
			"item_id":                 it.itemID,
			"institution_id":          it.institutionID,
			"webhook":                 "",
			"error":                   itemError,
			"available_products":      []string{"balance"},
			"billed_products":         []string{"transactions"},
			"products":                []string{"transactions"},
			"update_type":             "background",
			"consent_expiration_time": nil,
		},
		"status": map[string]any{
			"transactions": map[string]any{"last_successful_update": nil, "last_failed_update": nil},
			"last_webhook": nil,
		},
		"request_id": requestID,
	})
}

func (s *Server) itemRemove(w http.ResponseWriter, accessToken, requestID string) {
	s.mu.Lock()
	it, errCode, status, errBody := s.lookupItem(accessToken, requestID)
	removal := Removal{AccessToken: accessToken, ItemID: it.itemID, Time: time.Now()}
	if errCode == "" {
		s.removed[accessToken] = true
		s.removedSeq = append(s.removedSeq, accessToken)
		s.removals = append(s.removals, removal)
	}
	hook := s.onRemoved
	s.mu.Unlock()
	if errCode != "" {
		writeError(w, status, errBody)
		return
	}
	if hook != nil {
		hook(removal)
	}
	writeJSON(w, http.StatusOK, map[string]any{"request_id": requestID})
}

// lookupItem finds the Item of accessToken, or the error Plaid answers for
// it: an injected token error first, then INVALID_ACCESS_TOKEN for another
// environment's token (Plaid's environments share no tokens, so the sandbox
// answers a production token as one it never issued, whatever AddItem
// said), then ITEM_NOT_FOUND once removed, then INVALID_ACCESS_TOKEN for
// tokens Plaid never issued. s.mu must be held.
func (s *Server) lookupItem(accessToken, requestID string) (it item, errCode string, status int, body errorBody) {
	switch {
	case accessToken == "":
		errCode = "MISSING_FIELDS"
	case s.tokenErrs[accessToken] != "":
		errCode = s.tokenErrs[accessToken]
	case s.otherEnvironment(accessToken, "access-"):
		errCode = "INVALID_ACCESS_TOKEN"
	case s.removed[accessToken]:
		errCode = "ITEM_NOT_FOUND"
	default:
		var ok bool
		if it, ok = s.items[accessToken]; !ok {
			errCode = "INVALID_ACCESS_TOKEN"
		}
	}
	if errCode == "" {
		return it, "", 0, errorBody{}
	}
	typ, status := ErrorTypeOf(errCode)
	return item{}, errCode, status, newErrorBody(typ, errCode, requestID)
}

func (s *Server) webhookKeyGet(w http.ResponseWriter, kid, requestID string) {
	if kid == "" {
		writeError(w, http.StatusBadRequest, newErrorBody("INVALID_REQUEST", "MISSING_FIELDS", requestID))
		return
	}
	s.mu.Lock()
	k, ok := s.keys[kid]
	var createdAt, expiredAt int64
	if ok {
		createdAt, expiredAt = k.createdAt, k.expiredAt
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusBadRequest, newErrorBody("INVALID_INPUT", "INVALID_WEBHOOK_VERIFICATION_KEY_ID", requestID))
		return
	}
	point, err := k.priv.PublicKey.Bytes() // 0x04 || X || Y, 32 bytes each
	if err != nil {
		writeError(w, http.StatusInternalServerError, newErrorBody("API_ERROR", "INTERNAL_SERVER_ERROR", requestID))
		return
	}
	var expired any // JSON null while the key is valid
	if expiredAt != 0 {
		expired = expiredAt
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"key": map[string]any{
			"alg":        "ES256",
			"crv":        "P-256",
			"kid":        kid,
			"kty":        "EC",
			"use":        "sig",
			"x":          base64.RawURLEncoding.EncodeToString(point[1:33]),
			"y":          base64.RawURLEncoding.EncodeToString(point[33:65]),
			"created_at": createdAt,
			"expired_at": expired,
		},
		"request_id": requestID,
	})
}

// takeFault returns the fault the next request to path meets, if any.
func (s *Server) takeFault(path string) (fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.next[path]; len(q) > 0 {
		f := q[0]
		if len(q) == 1 {
			delete(s.next, path)
		} else {
			s.next[path] = q[1:]
		}
		return f, true
	}
	f, ok := s.always[path]
	return f, ok
}

func (s *Server) writeFault(w http.ResponseWriter, f fault, requestID string) {
	switch {
	case f.status == 0:
		// A dropped connection: the client sees a transport error.
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // net/http closes the connection
	case f.code == "":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(f.status)
		fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>\n", f.status, http.StatusText(f.status))
	default:
		typ := f.errType
		if typ == "" {
			typ, _ = ErrorTypeOf(f.code)
		}
		writeError(w, f.status, newErrorBody(typ, f.code, requestID))
	}
}

// wait sleeps for d unless ctx ends or the server closes first; it reports
// whether the whole delay passed.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

func writeError(w http.ResponseWriter, status int, body errorBody) {
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// plaid-go decodes only bodies labelled JSON, even on a 200.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// maxBody bounds what the fake reads; Plaid's requests here are tiny.
const maxBody = 1 << 20

func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	defer r.Body.Close()
	return io.ReadAll(io.LimitReader(r.Body, maxBody))
}

func knownPath(p string) bool {
	switch p {
	case PathItemGet, PathItemRemove, PathWebhookVerificationKey:
		return true
	}
	return linkPaths[p]
}

// normalizePath accepts "item/get" and "/item/get/" as "/item/get".
func normalizePath(p string) string {
	return "/" + strings.Trim(p, "/")
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// randomID returns n random characters, the shape of Plaid's request ids.
func randomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return string(b)
}
