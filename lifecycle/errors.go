package lifecycle

import (
	"errors"
	"fmt"
)

// Code classifies an error for callers: the functions package maps each code
// to one HTTP status, in one place.
type Code string

// Error codes. The string values appear as the `code` key of error bodies.
const (
	CodeInvalid      Code = "invalid_argument"
	CodeUnauthorized Code = "unauthenticated"
	CodeForbidden    Code = "forbidden"
	CodeNotFound     Code = "not_found"
	CodeConflict     Code = "conflict"
	// CodeDuplicateItem is a conflict of its own: the Item Link just
	// created duplicates one the user has (DuplicateItemError names it).
	CodeDuplicateItem Code = "duplicate_item"
	CodeTooLarge      Code = "too_large"
	CodeUnavailable   Code = "unavailable"
	CodeInternal      Code = "internal"
)

// Error is an error with a code and a message that is safe to show to the
// caller. The wrapped error carries detail for logs only.
type Error struct {
	Code    Code
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WrapError returns an *Error with code and message wrapping err.
func WrapError(code Code, err error, message string) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

// ErrorCode returns the code of the first *Error in err's chain, or
// CodeInternal.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// IsCode reports whether err carries code.
func IsCode(err error, code Code) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// The sentinel errors, all of them. A store's are wrapped with the
// document they concern; the others' messages are safe to show a caller.
var (
	// ErrNotFound: a store has no such document. (A caller asking for an
	// item is answered ErrItemNotFound, whatever the reason.)
	ErrNotFound = &Error{Code: CodeNotFound, Message: "not found"}
	// ErrChanged: the document changed since it was read (update-time
	// precondition failed) or already exists.
	ErrChanged = &Error{Code: CodeConflict, Message: "document changed since it was read"}

	// ErrItemNotFound is what a caller gets for an item that does not
	// exist, another user's item, and an id that cannot be an item id
	// alike: the answer never tells them apart, so no one learns which
	// item ids exist (DESIGN §4).
	ErrItemNotFound = &Error{Code: CodeNotFound, Message: "item not found"}
	// ErrItemOfAnotherUser refuses to store a token for an item id that
	// another user's token already holds. It is a conflict with existing
	// data, not a permission the calling service lacks: the exchange that
	// produced it is inconsistent and must be looked into, never resolved
	// by overwriting.
	ErrItemOfAnotherUser = &Error{Code: CodeConflict, Message: "item belongs to another user"}
	// ErrDuplicateItem is what a duplicate Item is refused with;
	// DuplicateItemError names the existing item.
	ErrDuplicateItem = &Error{Code: CodeDuplicateItem,
		Message: "this account is already linked; repair the existing item with update mode instead of linking it again"}
	// ErrExchangeOutcomeUnknown marks an exchange whose public token a
	// retry found used after an earlier attempt got no answer (or a 5xx):
	// that attempt may have created the Item, whose access token is then
	// lost.
	ErrExchangeOutcomeUnknown = errors.New("an earlier attempt got no answer and may have exchanged the public token")

	// ErrLeaseHeld: another run holds the cleanup lease. The error in the
	// chain is a *LeaseHeldError that says which.
	ErrLeaseHeld = &Error{Code: CodeConflict, Message: "a cleanup is already running"}
	// ErrLeaseLost: the run's lease was taken by another run (it lapsed, or
	// an operator took it over); the run stops.
	ErrLeaseLost = &Error{Code: CodeConflict, Message: "the cleanup lease was taken over by another run"}
	// ErrRepairLeaseLost: another repair took the analytics repair lease
	// over (this one ran past its lease); this one stops writing.
	ErrRepairLeaseLost = &Error{Code: CodeConflict, Message: "the analytics repair lease was taken over"}

	// The vault's (CodeInternal: a token that does not decrypt is our
	// fault or an operator's, never the caller's). ErrDecrypt: the data did
	// not authenticate: wrong key, wrong item id (the ciphertext was moved
	// to another document) or tampered data, which the cipher cannot tell
	// apart. ErrUnknownKey: the token names a key id that is neither
	// TOKEN_ENCRYPTION_KEY nor one of TOKEN_ENCRYPTION_KEY_PREVIOUS.
	// ErrMalformedToken: the stored string is not in the expected format.
	ErrDecrypt        = &Error{Code: CodeInternal, Message: "token does not decrypt: wrong key, wrong item id or tampered data"}
	ErrUnknownKey     = &Error{Code: CodeInternal, Message: "token is encrypted with a key the vault does not have"}
	ErrMalformedToken = &Error{Code: CodeInternal, Message: "stored token is malformed"}
)
