package testenv

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// TokenWriter writes plaid_tokens documents directly, as the app's own
// backend does (DESIGN §12: every writer), and records each write as the
// TokenChange Eventarc would deliver for it: the document before and after
// and the write's commit time, under a fresh event id. Each write is a
// transaction that reads the document first, so the record is exact even
// while other writers write other documents.
type TokenWriter struct {
	client *firestore.Client

	mu      sync.Mutex
	changes []lifecycle.TokenChange
}

// NewTokenWriter returns a writer on client's plaid_tokens.
func NewTokenWriter(client *firestore.Client) *TokenWriter {
	return &TokenWriter{client: client}
}

// TokenData is a token's document as the service writes it.
func TokenData(t lifecycle.Token) map[string]any {
	ts := func(v time.Time) any {
		if v.IsZero() {
			return nil
		}
		return v
	}
	doc := map[string]any{
		"user_id": t.UserID, "access_token": t.AccessToken, "item_id": t.ItemID,
		"institution_id": t.InstitutionID, "institution_name": t.InstitutionName, "status": string(t.Status),
		"environment": t.Environment, "created_at": ts(t.CreatedAt), "updated_at": ts(t.UpdatedAt),
		"last_used_at": ts(t.LastUsedAt), "plaid_removed": t.PlaidRemoved,
	}
	if t.ErrorCode != "" {
		doc["error_code"] = t.ErrorCode
	}
	return doc
}

// Set writes the whole document itemID (creating or replacing it).
func (w *TokenWriter) Set(t testing.TB, itemID string, data map[string]any) lifecycle.TokenChange {
	t.Helper()
	return w.write(t, itemID, func(map[string]any) map[string]any { return data })
}

// Update changes top-level fields of an existing document (a nil value
// removes the field).
func (w *TokenWriter) Update(t testing.TB, itemID string, fields map[string]any) lifecycle.TokenChange {
	t.Helper()
	return w.write(t, itemID, func(old map[string]any) map[string]any {
		if old == nil {
			t.Fatalf("updating %s: no such document", itemID)
		}
		out := maps.Clone(old)
		for k, v := range fields {
			if v == nil {
				delete(out, k)
			} else {
				out[k] = v
			}
		}
		return out
	})
}

// Delete removes the document.
func (w *TokenWriter) Delete(t testing.TB, itemID string) lifecycle.TokenChange {
	t.Helper()
	return w.write(t, itemID, func(map[string]any) map[string]any { return nil })
}

// write replaces the document with what next makes of its current data
// (nil: absent), in a transaction, and records the change.
func (w *TokenWriter) write(t testing.TB, itemID string, next func(old map[string]any) map[string]any) lifecycle.TokenChange {
	t.Helper()
	ref := w.client.Collection(lifecycle.TokensCollection).Doc(itemID)
	var old, neu map[string]any
	var commit firestore.CommitResponse
	err := w.client.RunTransaction(context.Background(), func(_ context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(ref)
		switch {
		case err == nil:
			old = snap.Data()
		case status.Code(err) == codes.NotFound:
			old = nil
		default:
			return err
		}
		neu = next(old)
		if neu == nil {
			if old == nil {
				return nil
			}
			return tx.Delete(ref)
		}
		return tx.Set(ref, neu)
	}, firestore.WithCommitResponseTo(&commit))
	if err != nil {
		t.Fatalf("writing %s: %v", itemID, err)
	}
	ch := lifecycle.TokenChange{EventID: uuid.NewString(), At: commit.CommitTime()}
	if old != nil {
		ch.Old, _ = lifecycle.TokenSummaryFromDocument(itemID, old)
	}
	if neu != nil {
		ch.New, _ = lifecycle.TokenSummaryFromDocument(itemID, neu)
	}
	w.mu.Lock()
	w.changes = append(w.changes, ch)
	w.mu.Unlock()
	return ch
}

// Changes returns every write recorded, in the order the writes returned.
func (w *TokenWriter) Changes() []lifecycle.TokenChange {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]lifecycle.TokenChange(nil), w.changes...)
}

// CreatedChanges returns, for tokens already stored (by Seed), the
// changes of their creation as TokenStats would have seen them.
func CreatedChanges(t testing.TB, client *firestore.Client, itemIDs ...string) []lifecycle.TokenChange {
	t.Helper()
	var out []lifecycle.TokenChange
	for _, id := range itemIDs {
		snap, err := client.Collection(lifecycle.TokensCollection).Doc(id).Get(context.Background())
		if err != nil {
			t.Fatalf("reading %s: %v", id, err)
		}
		sum, ok := lifecycle.TokenSummaryFromDocument(id, snap.Data())
		if !ok {
			t.Fatalf("%s is not a token", id)
		}
		out = append(out, lifecycle.TokenChange{EventID: fmt.Sprintf("create-%s", id), At: snap.UpdateTime, New: sum})
	}
	return out
}

// Repairs takes analytics repair requests, counting them, for handler
// tests.
type Repairs struct {
	mu       sync.Mutex
	requests int
}

// RequestAnalyticsRepair counts a request.
func (r *Repairs) RequestAnalyticsRepair(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	return nil
}

// Requests returns how many repairs were requested.
func (r *Repairs) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}
