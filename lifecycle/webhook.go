package lifecycle

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
)

// Limits of webhook verification (DESIGN §7, PLAID.md "Webhooks").
const (
	// WebhookMaxAge is how old a webhook's iat may be: Plaid says to refuse
	// webhooks signed more than 5 minutes ago, which bounds replays.
	WebhookMaxAge = 5 * time.Minute
	// WebhookKeyFetchBurst is the most verification keys fetched from Plaid
	// at once; afterwards one more every webhookKeyFetchEvery. Plaid signs
	// with one or two keys at a time, each cached for webhookKeyTTL, so more
	// lookups than this mean forged kids: they must not make us hammer Plaid.
	WebhookKeyFetchBurst = 5

	webhookKeyFetchEvery = 12 * time.Second
	// webhookClockSkew is how far in the future an iat may be: Plaid's clock
	// and ours differ a little.
	webhookClockSkew = time.Minute
	// webhookKeyTTL is how long a fetched key is trusted before it is fetched
	// again, so that an expired_at Plaid sets after rotating keys is noticed.
	webhookKeyTTL = time.Hour
	// webhookKeyStaleGrace is how long past its TTL a key keeps verifying
	// while it cannot be fetched again (key lookups rate limited by a flood of
	// forged kids, or Plaid failing), so neither turns away genuine webhooks.
	webhookKeyStaleGrace = time.Hour
	// webhookKeyRetryEvery spaces refetches of a stale key that failed.
	webhookKeyRetryEvery = time.Minute
	// webhookUnknownKeyTTL is how long a kid Plaid does not know is refused
	// without asking Plaid again.
	webhookUnknownKeyTTL = time.Minute
	// webhookKeyCacheSize bounds the cache of keys and refused kids.
	webhookKeyCacheSize = 256
	// webhookKeyFetchTimeout bounds one key lookup, retries included: Plaid
	// gives up on a webhook after 10 seconds.
	webhookKeyFetchTimeout = 8 * time.Second
	// Plaid's JWTs are a few hundred bytes and its kids UUIDs; anything much
	// larger is refused before it is parsed or sent to Plaid.
	webhookMaxJWTLength   = 4096
	webhookMaxKeyIDLength = 128
)

// WebhookVerifier checks the Plaid-Verification header of webhooks as Plaid
// documents it: an ES256 JWT signed by a key from
// /webhook_verification_key/get, issued less than WebhookMaxAge ago, whose
// request_body_sha256 claim is the SHA-256 of the body. Keys are cached by
// kid. It is safe for concurrent use; share one per process.
type WebhookVerifier struct {
	plaid  PlaidAPI
	clock  Clock
	parser *jwt.Parser

	// fetches collapses concurrent lookups of one kid into one Plaid call;
	// fetchLimiter bounds the Plaid calls of all kids together.
	fetches      singleflight.Group
	fetchLimiter *rate.Limiter

	mu   sync.Mutex
	keys map[string]*webhookKeyEntry // by kid
}

// webhookKeyEntry is what Plaid last said about a kid: its key, or why the
// kid is refused.
type webhookKeyEntry struct {
	key       *ecdsa.PublicKey // nil when the kid is refused
	refusal   string           // why, when key is nil
	fetchedAt time.Time        // when Plaid last answered for the kid
	recheckAt time.Time        // when to ask Plaid again
}

// usable reports whether the entry's key may verify a webhook at now: until
// its TTL, then for a grace period while it cannot be refreshed.
func (e *webhookKeyEntry) usable(now time.Time) bool {
	return e.key != nil && now.Before(e.fetchedAt.Add(webhookKeyTTL+webhookKeyStaleGrace))
}

// webhookClaims are the claims of a Plaid-Verification JWT.
type webhookClaims struct {
	RequestBodySHA256 string `json:"request_body_sha256"`
	jwt.RegisteredClaims
}

// NewWebhookVerifier returns a verifier fetching keys through p, telling
// time by clock (nil means the system clock).
func NewWebhookVerifier(p PlaidAPI, clock Clock) *WebhookVerifier {
	if clock == nil {
		clock = SystemClock{}
	}
	return &WebhookVerifier{
		plaid: p,
		clock: clock,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(webhookClockSkew),
			jwt.WithTimeFunc(clock.Now),
		),
		fetchLimiter: rate.NewLimiter(rate.Every(webhookKeyFetchEvery), WebhookKeyFetchBurst),
		keys:         make(map[string]*webhookKeyEntry),
	}
}

// Verify checks that header, the Plaid-Verification header, proves that
// Plaid sent body just now. A refused webhook is an *Error with
// CodeUnauthorized and a short reason; a key that could not be fetched from
// Plaid (outage, rate limit) is CodeUnavailable, so that Plaid retries.
//
// Everything that can be checked without Plaid (alg, kid, iat, body hash)
// is checked before a key is fetched, so a forged webhook costs no Plaid
// call unless it names a kid not seen before, and those are rate limited.
func (v *WebhookVerifier) Verify(ctx context.Context, header string, body []byte) error {
	switch {
	case header == "":
		return webhookRefused("missing Plaid-Verification header", nil)
	case len(header) > webhookMaxJWTLength:
		return webhookRefused("Plaid-Verification header is too long", nil)
	}
	now := v.clock.Now()
	sum := sha256.Sum256(body)

	keyfunc := func(tok *jwt.Token) (any, error) {
		// WithValidMethods already refused every other alg; this keeps the
		// key type and the alg tied together if the options ever change.
		if tok.Method != jwt.SigningMethodES256 {
			return nil, webhookRefused("JWT alg must be ES256", nil)
		}
		kid, _ := tok.Header["kid"].(string)
		if !validKeyID(kid) {
			return nil, webhookRefused("JWT header has no valid kid", nil)
		}
		claims := tok.Claims.(*webhookClaims)
		if claims.IssuedAt == nil {
			return nil, webhookRefused("JWT has no iat", nil)
		}
		iat := claims.IssuedAt.Time
		if now.Sub(iat) > WebhookMaxAge {
			return nil, webhookRefused("JWT iat is older than 5 minutes", nil)
		}
		if iat.Sub(now) > webhookClockSkew {
			return nil, webhookRefused("JWT iat is in the future", nil)
		}
		claimed, err := hex.DecodeString(claims.RequestBodySHA256)
		if err != nil || subtle.ConstantTimeCompare(claimed, sum[:]) != 1 {
			return nil, webhookRefused("request_body_sha256 does not match the body", nil)
		}
		return v.key(ctx, kid)
	}

	tok, err := v.parser.ParseWithClaims(header, &webhookClaims{}, keyfunc)
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e // the keyfunc's own refusal, or a key lookup failure
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return webhookRefused("malformed JWT", err)
	case tok != nil && tok.Header["alg"] != jwt.SigningMethodES256.Alg():
		return webhookRefused("JWT alg must be ES256", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return webhookRefused("invalid JWT signature", err)
	default:
		return webhookRefused("invalid JWT", err)
	}
}

func webhookRefused(reason string, err error) *Error {
	return WrapError(CodeUnauthorized, err, "webhook verification failed: "+reason)
}

// validKeyID accepts the kids worth asking Plaid about: non-empty, short,
// printable ASCII.
func validKeyID(kid string) bool {
	if kid == "" || len(kid) > webhookMaxKeyIDLength {
		return false
	}
	for i := 0; i < len(kid); i++ {
		if kid[i] <= ' ' || kid[i] > '~' {
			return false
		}
	}
	return true
}

// key returns the public key of kid, from the cache or from Plaid.
func (v *WebhookVerifier) key(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	if key, err, ok := v.cached(kid, v.clock.Now()); ok {
		return key, err
	}
	// The lookup runs detached from this request, so that the requests
	// waiting on it do not all fail when the first one is cancelled.
	fetchCtx := context.WithoutCancel(ctx)
	ch := v.fetches.DoChan(kid, func() (any, error) { return v.fetch(fetchCtx, kid) })
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*ecdsa.PublicKey), nil
	case <-ctx.Done():
		return nil, WrapError(CodeUnavailable, ctx.Err(), "webhook verification key lookup was cancelled")
	}
}

// cached answers from the cache when the entry of kid needs no Plaid call
// at now; ok is false when Plaid must be asked.
func (v *WebhookVerifier) cached(kid string, now time.Time) (key *ecdsa.PublicKey, err error, ok bool) {
	v.mu.Lock()
	e := v.keys[kid]
	v.mu.Unlock()
	switch {
	case e == nil || !now.Before(e.recheckAt):
		return nil, nil, false
	case e.key == nil:
		return nil, webhookRefused(e.refusal, nil), true
	case e.usable(now):
		return e.key, nil, true
	default:
		// Stale past its grace and a refresh failed recently.
		return nil, Errorf(CodeUnavailable, "webhook verification key %s could not be refreshed from Plaid", kid), true
	}
}

// fetch asks Plaid for kid's key, within the global lookup budget, and
// caches the answer. It runs once per kid at a time (singleflight).
func (v *WebhookVerifier) fetch(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	now := v.clock.Now()
	// A lookup that finished just before this one started already answered.
	if key, err, ok := v.cached(kid, now); ok {
		return key, err
	}
	v.mu.Lock()
	stale := v.keys[kid]
	v.mu.Unlock()
	if stale != nil && !stale.usable(now) {
		stale = nil
	}

	if !v.fetchLimiter.AllowN(now, 1) {
		if stale != nil {
			Logger(ctx).WarnContext(ctx, "webhook key lookups rate limited; verifying with the cached key",
				slog.String("kid", kid))
			return stale.key, nil
		}
		return nil, Errorf(CodeUnavailable, "too many webhook verification key lookups; retry later")
	}

	ctx, cancel := context.WithTimeout(ctx, webhookKeyFetchTimeout)
	defer cancel()
	jwk, err := v.plaid.WebhookVerificationKey(ctx, kid)
	if err != nil {
		if unknownWebhookKey(err) {
			Logger(ctx).WarnContext(ctx, "webhook names a key Plaid does not know", slog.String("kid", kid))
			v.store(kid, &webhookKeyEntry{refusal: "unknown kid", fetchedAt: now, recheckAt: now.Add(webhookUnknownKeyTTL)})
			return nil, webhookRefused("unknown kid", nil)
		}
		if stale != nil {
			Logger(ctx).WarnContext(ctx, "refreshing a webhook key failed; verifying with the cached key",
				slog.String("kid", kid), slog.String("error", err.Error()))
			v.store(kid, &webhookKeyEntry{key: stale.key, fetchedAt: stale.fetchedAt, recheckAt: now.Add(webhookKeyRetryEvery)})
			return stale.key, nil
		}
		return nil, WrapError(CodeUnavailable, err, "could not fetch the webhook verification key from Plaid")
	}

	key, refusal := webhookPublicKey(kid, jwk)
	if refusal != "" {
		// An expired key stays expired; a malformed one is Plaid's fault and
		// is asked about again sooner.
		recheck := now.Add(webhookUnknownKeyTTL)
		if jwk.ExpiredAt != 0 {
			recheck = now.Add(webhookKeyTTL)
		}
		v.store(kid, &webhookKeyEntry{refusal: refusal, fetchedAt: now, recheckAt: recheck})
		return nil, webhookRefused(refusal, nil)
	}
	v.store(kid, &webhookKeyEntry{key: key, fetchedAt: now, recheckAt: now.Add(webhookKeyTTL)})
	return key, nil
}

// unknownWebhookKey reports whether Plaid's answer means the kid does not
// exist (INVALID_WEBHOOK_VERIFICATION_KEY_ID, or another refusal of the
// request itself), as opposed to an outage or our own bad credentials.
func unknownWebhookKey(err error) bool {
	var pe *PlaidError
	if !errors.As(err, &pe) || pe.Class == ClassTransient || pe.Code == "INVALID_API_KEYS" {
		return false
	}
	return pe.Code == "INVALID_WEBHOOK_VERIFICATION_KEY_ID" || (pe.Status >= 400 && pe.Status < 500 && pe.Code != "")
}

// store caches e for kid, evicting an entry when the cache is full.
func (v *WebhookVerifier) store(kid string, e *webhookKeyEntry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.keys[kid]; !ok && len(v.keys) >= webhookKeyCacheSize {
		v.evictLocked()
	}
	v.keys[kid] = e
}

// evictLocked drops one entry: the oldest refused kid if there is one (they
// are cheap to learn again and forged kids must not push out real keys),
// else the oldest key. v.mu must be held.
func (v *WebhookVerifier) evictLocked() {
	var victim string
	var oldest *webhookKeyEntry
	for kid, e := range v.keys {
		if oldest == nil ||
			(e.key == nil && oldest.key != nil) ||
			((e.key == nil) == (oldest.key == nil) && e.fetchedAt.Before(oldest.fetchedAt)) {
			victim, oldest = kid, e
		}
	}
	delete(v.keys, victim)
}

// webhookPublicKey turns Plaid's JWK into an ECDSA P-256 public key, or
// says why it cannot verify webhooks.
func webhookPublicKey(kid string, k *WebhookKey) (*ecdsa.PublicKey, string) {
	switch {
	case k == nil:
		return nil, "Plaid returned no key"
	case k.ExpiredAt != 0:
		return nil, "verification key has expired"
	case k.KeyID != "" && k.KeyID != kid:
		return nil, "Plaid returned a key for another kid"
	case k.Kty != "EC" || k.Crv != "P-256" || (k.Alg != "" && k.Alg != "ES256"):
		return nil, "verification key is not an ES256 key"
	}
	x, errX := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.X, "="))
	y, errY := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.Y, "="))
	if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
		return nil, "verification key is malformed"
	}
	point := append(append([]byte{4}, x...), y...) // SEC 1 uncompressed: 0x04 || X || Y
	key, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil, "verification key is malformed"
	}
	return key, ""
}

// Webhook is the part of a Plaid webhook body the service reads.
type Webhook struct {
	Type        string        `json:"webhook_type"`
	Code        string        `json:"webhook_code"`
	ItemID      string        `json:"item_id"`
	Error       *WebhookError `json:"error"`
	Environment string        `json:"environment"`
}

// WebhookError is the error object of an ITEM ERROR webhook.
type WebhookError struct {
	ErrorType    string `json:"error_type"`
	ErrorCode    string `json:"error_code"`
	ErrorMessage string `json:"error_message"`
}

// ParseWebhook decodes a webhook body. A body that is not a JSON object
// with a webhook_type is CodeInvalid.
func ParseWebhook(body []byte) (*Webhook, error) {
	var wh Webhook
	if err := json.Unmarshal(body, &wh); err != nil {
		return nil, WrapError(CodeInvalid, err, "webhook body is not a valid Plaid webhook")
	}
	if wh.Type == "" {
		return nil, Errorf(CodeInvalid, "webhook body has no webhook_type")
	}
	return &wh, nil
}

// WebhookAction is what a webhook did to its Item's token.
type WebhookAction string

// The outcomes of ApplyWebhook.
const (
	// WebhookAcknowledged: the webhook asks nothing of the token
	// (NEW_ACCOUNTS_AVAILABLE, other webhook types); it is only logged.
	WebhookAcknowledged WebhookAction = "acknowledged"
	// WebhookUnknownItem: no token document has the webhook's item_id.
	WebhookUnknownItem WebhookAction = "unknown_item"
	// WebhookErrorCodeSet: error_code is the webhook's error.
	WebhookErrorCodeSet WebhookAction = "error_code_set"
	// WebhookErrorCodeCleared: error_code was cleared (LOGIN_REPAIRED).
	WebhookErrorCodeCleared WebhookAction = "error_code_cleared"
	// WebhookExpired: the token is expired (the Item is gone).
	WebhookExpired WebhookAction = "expired"
	// WebhookRevoked: the token is revoked and its Item removed at Plaid.
	WebhookRevoked WebhookAction = "revoked"
	// WebhookIgnored: the token is already expired or revoked and the
	// webhook would not move it further on; a dead token never comes back.
	WebhookIgnored WebhookAction = "ignored"
)

// WebhookResult says what ApplyWebhook did.
type WebhookResult struct {
	ItemID string
	Type   string // webhook_type
	Code   string // webhook_code
	Action WebhookAction
	// Changed is false when the document already was in the state the
	// webhook asks for (a redelivered webhook), or nothing was to be done.
	Changed bool
}

// webhookApplyAttempts bounds the read-modify-write retries of one webhook
// when the document changes between read and write.
const webhookApplyAttempts = 5

// ApplyWebhook acts on a verified webhook (DESIGN §7): ITEM webhooks update
// the Item's token document, anything else is acknowledged. Every update is
// idempotent and never brings a dead token back: a revoked token stays
// revoked, an expired one only becomes revoked. Writes are conditional on
// the version read, so a concurrent revocation is never overwritten.
func ApplyWebhook(ctx context.Context, store TokenStore, clock Clock, wh *Webhook) (WebhookResult, error) {
	res := WebhookResult{ItemID: wh.ItemID, Type: wh.Type, Code: wh.Code}
	logger := Logger(ctx)
	attrs := []slog.Attr{
		slog.String("item_id", wh.ItemID),
		slog.String("webhook_type", wh.Type),
		slog.String("webhook_code", wh.Code),
		slog.String("environment", wh.Environment),
	}
	if wh.Error != nil {
		attrs = append(attrs, slog.String("error_code", wh.Error.ErrorCode))
	}
	if !webhookActsOnItem(wh) {
		res.Action = WebhookAcknowledged
		logger.LogAttrs(ctx, slog.LevelInfo, "webhook acknowledged", attrs...)
		return res, nil
	}
	if wh.ItemID == "" || (wh.Code == "ERROR" && (wh.Error == nil || wh.Error.ErrorCode == "")) {
		res.Action = WebhookAcknowledged
		logger.LogAttrs(ctx, slog.LevelWarn, "incomplete ITEM webhook acknowledged", attrs...)
		return res, nil
	}

	for attempt := 1; ; attempt++ {
		tok, err := store.Get(ctx, wh.ItemID)
		if errors.Is(err, ErrNotFound) {
			res.Action = WebhookUnknownItem
			// Plaid still bills for an Item we hold no token for.
			logger.LogAttrs(ctx, slog.LevelWarn, "verified webhook for unknown item", attrs...)
			return res, nil
		}
		if err != nil {
			return res, fmt.Errorf("applying %s webhook to item %s: %w", wh.Code, wh.ItemID, err)
		}
		patch, action := webhookPatch(tok, wh, clock.Now())
		res.Action = action
		if patch != nil {
			_, err = store.Update(ctx, wh.ItemID, *patch, tok.Version)
			switch {
			case (errors.Is(err, ErrChanged) || errors.Is(err, ErrNotFound)) && attempt < webhookApplyAttempts:
				// Changed or deleted since it was read: decide again on what
				// the document says now.
				continue
			case err != nil:
				return res, fmt.Errorf("applying %s webhook to item %s: %w", wh.Code, wh.ItemID, err)
			}
			res.Changed = true
		}
		attrs = append(attrs, slog.String("user_id", tok.UserID), slog.String("status_before", string(tok.Status)),
			slog.String("action", string(res.Action)), slog.Bool("changed", res.Changed))
		logger.LogAttrs(ctx, slog.LevelInfo, "webhook applied", attrs...)
		return res, nil
	}
}

// webhookActsOnItem reports whether wh is an ITEM webhook that changes the
// token document.
func webhookActsOnItem(wh *Webhook) bool {
	if wh.Type != "ITEM" {
		return false
	}
	switch wh.Code {
	case "ERROR", "PENDING_EXPIRATION", "PENDING_DISCONNECT",
		"USER_PERMISSION_REVOKED", "USER_ACCOUNT_REVOKED", "LOGIN_REPAIRED":
		return true
	}
	return false
}

// webhookPatch decides what wh does to tok at now: the patch to write (nil
// when the document already says it) and the action.
func webhookPatch(tok *Token, wh *Webhook, now time.Time) (*Patch, WebhookAction) {
	revoked := tok.Status == StatusRevoked
	dead := revoked || tok.Status == StatusExpired

	switch wh.Code {
	case "USER_PERMISSION_REVOKED", "USER_ACCOUNT_REVOKED":
		// The user revoked access at the bank or at Plaid: Plaid has removed
		// the Item, so cleanup need not call /item/remove.
		p := Patch{}
		if !revoked {
			p.Status, p.UpdatedAt = Ptr(StatusRevoked), Ptr(now)
		}
		if !tok.PlaidRemoved {
			p.PlaidRemoved = Ptr(true)
		}
		return patchOrNil(p), WebhookRevoked

	case "LOGIN_REPAIRED":
		if dead {
			return nil, WebhookIgnored
		}
		if tok.ErrorCode == "" {
			return nil, WebhookErrorCodeCleared
		}
		return &Patch{ClearErrorCode: true}, WebhookErrorCodeCleared
	}

	// ERROR, PENDING_EXPIRATION, PENDING_DISCONNECT: the Item's error.
	code, errType := wh.Code, ""
	if wh.Code == "ERROR" {
		code, errType = wh.Error.ErrorCode, wh.Error.ErrorType
	}
	if ClassifyPlaidError(errType, code, 0, false) == ClassGone {
		switch {
		case revoked:
			return nil, WebhookIgnored
		case dead:
			return nil, WebhookExpired
		}
		return &Patch{Status: Ptr(StatusExpired), ErrorCode: Ptr(code), UpdatedAt: Ptr(now)}, WebhookExpired
	}
	// Needs the user (or an error we only record): the token stays active.
	// A dead token's error no longer matters; cleanup removes it.
	switch {
	case dead:
		return nil, WebhookIgnored
	case tok.ErrorCode == code:
		return nil, WebhookErrorCodeSet
	}
	return &Patch{ErrorCode: Ptr(code)}, WebhookErrorCodeSet
}

func patchOrNil(p Patch) *Patch {
	if p == (Patch{}) {
		return nil
	}
	return &p
}
