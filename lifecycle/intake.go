package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// NewToken is a token fresh from the Plaid Link exchange
// (/item/public_token/exchange), as the app's other services hand it over.
type NewToken struct {
	UserID          string
	ItemID          string
	AccessToken     string // plaintext; encrypted before it is stored
	InstitutionID   string
	InstitutionName string
	// Environment is sandbox or production; empty means PLAID_ENV.
	Environment string
	Metadata    Metadata
	// AccountMasks are the masks of the Item's accounts (Link's metadata),
	// kept for the duplicate check of the exchange.
	AccountMasks []string
}

const (
	// usageWriteEvery is the least time between two last_used_at writes of
	// a token: Firestore sustains about one write a second per document,
	// and staleness is counted in days.
	usageWriteEvery = time.Hour
	// maxIDLength bounds user and item ids.
	maxIDLength = MaxItemIDLength
)

// StoreToken stores a token from the Link exchange: encrypted, status
// active, created_at and updated_at now. It is idempotent on the item id:
// the same user storing the same active token again (a retried exchange)
// writes nothing; another access token for the same item (a rotated token)
// updates the access token, status, institution fields, environment,
// metadata and updated_at and keeps created_at and every other field (such
// as the old service's `transactions`). It refuses (CodeConflict) another
// user's item, and an item that is revoked or already removed at Plaid: a
// removed Item never comes back, a new link gives a new item id. An expired
// token comes back to active, its stale error cleared. A token of another
// Plaid environment than PLAID_ENV is refused (CodeInvalid; DESIGN §7 rule
// 0). The decision and the write are one transaction on the document. The
// token returned has no Version.
func (s *Service) StoreToken(ctx context.Context, nt NewToken) (*Token, error) {
	if nt.Environment == "" {
		nt.Environment = s.config.PlaidEnv
	}
	if err := nt.validate(s.config.PlaidEnv); err != nil {
		return nil, err
	}
	enc, err := s.cipher.Encrypt(nt.ItemID, nt.AccessToken)
	if err != nil {
		return nil, fmt.Errorf("storing token of item %s: %w", nt.ItemID, err)
	}
	log := Logger(ctx).With(slog.String("item_id", nt.ItemID), slog.String("user_id", nt.UserID),
		slog.String("institution_id", nt.InstitutionID), slog.String("environment", nt.Environment))
	var m Mutation
	tok, err := s.tokens.Mutate(ctx, nt.ItemID, func(existing *Token) (Mutation, error) {
		var err error
		m, err = s.decideIntake(existing, nt, enc, s.clock.Now())
		return m, err
	})
	if err != nil {
		if IsCode(err, CodeConflict) {
			log.WarnContext(ctx, "token refused", slog.String("error", err.Error()))
		}
		return nil, fmt.Errorf("storing token of item %s: %w", nt.ItemID, err)
	}
	log.InfoContext(ctx, "token stored", slog.Bool("created", m.Create != nil), slog.Bool("changed", m != Mutation{}))
	return tok, nil
}

// decideIntake is StoreToken's decision over the document as it stands
// (existing is nil when there is none): create it, patch it, leave it
// (Mutation{}), or refuse.
func (s *Service) decideIntake(existing *Token, nt NewToken, enc string, now time.Time) (Mutation, error) {
	if existing == nil {
		return Mutation{Create: &Token{
			ItemID: nt.ItemID, UserID: nt.UserID, AccessToken: enc,
			InstitutionID: nt.InstitutionID, InstitutionName: nt.InstitutionName,
			Status: StatusActive, Environment: nt.Environment, CreatedAt: now, UpdatedAt: now, Metadata: nt.Metadata,
			AccountMasks: nt.AccountMasks,
		}}, nil
	}
	switch {
	case existing.UserID != nt.UserID:
		return Mutation{}, ErrItemOfAnotherUser
	case existing.Status == StatusRevoked || existing.PlaidRemoved:
		return Mutation{}, Errorf(CodeConflict, "item is revoked; link the account again")
	}
	sameInstitution := existing.InstitutionID == nt.InstitutionID && existing.InstitutionName == nt.InstitutionName &&
		existing.Environment == nt.Environment && existing.Metadata == nt.Metadata
	if existing.Status == StatusActive && sameInstitution {
		if plain, err := s.cipher.Decrypt(existing.ItemID, existing.AccessToken); err == nil && plain == nt.AccessToken {
			return Mutation{}, nil // a retried store of what is already there
		}
	}
	return Mutation{Patch: &Patch{AccessToken: &enc, Status: new(StatusActive), UpdatedAt: &now,
		InstitutionID: &nt.InstitutionID, InstitutionName: &nt.InstitutionName,
		Environment: &nt.Environment, Metadata: &nt.Metadata,
		// An expired token's error_code described the token it replaces.
		// An active one's stays: the next validation decides.
		ClearErrorCode: existing.Status == StatusExpired && existing.ErrorCode != "",
	}}, nil
}

// validate reports every problem of nt at once, as CodeInvalid. plaidEnv
// is PLAID_ENV: a token of another environment is refused (DESIGN §7 rule
// 0).
func (nt NewToken) validate(plaidEnv string) error {
	var problems []string
	checkID := func(name, v string) {
		switch {
		case v == "":
			problems = append(problems, name+" is required")
		case len(v) > maxIDLength:
			problems = append(problems, fmt.Sprintf("%s is longer than %d bytes", name, maxIDLength))
		}
	}
	checkID("user_id", nt.UserID)
	checkID("item_id", nt.ItemID)
	// item_id is the document id.
	if nt.ItemID != "" && len(nt.ItemID) <= maxIDLength && !ValidItemID(nt.ItemID) {
		problems = append(problems, "item_id is not a valid Plaid item id")
	}
	switch {
	case nt.AccessToken == "":
		problems = append(problems, "access_token is required")
	case !strings.HasPrefix(nt.AccessToken, "access-"):
		// Catches a public_token (public-...) passed before its exchange.
		problems = append(problems, "access_token is not a Plaid access token")
	}
	tokenEnv := TokenEnvironment(nt.AccessToken)
	switch {
	case nt.Environment != "sandbox" && nt.Environment != "production":
		problems = append(problems, "environment must be sandbox or production")
	case nt.Environment != plaidEnv:
		problems = append(problems, fmt.Sprintf("environment %s is not this deployment's Plaid environment (PLAID_ENV=%s)", nt.Environment, plaidEnv))
	case tokenEnv != "" && tokenEnv != nt.Environment:
		problems = append(problems, fmt.Sprintf("access_token is a %s token, not %s", tokenEnv, nt.Environment))
	}
	if len(problems) > 0 {
		return Errorf(CodeInvalid, "invalid token: %s", strings.Join(problems, "; "))
	}
	return nil
}

// UseToken returns the plaintext access token of the user's item, for a
// Plaid call the app is about to make, and records the use: last_used_at
// is written at most once an hour per token. A missing item and another
// user's item both give ErrItemNotFound; a revoked or expired token gives
// CodeConflict (the user must link the account again). An active token
// with an error_code is returned: Link's update mode needs it to repair
// the Item.
func (s *Service) UseToken(ctx context.Context, userID, itemID string) (string, error) {
	if userID == "" {
		return "", Errorf(CodeInvalid, "using a token needs the user id")
	}
	tok, err := s.tokens.Get(ctx, itemID)
	if errors.Is(err, ErrNotFound) {
		return "", ErrItemNotFound
	}
	if err != nil {
		return "", fmt.Errorf("using token of item %s: %w", itemID, err)
	}
	if tok.UserID != userID {
		return "", ErrItemNotFound
	}
	log := Logger(ctx).With(slog.String("item_id", itemID), slog.String("user_id", userID),
		slog.String("institution_id", tok.InstitutionID))
	if tok.Status != StatusActive {
		log.InfoContext(ctx, "token use refused", slog.String("status", string(tok.Status)))
		return "", Errorf(CodeConflict, "item is %s; link the account again", tok.Status)
	}
	access, err := s.cipher.Decrypt(tok.ItemID, tok.AccessToken)
	if err != nil {
		return "", WrapError(CodeInternal, err, "stored token cannot be decrypted")
	}

	now := s.clock.Now()
	recorded := false
	if tok.LastUsedAt.IsZero() || now.Sub(tok.LastUsedAt) >= usageWriteEvery {
		// Unconditional: only last_used_at changes, and a later use wins.
		_, err := s.tokens.Update(ctx, itemID, Patch{LastUsedAt: &now}, time.Time{})
		switch {
		case err == nil:
			recorded = true
		case errors.Is(err, ErrNotFound):
			// Deleted since read; the app's call will tell it the Item is gone.
		default:
			// The app's call must not fail for our bookkeeping; the next
			// use tries again, as last_used_at did not move.
			log.WarnContext(ctx, "recording token use failed", slog.String("error", err.Error()))
		}
	}
	log.InfoContext(ctx, "token used", slog.Bool("usage_recorded", recorded))
	return access, nil
}
