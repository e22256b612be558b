package functions

import (
	"net/http"
	"time"
)

// itemJSON is one of the caller's Items as ListItems answers it (DESIGN
// §4). error_code, created_at and last_used_at are null when unset.
type itemJSON struct {
	ItemID          string     `json:"item_id"`
	InstitutionID   string     `json:"institution_id"`
	InstitutionName string     `json:"institution_name"`
	Status          string     `json:"status"`
	ErrorCode       *string    `json:"error_code"`
	NeedsRepair     bool       `json:"needs_repair"`
	CreatedAt       *time.Time `json:"created_at"`
	LastUsedAt      *time.Time `json:"last_used_at"`
}

// listItemsResponse is ListItems' success body.
type listItemsResponse struct {
	Items []itemJSON `json:"items"`
}

// handleListItems lists the caller's Items: GET /api/v1/plaid/items.
func (s *Server) handleListItems() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := principal(w, r)
		if !ok {
			return
		}
		items, err := s.svc.ListItems(r.Context(), p.UserID)
		if err != nil {
			writeError(w, r, err)
			return
		}
		out := listItemsResponse{Items: make([]itemJSON, len(items))}
		for i, it := range items {
			out.Items[i] = itemJSON{
				ItemID: it.ItemID, InstitutionID: it.InstitutionID, InstitutionName: it.InstitutionName,
				Status: string(it.Status), ErrorCode: nullString(it.ErrorCode), NeedsRepair: it.NeedsRepair,
				CreatedAt: nullTime(it.CreatedAt), LastUsedAt: nullTime(it.LastUsedAt),
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// nullString is s, or JSON null when empty.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// nullTime is t in UTC, or JSON null when zero.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
