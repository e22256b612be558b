package functions

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// handleWebhook is PlaidWebhook (DESIGN §3, §7): it verifies the
// Plaid-Verification header over the raw body, then has the service apply
// the webhook to the Item's token. It answers 200 to every verified webhook
// it could act on, unknown items included, 401 to unverified ones, and 5xx
// only when a retry by Plaid may succeed. It does not look at the path: it
// is mounted at /api/v1/plaid/webhook and at a deployed function's root
// alike.
func (s *Server) handleWebhook() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeJSON(w, http.StatusMethodNotAllowed, errorBody{
				Detail: fmt.Sprintf("method %s not allowed; use %s", r.Method, http.MethodPost), Code: "method_not_allowed"})
			return
		}

		// Plaid's bodies are well under a kilobyte, and the body is read
		// whole before the signature over it can be checked: cap it.
		tooLarge := lifecycle.Errorf(lifecycle.CodeTooLarge, "webhook body larger than %d bytes", maxRequestBody)
		if r.ContentLength > maxRequestBody {
			writeError(w, r, tooLarge)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
		if err != nil {
			var maxBytes *http.MaxBytesError
			if errors.As(err, &maxBytes) {
				err = tooLarge
			} else {
				err = lifecycle.WrapError(lifecycle.CodeInvalid, err, "could not read the webhook body")
			}
			writeError(w, r, err)
			return
		}

		// The header is a bearer credential for this body: it is never
		// logged, and neither is the body.
		if err := s.webhooks.Verify(ctx, r.Header.Get("Plaid-Verification"), body); err != nil {
			if lifecycle.IsCode(err, lifecycle.CodeUnauthorized) {
				lifecycle.Logger(ctx).WarnContext(ctx, "webhook refused", slog.String("reason", err.Error()))
			}
			writeError(w, r, err)
			return
		}

		wh, err := lifecycle.ParseWebhook(body)
		if err != nil {
			lifecycle.Logger(ctx).WarnContext(ctx, "verified webhook with an unreadable body", slog.String("error", err.Error()))
			writeError(w, r, err)
			return
		}
		if _, err := s.svc.ApplyWebhook(ctx, wh); err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}
