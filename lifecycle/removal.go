package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Early removal of Items still billed. A revocation whose /item/remove
// failed or waited too long (Plaid slow or down, the fleet's quota spent)
// revokes the token here at once with plaid_removed false; the Item stays
// billed until /item/remove succeeds. Rather than wait for the next daily
// cleanup, the revocation asks for an early removal on the cleanup topic: a
// DailyCleanup invocation removes the Item as batch work, paced by the
// fleet's quota like cleanup's calls, within minutes. The daily cleanup
// still removes whatever an early removal could not.

// RemovalRequest asks for an Item's removal at Plaid.
type RemovalRequest struct {
	ItemID string `json:"item_id"`
	// SealedToken is the Item's access token encrypted for ItemID (format
	// v1), for an Item no document holds (an exchange whose store failed);
	// empty otherwise: the token is read from the Item's document.
	SealedToken string `json:"sealed_token,omitempty"`
}

// RemovalOutcome says what RemoveOwedItem did.
type RemovalOutcome string

// Outcomes of RemoveOwedItem.
const (
	RemovalDone       RemovalOutcome = "removed"    // /item/remove succeeded (or found the Item gone)
	RemovalUnrecorded RemovalOutcome = "unrecorded" // removed, but plaid_removed could not be written: cleanup finds the Item gone
	RemovalNotOwed    RemovalOutcome = "not_owed"   // nothing to remove: no document, already removed, or a live token
	RemovalRefused    RemovalOutcome = "refused"    // never to be removed here (another environment, undecryptable)
)

// earlyRemovalBudget bounds the publication of an early removal: a user
// waits for it, and the daily cleanup removes the Item anyway.
const earlyRemovalBudget = 2 * time.Second

// requestEarlyRemoval asks for tok's early removal. It is best effort: the
// daily cleanup removes the Item anyway, so a failure is only logged.
func (s *Service) requestEarlyRemoval(ctx context.Context, tok *Token, log *slog.Logger) {
	if s.continuer == nil || (tok.Environment != "" && tok.Environment != s.config.PlaidEnv) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), earlyRemovalBudget)
	defer cancel()
	if err := s.continuer.RequestRemoval(ctx, RemovalRequest{ItemID: tok.ItemID}); err != nil {
		log.WarnContext(ctx, "requesting an early removal failed; the daily cleanup removes the Item",
			slog.String("error", err.Error()))
		return
	}
	log.InfoContext(ctx, "early removal requested")
}

// RemoveOwedItem removes at Plaid an Item whose removal a revocation (or a
// failed exchange) still owes. It is idempotent: a redelivered request finds
// the document marked plaid_removed, or Plaid answers the Item gone. It
// returns an error only when a retry could help (Plaid or Firestore
// unavailable, the quota spent past the call's bounds).
func (s *Service) RemoveOwedItem(ctx context.Context, r RemovalRequest) (RemovalOutcome, error) {
	log := Logger(ctx).With(slog.String("item_id", r.ItemID))
	tok, err := s.tokens.Get(ctx, r.ItemID)
	switch {
	case errors.Is(err, ErrNotFound) && r.SealedToken != "":
		return s.removeSealed(ctx, r, log)
	case errors.Is(err, ErrNotFound):
		log.InfoContext(ctx, "early removal: no document left; nothing to remove")
		return RemovalNotOwed, nil
	case err != nil:
		return "", fmt.Errorf("early removal of item %s: %w", r.ItemID, err)
	case tok.Status == StatusActive || tok.PlaidRemoved:
		// A live token (an exchange's store landed after all), or one
		// removed meanwhile: nothing is owed.
		log.InfoContext(ctx, "early removal: nothing owed", slog.String("status", string(tok.Status)),
			slog.Bool("plaid_removed", tok.PlaidRemoved))
		return RemovalNotOwed, nil
	}
	if err := s.removeAtPlaid(WithPlaidPriority(ctx, PriorityBatch), tok); err != nil {
		return s.removalFailed(ctx, err, log)
	}
	_, err = s.tokens.Update(context.WithoutCancel(ctx), tok.ItemID, Patch{PlaidRemoved: new(true)}, tok.Version)
	if err != nil {
		// The Item is gone at Plaid all the same: the next cleanup's
		// /item/remove finds it so and deletes the document.
		log.WarnContext(ctx, "early removal done, recording it failed", slog.String("error", err.Error()))
		return RemovalUnrecorded, nil
	}
	log.InfoContext(ctx, "early removal done", slog.String("status", string(tok.Status)))
	return RemovalDone, nil
}

// removeSealed removes an Item no document holds, from the sealed token of
// its request.
func (s *Service) removeSealed(ctx context.Context, r RemovalRequest, log *slog.Logger) (RemovalOutcome, error) {
	t := &Token{ItemID: r.ItemID, AccessToken: r.SealedToken}
	if err := s.removeAtPlaid(WithPlaidPriority(ctx, PriorityBatch), t); err != nil {
		return s.removalFailed(ctx, err, log)
	}
	log.InfoContext(ctx, "early removal done for an Item no document held")
	return RemovalDone, nil
}

// removalFailed sorts a failed early removal: worth a retry, or never.
func (s *Service) removalFailed(ctx context.Context, err error, log *slog.Logger) (RemovalOutcome, error) {
	var pe *PlaidError
	if errors.As(err, &pe) && pe.Class == ClassTransient {
		log.WarnContext(ctx, "early removal failed; retried later", slog.String("error", err.Error()))
		return "", WrapError(CodeUnavailable, err, "early removal failed")
	}
	// Another environment's token, an undecryptable one, a configuration
	// fault: a retry changes nothing; the daily cleanup reports it.
	log.ErrorContext(ctx, "early removal refused", slog.String("error", err.Error()))
	return RemovalRefused, nil
}
