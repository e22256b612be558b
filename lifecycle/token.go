// Package lifecycle holds the domain of the Plaid token lifecycle service:
// the Token and its Status, the Firestore store, the vault that encrypts
// access tokens, the Plaid adapter, and the operations on tokens (cleanup,
// analytics, revocation). It knows nothing about HTTP.
package lifecycle

import (
	"strings"
	"time"
	"unicode/utf8"
)

// Status is the lifecycle state of a stored token, as written in the
// `status` field of a plaid_tokens document.
type Status string

// The statuses a token can have (DESIGN §5).
const (
	StatusActive  Status = "active"
	StatusExpired Status = "expired"
	StatusRevoked Status = "revoked"
)

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusActive, StatusExpired, StatusRevoked:
		return true
	}
	return false
}

// Metadata is the institution's display data kept with a token.
type Metadata struct {
	Name         string `firestore:"name"`
	URL          string `firestore:"url"`
	PrimaryColor string `firestore:"primary_color"`
	Logo         string `firestore:"logo"`
}

// Token is one Plaid Item's access token as stored in the plaid_tokens
// collection (document id = ItemID). AccessToken holds the vault's
// ciphertext, never the plaintext.
//
// Documents may carry fields this type does not know (the old service's
// per-item extras such as `transactions`); the store therefore never writes a
// whole Token back, only the fields an operation changes.
type Token struct {
	ItemID          string    `firestore:"item_id"`
	UserID          string    `firestore:"user_id"`
	AccessToken     string    `firestore:"access_token"`
	InstitutionID   string    `firestore:"institution_id"`
	InstitutionName string    `firestore:"institution_name"`
	Status          Status    `firestore:"status"`
	Environment     string    `firestore:"environment"`
	CreatedAt       time.Time `firestore:"created_at"`
	UpdatedAt       time.Time `firestore:"updated_at"`
	LastUsedAt      time.Time `firestore:"last_used_at"`
	LastValidatedAt time.Time `firestore:"last_validated_at"`
	ErrorCode       string    `firestore:"error_code"`
	PlaidRemoved    bool      `firestore:"plaid_removed"`
	Metadata        Metadata  `firestore:"metadata"`
	// AccountMasks are the masks (last digits) of the Item's accounts as
	// Link reported them at the exchange: a second Item at the same
	// institution sharing one is a duplicate (DESIGN §4).
	AccountMasks []string `firestore:"account_masks"`

	// Version is the document's update time when it was read. Writes that
	// must not clobber a concurrent change (deletes, cleanup marks) use it as
	// a precondition.
	Version time.Time `firestore:"-"`
}

// LastActivity is the time the token was last known to be in use: its
// last_used_at, else updated_at, else created_at (DESIGN §7).
func (t *Token) LastActivity() time.Time {
	switch {
	case !t.LastUsedAt.IsZero():
		return t.LastUsedAt
	case !t.UpdatedAt.IsZero():
		return t.UpdatedAt
	default:
		return t.CreatedAt
	}
}

// Patch lists the fields of a token document an operation changes. Nil
// fields are left alone. ClearErrorCode removes error_code.
type Patch struct {
	Status          *Status
	ErrorCode       *string
	ClearErrorCode  bool
	PlaidRemoved    *bool
	LastUsedAt      *time.Time
	LastValidatedAt *time.Time
	UpdatedAt       *time.Time
	AccessToken     *string
	InstitutionID   *string
	InstitutionName *string
	Environment     *string
	Metadata        *Metadata
}

// applyTo sets in t what p writes.
func (p Patch) applyTo(t *Token) {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	if p.Status != nil {
		t.Status = *p.Status
	}
	set(&t.ErrorCode, p.ErrorCode)
	if p.ClearErrorCode {
		t.ErrorCode = ""
	}
	if p.PlaidRemoved != nil {
		t.PlaidRemoved = *p.PlaidRemoved
	}
	for dst, v := range map[*time.Time]*time.Time{&t.LastUsedAt: p.LastUsedAt, &t.LastValidatedAt: p.LastValidatedAt, &t.UpdatedAt: p.UpdatedAt} {
		if v != nil {
			*dst = *v
		}
	}
	set(&t.AccessToken, p.AccessToken)
	set(&t.InstitutionID, p.InstitutionID)
	set(&t.InstitutionName, p.InstitutionName)
	set(&t.Environment, p.Environment)
	if p.Metadata != nil {
		t.Metadata = *p.Metadata
	}
}

// MaxItemIDLength bounds the item ids the service accepts (Plaid's are
// a few dozen characters; Firestore's document ids at most 1,500 bytes).
const MaxItemIDLength = 256

// ValidItemID reports whether id can be an item id: a Firestore document
// id of at most MaxItemIDLength bytes. Anything else names no token,
// whoever asks: callers answer "not found", never a storage error.
func ValidItemID(id string) bool { return validDocumentID(id, MaxItemIDLength) }

// validDocumentID reports whether id can be a Firestore document id (valid
// UTF-8, no '/', not "." or "..", not the reserved __.*__) of at most
// maxLen bytes: run ids, user ids and event ids name documents too.
func validDocumentID(id string, maxLen int) bool {
	switch {
	case id == "", len(id) > maxLen, !utf8.ValidString(id),
		strings.Contains(id, "/"), id == ".", id == "..",
		len(id) >= 4 && strings.HasPrefix(id, "__") && strings.HasSuffix(id, "__"):
		return false
	}
	return true
}

// TokenSummary is what analytics and the counters read of a token: no
// access token, only the fields they group by.
type TokenSummary struct {
	ItemID          string
	UserID          string
	Status          Status
	ErrorCode       string
	InstitutionName string
	Environment     string
	CreatedAt       time.Time
	UpdatedAt       time.Time
	LastUsedAt      time.Time
}

// LastActivity is as Token.LastActivity.
func (s *TokenSummary) LastActivity() time.Time {
	t := Token{CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt, LastUsedAt: s.LastUsedAt}
	return t.LastActivity()
}

// summaryFields are the document fields a TokenSummary reads.
var summaryFields = []string{
	"user_id", "status", "error_code", "institution_name", "environment",
	"created_at", "updated_at", "last_used_at",
}

// Every writer (DESIGN §12): documents in plaid_tokens come from this
// service, from the app's backend and from the old service. They are read
// field by field and leniently: a field of an unexpected type reads as
// unset, and only a document without a status is not a token at all (the
// old service's per-user documents have none). A malformed token is still
// a token: the rules then refuse to act on what they cannot read.

// tokenFromData reads a token document's fields. ok is false when the
// document is not a token.
func tokenFromData(id string, data map[string]any) (t *Token, ok bool) {
	if _, hasStatus := data["status"]; !hasStatus {
		return nil, false
	}
	t = &Token{
		ItemID:          id,
		UserID:          str(data, "user_id"),
		AccessToken:     str(data, "access_token"),
		InstitutionID:   str(data, "institution_id"),
		InstitutionName: str(data, "institution_name"),
		Status:          Status(str(data, "status")),
		Environment:     str(data, "environment"),
		CreatedAt:       timestamp(data, "created_at"),
		UpdatedAt:       timestamp(data, "updated_at"),
		LastUsedAt:      timestamp(data, "last_used_at"),
		LastValidatedAt: timestamp(data, "last_validated_at"),
		ErrorCode:       str(data, "error_code"),
	}
	t.PlaidRemoved, _ = data["plaid_removed"].(bool)
	if md, ok := data["metadata"].(map[string]any); ok {
		t.Metadata = Metadata{Name: str(md, "name"), URL: str(md, "url"),
			PrimaryColor: str(md, "primary_color"), Logo: str(md, "logo")}
	}
	if masks, ok := data["account_masks"].([]any); ok {
		for _, m := range masks {
			if m, ok := m.(string); ok {
				t.AccountMasks = append(t.AccountMasks, m)
			}
		}
	}
	return t, true
}

// summaryFromData reads the summary of a token document (all of it or its
// summaryFields projection). ok is false when the document is not a token.
func summaryFromData(id string, data map[string]any) (s *TokenSummary, ok bool) {
	if _, hasStatus := data["status"]; !hasStatus {
		return nil, false
	}
	return &TokenSummary{
		ItemID:          id,
		UserID:          str(data, "user_id"),
		Status:          Status(str(data, "status")),
		ErrorCode:       str(data, "error_code"),
		InstitutionName: str(data, "institution_name"),
		Environment:     str(data, "environment"),
		CreatedAt:       timestamp(data, "created_at"),
		UpdatedAt:       timestamp(data, "updated_at"),
		LastUsedAt:      timestamp(data, "last_used_at"),
	}, true
}

func str(data map[string]any, key string) string {
	v, _ := data[key].(string)
	return v
}

func timestamp(data map[string]any, key string) time.Time {
	v, _ := data[key].(time.Time)
	return v
}
