package lifecycle

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// The app's side of an Item's life (DESIGN §4, the Link flow of Plaid's
// docs, server half): a Link token for a new Item or for update mode, and
// the exchange of Link's public token for a stored, encrypted access token.
// The rules a reviewer checks first:
//
//   - an exchanged Item is stored for the caller or removed at Plaid, never
//     left billed without a stored token: the exchange and every step
//     after it run on a context the caller cannot cancel, and any failure
//     to store removes the Item (exchangeSession.discard);
//   - a duplicate (the caller already has an active Item at the same
//     institution sharing an account mask) is removed at Plaid at once and
//     refused with the existing item id;
//   - a public token of another Plaid environment never reaches Plaid
//     (rule 0), and a used or invalid one is the caller's error, not ours;
//   - the user's Plaid calls go before batch work (PriorityInteractive).

// Audit reasons of Items removed at the exchange.
const (
	ReasonDuplicateItem     = "duplicate_item"
	ReasonExchangeNotStored = "exchange_not_stored"
)

const (
	// exchangeTimeout bounds an exchange and the work after it (the
	// Item's institution, the duplicate check, the store, or the removal),
	// on a context detached from the caller's: from the exchange on the
	// Item is billed, so a caller who goes away must not stop it. It leaves
	// room for the Plaid adapter's own bound on each call.
	exchangeTimeout = 3 * time.Minute
	// exchangeReadWait bounds the exchanged Item's reading (/item/get),
	// its wait for the fleet's quota included: when users link faster
	// than a quota window allows, the reading waits for a later window
	// (PriorityCommitted) rather than give the Item up. 20 s is ten
	// windows: 1,600 readings at 5,000/min.
	exchangeReadWait = 20 * time.Second
	// discardTimeout bounds the removal of an exchanged Item that is not
	// stored, its wait for the quota and the audit entry.
	discardTimeout = 2 * time.Minute
	// clientUserIDLabel keys the derivation of the client_user_id key from
	// TOKEN_ENCRYPTION_KEY: a key of its own, never the vault's.
	clientUserIDLabel = "plaid-token-lifecycle/client_user_id/v1"
	// maxLinkedAccounts and maxAccountField bound Link's metadata as the
	// app passes it on: an Item has a handful of accounts.
	maxLinkedAccounts = 100
	maxAccountField   = 128
	// maxPublicToken bounds a public token (Plaid's are about 50 bytes).
	maxPublicToken = 256
)

// DuplicateItemError refuses an exchanged Item that duplicates one the
// user has; the new Item was removed at Plaid.
type DuplicateItemError struct {
	ExistingItemID string
}

func (e *DuplicateItemError) Error() string {
	return "duplicate of item " + e.ExistingItemID + ": " + ErrDuplicateItem.Message
}

// Unwrap makes the error carry CodeDuplicateItem.
func (e *DuplicateItemError) Unwrap() error { return ErrDuplicateItem }

// ClientUserID is the client_user_id Plaid gets for userID: stable per user
// and revealing nothing of the user id (Plaid asks for no personal data
// there). It is HMAC-SHA256 of the user id under a key derived (HKDF) from
// TOKEN_ENCRYPTION_KEY with a label of its own. Rotating that key changes
// every user's client_user_id: Plaid then sees new users for new Link
// sessions (its returning-user experience starts afresh); Items already
// linked are not affected.
func (s *Service) ClientUserID(userID string) (string, error) {
	if s.config.EncryptionKey == "" {
		return "", Errorf(CodeUnavailable, "TOKEN_ENCRYPTION_KEY is not set for this program")
	}
	key, err := hkdf.Key(sha256.New, []byte(s.config.EncryptionKey), nil, clientUserIDLabel, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("deriving the client_user_id key: %w", err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(userID))
	return "u1-" + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}

// CreateLinkToken creates a Link token for userID: for a new Item when
// itemID is empty, else in update mode for that Item, which must be the
// user's (another user's or a missing item is ErrItemNotFound, as
// RevokeItem answers) and active.
func (s *Service) CreateLinkToken(ctx context.Context, userID, itemID string) (*LinkToken, error) {
	if userID == "" {
		return nil, Errorf(CodeInvalid, "creating a link token needs the user id")
	}
	clientUserID, err := s.ClientUserID(userID)
	if err != nil {
		return nil, err
	}
	req := LinkTokenRequest{LinkSettings: s.config.Link, ClientUserID: clientUserID}
	mode := LinkModeCreate
	log := Logger(ctx).With(slog.String("user_id", userID))
	if itemID != "" {
		mode = LinkModeUpdate
		log = log.With(slog.String("item_id", itemID))
		tok, access, err := s.usableToken(ctx, userID, itemID, log)
		if err != nil {
			return nil, err
		}
		req.AccessToken = access
		log = log.With(slog.String("institution_id", tok.InstitutionID))
	}
	lt, err := s.plaid.CreateLinkToken(WithPlaidPriority(ctx, PriorityInteractive), req)
	if err != nil {
		return nil, s.linkPlaidError(ctx, log, "creating the link token", err)
	}
	lt.Mode = mode
	log.InfoContext(ctx, "link token created", slog.String("mode", string(mode)))
	return lt, nil
}

// usableToken returns the user's token itemID and its plaintext, for a
// Plaid call made for the user: active, of this deployment's environment.
func (s *Service) usableToken(ctx context.Context, userID, itemID string, log *slog.Logger) (*Token, string, error) {
	tok, err := s.callersToken(ctx, userID, itemID)
	if err != nil {
		return nil, "", err
	}
	if tok.Status != StatusActive {
		log.InfoContext(ctx, "item refused: not active", slog.String("status", string(tok.Status)))
		return nil, "", Errorf(CodeConflict, "item is %s; link the account again", tok.Status)
	}
	access, err := s.userAccessToken(ctx, tok, log)
	if err != nil {
		return nil, "", err
	}
	return tok, access, nil
}

// LinkedAccount is one account of Link's onSuccess metadata, as the app
// passes it on.
type LinkedAccount struct {
	Mask    string
	Name    string
	Subtype string
}

// ExchangeRequest is the app's request to store the Item Link created.
type ExchangeRequest struct {
	UserID      string
	PublicToken string
	Accounts    []LinkedAccount
}

// validate reports every problem of the request at once, as CodeInvalid,
// and refuses another environment's public token before any Plaid call.
func (r ExchangeRequest) validate(plaidEnv string) error {
	var problems []string
	switch {
	case r.PublicToken == "":
		problems = append(problems, "public_token is required")
	case len(r.PublicToken) > maxPublicToken || !strings.HasPrefix(r.PublicToken, "public-"):
		problems = append(problems, "public_token is not a Plaid public token (public-<environment>-<identifier>)")
	default:
		if env := TokenEnvironment(r.PublicToken); env != "" && env != plaidEnv {
			problems = append(problems, fmt.Sprintf("public_token is a %s token; this service serves %s", env, plaidEnv))
		}
	}
	if len(r.Accounts) > maxLinkedAccounts {
		problems = append(problems, fmt.Sprintf("accounts lists more than %d accounts", maxLinkedAccounts))
	}
	for i, a := range r.Accounts {
		for _, f := range []struct{ name, v string }{{"mask", a.Mask}, {"name", a.Name}, {"subtype", a.Subtype}} {
			if len(f.v) > maxAccountField {
				problems = append(problems, fmt.Sprintf("accounts[%d].%s is longer than %d bytes", i, f.name, maxAccountField))
			}
		}
	}
	if len(problems) > 0 {
		return Errorf(CodeInvalid, "invalid request: %s", strings.Join(problems, "; "))
	}
	return nil
}

// ExchangePublicToken turns Link's public token into the caller's stored,
// encrypted token (DESIGN §4): /item/public_token/exchange, the Item's
// institution (/item/get, /institutions/get_by_id), the duplicate check,
// then StoreToken. It returns the stored Item, never the token. A used or
// invalid public token is CodeInvalid; a duplicate is a
// *DuplicateItemError after the new Item was removed at Plaid.
func (s *Service) ExchangePublicToken(ctx context.Context, req ExchangeRequest) (*ItemState, error) {
	if req.UserID == "" {
		return nil, Errorf(CodeInvalid, "exchanging a public token needs the user id")
	}
	if err := req.validate(s.config.PlaidEnv); err != nil {
		return nil, err
	}
	log := Logger(ctx).With(slog.String("user_id", req.UserID))
	// The exchange uses the public token up: from its first attempt on,
	// Plaid may hold a billed Item whose token only this call can store or
	// remove, so a caller who goes away must stop none of it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), exchangeTimeout)
	defer cancel()
	ctx = WithPlaidPriority(ctx, PriorityInteractive)
	ex, err := s.plaid.ExchangePublicToken(ctx, req.PublicToken)
	var pe *PlaidError
	switch {
	case errors.Is(err, ErrExchangeOutcomeUnknown) && errors.As(err, &pe):
		// Plaid may hold an Item whose access token never reached us:
		// nothing here can remove it, so say so loudly.
		log.ErrorContext(ctx, "public token exchange outcome unknown: an Item may be billed at Plaid without a stored token",
			slog.String("plaid_request_id", pe.RequestID))
		return nil, WrapError(CodeUnavailable, err, "Plaid did not answer the exchange; link the account again")
	case errors.As(err, &pe) && pe.Code == "INVALID_PUBLIC_TOKEN":
		log.InfoContext(ctx, "public token refused by Plaid", slog.String("plaid_error_code", pe.Code))
		return nil, Errorf(CodeInvalid, "public_token is expired, already exchanged or invalid; open Link again for a new one")
	case err != nil:
		return nil, s.linkPlaidError(ctx, log, "exchanging the public token", err)
	}

	x := &exchangeSession{s: s, req: req, item: ex, log: log.With(slog.String("item_id", ex.ItemID))}
	return x.finish(ctx)
}

// exchangeSession is one exchanged Item on its way to the store: it must
// end stored or removed at Plaid.
type exchangeSession struct {
	s    *Service
	req  ExchangeRequest
	item *ExchangedItem // holds the plaintext access token: never logged
	log  *slog.Logger
}

func (x *exchangeSession) finish(ctx context.Context) (*ItemState, error) {
	s := x.s
	readCtx, cancel := context.WithTimeout(WithPlaidPriority(ctx, PriorityCommitted), exchangeReadWait)
	got, err := s.plaid.GetItem(readCtx, x.item.AccessToken)
	cancel()
	if err == nil && got.ItemID != x.item.ItemID {
		err = fmt.Errorf("/item/get answered item %s for the token of item %s", got.ItemID, x.item.ItemID)
	}
	if err != nil {
		// Without the institution there is no duplicate check, and no
		// document the app could show: refuse the Item rather than keep it
		// half-known.
		x.discard(ctx, ReasonExchangeNotStored, "reading the exchanged Item failed", err)
		return nil, s.linkPlaidError(ctx, x.log, "reading the exchanged Item", err)
	}
	log := x.log.With(slog.String("institution_id", got.InstitutionID))
	x.log = log

	masks := x.masks()
	if dup, err := s.duplicateOf(ctx, x.req.UserID, x.item.ItemID, got.InstitutionID, masks); err != nil {
		x.discard(ctx, ReasonExchangeNotStored, "the duplicate check failed", err)
		return nil, fmt.Errorf("checking item %s for a duplicate: %w", x.item.ItemID, err)
	} else if dup != nil {
		x.discard(ctx, ReasonDuplicateItem, "duplicate of item "+dup.ItemID, nil)
		return nil, &DuplicateItemError{ExistingItemID: dup.ItemID}
	}

	// The name is display data: an Item is kept without it rather than
	// removed for it (analytics count it as Unknown).
	var md Metadata
	if got.InstitutionID != "" {
		inst, err := s.plaid.GetInstitution(ctx, got.InstitutionID, s.config.Link.CountryCodes)
		if err != nil {
			log.WarnContext(ctx, "institution name lookup failed; item stored without it", slog.String("error", err.Error()))
		} else {
			md = inst.Metadata
		}
	}

	tok, err := s.StoreToken(ctx, NewToken{
		UserID: x.req.UserID, ItemID: x.item.ItemID, AccessToken: x.item.AccessToken,
		InstitutionID: got.InstitutionID, InstitutionName: md.Name, Metadata: md, AccountMasks: masks,
	})
	switch {
	case errors.Is(err, ErrItemOfAnotherUser):
		// Plaid's item ids are unique: this is corrupt data to look into,
		// and removing the Item would cut off the other user's bank.
		log.ErrorContext(ctx, "exchanged item id is stored for another user; the Item is left alone")
		return nil, err
	case err != nil:
		x.discard(ctx, ReasonExchangeNotStored, "storing the token failed", err)
		return nil, WrapError(CodeUnavailable, err, "the linked account could not be saved and was disconnected; link it again")
	}
	log.InfoContext(ctx, "item linked", slog.Int("accounts", len(x.req.Accounts)))
	st := itemStateOf(tok)
	return &st, nil
}

// masks are the non-empty account masks of the request, each once.
func (x *exchangeSession) masks() []string {
	var out []string
	for _, a := range x.req.Accounts {
		if m := strings.TrimSpace(a.Mask); m != "" && !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// discard removes the exchanged Item at Plaid, which stops its billing,
// because it will not be stored (why, cause). A failed removal is handed
// to the early-removal queue with the token sealed for its item id, so that
// it is retried until Plaid confirms it; only if that fails too is the Item
// left billed, logged at ERROR with its item id.
func (x *exchangeSession) discard(ctx context.Context, reason, why string, cause error) {
	s, log := x.s, x.log.With(slog.String("reason", reason))
	// A budget of its own: the steps before may have used the exchange's.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), discardTimeout)
	defer cancel()
	if cause != nil {
		log = log.With(slog.String("error", cause.Error()))
	}
	// First in line, and waiting for the quota within ctx when it is spent:
	// there is no local fallback for an Item no document holds.
	err := s.plaid.RemoveItem(WithPlaidPriority(ctx, PriorityCommitted), x.item.AccessToken)
	removed := err == nil
	switch {
	case removed:
		log.WarnContext(ctx, "exchanged item removed at Plaid: "+why)
	case x.queueRemoval(ctx) == nil:
		log.WarnContext(ctx, "exchanged item not removed at Plaid yet; its early removal is queued ("+why+")",
			slog.String("plaid_error", err.Error()))
	default:
		log.ErrorContext(ctx, "exchanged item NOT removed at Plaid: it is billed without a stored token ("+why+")",
			slog.String("plaid_error", err.Error()))
	}
	entry := AuditEntry{ItemID: x.item.ItemID, UserID: x.req.UserID, Reason: reason, Actor: x.req.UserID,
		At: s.clock.Now(), PlaidRemoved: removed}
	if err := s.runs.Audit(ctx, entry); err != nil {
		log.ErrorContext(ctx, "writing the removal's audit entry failed", slog.String("audit_error", err.Error()))
	}
}

// queueRemoval asks for the exchanged Item's early removal, carrying its
// token sealed for its item id: no document holds it (RemoveOwedItem never
// removes an Item whose document is live, should the store have landed).
func (x *exchangeSession) queueRemoval(ctx context.Context) error {
	s := x.s
	if s.continuer == nil {
		return errors.New("no removal queue is configured")
	}
	sealed, err := s.cipher.Encrypt(x.item.ItemID, x.item.AccessToken)
	if err != nil {
		return err
	}
	err = s.continuer.RequestRemoval(ctx, RemovalRequest{ItemID: x.item.ItemID, SealedToken: sealed})
	if err != nil {
		x.log.ErrorContext(ctx, "queueing the exchanged item's early removal failed", slog.String("queue_error", err.Error()))
	}
	return err
}

// duplicateOf returns the user's active token at institutionID that shares
// an account mask with masks, other than itemID; nil when there is none.
func (s *Service) duplicateOf(ctx context.Context, userID, itemID, institutionID string, masks []string) (*Token, error) {
	if institutionID == "" || len(masks) == 0 {
		return nil, nil
	}
	tokens, err := s.tokens.ListByUser(ctx, userID)
	if err != nil {
		return nil, err
	}
	for _, t := range tokens {
		if t.ItemID == itemID || t.Status != StatusActive || t.InstitutionID != institutionID {
			continue
		}
		for _, m := range t.AccountMasks {
			if slices.Contains(masks, m) {
				return t, nil
			}
		}
	}
	return nil, nil
}

// linkPlaidError is the caller's error for a failed Plaid call of the Link
// flow, logged: a gone Item must be linked again; Plaid's outages and our
// own configuration faults are 503 (the latter at ERROR: Plaid refused
// what this deployment sends, e.g. a product it is not enabled for).
func (s *Service) linkPlaidError(ctx context.Context, log *slog.Logger, what string, err error) error {
	var pe *PlaidError
	if !errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", what, err)
	}
	attrs := []any{slog.String("plaid_error_class", pe.Class.String()), slog.String("plaid_error_code", pe.Code),
		slog.String("plaid_request_id", pe.RequestID)}
	switch pe.Class {
	case ClassGone:
		log.InfoContext(ctx, what+": the Item is gone at Plaid", attrs...)
		return Errorf(CodeConflict, "the item no longer exists at Plaid; link the account again")
	case ClassConfig:
		log.ErrorContext(ctx, what+": Plaid refused the request", attrs...)
		return WrapError(CodeUnavailable, err, "Plaid refused the request; the service's Plaid configuration needs attention")
	default:
		log.WarnContext(ctx, what+" failed", attrs...)
		return WrapError(CodeUnavailable, err, "Plaid is unavailable; try again")
	}
}
