package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

const (
	// reencryptPageSize is the number of tokens read and rewritten at once
	// (one BulkWriter batch per page).
	reencryptPageSize = 300
	// maxReencryptFailures bounds the failures listed in a report; Failed
	// still counts them all.
	maxReencryptFailures = 100
)

// ReencryptOptions asks for a re-encryption run.
type ReencryptOptions struct {
	// DryRun counts what would be re-encrypted (decrypting each token to
	// prove it can be) and writes nothing.
	DryRun bool
	// Progress, if set, is called after each page with the totals so far.
	Progress func(ReencryptReport)
}

// ReencryptReport is what a re-encryption run did (or, dry, would do). It
// names items, never tokens.
type ReencryptReport struct {
	DryRun bool `json:"dry_run"`
	// KeyID is the current key's id, the one every token now carries.
	KeyID string `json:"key_id"`
	// Checked counts the token documents read.
	Checked int `json:"checked"`
	// Reencrypted counts tokens rewritten with the current key, of which
	// Plaintext were legacy plaintext values encrypted for the first time.
	Reencrypted int `json:"reencrypted"`
	Plaintext   int `json:"plaintext_encrypted"`
	// AlreadyCurrent counts tokens already under the current key.
	AlreadyCurrent int `json:"already_current"`
	// Skipped counts tokens without an access token. (The old service's
	// per-user documents are not tokens; migrate-legacy carries them over.)
	Skipped int `json:"skipped"`
	// Failed counts tokens that could not be re-encrypted (unknown key,
	// tampered data, a document that kept changing); Failures lists the
	// first of them.
	Failed   int                `json:"failed"`
	Failures []ReencryptFailure `json:"failures"`
}

// ReencryptFailure is one token a re-encryption could not move.
type ReencryptFailure struct {
	ItemID string `json:"item_id"`
	Error  string `json:"error"`
}

func (r *ReencryptReport) fail(itemID string, err error) {
	r.Failed++
	if len(r.Failures) < maxReencryptFailures {
		r.Failures = append(r.Failures, ReencryptFailure{ItemID: itemID, Error: err.Error()})
	}
}

// Reencrypt moves every token to the vault's current key (DESIGN §6): each
// access token under a previous key, or stored as legacy plaintext, is
// decrypted and encrypted again with TOKEN_ENCRYPTION_KEY. The write is
// conditional on the document's version; a document changed meanwhile is
// read again and retried once. It writes access_token only, never
// updated_at: re-encryption is not a use of the token.
func (s *Service) Reencrypt(ctx context.Context, opts ReencryptOptions) (*ReencryptReport, error) {
	vault := s.cipher
	if vault.CurrentKeyID() == "" {
		return nil, Errorf(CodeUnavailable, "re-encrypting tokens needs TOKEN_ENCRYPTION_KEY")
	}
	log := Logger(ctx).With(slog.Bool("dry_run", opts.DryRun), slog.String("key_id", vault.CurrentKeyID()))
	report := &ReencryptReport{DryRun: opts.DryRun, KeyID: vault.CurrentKeyID(), Failures: []ReencryptFailure{}}
	after := ""
	for {
		page, next, err := s.tokens.Page(ctx, after, reencryptPageSize)
		if err != nil {
			return report, fmt.Errorf("re-encrypting tokens: %w", err)
		}
		if err := s.reencryptPage(ctx, vault, page, opts.DryRun, report, log); err != nil {
			return report, err
		}
		if opts.Progress != nil {
			opts.Progress(*report)
		}
		if next == "" {
			break
		}
		after = next
	}
	log.InfoContext(ctx, "re-encryption finished", slog.Int("checked", report.Checked),
		slog.Int("reencrypted", report.Reencrypted), slog.Int("plaintext_encrypted", report.Plaintext),
		slog.Int("already_current", report.AlreadyCurrent), slog.Int("skipped", report.Skipped),
		slog.Int("failed", report.Failed))
	return report, nil
}

// reencryptPage rewrites one page's tokens in one batch, then retries the
// documents that changed since the page was read, once each.
func (s *Service) reencryptPage(ctx context.Context, vault TokenCipher, page []*Token, dryRun bool, report *ReencryptReport, log *slog.Logger) error {
	var writes []Write
	var plaintext []bool
	for _, t := range page {
		report.Checked++
		w, wasPlaintext, err := reencryptWrite(vault, t)
		switch {
		case err != nil:
			report.fail(t.ItemID, err)
			log.ErrorContext(ctx, "token cannot be re-encrypted", slog.String("item_id", t.ItemID), slog.String("error", err.Error()))
		case t.AccessToken == "":
			report.Skipped++
		case w == nil:
			report.AlreadyCurrent++
		case dryRun:
			report.Reencrypted++
			if wasPlaintext {
				report.Plaintext++
			}
		default:
			writes = append(writes, *w)
			plaintext = append(plaintext, wasPlaintext)
		}
	}
	for i, err := range s.tokens.Apply(ctx, writes) {
		itemID := writes[i].ItemID
		wasPlaintext := plaintext[i]
		if errors.Is(err, ErrChanged) {
			// The app wrote to the document meanwhile (a use, a webhook):
			// decide again on what it holds now, once.
			wasPlaintext, err = s.reencryptAgain(ctx, vault, itemID, report)
		}
		switch {
		case errors.Is(err, errAlreadyCurrent):
			report.AlreadyCurrent++
		case errors.Is(err, ErrNotFound):
			// Deleted meanwhile (cleanup): nothing left to re-encrypt.
		case err != nil:
			report.fail(itemID, err)
			log.ErrorContext(ctx, "re-encrypting a token failed", slog.String("item_id", itemID), slog.String("error", err.Error()))
		default:
			report.Reencrypted++
			if wasPlaintext {
				report.Plaintext++
			}
		}
	}
	return ctx.Err()
}

// errAlreadyCurrent: a document read again turned out not to need
// re-encryption any more (another run got there first).
var errAlreadyCurrent = errors.New("already under the current key")

// reencryptAgain re-reads itemID and rewrites its token if it still needs
// it, conditionally on the version just read.
func (s *Service) reencryptAgain(ctx context.Context, vault TokenCipher, itemID string, report *ReencryptReport) (bool, error) {
	t, err := s.tokens.Get(ctx, itemID)
	if err != nil {
		return false, err
	}
	w, wasPlaintext, err := reencryptWrite(vault, t)
	if err != nil {
		return false, err
	}
	if w == nil {
		return false, errAlreadyCurrent
	}
	if _, err := s.tokens.Update(ctx, itemID, w.Patch, w.IfVersion); err != nil {
		return false, fmt.Errorf("token changed twice during re-encryption; run it again: %w", err)
	}
	return wasPlaintext, nil
}

// reencryptWrite returns the write that moves t's token to the current
// key, or nil when it needs none (or has no token). wasPlaintext says the
// stored value was a legacy plaintext token.
func reencryptWrite(vault TokenCipher, t *Token) (w *Write, wasPlaintext bool, err error) {
	if t.AccessToken == "" || !vault.NeedsReencrypt(t.AccessToken) {
		return nil, false, nil
	}
	plaintext := t.AccessToken
	if IsLegacyPlaintext(t.AccessToken) {
		wasPlaintext = true
	} else if plaintext, err = vault.Decrypt(t.ItemID, t.AccessToken); err != nil {
		return nil, false, err
	}
	enc, err := vault.Encrypt(t.ItemID, plaintext)
	if err != nil {
		return nil, false, err
	}
	return &Write{ItemID: t.ItemID, Patch: Patch{AccessToken: &enc}, IfVersion: t.Version}, wasPlaintext, nil
}
