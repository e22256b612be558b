package functions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// Principal is the authenticated caller of a request.
type Principal struct {
	UserID string // the token's sub claim
	Admin  bool   // listed in ADMIN_USER_IDS or carrying "admin": true
}

type principalKey struct{}

// WithPrincipal returns a copy of ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the Principal that Require put in ctx.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

const (
	// clockLeeway absorbs clock skew between the token issuer and us.
	clockLeeway = 30 * time.Second
	// accessTokenType is the "type" claim of the old FastAPI service's access
	// tokens; its refresh tokens, signed with the same secret, carry another.
	accessTokenType = "access_token"
	// jwksFetchTimeout bounds one JWKS download.
	jwksFetchTimeout = 10 * time.Second
	// jwksUnknownKIDEvery is how often a token with a kid we do not hold may
	// trigger a JWKS download: often enough to pick up a rotated key (and to
	// recover from an outage) quickly, rarely enough that junk kids cannot
	// turn us into a load generator against the issuer.
	jwksUnknownKIDEvery = time.Minute
	// jwksRateLimitWait is the longest a request waits for its turn to
	// download the JWKS; past it the kid is treated as unknown.
	jwksRateLimitWait = time.Second
)

var (
	// errNoBearer marks a request that presented no bearer token at all, as
	// opposed to one whose token was refused (RFC 6750 §3.1).
	errNoBearer = errors.New("no bearer token in the Authorization header")
	// errKeysUnavailable marks a token we could not check because the JWKS
	// could not be fetched: our fault or the issuer's, not the caller's.
	errKeysUnavailable = errors.New("JWKS unavailable")
)

// Authenticator verifies bearer JWTs: HS256 tokens signed with
// AUTH_JWT_SECRET (as the old service issued them) and RS256/ES256 tokens
// signed by a key in the JWKS at AUTH_JWKS_URL (Firebase Auth, Google ID
// tokens). The verifier is chosen by the token's alg, and each verifier
// accepts only its own algorithms, so an HS256 token "signed" with a public
// key is never checked against that key.
type Authenticator struct {
	verifiers map[string]*verifier // by alg
	cfg       lifecycle.Config
	clock     lifecycle.Clock
}

type verifier struct {
	parser *jwt.Parser
	key    func(ctx context.Context) jwt.Keyfunc
}

// NewAuthenticator builds an Authenticator from cfg. The JWKS is fetched
// lazily, on the first token that needs it, through httpClient (nil: a
// client with a timeout); ctx bounds its background refresh and should live
// as long as the Authenticator.
func NewAuthenticator(ctx context.Context, cfg lifecycle.Config, httpClient *http.Client) (*Authenticator, error) {
	a := &Authenticator{verifiers: make(map[string]*verifier), cfg: cfg, clock: lifecycle.SystemClock{}}
	common := []jwt.ParserOption{
		jwt.WithLeeway(clockLeeway),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(func() time.Time { return a.clock.Now() }),
	}
	if cfg.AuthJWTSecret == "" && cfg.AuthJWKSURL == "" {
		return nil, errors.New("auth: neither AUTH_JWT_SECRET nor AUTH_JWKS_URL is set")
	}
	if cfg.AuthJWTSecret != "" {
		secret := []byte(cfg.AuthJWTSecret)
		a.verifiers[jwt.SigningMethodHS256.Alg()] = &verifier{
			parser: jwt.NewParser(append(common, jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}))...),
			key: func(context.Context) jwt.Keyfunc {
				return func(*jwt.Token) (any, error) { return secret, nil }
			},
		}
	}
	if cfg.AuthJWKSURL != "" {
		if cfg.AuthIssuer == "" || cfg.AuthAudience == "" {
			return nil, errors.New("auth: AUTH_JWKS_URL needs AUTH_ISSUER and AUTH_AUDIENCE")
		}
		if err := lifecycle.ValidateJWKSURL(cfg.AuthJWKSURL); err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		keys := newJWKSKeys(ctx, cfg.AuthJWKSURL, httpClient)
		algs := []string{jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg()}
		v := &verifier{
			parser: jwt.NewParser(append(common,
				jwt.WithValidMethods(algs),
				jwt.WithIssuer(cfg.AuthIssuer),
				jwt.WithAudience(cfg.AuthAudience))...),
			key: keys.keyfunc,
		}
		for _, alg := range algs {
			a.verifiers[alg] = v
		}
	}
	return a, nil
}

// Claims are read from a map, by their exact names: sub, exp, iss, aud,
// admin and type. Decoding into a struct would let encoding/json fold case,
// so that {"Admin": true} or {"SUB": ...} in a token signed by the old
// service (which never checked claim names) would count.

// validateClaims checks what jwt's own validation does not: a string sub,
// and the old service's refresh tokens (same secret, another type) refused.
func validateClaims(c jwt.MapClaims) error {
	if sub, ok := c["sub"].(string); !ok || sub == "" {
		return fmt.Errorf("%w: sub", jwt.ErrTokenRequiredClaimMissing)
	}
	if typ, present := c["type"]; present && typ != accessTokenType {
		return errors.New("token type is not access_token")
	}
	return nil
}

// Authenticate returns the caller of r from its "Authorization: Bearer"
// header, or a *lifecycle.Error: CodeUnauthorized for a missing or refused
// token, CodeUnavailable when the JWKS could not be fetched.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	raw, err := bearerToken(r.Header)
	if err != nil {
		return Principal{}, err
	}
	refuse := func(err error) (Principal, error) {
		if errors.Is(err, jwt.ErrTokenMalformed) {
			err = jwt.ErrTokenMalformed // the detail may quote bytes of the token
		}
		switch {
		case errors.Is(err, errKeysUnavailable):
			return Principal{}, lifecycle.WrapError(lifecycle.CodeUnavailable, err, "authentication is temporarily unavailable")
		case errors.Is(err, jwt.ErrTokenExpired):
			return Principal{}, lifecycle.WrapError(lifecycle.CodeUnauthorized, err, a.expiredMessage(raw))
		default:
			return Principal{}, lifecycle.WrapError(lifecycle.CodeUnauthorized, err, "invalid token")
		}
	}

	// The alg is read before the signature is checked only to pick the
	// verifier; that verifier then insists on its own algorithms.
	unverified, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
	if err != nil {
		return refuse(err)
	}
	alg, _ := unverified.Header["alg"].(string)
	v, ok := a.verifiers[alg]
	if !ok {
		return refuse(fmt.Errorf("alg %q has no configured key", alg))
	}
	c := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(raw, c, v.key(r.Context())); err != nil {
		return refuse(err)
	}
	if err := validateClaims(c); err != nil {
		return refuse(err)
	}
	sub := c["sub"].(string)
	admin, _ := c["admin"].(bool)
	return Principal{UserID: sub, Admin: admin || a.cfg.IsAdmin(sub)}, nil
}

// expiredMessage refuses an expired token (its signature checked) with
// how to get a new one: on a local system (the Firestore emulator), the
// devkit command that mints one for the same user.
func (a *Authenticator) expiredMessage(raw string) string {
	const msg = "token expired: sign in again for a new one"
	if a.cfg.FirestoreEmulatorHost == "" {
		return msg
	}
	sub := "USER_ID"
	if t, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{}); err == nil {
		if s, _ := t.Claims.(jwt.MapClaims)["sub"].(string); s != "" && !strings.ContainsAny(s, " '\"$`\\") {
			sub = s
		}
	}
	return msg + "; locally: go run ./scripts/devkit jwt -sub " + sub
}

// The refusals of a request without a bearer token say what to send.
const (
	sendBearer       = "send the header Authorization: Bearer followed by a space and the JWT"
	missingBearer    = "missing bearer token: " + sendBearer
	bearerNoScheme   = "missing bearer token: the Authorization header holds a token without the word Bearer before it; " + sendBearer
	bearerEmpty      = "missing bearer token: nothing follows Bearer in the Authorization header; " + sendBearer
	bearerScheme     = "missing bearer token: the Authorization header uses %s; " + sendBearer
	bearerTwoHeaders = "invalid token: more than one Authorization header; send one"
)

// bearerToken returns the one token of an "Authorization: Bearer <jwt>"
// header; the scheme is case-insensitive (RFC 7235 §2.1). Its refusals say
// what was wrong with the header and what to send instead.
func bearerToken(h http.Header) (string, error) {
	values := h.Values("Authorization")
	if len(values) == 0 {
		return "", lifecycle.WrapError(lifecycle.CodeUnauthorized, errNoBearer, missingBearer)
	}
	if len(values) > 1 {
		return "", lifecycle.Errorf(lifecycle.CodeUnauthorized, bearerTwoHeaders)
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
	token = strings.TrimSpace(token)
	switch {
	case scheme == "":
		return "", lifecycle.WrapError(lifecycle.CodeUnauthorized, errNoBearer, missingBearer)
	case !strings.EqualFold(scheme, "Bearer") && token == "" && strings.Count(scheme, ".") == 2:
		// Authorization: <jwt>, the scheme forgotten.
		return "", lifecycle.WrapError(lifecycle.CodeUnauthorized, errNoBearer, bearerNoScheme)
	case !strings.EqualFold(scheme, "Bearer"):
		return "", lifecycle.WrapError(lifecycle.CodeUnauthorized, errNoBearer, fmt.Sprintf(bearerScheme, schemeName(scheme)))
	case token == "":
		return "", lifecycle.WrapError(lifecycle.CodeUnauthorized, errNoBearer, bearerEmpty)
	}
	if strings.ContainsAny(token, " \t") {
		return "", lifecycle.Errorf(lifecycle.CodeUnauthorized, "invalid token")
	}
	return token, nil
}

// schemeName names an Authorization scheme as a refusal may quote it:
// "the Basic scheme", or "an unknown scheme" for anything but a short
// name (the header's bytes are the caller's, never echoed as they are).
func schemeName(scheme string) string {
	if len(scheme) > 20 || strings.IndexFunc(scheme, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-')
	}) >= 0 {
		return "an unknown scheme"
	}
	return "the " + scheme + " scheme"
}

// Require serves next only to authenticated callers, with their Principal
// in the request context; others get 401 with a Bearer challenge (503 when
// the keys to check their token could not be fetched).
func (a *Authenticator) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Authenticate(r)
		if err != nil {
			refuseAuth(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// RequireAdmin serves next only to admins; it goes inside Require.
func RequireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := PrincipalFrom(r.Context())
		if !ok {
			refuseAuth(w, r, lifecycle.WrapError(lifecycle.CodeUnauthorized, errNoBearer, missingBearer))
			return
		}
		if !p.Admin {
			lifecycle.Logger(r.Context()).InfoContext(r.Context(), "admin required", slog.String("user_id", p.UserID))
			writeError(w, r, lifecycle.Errorf(lifecycle.CodeForbidden, "admin privileges required"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refuseAuth logs why a request was refused (never the token) and answers it.
func refuseAuth(w http.ResponseWriter, r *http.Request, err error) {
	if lifecycle.IsCode(err, lifecycle.CodeUnauthorized) {
		lifecycle.Logger(r.Context()).InfoContext(r.Context(), "authentication refused", slog.String("reason", err.Error()))
		challenge := "Bearer"
		if !errors.Is(err, errNoBearer) {
			challenge = `Bearer error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	}
	writeError(w, r, err) // logs the 503 of an unreachable JWKS

}

// jwksKeys finds the keys of RS256/ES256 tokens in a remote JWKS through
// keyfunc, which caches the set, refreshes it hourly and on an unknown kid
// (rate limited). It also tracks whether the latest download failed, so
// that a key we cannot find because the JWKS is down reads as 503, not 401.
type jwksKeys struct {
	ctx     context.Context // lifetime of keyfunc's background refresh
	url     string
	client  *http.Client
	failing atomic.Bool

	once sync.Once
	kf   keyfunc.Keyfunc
	err  error
}

func newJWKSKeys(ctx context.Context, jwksURL string, httpClient *http.Client) *jwksKeys {
	k := &jwksKeys{ctx: ctx, url: jwksURL}
	c := http.Client{Timeout: jwksFetchTimeout}
	if httpClient != nil {
		c = *httpClient
	}
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := base.RoundTrip(req)
		if err == nil && resp.StatusCode == http.StatusOK {
			k.failing.Store(false) // a body that then fails to decode sets it again
		}
		return resp, err
	})
	k.client = &c
	return k
}

// start creates the keyfunc, which downloads the JWKS once right away.
func (k *jwksKeys) start() {
	k.kf, k.err = keyfunc.NewDefaultOverrideCtx(k.ctx, []string{k.url}, keyfunc.Override{
		Client:            k.client,
		HTTPTimeout:       jwksFetchTimeout,
		RateLimitWaitMax:  jwksRateLimitWait,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(jwksUnknownKIDEvery), 1),
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				k.failing.Store(true)
				// keyfunc refreshes in the background, outside any request:
				// the default logger (JSON in every program) takes it.
				slog.Default().ErrorContext(ctx, "fetching JWKS failed", slog.String("url", u), slog.String("error", err.Error()))
			}
		},
	})
}

func (k *jwksKeys) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		k.once.Do(k.start)
		if k.err != nil {
			return nil, errors.Join(errKeysUnavailable, k.err)
		}
		key, err := k.kf.KeyfuncCtx(ctx)(t)
		if err == nil {
			if set, ok := key.(jwt.VerificationKeySet); ok && len(set.Keys) == 0 {
				err = errors.New("JWKS holds no keys")
			}
		}
		if err != nil && k.failing.Load() {
			return nil, errors.Join(errKeysUnavailable, err)
		}
		return key, err
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
