package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// The cleanup rules of DESIGN §7, for one token at a time. ruleFor says
// which rule applies (a pure function of the token, the time and the run);
// decideToken makes the Plaid calls that rule needs and says what to
// write; validationOutcome turns /item/get's answer into the write. Nothing
// here writes to Firestore (cleanup_pipeline.go does, with the token's
// version as precondition, so a token the app used meanwhile is left alone).
//
//  0. a token of another Plaid environment than PLAID_ENV (its environment
//     field, or its access-<env>- prefix): never sent to Plaid, never
//     marked, never deleted; counted in errors.
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

// rule is the rule of DESIGN §7 that applies to a token.
type rule int

const (
	ruleOtherEnvironment rule = iota // 0: not this deployment's to touch
	ruleRemoveDead                   // 1: expired or revoked
	ruleRemoveStale                  // 2: active, unused too long
	ruleSkipValidated                // 3: active, validated recently
	ruleValidate                     // 3: active, due for /item/get
	ruleUnknownStatus                // a status DESIGN §5 does not know
)

// ruleFor says which rule applies to t at now. plaidEnv is PLAID_ENV;
// validationInterval is VALIDATION_INTERVAL.
func ruleFor(t *Token, now time.Time, run tokenRun, plaidEnv string, validationInterval time.Duration) rule {
	switch {
	case t.Environment != "" && t.Environment != plaidEnv:
		return ruleOtherEnvironment
	case t.Status == StatusExpired || t.Status == StatusRevoked:
		return ruleRemoveDead
	case t.Status != StatusActive:
		return ruleUnknownStatus
	case now.Sub(t.LastActivity()) > run.threshold:
		return ruleRemoveStale
	case validationInterval > 0 && !t.LastValidatedAt.IsZero() && now.Sub(t.LastValidatedAt) < validationInterval:
		return ruleSkipValidated
	default:
		return ruleValidate
	}
}

// tally is the statistic one token's outcome adds to.
type tally int

const (
	tallyErrors tally = iota
	tallyExpiredRemoved
	tallyRevokedRemoved
	tallyStaleRemoved
	tallyInvalidMarked
	tallyNeedsUser
	tallyValidated
	tallyValidationSkipped
	tallySkippedChanged
)

// add counts one token in st.
func (k tally) add(st *Statistics) {
	switch k {
	case tallyExpiredRemoved:
		st.ExpiredRemoved++
	case tallyRevokedRemoved:
		st.RevokedRemoved++
	case tallyStaleRemoved:
		st.StaleRemoved++
	case tallyInvalidMarked:
		st.InvalidMarked++
	case tallyNeedsUser:
		st.NeedsUser++
	case tallyValidated:
		st.Validated++
	case tallyValidationSkipped:
		st.ValidationSkipped++
	case tallySkippedChanged:
		st.SkippedChanged++
	default:
		st.Errors++
	}
}

// tokenOutcome is what the rules decided for one token: the write to make
// and what to count once it lands.
type tokenOutcome struct {
	token *Token
	write *Write
	// tally counts the outcome once the write landed (or at once when
	// there is no write).
	tally tally
	// removedAtPlaid: /item/remove succeeded in this run. If the delete is
	// then refused because the app touched the document, the document must
	// still say the Item is gone.
	removedAtPlaid bool
	err            *RunError
	fatal          error
}

// count adds the outcome to st.
func (o *tokenOutcome) count(st *Statistics) { o.tally.add(st) }

func (s *Service) decideToken(ctx context.Context, t *Token, run tokenRun, log *slog.Logger) tokenOutcome {
	now := s.clock.Now()
	switch ruleFor(t, now, run, s.config.PlaidEnv, s.config.ValidationInterval) {
	case ruleOtherEnvironment:
		return s.failToken(ctx, t, "environment", errOtherEnvironment(t.Environment, s.config.PlaidEnv), log)
	case ruleRemoveDead:
		o := tokenOutcome{token: t, tally: tallyExpiredRemoved, write: s.auditedDelete(t, string(t.Status), run)}
		if t.Status == StatusRevoked {
			o.tally = tallyRevokedRemoved
		}
		return s.removeThenDelete(ctx, o, run, log)
	case ruleRemoveStale:
		o := tokenOutcome{token: t, tally: tallyStaleRemoved, write: s.auditedDelete(t, "stale", run)}
		if run.dryRun {
			return o
		}
		// Re-read just before the irreversible call: a token the app used
		// since the page was read is not stale any more.
		fresh, err := s.tokens.Get(ctx, t.ItemID)
		switch {
		case errors.Is(err, ErrNotFound), err == nil && !fresh.Version.Equal(t.Version):
			return tokenOutcome{token: t, tally: tallySkippedChanged}
		case err != nil:
			return s.failToken(ctx, t, "firestore_read", err, log)
		}
		return s.removeThenDelete(ctx, o, run, log)
	case ruleSkipValidated:
		return tokenOutcome{token: t, tally: tallyValidationSkipped}
	case ruleValidate:
		return s.validateToken(ctx, t, now, log)
	default:
		return s.failToken(ctx, t, "rules", fmt.Errorf("unknown status %q", t.Status), log)
	}
}

// removeThenDelete removes o's Item at Plaid unless it already is (or the
// run is dry), keeping o's delete only when Plaid confirmed.
func (s *Service) removeThenDelete(ctx context.Context, o tokenOutcome, run tokenRun, log *slog.Logger) tokenOutcome {
	if o.token.PlaidRemoved || run.dryRun {
		return o
	}
	if err := s.removeAtPlaid(ctx, o.token); err != nil {
		return s.failToken(ctx, o.token, "plaid_remove", err, log)
	}
	o.removedAtPlaid = true
	return o
}

func (s *Service) validateToken(ctx context.Context, t *Token, now time.Time, log *slog.Logger) tokenOutcome {
	access, err := s.plaidAccessToken(t)
	if err != nil {
		return s.failToken(ctx, t, "decrypt", err, log)
	}
	_, err = s.plaid.GetItem(ctx, access)
	o, failed := validationOutcome(t, err, now)
	if failed {
		return s.failToken(ctx, t, "plaid_get", err, log)
	}
	if o.tally == tallyInvalidMarked {
		log.WarnContext(ctx, "invalid token marked expired", slog.String("item_id", t.ItemID),
			slog.String("user_id", t.UserID), slog.String("plaid_error_code", *o.write.Patch.ErrorCode))
	}
	return o
}

// validationOutcome is rule 3's decision from /item/get's answer err for t:
// the write and its tally, or failed when the answer says nothing about
// the token (a transient or configuration fault, never the token's).
func validationOutcome(t *Token, err error, now time.Time) (o tokenOutcome, failed bool) {
	o.token = t
	var pe *PlaidError
	switch {
	case err == nil:
		// A successful validation clears error_code (DESIGN §5).
		o.write = &Write{ItemID: t.ItemID, IfVersion: t.Version,
			Patch: Patch{LastValidatedAt: &now, ClearErrorCode: t.ErrorCode != ""}}
		o.tally = tallyValidated
	case !errors.As(err, &pe):
		return o, true
	case pe.Class == ClassGone:
		o.write = &Write{ItemID: t.ItemID, IfVersion: t.Version, Patch: Patch{
			Status: new(StatusExpired), ErrorCode: new(pe.Code), UpdatedAt: &now, LastValidatedAt: &now,
		}}
		o.tally = tallyInvalidMarked
	case pe.Class == ClassNeedsUser:
		o.write = &Write{ItemID: t.ItemID, IfVersion: t.Version, Patch: Patch{ErrorCode: new(pe.Code), LastValidatedAt: &now}}
		o.tally = tallyNeedsUser
	default:
		return o, true
	}
	return o, false
}

// failToken is the outcome of a token the run could not finish: counted in
// errors, kept for the next run, logged at the level its cause deserves. A
// Plaid refusal of the service's own API keys stops the run: every further
// call would fail the same way.
func (s *Service) failToken(ctx context.Context, t *Token, stage string, err error, log *slog.Logger) tokenOutcome {
	var pe *PlaidError
	if errors.As(err, &pe) && pe.Code == CodeWrongEnvironment {
		stage = "environment" // found by the field or, once decrypted, by the token's prefix
	}
	o := tokenOutcome{token: t, tally: tallyErrors, err: &RunError{ItemID: t.ItemID, Stage: stage, Error: err.Error()}}
	if pe == nil {
		log.WarnContext(ctx, "cleanup could not finish a token", slog.String("item_id", t.ItemID),
			slog.String("stage", stage), slog.String("error", err.Error()))
		return o
	}
	if pe.Code == CodeWrongEnvironment {
		log.ErrorContext(ctx, "token of another Plaid environment left untouched", slog.String("item_id", t.ItemID),
			slog.String("stage", stage), slog.String("error", pe.Error()))
		return o
	}
	level := slog.LevelWarn
	if pe.Class == ClassConfig {
		level = slog.LevelError
		if pe.Code == "INVALID_API_KEYS" {
			o.fatal = WrapError(CodeUnavailable, err, "Plaid refused the service's API keys")
		}
	}
	log.Log(ctx, level, "plaid call failed", slog.String("item_id", t.ItemID), slog.String("stage", stage),
		slog.String("plaid_error_class", pe.Class.String()), slog.String("plaid_error_code", pe.Code),
		slog.String("plaid_request_id", pe.RequestID), slog.String("error", pe.Error()))
	return o
}

// removeAtPlaid calls /item/remove for t. ITEM_NOT_FOUND and
// INVALID_ACCESS_TOKEN of a token of this environment count as removed
// (the adapter returns nil for them).
func (s *Service) removeAtPlaid(ctx context.Context, t *Token) error {
	access, err := s.plaidAccessToken(t)
	if err != nil {
		return err
	}
	return s.plaid.RemoveItem(ctx, access)
}

// plaidAccessToken decrypts t's access token for a Plaid call, refusing
// one of another Plaid environment than PLAID_ENV, by its environment field
// or by the prefix of the token itself (DESIGN §7 rule 0).
func (s *Service) plaidAccessToken(t *Token) (string, error) {
	if t.Environment != "" && t.Environment != s.config.PlaidEnv {
		return "", errOtherEnvironment(t.Environment, s.config.PlaidEnv)
	}
	access, err := s.cipher.Decrypt(t.ItemID, t.AccessToken)
	if err != nil {
		return "", fmt.Errorf("decrypting token of item %s: %w", t.ItemID, err)
	}
	if env := TokenEnvironment(access); env != "" && env != s.config.PlaidEnv {
		return "", errOtherEnvironment(env, s.config.PlaidEnv)
	}
	return access, nil
}

// errOtherEnvironment is rule 0's refusal, a *PlaidError of the
// configuration class: never the token's fault, never retried.
func errOtherEnvironment(tokenEnv, plaidEnv string) error {
	return &PlaidError{Class: ClassConfig, Code: CodeWrongEnvironment,
		Err: fmt.Errorf("token of Plaid's %s environment; this deployment talks to %s (PLAID_ENV): left untouched", tokenEnv, plaidEnv)}
}

// auditedDelete is the conditional delete of t with its audit entry.
func (s *Service) auditedDelete(t *Token, reason string, run tokenRun) *Write {
	return &Write{ItemID: t.ItemID, Delete: true, IfVersion: t.Version, Audit: &AuditEntry{ItemID: t.ItemID, UserID: t.UserID,
		Reason: reason, Actor: run.actor, RunID: run.id, At: s.clock.Now(), PlaidRemoved: true}}
}
