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

// Sentinel errors the store returns, wrapped with context.
var (
	// ErrNotFound: the document does not exist.
	ErrNotFound = &Error{Code: CodeNotFound, Message: "not found"}
	// ErrChanged: the document changed since it was read (update-time
	// precondition failed) or already exists.
	ErrChanged = &Error{Code: CodeConflict, Message: "document changed since it was read"}
)
