package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// The cleanup rules of DESIGN §7, for one token at a time. decideToken
// makes the Plaid calls a rule needs and says what to write; it never
// writes to Firestore itself (cleanup_pipeline.go does, with the token's
// version as precondition, so a token the app used meanwhile is left alone).
//
//  1. expired or revoked: /item/remove unless plaid_removed (gone counts
//     as removed), then delete: expired_removed / revoked_removed. A
//     failed removal keeps the document for the next run.
//  2. active and unused for more than days_threshold days: re-read, then
//     /item/remove, then delete: stale_removed. Never delete before Plaid
//     confirms.
//  3. other active tokens: validated within VALIDATION_INTERVAL, skip
//     (validation_skipped); else /item/get. Gone → expired (invalid_marked);
//     needs the user → error_code (needs_user); transient or configuration
//     faults change nothing (errors); success clears error_code (validated).
//
// A dry run makes only read-only Plaid calls (/item/get) and writes nothing.

// tokenRun is what the rules need to know about the run deciding.
type tokenRun struct {
	id, actor string
	dryRun    bool
	threshold time.Duration // stale after
}

// tokenOutcome is what the rules decided for one token: the write to make
// and what to count once it lands.
type tokenOutcome struct {
	token *Token
	write *Write
	// count counts the outcome once the write landed (or at once when
	// there is no write).
	count func(*Statistics)
	// removedAtPlaid: /item/remove succeeded in this run. If the delete is
	// then refused because the app touched the document, the document must
	// still say the Item is gone.
	removedAtPlaid bool
	err            *RunError
	fatal          error
}

func (s *Service) decideToken(ctx context.Context, t *Token, run tokenRun, log *slog.Logger) tokenOutcome {
	o := tokenOutcome{token: t}
	now := s.Clock.Now()
	fail := func(stage string, err error) tokenOutcome {
		o.err = &RunError{ItemID: t.ItemID, Stage: stage, Error: err.Error()}
		o.count = func(st *Statistics) { st.Errors++ }
		var pe *PlaidError
		if errors.As(err, &pe) {
			level := slog.LevelWarn
			if pe.Class == ClassConfig {
				level = slog.LevelError
				if pe.Code == "INVALID_API_KEYS" {
					// Every further call would fail the same way.
					o.fatal = WrapError(CodeUnavailable, err, "Plaid refused the service's API keys")
				}
			}
			log.Log(ctx, level, "plaid call failed", slog.String("item_id", t.ItemID), slog.String("stage", stage),
				slog.String("plaid_error_class", pe.Class.String()), slog.String("plaid_error_code", pe.Code),
				slog.String("plaid_request_id", pe.RequestID))
		} else {
			log.WarnContext(ctx, "cleanup could not finish a token", slog.String("item_id", t.ItemID),
				slog.String("stage", stage), slog.String("error", err.Error()))
		}
		return o
	}
	skipChanged := func() tokenOutcome {
		o.write = nil
		o.count = func(st *Statistics) { st.SkippedChanged++ }
		return o
	}

	switch {
	case t.Status == StatusExpired || t.Status == StatusRevoked: // rule 1
		reason := string(t.Status)
		o.count = func(st *Statistics) {
			if t.Status == StatusExpired {
				st.ExpiredRemoved++
			} else {
				st.RevokedRemoved++
			}
		}
		if !t.PlaidRemoved && !run.dryRun {
			if err := s.removeAtPlaid(ctx, t); err != nil {
				return fail("plaid_remove", err)
			}
			o.removedAtPlaid = true
		}
		o.write = &Write{ItemID: t.ItemID, Delete: true, IfVersion: t.Version, Audit: s.auditEntry(t, reason, run)}
		return o

	case t.Status == StatusActive && now.Sub(t.LastActivity()) > run.threshold: // rule 2
		o.count = func(st *Statistics) { st.StaleRemoved++ }
		o.write = &Write{ItemID: t.ItemID, Delete: true, IfVersion: t.Version, Audit: s.auditEntry(t, "stale", run)}
		if run.dryRun {
			return o
		}
		// Re-read just before the irreversible call: a token the app used
		// since the page was read is not stale any more.
		fresh, err := s.Tokens.Get(ctx, t.ItemID)
		switch {
		case errors.Is(err, ErrNotFound):
			return skipChanged()
		case err != nil:
			return fail("firestore_read", err)
		case !fresh.Version.Equal(t.Version):
			return skipChanged()
		}
		if !t.PlaidRemoved {
			if err := s.removeAtPlaid(ctx, t); err != nil {
				return fail("plaid_remove", err)
			}
			o.removedAtPlaid = true
		}
		return o

	case t.Status == StatusActive: // rule 3
		if interval := s.Config.ValidationInterval; interval > 0 && !t.LastValidatedAt.IsZero() && now.Sub(t.LastValidatedAt) < interval {
			o.count = func(st *Statistics) { st.ValidationSkipped++ }
			return o
		}
		return s.validateToken(ctx, t, o, fail)

	default:
		return fail("rules", fmt.Errorf("unknown status %q", t.Status))
	}
}

func (s *Service) validateToken(ctx context.Context, t *Token, o tokenOutcome, fail func(string, error) tokenOutcome) tokenOutcome {
	now := s.Clock.Now()
	access, err := s.Cipher.Decrypt(t.ItemID, t.AccessToken)
	if err != nil {
		return fail("decrypt", err)
	}
	_, err = s.Plaid.GetItem(ctx, access)
	var pe *PlaidError
	switch {
	case err == nil:
		p := Patch{LastValidatedAt: &now}
		if t.ErrorCode != "" {
			p.ClearErrorCode = true // a successful validation clears error_code (§5)
		}
		o.write = &Write{ItemID: t.ItemID, Patch: p, IfVersion: t.Version}
		o.count = func(st *Statistics) { st.Validated++ }
		return o
	case !errors.As(err, &pe):
		return fail("plaid_get", err)
	case pe.Class == ClassGone:
		o.write = &Write{ItemID: t.ItemID, IfVersion: t.Version, Patch: Patch{
			Status: Ptr(StatusExpired), ErrorCode: Ptr(pe.Code), UpdatedAt: &now, LastValidatedAt: &now,
		}}
		o.count = func(st *Statistics) { st.InvalidMarked++ }
		Logger(ctx).WarnContext(ctx, "invalid token marked expired", slog.String("item_id", t.ItemID),
			slog.String("user_id", t.UserID), slog.String("plaid_error_code", pe.Code))
		return o
	case pe.Class == ClassNeedsUser:
		o.write = &Write{ItemID: t.ItemID, IfVersion: t.Version, Patch: Patch{
			ErrorCode: Ptr(pe.Code), LastValidatedAt: &now,
		}}
		o.count = func(st *Statistics) { st.NeedsUser++ }
		return o
	default: // transient or configuration: never the token's fault
		return fail("plaid_get", err)
	}
}

// removeAtPlaid calls /item/remove for t as batch work. ITEM_NOT_FOUND and
// INVALID_ACCESS_TOKEN count as removed (the adapter returns nil for them).
func (s *Service) removeAtPlaid(ctx context.Context, t *Token) error {
	access, err := s.Cipher.Decrypt(t.ItemID, t.AccessToken)
	if err != nil {
		return fmt.Errorf("decrypting token of item %s: %w", t.ItemID, err)
	}
	return s.Plaid.RemoveItem(ctx, access)
}

func (s *Service) auditEntry(t *Token, reason string, run tokenRun) *AuditEntry {
	return &AuditEntry{ItemID: t.ItemID, UserID: t.UserID, Reason: reason, Actor: run.actor,
		RunID: run.id, At: s.Clock.Now(), PlaidRemoved: true}
}
