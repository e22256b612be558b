package functions

import (
	"net/http"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// exchangeRequest is ExchangePublicToken's body: Link's public token and
// the accounts of Link's onSuccess metadata.
type exchangeRequest struct {
	PublicToken string        `json:"public_token"`
	Accounts    []linkAccount `json:"accounts"`
}

// linkAccount is one account of Link's onSuccess metadata. The app may
// pass Link's objects as they are: the fields Plaid documents for them are
// all known here (an unknown one is still refused), and only the mask is
// kept, for the duplicate check.
type linkAccount struct {
	Mask               string `json:"mask"`
	Name               string `json:"name"`
	Subtype            string `json:"subtype"`
	ID                 string `json:"id"`
	Type               string `json:"type"`
	VerificationStatus string `json:"verification_status"`
	ClassType          string `json:"class_type"`
}

// exchangeResponse is ExchangePublicToken's success body (DESIGN §4):
// the Item, never its token.
type exchangeResponse struct {
	ItemID          string `json:"item_id"`
	InstitutionID   string `json:"institution_id"`
	InstitutionName string `json:"institution_name"`
	Status          string `json:"status"`
}

// handleExchange stores the Item Link created for the caller: POST
// /api/v1/plaid/items, 201 with the Item. A used or invalid public token
// is 400; a duplicate of one of the caller's Items is 409 duplicate_item
// naming it (the new one is removed at Plaid).
func (s *Server) handleExchange() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := principal(w, r)
		if !ok {
			return
		}
		var body exchangeRequest
		if err := decodeBody(r, &body); err != nil {
			writeError(w, r, err)
			return
		}
		req := lifecycle.ExchangeRequest{UserID: p.UserID, PublicToken: body.PublicToken}
		for _, a := range body.Accounts {
			req.Accounts = append(req.Accounts, lifecycle.LinkedAccount{Mask: a.Mask, Name: a.Name, Subtype: a.Subtype})
		}
		item, err := s.svc.ExchangePublicToken(r.Context(), req)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, exchangeResponse{ItemID: item.ItemID, InstitutionID: item.InstitutionID,
			InstitutionName: item.InstitutionName, Status: string(item.Status)})
	})
}
