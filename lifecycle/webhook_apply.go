package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Webhook is the part of a Plaid webhook body the service reads.
type Webhook struct {
	Type        string        `json:"webhook_type"`
	Code        string        `json:"webhook_code"`
	ItemID      string        `json:"item_id"`
	Error       *WebhookError `json:"error"`
	Environment string        `json:"environment"`
}

// WebhookError is the error object of an ITEM ERROR webhook.
type WebhookError struct {
	ErrorType    string `json:"error_type"`
	ErrorCode    string `json:"error_code"`
	ErrorMessage string `json:"error_message"`
}

// ParseWebhook decodes a webhook body. A body that is not a JSON object
// with a webhook_type is CodeInvalid.
func ParseWebhook(body []byte) (*Webhook, error) {
	var wh Webhook
	if err := json.Unmarshal(body, &wh); err != nil {
		return nil, WrapError(CodeInvalid, err, "webhook body is not a valid Plaid webhook")
	}
	if wh.Type == "" {
		return nil, Errorf(CodeInvalid, "webhook body has no webhook_type")
	}
	return &wh, nil
}

// WebhookAction is what a webhook did to its Item's token.
type WebhookAction string

// The outcomes of ApplyWebhook.
const (
	// WebhookAcknowledged: the webhook asks nothing of the token
	// (NEW_ACCOUNTS_AVAILABLE, other webhook types); it is only logged.
	WebhookAcknowledged WebhookAction = "acknowledged"
	// WebhookUnknownItem: no token document has the webhook's item_id.
	WebhookUnknownItem WebhookAction = "unknown_item"
	// WebhookErrorCodeSet: error_code is the webhook's error.
	WebhookErrorCodeSet WebhookAction = "error_code_set"
	// WebhookErrorCodeCleared: error_code was cleared (LOGIN_REPAIRED).
	WebhookErrorCodeCleared WebhookAction = "error_code_cleared"
	// WebhookExpired: the token is expired (the Item is gone).
	WebhookExpired WebhookAction = "expired"
	// WebhookRevoked: the token is revoked (consent withdrawn); its Item is
	// still to be removed at Plaid.
	WebhookRevoked WebhookAction = "revoked"
	// WebhookIgnored: the token is already expired or revoked and the
	// webhook would not move it further on; a dead token never comes back.
	WebhookIgnored WebhookAction = "ignored"
)

// WebhookResult says what ApplyWebhook did.
type WebhookResult struct {
	ItemID string
	Type   string // webhook_type
	Code   string // webhook_code
	Action WebhookAction
	// Changed is false when the document already was in the state the
	// webhook asks for (a redelivered webhook), or nothing was to be done.
	Changed bool
}

// webhookApplyAttempts bounds the read-modify-write retries of one webhook
// when the document changes between read and write.
const webhookApplyAttempts = 5

// ReasonPlaidRevoked is the audit reason of a revocation Plaid reported by
// webhook (the user withdrew consent at the bank or at Plaid).
const ReasonPlaidRevoked = "plaid_revoked"

// ApplyWebhook acts on a verified webhook (DESIGN §7): ITEM webhooks update
// the Item's token document, anything else is acknowledged, and so is a
// webhook of another Plaid environment than PLAID_ENV. Every update is
// idempotent and never brings a dead token back: a revoked token stays
// revoked, an expired one only becomes revoked. Writes are conditional on
// the version read, so a concurrent revocation is never overwritten. A
// webhook about a live token is Plaid telling its state: it counts as a
// validation when it changes the token (last_validated_at, DESIGN §12). A
// revocation is written with its audit entry, atomically, and asks for the
// Item's early removal: consent withdrawn does not remove the Item at Plaid.
func (s *Service) ApplyWebhook(ctx context.Context, wh *Webhook) (WebhookResult, error) {
	res := WebhookResult{ItemID: wh.ItemID, Type: wh.Type, Code: wh.Code, Action: WebhookAcknowledged}
	log := Logger(ctx).With(slog.String("item_id", wh.ItemID), slog.String("webhook_type", wh.Type),
		slog.String("webhook_code", wh.Code), slog.String("environment", wh.Environment))
	if wh.Error != nil {
		log = log.With(slog.String("error_code", wh.Error.ErrorCode))
	}
	switch {
	case !webhookActsOnItem(wh):
		log.InfoContext(ctx, "webhook acknowledged")
		return res, nil
	case wh.Environment != "" && wh.Environment != s.config.PlaidEnv:
		// DESIGN §7 rule 0: another environment's Item is not ours to touch.
		log.WarnContext(ctx, "webhook of another Plaid environment acknowledged without acting",
			slog.String("plaid_env", s.config.PlaidEnv))
		return res, nil
	case wh.ItemID == "" || (wh.Code == "ERROR" && (wh.Error == nil || wh.Error.ErrorCode == "")):
		log.WarnContext(ctx, "incomplete ITEM webhook acknowledged")
		return res, nil
	}
	for attempt := 1; ; attempt++ {
		tok, err := s.tokens.Get(ctx, wh.ItemID)
		if errors.Is(err, ErrNotFound) {
			res.Action = WebhookUnknownItem
			// Plaid still bills for an Item we hold no token for.
			log.WarnContext(ctx, "verified webhook for unknown item")
			return res, nil
		}
		if err != nil {
			return res, fmt.Errorf("applying %s webhook to item %s: %w", wh.Code, wh.ItemID, err)
		}
		now := s.clock.Now()
		w, action := webhookWrite(tok, wh, now)
		res.Action = action
		if w != nil {
			err = s.tokens.Apply(ctx, []Write{*w})[0]
			if (errors.Is(err, ErrChanged) || errors.Is(err, ErrNotFound)) && attempt < webhookApplyAttempts {
				continue // changed or deleted since read: decide again on what it says now
			}
			if err != nil {
				return res, fmt.Errorf("applying %s webhook to item %s: %w", wh.Code, wh.ItemID, err)
			}
			res.Changed = true
		}
		log = log.With(slog.String("user_id", tok.UserID))
		log.InfoContext(ctx, "webhook applied", slog.String("status_before", string(tok.Status)),
			slog.String("action", string(res.Action)), slog.Bool("changed", res.Changed))
		if res.Changed && action == WebhookRevoked && !tok.PlaidRemoved {
			s.requestEarlyRemoval(ctx, tok, log)
		}
		return res, nil
	}
}

// webhookWrite is what wh does to tok at now: the conditional write (nil
// when the document already says it), with its audit entry for a
// revocation, and the action.
func webhookWrite(tok *Token, wh *Webhook, now time.Time) (*Write, WebhookAction) {
	patch, action := webhookPatch(tok, wh, now)
	if patch == nil {
		return nil, action
	}
	if tok.Status == StatusActive {
		// Plaid just told this live Item's state: as good as a validation,
		// so the next cleanup need not ask again (§12). Only a change is
		// stamped, so a replayed webhook writes nothing.
		patch.LastValidatedAt = &now
	}
	w := &Write{ItemID: tok.ItemID, Patch: *patch, IfVersion: tok.Version}
	if patch.Status != nil && *patch.Status == StatusRevoked {
		w.Audit = &AuditEntry{ItemID: tok.ItemID, UserID: tok.UserID, Reason: ReasonPlaidRevoked, Actor: "plaid-webhook",
			At: now, PlaidRemoved: tok.PlaidRemoved}
	}
	return w, action
}

// webhookActsOnItem reports whether wh is an ITEM webhook that changes the
// token document.
func webhookActsOnItem(wh *Webhook) bool {
	if wh.Type != "ITEM" {
		return false
	}
	switch wh.Code {
	case "ERROR", "PENDING_EXPIRATION", "PENDING_DISCONNECT",
		"USER_PERMISSION_REVOKED", "USER_ACCOUNT_REVOKED", "LOGIN_REPAIRED":
		return true
	}
	return false
}

// webhookPatch decides what wh does to tok at now: the patch to write (nil
// when the document already says it) and the action.
func webhookPatch(tok *Token, wh *Webhook, now time.Time) (*Patch, WebhookAction) {
	revoked := tok.Status == StatusRevoked
	dead := revoked || tok.Status == StatusExpired

	switch wh.Code {
	case "USER_PERMISSION_REVOKED":
		// The user withdrew consent: the token is dead to the app, but the
		// Item is not removed at Plaid by that, so it stays billed until
		// /item/remove (the early removal, else cleanup) removes it.
		if revoked {
			return nil, WebhookRevoked
		}
		return &Patch{Status: new(StatusRevoked), UpdatedAt: new(now)}, WebhookRevoked

	case "LOGIN_REPAIRED":
		if dead {
			return nil, WebhookIgnored
		}
		if tok.ErrorCode == "" {
			return nil, WebhookErrorCodeCleared
		}
		return &Patch{ClearErrorCode: true}, WebhookErrorCodeCleared
	}

	// ERROR, PENDING_EXPIRATION, PENDING_DISCONNECT: the Item's error.
	code, errType := wh.Code, ""
	if wh.Code == "ERROR" {
		code, errType = wh.Error.ErrorCode, wh.Error.ErrorType
	}
	if ClassifyPlaidError(errType, code, 0, false) == ClassGone {
		switch {
		case revoked:
			return nil, WebhookIgnored
		case dead:
			return nil, WebhookExpired
		}
		return &Patch{Status: new(StatusExpired), ErrorCode: new(code), UpdatedAt: new(now)}, WebhookExpired
	}
	// Needs the user (or an error we only record): the token stays active.
	// A dead token's error no longer matters; cleanup removes it.
	switch {
	case dead:
		return nil, WebhookIgnored
	case tok.ErrorCode == code:
		return nil, WebhookErrorCodeSet
	}
	return &Patch{ErrorCode: new(code)}, WebhookErrorCodeSet
}

func patchOrNil(p Patch) *Patch {
	if p == (Patch{}) {
		return nil
	}
	return &p
}
