package lifecycle

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// ErrorClass is what a Plaid error means for the token (PLAID.md, DESIGN §7).
type ErrorClass int

// The classes of Plaid errors.
const (
	// ClassTransient: rate limits, Plaid or institution outages, timeouts,
	// network errors. Retry later; never the token's fault.
	ClassTransient ErrorClass = iota
	// ClassGone: the Item no longer exists or its token is dead.
	ClassGone
	// ClassNeedsUser: the Item is alive but needs the user (re-login, consent).
	ClassNeedsUser
	// ClassConfig: our credentials or request are wrong. Never the token's
	// fault; report loudly.
	ClassConfig
)

func (c ErrorClass) String() string {
	switch c {
	case ClassGone:
		return "gone"
	case ClassNeedsUser:
		return "needs_user"
	case ClassConfig:
		return "configuration"
	default:
		return "transient"
	}
}

// PlaidError is a failed Plaid call, classified once, in the adapter.
type PlaidError struct {
	Class     ErrorClass
	Type      string // error_type, e.g. ITEM_ERROR
	Code      string // error_code, e.g. ITEM_NOT_FOUND
	RequestID string
	Status    int   // HTTP status; 0 for network errors and item.error in a 200
	Err       error // underlying error (network, decoding), if any
}

func (e *PlaidError) Error() string {
	s := fmt.Sprintf("plaid %s error", e.Class)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Status != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.RequestID != "" {
		s += " request_id=" + e.RequestID
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *PlaidError) Unwrap() error { return e.Err }

// CodeWrongEnvironment is the code of the *PlaidError a call gets, without
// reaching Plaid, for an access token of another Plaid environment than
// PLAID_ENV (DESIGN §7 rule 0).
const CodeWrongEnvironment = "WRONG_ENVIRONMENT"

// TokenEnvironment is the Plaid environment an access or public token
// names in its prefix (access-sandbox-…, public-production-…), or "" when
// it names none Plaid has had.
func TokenEnvironment(token string) string {
	for _, kind := range []string{"access-", "public-"} {
		rest, ok := strings.CutPrefix(token, kind)
		if !ok {
			continue
		}
		env, _, ok := strings.Cut(rest, "-")
		switch {
		case !ok:
		case env == "sandbox", env == "development", env == "production":
			return env
		}
	}
	return ""
}

// Item is what /item/get tells about an Item in good standing.
type Item struct {
	ItemID        string
	InstitutionID string
}

// LinkTokenRequest is what a Link token is created with
// (/link/token/create): the deployment's Link settings, the user, and in
// update mode the Item's access token.
type LinkTokenRequest struct {
	LinkSettings
	// ClientUserID identifies the user to Plaid without revealing who
	// they are (Service.ClientUserID).
	ClientUserID string
	// AccessToken, when set, opens Link in update mode for that Item:
	// Plaid then takes no products.
	AccessToken string
}

// LinkToken is a Link token: what the app opens Link with.
type LinkToken struct {
	LinkToken  string
	Expiration time.Time
	Mode       LinkMode // set by the service, not by Plaid
}

// LinkMode says what a Link token opens Link for.
type LinkMode string

// Link modes.
const (
	// LinkModeCreate links a new Item.
	LinkModeCreate LinkMode = "create"
	// LinkModeUpdate repairs (or extends) one of the user's Items.
	LinkModeUpdate LinkMode = "update"
)

// ExchangedItem is what /item/public_token/exchange gives for a public
// token: the new Item and its access token.
type ExchangedItem struct {
	ItemID      string
	AccessToken string
}

// Institution is an institution as /institutions/get_by_id names it.
type Institution struct {
	ID   string
	Name string
	// Metadata is its display data (name, url, primary_color, logo) as
	// token documents keep it.
	Metadata Metadata
}

// WebhookKey is a key from /webhook_verification_key/get (a JWK).
type WebhookKey struct {
	Alg, Crv, KeyID, Kty, Use, X, Y string
	CreatedAt                       int64
	ExpiredAt                       int64 // 0 when not expired
}

// PlaidPriority says whose Plaid call it is. Plaid's per-client quota is
// shared by the app, the users' own requests and batch work; when it is
// tight, batch work waits and a user's call does not (DESIGN §12).
type PlaidPriority int

// Priorities of Plaid calls.
const (
	// PriorityBatch: cleanup and other background work, which waits for
	// the quota as long as it takes. The default.
	PriorityBatch PlaidPriority = iota
	// PriorityInteractive: a user is waiting (revocation): first in line,
	// and never kept waiting past InteractiveMaxWait.
	PriorityInteractive
	// PriorityCommitted: a user is waiting and the call cannot be given
	// up: the reading or the removal of an Item just exchanged, billed
	// from then on. First in line as PriorityInteractive, but when the
	// quota has no room now it waits for a later window, within its
	// context, rather than fail.
	PriorityCommitted
)

func (p PlaidPriority) String() string {
	switch p {
	case PriorityBatch:
		return "batch"
	case PriorityInteractive:
		return "interactive"
	case PriorityCommitted:
		return "committed"
	}
	return fmt.Sprintf("PlaidPriority(%d)", int(p))
}

type plaidPriorityKey struct{}

// WithPlaidPriority returns ctx marking the Plaid calls made with it.
func WithPlaidPriority(ctx context.Context, p PlaidPriority) context.Context {
	return context.WithValue(ctx, plaidPriorityKey{}, p)
}

// PlaidPriorityFrom returns the priority of calls made with ctx.
func PlaidPriorityFrom(ctx context.Context) PlaidPriority {
	p, _ := ctx.Value(plaidPriorityKey{}).(PlaidPriority)
	return p
}

// PlaidAPI is what the service needs from Plaid. The plaid-go adapter
// implements it; every error it returns is a *PlaidError.
type PlaidAPI interface {
	// GetItem calls /item/get. An Item in an error state (item.error set in
	// a 200) is returned as a *PlaidError with that code.
	GetItem(ctx context.Context, accessToken string) (*Item, error)
	// RemoveItem calls /item/remove. ITEM_NOT_FOUND and INVALID_ACCESS_TOKEN
	// count as success: the Item is already gone.
	RemoveItem(ctx context.Context, accessToken string) error
	// WebhookVerificationKey calls /webhook_verification_key/get.
	WebhookVerificationKey(ctx context.Context, keyID string) (*WebhookKey, error)
	// CreateLinkToken calls /link/token/create.
	CreateLinkToken(ctx context.Context, req LinkTokenRequest) (*LinkToken, error)
	// ExchangePublicToken calls /item/public_token/exchange. A public token
	// that is used, expired or malformed is INVALID_PUBLIC_TOKEN. When an
	// attempt got no answer and a retry then met INVALID_PUBLIC_TOKEN, the
	// lost attempt may have exchanged it: the error wraps
	// ErrExchangeOutcomeUnknown.
	ExchangePublicToken(ctx context.Context, publicToken string) (*ExchangedItem, error)
	// GetInstitution calls /institutions/get_by_id, asking for its display
	// metadata.
	GetInstitution(ctx context.Context, institutionID string, countryCodes []string) (*Institution, error)
}
