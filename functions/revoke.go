package functions

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// revokeAllResponse is RevokeAllTokens' success body (DESIGN §4).
type revokeAllResponse struct {
	Message      string `json:"message"`
	RevokedCount int    `json:"revoked_count"`
}

// revokeItemResponse is RevokeItem's success body (DESIGN §4).
type revokeItemResponse struct {
	Message string `json:"message"`
	ItemID  string `json:"item_id"`
}

// handleRevokeAll revokes the caller's own tokens: DELETE
// /api/v1/plaid/tokens/revoke-all.
func (s *Server) handleRevokeAll() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := principal(w, r)
		if !ok {
			return
		}
		n, err := s.svc.RevokeAllTokens(r.Context(), p.UserID)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, revokeAllResponse{
			Message: fmt.Sprintf("Revoked %d tokens successfully", n), RevokedCount: n})
	})
}

// handleRevokeItem revokes one of the caller's items: DELETE
// /api/v1/plaid/items/{item_id}. Another user's item answers 404 exactly
// like a missing one, admins included (they revoke for others through the
// CLI), and so does an id that cannot be an item id at all: nothing tells
// a caller which ids exist, and no input reaches Firestore as a bad
// document id.
func (s *Server) handleRevokeItem() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := principal(w, r)
		if !ok {
			return
		}
		itemID, ok := pathParam(r, PathItemPrefix)
		if !ok || !lifecycle.ValidItemID(itemID) {
			writeError(w, r, lifecycle.ErrItemNotFound)
			return
		}
		if _, err := s.svc.RevokeItem(r.Context(), p.UserID, itemID); err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, revokeItemResponse{Message: "Item revoked successfully", ItemID: itemID})
	})
}

// principal returns the caller Require put in the context. Handlers only
// run behind Require; without one the request is refused, never served as
// nobody.
func principal(w http.ResponseWriter, r *http.Request) (Principal, bool) {
	p, ok := PrincipalFrom(r.Context())
	if !ok || p.UserID == "" {
		writeError(w, r, lifecycle.Errorf(lifecycle.CodeUnauthorized, "missing bearer token"))
		return Principal{}, false
	}
	return p, true
}

func pathUnescape(s string) (string, error) { return url.PathUnescape(s) }
