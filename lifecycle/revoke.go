package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Audit reasons of revocations.
const (
	ReasonUserRevoked  = "user_revoked"
	ReasonAdminRevoked = "admin_revoked"
)

const (
	// revokeAttempts bounds the read-decide-write retries of one token when
	// its document changes between read and write (the app used it, a
	// webhook arrived).
	revokeAttempts = 3
	// revokeWorkers bounds the tokens RevokeAllTokens revokes at once. A
	// user has a handful of Items; the Plaid adapter's limiter paces the
	// calls anyway.
	revokeWorkers = 8
	// revokeWriteTimeout bounds the Firestore write that records a
	// revocation. It runs on a context detached from the caller's: once
	// Plaid has removed the Item, the document must say so even if the
	// caller has gone away.
	revokeWriteTimeout = 30 * time.Second
	// revokePlaidBudget bounds a revocation's /item/remove, pacing and
	// retries included: a user waits no longer for a slow or failing Plaid
	// (the token is revoked here at once all the same and cleanup finishes
	// the removal; a removal that landed unseen is found by cleanup's
	// ITEM_NOT_FOUND).
	revokePlaidBudget = 3 * time.Second
)

// Revocation is the outcome of revoking one item.
type Revocation struct {
	ItemID string
	// PlaidRemoved reports whether the Item is removed at Plaid. When false
	// the token is revoked here all the same and cleanup finishes the
	// removal (DESIGN §7).
	PlaidRemoved bool
	// Changed is false when the token already was revoked and removed at
	// Plaid: nothing was done.
	Changed bool
}

// revoker is who revokes, as the audit trail records it.
type revoker struct {
	actor  string
	reason string
}

// RevokeItem revokes the caller's item (DESIGN §7): /item/remove at Plaid
// first, then status revoked with plaid_removed. A missing item and another
// user's item both give ErrItemNotFound, and the other user's document is
// not touched. If Plaid fails, the token is revoked at once all the same
// with plaid_removed false and cleanup finishes the removal. Revoking a
// revoked item succeeds without a second Plaid call once the Item is removed
// there; while it is not, the removal is tried again.
func (s *Service) RevokeItem(ctx context.Context, userID, itemID string) (*Revocation, error) {
	if userID == "" {
		return nil, Errorf(CodeInvalid, "revoking an item needs the user id")
	}
	if itemID == "" {
		return nil, ErrItemNotFound
	}
	by := revoker{actor: userID, reason: ReasonUserRevoked}
	return s.revokeToken(ctx, userID, itemID, nil, by)
}

// RevokeAllTokens revokes every token of userID that is not revoked yet
// (active, needing the user, or expired: every Item that may still be live
// at Plaid), as the user's own request, with the rule of RevokeItem for
// each, a few at a time. A legacy per-user document the user still has is
// migrated first (the migrate-legacy code path), so that its Items are
// revoked too (DESIGN §5). It returns how many tokens this call revoked; on
// error the count still says how many were.
func (s *Service) RevokeAllTokens(ctx context.Context, userID string) (int, error) {
	return s.revokeAll(ctx, userID, revoker{actor: userID, reason: ReasonUserRevoked})
}

// RevokeAllTokensAsAdmin is RevokeAllTokens done by an operator (actor) on
// userID's behalf, audited as admin_revoked: what `manage-tokens revoke`
// calls.
func (s *Service) RevokeAllTokensAsAdmin(ctx context.Context, userID, actor string) (int, error) {
	if actor == "" {
		return 0, Errorf(CodeInvalid, "an admin revocation needs the actor")
	}
	return s.revokeAll(ctx, userID, revoker{actor: actor, reason: ReasonAdminRevoked})
}

// RevocableTokens returns the tokens of userID that RevokeAllTokens would
// revoke: those not revoked yet (a revoked one not yet removed at Plaid is
// cleanup's to finish).
func (s *Service) RevocableTokens(ctx context.Context, userID string) ([]*Token, error) {
	tokens, err := s.tokens.ListByUser(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := tokens[:0]
	for _, t := range tokens {
		if t.Status != StatusRevoked {
			out = append(out, t)
		}
	}
	return out, nil
}

func (s *Service) revokeAll(ctx context.Context, userID string, by revoker) (int, error) {
	if userID == "" {
		return 0, Errorf(CodeInvalid, "revoking tokens needs the user id")
	}
	if err := s.migrateLegacyUserFirst(ctx, userID); err != nil {
		return 0, fmt.Errorf("revoking tokens of user %s: %w", userID, err)
	}
	tokens, err := s.RevocableTokens(ctx, userID)
	if err != nil {
		return 0, fmt.Errorf("revoking tokens of user %s: %w", userID, err)
	}
	var revoked atomic.Int64
	errs := make([]error, len(tokens))
	var g errgroup.Group // not WithContext: one failure must not stop the others
	g.SetLimit(revokeWorkers)
	for i, t := range tokens {
		g.Go(func() error {
			res, err := s.revokeToken(ctx, userID, t.ItemID, t, by)
			switch {
			case errors.Is(err, ErrItemNotFound):
				// Deleted since it was listed (cleanup): nothing to revoke.
			case err != nil:
				errs[i] = err
			case res.Changed:
				revoked.Add(1)
			}
			return nil
		})
	}
	_ = g.Wait()
	count := int(revoked.Load())
	err = errors.Join(errs...)
	attrs := []any{slog.String("user_id", userID), slog.String("actor", by.actor), slog.String("reason", by.reason),
		slog.Int("tokens", len(tokens)), slog.Int("revoked_count", count)}
	if err != nil {
		Logger(ctx).ErrorContext(ctx, "revoking tokens failed", append(attrs, slog.String("error", err.Error()))...)
		// The first error's code (e.g. unavailable) decides the answer.
		return count, fmt.Errorf("revoking tokens of user %s: %w", userID, err)
	}
	Logger(ctx).InfoContext(ctx, "tokens revoked", attrs...)
	return count, nil
}

// revokeToken revokes itemID of userID. tok, when given, is the document as
// already read; it is read (again) otherwise and after a concurrent change.
func (s *Service) revokeToken(ctx context.Context, userID, itemID string, tok *Token, by revoker) (*Revocation, error) {
	log := Logger(ctx).With(slog.String("item_id", itemID), slog.String("user_id", userID))
	res := &Revocation{ItemID: itemID}
	plaidTried := false
	for attempt := 1; ; attempt++ {
		var err error
		if tok, err = s.ownToken(ctx, userID, itemID, tok, log); err != nil {
			return nil, err
		}
		if tok.Status == StatusRevoked && tok.PlaidRemoved {
			res.PlaidRemoved = true
			log.InfoContext(ctx, "item already revoked", slog.Bool("plaid_removed", true))
			return res, nil
		}
		// Plaid first (at most once per call, even if the write is retried):
		// the Item is only billed until /item/remove succeeds.
		switch {
		case tok.PlaidRemoved:
			res.PlaidRemoved = true
		case !plaidTried:
			plaidTried = true
			res.PlaidRemoved = s.removeForRevocation(ctx, tok, log)
		}
		if tok.Status == StatusRevoked && !res.PlaidRemoved {
			// Still revoked and still not removed: nothing to write, cleanup
			// keeps trying.
			return res, nil
		}
		err = s.writeRevocation(ctx, tok, by, res.PlaidRemoved)
		switch {
		case errors.Is(err, ErrNotFound) && res.PlaidRemoved:
			return res, nil // deleted meanwhile (cleanup removed it): gone for good
		case errors.Is(err, ErrNotFound):
			return nil, ErrItemNotFound
		case errors.Is(err, ErrChanged) && attempt < revokeAttempts:
			// Changed since read: decide again on what it says now, so
			// ownership is checked on the document actually written.
			tok = nil
			continue
		case err != nil:
			return nil, fmt.Errorf("revoking item %s: %w", itemID, err)
		}
		res.Changed = true
		log.InfoContext(ctx, "item revoked", slog.String("institution_id", tok.InstitutionID),
			slog.String("status_before", string(tok.Status)), slog.Bool("plaid_removed", res.PlaidRemoved),
			slog.String("actor", by.actor), slog.String("reason", by.reason))
		if !res.PlaidRemoved {
			// Dead to the app at once; billed until the early removal (or
			// the next cleanup) removes it at Plaid.
			s.requestEarlyRemoval(ctx, tok, log)
		}
		return res, nil
	}
}

// ownToken returns tok, or itemID's document when tok is nil, if it is
// userID's; ErrItemNotFound otherwise, the same answer as for a missing
// item, and the other user's document is left alone.
func (s *Service) ownToken(ctx context.Context, userID, itemID string, tok *Token, log *slog.Logger) (*Token, error) {
	if tok == nil {
		t, err := s.tokens.Get(ctx, itemID)
		if errors.Is(err, ErrNotFound) {
			return nil, ErrItemNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("revoking item %s: %w", itemID, err)
		}
		tok = t
	}
	if tok.UserID != userID {
		log.InfoContext(ctx, "revocation refused: item belongs to another user")
		return nil, ErrItemNotFound
	}
	return tok, nil
}

// writeRevocation marks tok revoked, conditionally on the version read,
// with its audit entry in the same atomic commit. It runs detached from the
// caller: once Plaid has removed the Item, the document must say so even
// if the caller has gone away.
func (s *Service) writeRevocation(ctx context.Context, tok *Token, by revoker, plaidRemoved bool) error {
	now := s.clock.Now()
	w := Write{ItemID: tok.ItemID, IfVersion: tok.Version,
		Patch: Patch{Status: new(StatusRevoked), PlaidRemoved: new(plaidRemoved), UpdatedAt: &now},
		Audit: &AuditEntry{ItemID: tok.ItemID, UserID: tok.UserID, Reason: by.reason, Actor: by.actor, At: now,
			PlaidRemoved: plaidRemoved}}
	writeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), revokeWriteTimeout)
	defer cancel()
	return s.tokens.Apply(writeCtx, []Write{w})[0]
}

// removeForRevocation calls /item/remove for tok and reports whether the
// Item is removed. Any failure leaves that to cleanup: a revocation never
// waits on Plaid.
func (s *Service) removeForRevocation(ctx context.Context, tok *Token, log *slog.Logger) bool {
	// A user is waiting: first in line for the quota, never kept waiting
	// for it (a saturated quota fails at once), nor for Plaid past
	// revokePlaidBudget.
	ctx, cancel := context.WithTimeout(WithPlaidPriority(ctx, PriorityInteractive), revokePlaidBudget)
	defer cancel()
	err := s.removeAtPlaid(ctx, tok)
	if err == nil {
		return true
	}
	var pe *PlaidError
	if errors.As(err, &pe) {
		level := slog.LevelWarn
		if pe.Class == ClassConfig {
			level = slog.LevelError
		}
		log.Log(ctx, level, "plaid removal failed during revocation", slog.String("plaid_error_class", pe.Class.String()),
			slog.String("plaid_error_code", pe.Code), slog.String("plaid_request_id", pe.RequestID))
	} else {
		log.ErrorContext(ctx, "plaid removal failed during revocation", slog.String("error", err.Error()))
	}
	return false
}
