package lifecycle

import (
	"context"
	"time"
)

// TokenStore is what the lifecycle operations need from the token
// collection. FirestoreStore implements it.
type TokenStore interface {
	// Get returns the token with itemID, or an error wrapping ErrNotFound.
	Get(ctx context.Context, itemID string) (*Token, error)
	// Create stores a new token document; ErrChanged if it already exists.
	Create(ctx context.Context, t *Token) error
	// ListByUser returns every token of userID.
	ListByUser(ctx context.Context, userID string) ([]*Token, error)
	// Page returns up to limit tokens ordered by item id, starting after
	// the item id `after` ("" for the first page). A page shorter than limit
	// is the last one.
	Page(ctx context.Context, after string, limit int) ([]*Token, error)
	// Update applies p to the token. When ifVersion is non-zero the write
	// only happens if the document's update time still equals it, else the
	// error wraps ErrChanged. It returns the document's new version.
	Update(ctx context.Context, itemID string, p Patch, ifVersion time.Time) (time.Time, error)
	// Delete removes the token document, only if its update time still
	// equals ifVersion (required: a delete is never unconditional), else the
	// error wraps ErrChanged.
	Delete(ctx context.Context, itemID string, ifVersion time.Time) error
}
