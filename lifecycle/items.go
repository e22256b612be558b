package lifecycle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// The user's Items as the app shows them (DESIGN §4): the list, and the
// verification after a repair in Link's update mode. Neither ever answers
// a token, another user's Item, or the old service's per-user documents
// (the TokenStore passes those over).

const (
	// verifyPlaidBudget bounds a verification's /item/get, quota wait and
	// retries included: a user is waiting for the answer.
	verifyPlaidBudget = 10 * time.Second
	// verifyAttempts bounds the read-verify-write rounds when the document
	// changes meanwhile (a webhook, the app using it).
	verifyAttempts = 3
)

// ItemState is an Item as its user sees it: never its token.
type ItemState struct {
	ItemID          string
	InstitutionID   string
	InstitutionName string
	Status          Status
	ErrorCode       string
	// NeedsRepair: the Item carries an error its user can fix in Link's
	// update mode (NeedsRepair).
	NeedsRepair bool
	// PlaidRemoved: Plaid confirmed the Item removed (a revoked one not yet
	// removed is still billed).
	PlaidRemoved bool
	CreatedAt    time.Time
	LastUsedAt   time.Time // zero when never used
}

func itemStateOf(t *Token) ItemState {
	return ItemState{
		ItemID: t.ItemID, InstitutionID: t.InstitutionID, InstitutionName: t.InstitutionName,
		Status: t.Status, ErrorCode: t.ErrorCode, NeedsRepair: NeedsRepair(t.Status, t.ErrorCode),
		PlaidRemoved: t.PlaidRemoved, CreatedAt: t.CreatedAt, LastUsedAt: t.LastUsedAt,
	}
}

// NeedsRepair reports whether an Item in status with errorCode needs its
// user in Link's update mode: an active Item whose error is one the user
// resolves (the needs-the-user class of ClassifyPlaidError:
// ITEM_LOGIN_REQUIRED, PENDING_EXPIRATION, PENDING_DISCONNECT and the
// login errors), USER_ACCOUNT_REVOKED (update mode re-grants the account),
// or LEGACY_ERROR (the old service's unknown error: the user's login is
// the likeliest cause, and verification tells).
func NeedsRepair(status Status, errorCode string) bool {
	if status != StatusActive || errorCode == "" {
		return false
	}
	switch errorCode {
	case "USER_ACCOUNT_REVOKED", LegacyErrorCode:
		return true
	}
	return ClassifyPlaidError("", errorCode, 0, false) == ClassNeedsUser
}

// ListItems returns userID's Items, oldest first, whatever their status
// (an expired or revoked one stays until cleanup removes it).
func (s *Service) ListItems(ctx context.Context, userID string) ([]ItemState, error) {
	if userID == "" {
		return nil, Errorf(CodeInvalid, "listing items needs the user id")
	}
	tokens, err := s.tokens.ListByUser(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("listing items of user %s: %w", userID, err)
	}
	slices.SortFunc(tokens, func(a, b *Token) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ItemID, b.ItemID))
	})
	out := make([]ItemState, len(tokens))
	for i, t := range tokens {
		out[i] = itemStateOf(t)
	}
	return out, nil
}

// VerifyItem asks Plaid about the user's Item now (/item/get, before batch
// work) and records the answer as cleanup's validation would (rule 3 of
// DESIGN §7: no error clears error_code, a needs-the-user error sets it, a
// gone Item is marked expired), with last_validated_at, so that it counts
// as the Item's validation for VALIDATION_INTERVAL. It answers the Item's
// state. Another user's or a missing item is ErrItemNotFound; an Item that
// is not active is answered as it is, without asking Plaid (cleanup
// removes it). Plaid's outages change nothing and are CodeUnavailable.
func (s *Service) VerifyItem(ctx context.Context, userID, itemID string) (*ItemState, error) {
	if userID == "" {
		return nil, Errorf(CodeInvalid, "verifying an item needs the user id")
	}
	log := Logger(ctx).With(slog.String("user_id", userID), slog.String("item_id", itemID))
	for attempt := 1; ; attempt++ {
		tok, err := s.callersToken(ctx, userID, itemID)
		if err != nil {
			return nil, err
		}
		if tok.Status != StatusActive {
			st := itemStateOf(tok)
			return &st, nil
		}
		access, err := s.userAccessToken(ctx, tok, log)
		if err != nil {
			return nil, err
		}
		plaidCtx, cancel := context.WithTimeout(WithPlaidPriority(ctx, PriorityInteractive), verifyPlaidBudget)
		_, plaidErr := s.plaid.GetItem(plaidCtx, access)
		cancel()
		o, failed := validationOutcome(tok, plaidErr, s.clock.Now())
		if failed {
			return nil, s.linkPlaidError(ctx, log, "verifying the item", plaidErr)
		}
		if o.write == nil {
			// The rules decided to write nothing: the Item is as stored.
			st := itemStateOf(tok)
			return &st, nil
		}
		_, err = s.tokens.Update(ctx, itemID, o.write.Patch, o.write.IfVersion)
		if (errors.Is(err, ErrChanged) || errors.Is(err, ErrNotFound)) && attempt < verifyAttempts {
			// Changed since read: decide again on what it says now.
			continue
		}
		if errors.Is(err, ErrNotFound) {
			return nil, ErrItemNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("verifying item %s: %w", itemID, err)
		}
		o.write.Patch.applyTo(tok)
		st := itemStateOf(tok)
		log.InfoContext(ctx, "item verified", slog.String("status", string(st.Status)),
			slog.String("error_code", st.ErrorCode), slog.Bool("needs_repair", st.NeedsRepair))
		return &st, nil
	}
}

// callersToken returns the token itemID when it is userID's. A missing
// item, another user's and an id that names no document are all
// ErrItemNotFound: nothing tells a caller which ids exist (DESIGN §4).
func (s *Service) callersToken(ctx context.Context, userID, itemID string) (*Token, error) {
	if !ValidItemID(itemID) {
		return nil, ErrItemNotFound
	}
	tok, err := s.tokens.Get(ctx, itemID)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrItemNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading item %s: %w", itemID, err)
	}
	if tok.UserID != userID {
		Logger(ctx).InfoContext(ctx, "item refused: it belongs to another user",
			slog.String("item_id", itemID), slog.String("user_id", userID))
		return nil, ErrItemNotFound
	}
	return tok, nil
}

// userAccessToken is plaidAccessToken for a call a user asked for: an Item
// of another Plaid environment is a conflict the user is told about (DESIGN
// §7 rule 0), an undecryptable token an internal error.
func (s *Service) userAccessToken(ctx context.Context, tok *Token, log *slog.Logger) (string, error) {
	access, err := s.plaidAccessToken(tok)
	var pe *PlaidError
	switch {
	case err == nil:
		return access, nil
	case errors.As(err, &pe) && pe.Code == CodeWrongEnvironment:
		log.WarnContext(ctx, "item refused: another Plaid environment", slog.String("error", err.Error()))
		return "", WrapError(CodeConflict, err, "item belongs to another Plaid environment than this service's ("+s.config.PlaidEnv+")")
	default:
		return "", WrapError(CodeInternal, err, "stored token cannot be decrypted")
	}
}
