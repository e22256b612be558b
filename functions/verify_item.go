package functions

import (
	"net/http"
	"strings"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// verifyItemResponse is VerifyItem's success body (DESIGN §4).
type verifyItemResponse struct {
	ItemID      string  `json:"item_id"`
	Status      string  `json:"status"`
	ErrorCode   *string `json:"error_code"`
	NeedsRepair bool    `json:"needs_repair"`
}

// handleVerifyItem asks Plaid about one of the caller's Items now, after a
// repair in Link's update mode: POST /api/v1/plaid/items/{item_id}/verify.
// Another user's item, a missing one and an id that names none answer
// RevokeItem's 404 byte for byte.
func (s *Server) handleVerifyItem() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := principal(w, r)
		if !ok {
			return
		}
		itemID, ok := verifyItemID(r)
		if !ok || !lifecycle.ValidItemID(itemID) {
			writeError(w, r, lifecycle.ErrItemNotFound)
			return
		}
		st, err := s.svc.VerifyItem(r.Context(), p.UserID, itemID)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, verifyItemResponse{ItemID: st.ItemID, Status: string(st.Status),
			ErrorCode: nullString(st.ErrorCode), NeedsRepair: st.NeedsRepair})
	})
}

// verifyItemID is the item id of PathItemPrefix{item_id}PathVerifySuffix,
// read as RevokeItem reads its own.
func verifyItemID(r *http.Request) (string, bool) {
	escaped, ok := strings.CutSuffix(r.URL.EscapedPath(), PathVerifySuffix)
	if !ok {
		return "", false
	}
	return pathParam(withPath(r, escaped), PathItemPrefix)
}
