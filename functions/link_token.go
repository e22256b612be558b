package functions

import (
	"net/http"
	"time"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// linkTokenRequest is CreateLinkToken's body: {} for a new Item, or the
// item to open Link's update mode for.
type linkTokenRequest struct {
	ItemID *string `json:"item_id"`
}

// linkTokenResponse is CreateLinkToken's success body (DESIGN §4).
type linkTokenResponse struct {
	LinkToken  string `json:"link_token"`
	Expiration string `json:"expiration"`
	Mode       string `json:"mode"`
}

// handleCreateLinkToken creates a Link token for the caller: POST
// /api/v1/plaid/link/token. With an item_id that is not the caller's, or
// not an item id at all, it answers RevokeItem's 404 byte for byte.
func (s *Server) handleCreateLinkToken() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := principal(w, r)
		if !ok {
			return
		}
		var body linkTokenRequest
		if err := decodeBody(r, &body); err != nil {
			writeError(w, r, err)
			return
		}
		itemID := ""
		if body.ItemID != nil {
			if !lifecycle.ValidItemID(*body.ItemID) {
				writeError(w, r, lifecycle.ErrItemNotFound)
				return
			}
			itemID = *body.ItemID
		}
		lt, err := s.svc.CreateLinkToken(r.Context(), p.UserID, itemID)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, linkTokenResponse{
			LinkToken: lt.LinkToken, Expiration: lt.Expiration.UTC().Format(time.RFC3339), Mode: string(lt.Mode)})
	})
}
