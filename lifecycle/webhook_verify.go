package lifecycle

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"
)

// Webhook verification as Plaid documents it (DESIGN §7), made to hold
// under attack (DESIGN §12): forged requests with made-up key ids must not
// keep genuine webhooks from verifying.
//
//   - Everything that can be checked without a key (alg, kid, iat, body
//     hash) is checked first.
//   - Keys Plaid vouched for are cached by kid in memory and shared through
//     WebhookKeyStore (Firestore), so a new instance verifies genuine
//     webhooks with a known key without asking Plaid at all.
//   - Kids never seen before are looked up at Plaid within a small budget
//     of their own; when a flood of forged kids spends it, unknown kids get
//     503 (Plaid retries genuine webhooks) while known keys keep verifying.
//   - Refreshing a known key past its TTL has a separate budget, and a key
//     that cannot be refreshed keeps verifying for a grace period.

// Limits of webhook verification (DESIGN §7, PLAID.md "Webhooks").
const (
	// WebhookMaxAge is how old a webhook's iat may be: Plaid says to refuse
	// webhooks signed more than 5 minutes ago, which bounds replays.
	WebhookMaxAge = 5 * time.Minute
	// WebhookKeyFetchBurst is the most lookups of kids never seen before
	// made at once; afterwards one more every webhookKeyFetchEvery. Plaid
	// signs with one or two keys at a time, so more lookups than this mean
	// forged kids: they must not make us hammer Plaid, and they draw on a
	// budget of their own, never on the refreshes of keys known good.
	WebhookKeyFetchBurst = 5

	webhookKeyFetchEvery = 12 * time.Second
	// Refreshes of known-good keys (past their TTL) have their own budget.
	webhookKeyRefreshBurst = 2
	webhookKeyRefreshEvery = time.Minute
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

// WebhookKeyStore shares the verification keys Plaid vouched for between
// instances. FirestoreWebhookKeyStore implements it.
type WebhookKeyStore interface {
	// WebhookKey returns the stored key of kid and when Plaid last vouched
	// for it; ErrNotFound when there is none.
	WebhookKey(ctx context.Context, kid string) (*WebhookKey, time.Time, error)
	// SaveWebhookKey stores a key Plaid returned (expired ones too, so
	// other instances refuse them).
	SaveWebhookKey(ctx context.Context, key *WebhookKey, fetchedAt time.Time) error
}

// WebhookVerifier checks the Plaid-Verification header of webhooks. It is
// safe for concurrent use; share one per process.
type WebhookVerifier struct {
	plaid  PlaidAPI
	store  WebhookKeyStore // nil: memory only
	clock  Clock
	parser *jwt.Parser

	// fetches collapses concurrent lookups of one kid into one; the two
	// limiters bound Plaid lookups of unknown kids and refreshes of known
	// ones, separately.
	fetches        singleflight.Group
	unknownLimiter *rate.Limiter
	refreshLimiter *rate.Limiter

	mu   sync.Mutex
	keys map[string]*webhookKeyEntry // by kid
}

// webhookKeyEntry is what is known about a kid: its key, or why the kid
// is refused.
type webhookKeyEntry struct {
	key       *ecdsa.PublicKey // nil when the kid is refused
	refusal   string           // why, when key is nil
	fetchedAt time.Time        // when Plaid last vouched for the key
	recheckAt time.Time        // when to look again
}

// usable reports whether the entry's key may verify a webhook at now: until
// its TTL, then for a grace period while it cannot be refreshed.
func (e *webhookKeyEntry) usable(now time.Time) bool {
	return e.key != nil && now.Before(e.fetchedAt.Add(webhookKeyTTL+webhookKeyStaleGrace))
}

// NewWebhookVerifier returns a verifier looking keys up in store (nil: none)
// and at Plaid through p, telling time by clock (nil: the system clock).
func NewWebhookVerifier(p PlaidAPI, store WebhookKeyStore, clock Clock) *WebhookVerifier {
	if clock == nil {
		clock = SystemClock{}
	}
	return &WebhookVerifier{
		plaid: p,
		store: store,
		clock: clock,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(webhookClockSkew),
			jwt.WithTimeFunc(clock.Now),
		),
		unknownLimiter: rate.NewLimiter(rate.Every(webhookKeyFetchEvery), WebhookKeyFetchBurst),
		refreshLimiter: rate.NewLimiter(rate.Every(webhookKeyRefreshEvery), webhookKeyRefreshBurst),
		keys:           make(map[string]*webhookKeyEntry),
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
		// MapClaims: claim names are read exactly as Plaid spells them
		// (encoding/json into a struct would also take "IAT" or
		// "Request_Body_SHA256").
		claims := tok.Claims.(jwt.MapClaims)
		issued, err := claims.GetIssuedAt()
		if err != nil || issued == nil {
			return nil, webhookRefused("JWT has no iat", nil)
		}
		iat := issued.Time
		if now.Sub(iat) > WebhookMaxAge {
			return nil, webhookRefused("JWT iat is older than 5 minutes", nil)
		}
		if iat.Sub(now) > webhookClockSkew {
			return nil, webhookRefused("JWT iat is in the future", nil)
		}
		bodyHash, _ := claims["request_body_sha256"].(string)
		claimed, err := hex.DecodeString(bodyHash)
		if err != nil || subtle.ConstantTimeCompare(claimed, sum[:]) != 1 {
			return nil, webhookRefused("request_body_sha256 does not match the body", nil)
		}
		return v.key(ctx, kid)
	}

	tok, err := v.parser.ParseWithClaims(header, jwt.MapClaims{}, keyfunc)
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

// key returns the public key of kid: from memory, from the shared store,
// or from Plaid.
func (v *WebhookVerifier) key(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	if key, err, ok := v.cached(kid, v.clock.Now()); ok {
		return key, err
	}
	// The lookup runs detached from this request, so that the requests
	// waiting on it do not all fail when the first one is cancelled.
	fetchCtx := context.WithoutCancel(ctx)
	ch := v.fetches.DoChan(kid, func() (any, error) { return v.lookup(fetchCtx, kid) })
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

// cached answers from memory when the entry of kid needs no lookup at now;
// ok is false when one is needed.
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

// lookup finds kid's key when memory cannot answer: in the shared store,
// then at Plaid within the budget of its kind. It runs once per kid at a
// time (singleflight).
func (v *WebhookVerifier) lookup(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	now := v.clock.Now()
	// A lookup that finished just before this one started already answered.
	if key, err, ok := v.cached(kid, now); ok {
		return key, err
	}
	v.mu.Lock()
	known := v.keys[kid]
	v.mu.Unlock()
	if known != nil && known.key == nil {
		known = nil // a refused kid is asked about again like a new one
	}
	if known == nil {
		if e := v.fromStore(ctx, kid, now); e != nil {
			v.remember(kid, e)
			if key, err, ok := v.cached(kid, now); ok {
				return key, err
			}
			known = e
		}
	}
	if known != nil && !known.usable(now) {
		known = nil
	}

	limiter := v.unknownLimiter
	if known != nil {
		limiter = v.refreshLimiter
	}
	if !limiter.AllowN(now, 1) {
		if known != nil {
			Logger(ctx).WarnContext(ctx, "webhook key refresh rate limited; verifying with the cached key", slog.String("kid", kid))
			return known.key, nil
		}
		return nil, Errorf(CodeUnavailable, "too many webhook verification key lookups; retry later")
	}

	ctx, cancel := context.WithTimeout(ctx, webhookKeyFetchTimeout)
	defer cancel()
	jwk, err := v.plaid.WebhookVerificationKey(ctx, kid)
	if err != nil {
		if unknownWebhookKey(err) {
			Logger(ctx).WarnContext(ctx, "webhook names a key Plaid does not know", slog.String("kid", kid))
			v.remember(kid, &webhookKeyEntry{refusal: "unknown kid", fetchedAt: now, recheckAt: now.Add(webhookUnknownKeyTTL)})
			return nil, webhookRefused("unknown kid", nil)
		}
		if known != nil {
			Logger(ctx).WarnContext(ctx, "refreshing a webhook key failed; verifying with the cached key",
				slog.String("kid", kid), slog.String("error", err.Error()))
			v.remember(kid, &webhookKeyEntry{key: known.key, fetchedAt: known.fetchedAt, recheckAt: now.Add(webhookKeyRetryEvery)})
			return known.key, nil
		}
		return nil, WrapError(CodeUnavailable, err, "could not fetch the webhook verification key from Plaid")
	}
	if v.store != nil && (jwk.KeyID == "" || jwk.KeyID == kid) {
		jwk.KeyID = kid
		if err := v.store.SaveWebhookKey(ctx, jwk, now); err != nil {
			Logger(ctx).WarnContext(ctx, "sharing a webhook key failed", slog.String("kid", kid), slog.String("error", err.Error()))
		}
	}
	e := entryFor(kid, jwk, now)
	v.remember(kid, e)
	if e.key == nil {
		return nil, webhookRefused(e.refusal, nil)
	}
	return e.key, nil
}

// fromStore reads kid from the shared store; nil when it is not there or
// the store fails (Plaid is asked then).
func (v *WebhookVerifier) fromStore(ctx context.Context, kid string, now time.Time) *webhookKeyEntry {
	if v.store == nil {
		return nil
	}
	jwk, fetchedAt, err := v.store.WebhookKey(ctx, kid)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			Logger(ctx).WarnContext(ctx, "reading a shared webhook key failed", slog.String("kid", kid), slog.String("error", err.Error()))
		}
		return nil
	}
	e := entryFor(kid, jwk, fetchedAt)
	if e.key != nil && !now.Before(e.recheckAt) {
		e.recheckAt = now // stale: refresh it (within the refresh budget)
	}
	return e
}

// entryFor turns what Plaid said about kid at fetchedAt into an entry.
func entryFor(kid string, jwk *WebhookKey, fetchedAt time.Time) *webhookKeyEntry {
	key, refusal := webhookPublicKey(kid, jwk)
	if refusal != "" {
		// An expired key stays expired; a malformed one is Plaid's fault and
		// is asked about again sooner.
		recheck := fetchedAt.Add(webhookUnknownKeyTTL)
		if jwk != nil && jwk.ExpiredAt != 0 {
			recheck = fetchedAt.Add(webhookKeyTTL)
		}
		return &webhookKeyEntry{refusal: refusal, fetchedAt: fetchedAt, recheckAt: recheck}
	}
	return &webhookKeyEntry{key: key, fetchedAt: fetchedAt, recheckAt: fetchedAt.Add(webhookKeyTTL)}
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

// remember caches e for kid, evicting an entry when the cache is full.
func (v *WebhookVerifier) remember(kid string, e *webhookKeyEntry) {
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
