package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// revokeFloor is RevokeItem's floor: it verifies the HS256 JWT, reads the
// document, checks the owner, decrypts, calls /item/remove, then writes
// one batch that marks the token revoked and creates its audit entry. No
// quota (its Plaid client paces at the rate it is given), no priority, no
// bounded wait for Plaid, no retry of a write, no log: the work alone.
type revokeFloor struct{ floorDeps }

func newRevokeFloor(ctx context.Context, cfg lifecycle.Config) (floorHandler, error) {
	deps, err := newFloorDeps(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &revokeFloor{deps}, nil
}

func (f *revokeFloor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	itemID, ok := strings.CutPrefix(r.URL.Path, "/api/v1/plaid/items/")
	if r.Method != http.MethodDelete || !ok || itemID == "" {
		http.NotFound(w, r)
		return
	}
	subject, ok := verifiedSubject(w, r, f.secret)
	if !ok {
		return
	}
	ref := f.client.Collection(lifecycle.TokensCollection).Doc(itemID)
	snap, err := ref.Get(ctx)
	if status.Code(err) == codes.NotFound {
		http.NotFound(w, r)
		return
	}
	var tok lifecycle.Token
	if err == nil {
		err = snap.DataTo(&tok)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if tok.UserID != subject {
		http.NotFound(w, r)
		return
	}
	access, err := f.cipher.Decrypt(itemID, tok.AccessToken)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	removed := f.plaid.RemoveItem(ctx, access) == nil
	now := time.Now()
	//lint:ignore SA1019 one atomic commit without reads, as the service's audited deletes.
	batch := f.client.Batch()
	batch.Update(ref, []firestore.Update{
		{Path: "status", Value: string(lifecycle.StatusRevoked)},
		{Path: "plaid_removed", Value: removed},
		{Path: "updated_at", Value: now},
	})
	batch.Create(f.client.Collection(lifecycle.AuditCollection).NewDoc(), lifecycle.AuditEntry{ItemID: itemID, UserID: tok.UserID,
		Reason: lifecycle.ReasonUserRevoked, Actor: subject, At: now, PlaidRemoved: removed})
	if _, err := batch.Commit(ctx); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"message": "Item revoked successfully", "item_id": itemID})
}
