package functions

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// errorBody is every error response: `detail` keeps clients of the old
// FastAPI service working; `code` is for machines.
type errorBody struct {
	Detail string `json:"detail"`
	Code   string `json:"code"`
	// ExistingItemID names the Item a refused duplicate duplicates
	// (code duplicate_item, DESIGN §4).
	ExistingItemID string `json:"existing_item_id,omitempty"`
}

// statusOf maps an error code to its HTTP status. This is the only place
// that mapping lives.
func statusOf(code lifecycle.Code) int {
	switch code {
	case lifecycle.CodeInvalid:
		return http.StatusBadRequest
	case lifecycle.CodeUnauthorized:
		return http.StatusUnauthorized
	case lifecycle.CodeForbidden:
		return http.StatusForbidden
	case lifecycle.CodeNotFound:
		return http.StatusNotFound
	case lifecycle.CodeConflict, lifecycle.CodeDuplicateItem:
		return http.StatusConflict
	case lifecycle.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case lifecycle.CodeUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// writeError renders err as {"detail", "code"} with its status. Only the
// safe message of a *lifecycle.Error reaches the caller; anything else is
// logged and answered with a generic 500, so no internal detail, token or
// stack trace leaks.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := lifecycle.ErrorCode(err)
	status := statusOf(code)
	detail := http.StatusText(status)
	var e *lifecycle.Error
	if errors.As(err, &e) && e.Message != "" {
		detail = e.Message
	}
	if status >= 500 {
		lifecycle.Logger(r.Context()).ErrorContext(r.Context(), "request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", status), slog.String("error", err.Error()))
		if code == lifecycle.CodeInternal {
			detail = "internal error"
		}
	}
	body := errorBody{Detail: detail, Code: string(code)}
	var dup *lifecycle.DuplicateItemError
	if errors.As(err, &dup) {
		body.ExistingItemID = dup.ExistingItemID
	}
	writeJSON(w, status, body)
}

// writeJSON writes v as the JSON response body with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
