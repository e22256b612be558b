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
//     webhooks with a known key without asking Plaid at all. The store is
//     read as a whole, at most once a minute per instance: a forged kid
//     costs no Firestore read.
//   - Kids Plaid never vouched for are looked up at Plaid within a small
//     budget of their own; when a flood of forged kids spends it, unknown
//     kids get 503 (Plaid retries genuine webhooks) while known keys keep
//     verifying.
//   - A kid Plaid ever vouched for is refreshed past its TTL within a
//     separate budget, never the unknown kids' one. A refresh refused by
//     that budget keeps the key verifying (it cannot become a lock-out); a
//     refresh Plaid fails keeps it verifying for a grace period.

// Limits of webhook verification (DESIGN §7, PLAID.md "Webhooks").
const (
	// webhookMaxAge is how old a webhook's iat may be: Plaid says to refuse
	// webhooks signed more than 5 minutes ago, which bounds replays.
	webhookMaxAge = 5 * time.Minute
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
	// while Plaid fails to answer its refresh, so that an outage of the key
	// endpoint does not turn away genuine webhooks at once.
	webhookKeyStaleGrace = time.Hour
	// webhookStoreReadEvery spaces the reads of the shared key store.
	webhookStoreReadEvery = time.Minute
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
	// WebhookKeys returns every stored key with when Plaid last vouched for
	// it: a few (Plaid signs with one or two keys at a time, and a rotation
	// adds one), so they are read together.
	WebhookKeys(ctx context.Context) ([]StoredWebhookKey, error)
	// SaveWebhookKey stores a key Plaid returned (expired ones too, so
	// other instances refuse them).
	SaveWebhookKey(ctx context.Context, key *WebhookKey, fetchedAt time.Time) error
}

// StoredWebhookKey is a key of the shared store.
type StoredWebhookKey struct {
	Key       *WebhookKey
	FetchedAt time.Time // when Plaid last vouched for it
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
	// stored is the shared store's keys as read at storeReadAt (by kid).
	stored      map[string]*webhookKeyEntry
	storeReadAt time.Time
}

// webhookKeyEntry is what is known about a kid: its key, or why the kid
// is refused.
type webhookKeyEntry struct {
	key       *ecdsa.PublicKey // nil when the kid is refused
	refusal   string           // why, when key is nil
	fetchedAt time.Time        // when Plaid last vouched for the key
	recheckAt time.Time        // when to look again
}

// graceful reports whether the entry's key may still verify at now while
// Plaid fails to refresh it: until its TTL and a grace period after it.
func (e *webhookKeyEntry) graceful(now time.Time) bool {
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
		if now.Sub(iat) > webhookMaxAge {
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
	default:
		return e.key, nil, true
	}
}

// lookup finds kid's key when memory cannot answer. A kid Plaid vouched
// for (in memory or in the shared store) is refreshed within the refresh
// budget; any other goes to Plaid within the unknown kids' budget. It runs
// once per kid at a time (singleflight).
func (v *WebhookVerifier) lookup(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	now := v.clock.Now()
	// A lookup that finished just before this one started already answered.
	if key, err, ok := v.cached(kid, now); ok {
		return key, err
	}
	known := v.vouched(ctx, kid, now)
	if key, err, ok := v.cached(kid, now); ok {
		return key, err // fresh from the store, or refused there (an expired key)
	}
	if known == nil {
		return v.fetchUnknown(ctx, kid, now)
	}
	return v.refresh(ctx, kid, known, now)
}

// vouched returns what is known of a key Plaid vouched for under kid, from
// memory or the shared store (whose entries it caches, an expired key's
// refusal included); nil for any other kid.
func (v *WebhookVerifier) vouched(ctx context.Context, kid string, now time.Time) *webhookKeyEntry {
	v.mu.Lock()
	e := v.keys[kid]
	v.mu.Unlock()
	if e != nil && e.key != nil {
		return e
	}
	stored := v.storedKeys(ctx, now)[kid]
	if stored == nil {
		return nil
	}
	e = new(*stored)
	if e.key != nil && !now.Before(e.recheckAt) {
		e.recheckAt = now // stale: refresh it (within the refresh budget)
	}
	v.remember(kid, e)
	if e.key == nil {
		return nil // refused until its recheck; then asked about like a new kid
	}
	return e
}

// storedKeys returns the shared store's keys, read at most once every
// webhookStoreReadEvery: however many kids a flood makes up, the store is
// read once a minute per instance. A failed read is logged and answers
// what was read before.
func (v *WebhookVerifier) storedKeys(ctx context.Context, now time.Time) map[string]*webhookKeyEntry {
	if v.store == nil {
		return nil
	}
	res, _, _ := v.fetches.Do("\x00store", func() (any, error) { // not a kid: kids are printable
		v.mu.Lock()
		fresh := !v.storeReadAt.IsZero() && now.Sub(v.storeReadAt) < webhookStoreReadEvery
		stored := v.stored
		v.mu.Unlock()
		if fresh {
			return stored, nil
		}
		keys, err := v.store.WebhookKeys(ctx)
		if err != nil {
			Logger(ctx).WarnContext(ctx, "reading the shared webhook keys failed", slog.String("error", err.Error()))
			return stored, nil
		}
		stored = make(map[string]*webhookKeyEntry, len(keys))
		for _, k := range keys {
			if k.Key != nil && validKeyID(k.Key.KeyID) {
				stored[k.Key.KeyID] = entryFor(k.Key.KeyID, k.Key, k.FetchedAt)
			}
		}
		v.mu.Lock()
		v.stored, v.storeReadAt = stored, now
		v.mu.Unlock()
		return stored, nil
	})
	stored, _ := res.(map[string]*webhookKeyEntry)
	return stored
}

// fetchUnknown asks Plaid about a kid it never vouched for, within the
// unknown kids' budget.
func (v *WebhookVerifier) fetchUnknown(ctx context.Context, kid string, now time.Time) (*ecdsa.PublicKey, error) {
	if !v.unknownLimiter.AllowN(now, 1) {
		return nil, Errorf(CodeUnavailable, "too many webhook verification key lookups; retry later")
	}
	jwk, err := v.fetch(ctx, kid)
	switch {
	case err == nil:
		return v.learn(ctx, kid, jwk, now)
	case unknownWebhookKey(err):
		Logger(ctx).WarnContext(ctx, "webhook names a key Plaid does not know", slog.String("kid", kid))
		v.remember(kid, &webhookKeyEntry{refusal: "unknown kid", fetchedAt: now, recheckAt: now.Add(webhookUnknownKeyTTL)})
		return nil, webhookRefused("unknown kid", nil)
	default:
		return nil, WrapError(CodeUnavailable, err, "could not fetch the webhook verification key from Plaid")
	}
}

// refresh asks Plaid again about a key it vouched for, past its TTL,
// within the refresh budget. A refresh the budget refuses keeps the key
// verifying, so that requests naming a known kid cannot lock it out; one
// Plaid fails keeps it verifying for a grace period.
func (v *WebhookVerifier) refresh(ctx context.Context, kid string, known *webhookKeyEntry, now time.Time) (*ecdsa.PublicKey, error) {
	keep := func() *ecdsa.PublicKey {
		v.remember(kid, &webhookKeyEntry{key: known.key, fetchedAt: known.fetchedAt, recheckAt: now.Add(webhookKeyRetryEvery)})
		return known.key
	}
	if !v.refreshLimiter.AllowN(now, 1) {
		Logger(ctx).WarnContext(ctx, "webhook key refresh rate limited; verifying with the key Plaid vouched for", slog.String("kid", kid))
		return keep(), nil
	}
	jwk, err := v.fetch(ctx, kid)
	switch {
	case err == nil:
		return v.learn(ctx, kid, jwk, now)
	case unknownWebhookKey(err):
		Logger(ctx).WarnContext(ctx, "Plaid no longer knows a webhook key it vouched for", slog.String("kid", kid))
		v.remember(kid, &webhookKeyEntry{refusal: "unknown kid", fetchedAt: now, recheckAt: now.Add(webhookUnknownKeyTTL)})
		return nil, webhookRefused("unknown kid", nil)
	case known.graceful(now):
		Logger(ctx).WarnContext(ctx, "refreshing a webhook key failed; verifying with the cached key",
			slog.String("kid", kid), slog.String("error", err.Error()))
		return keep(), nil
	default:
		v.remember(kid, &webhookKeyEntry{key: known.key, fetchedAt: known.fetchedAt, recheckAt: now.Add(webhookKeyRetryEvery)})
		return nil, WrapError(CodeUnavailable, err, "the webhook verification key could not be refreshed from Plaid")
	}
}

// fetch calls /webhook_verification_key/get for kid, bounded in time.
func (v *WebhookVerifier) fetch(ctx context.Context, kid string) (*WebhookKey, error) {
	ctx, cancel := context.WithTimeout(ctx, webhookKeyFetchTimeout)
	defer cancel()
	return v.plaid.WebhookVerificationKey(ctx, kid)
}

// learn caches and shares what Plaid said about kid at now.
func (v *WebhookVerifier) learn(ctx context.Context, kid string, jwk *WebhookKey, now time.Time) (*ecdsa.PublicKey, error) {
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
