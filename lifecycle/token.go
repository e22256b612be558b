// Package lifecycle holds the domain of the Plaid token lifecycle service:
// the Token and its Status, the Firestore store, the vault that encrypts
// access tokens, the Plaid adapter, and the operations on tokens (cleanup,
// analytics, revocation). It knows nothing about HTTP.
package lifecycle

import "time"

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
}

// Ptr returns a pointer to v, for building a Patch.
func Ptr[T any](v T) *T { return &v }
