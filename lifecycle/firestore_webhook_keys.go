package lifecycle

import (
	"context"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
)

// FirestoreWebhookKeyStore is the WebhookKeyStore over
// plaid_token_webhook_keys: one document per kid, holding the public key
// Plaid returned (never anything secret) and when it did.
type FirestoreWebhookKeyStore struct {
	keys *firestore.CollectionRef
}

var _ WebhookKeyStore = (*FirestoreWebhookKeyStore)(nil)

// NewFirestoreWebhookKeyStore returns the store over client.
func NewFirestoreWebhookKeyStore(client *firestore.Client) *FirestoreWebhookKeyStore {
	return &FirestoreWebhookKeyStore{keys: client.Collection(webhookKeysCollection)}
}

type webhookKeyDoc struct {
	Alg       string    `firestore:"alg"`
	Crv       string    `firestore:"crv"`
	KeyID     string    `firestore:"kid"`
	Kty       string    `firestore:"kty"`
	Use       string    `firestore:"use"`
	X         string    `firestore:"x"`
	Y         string    `firestore:"y"`
	CreatedAt int64     `firestore:"created_at"`
	ExpiredAt int64     `firestore:"expired_at"`
	FetchedAt time.Time `firestore:"fetched_at"`
}

// maxStoredWebhookKeys bounds one read of the store: Plaid has signed with
// a handful of keys in its history.
const maxStoredWebhookKeys = 100

// WebhookKeys reads the stored keys, the most recently vouched for first.
func (s *FirestoreWebhookKeyStore) WebhookKeys(ctx context.Context) ([]StoredWebhookKey, error) {
	snaps, err := s.keys.OrderBy("fetched_at", firestore.Desc).Limit(maxStoredWebhookKeys).Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("reading webhook keys: %w", storeError(err))
	}
	out := make([]StoredWebhookKey, 0, len(snaps))
	for _, snap := range snaps {
		var d webhookKeyDoc
		if err := snap.DataTo(&d); err != nil || snap.Ref.ID != eventDocID("kid", d.KeyID) {
			continue // not a document SaveWebhookKey wrote
		}
		out = append(out, StoredWebhookKey{FetchedAt: d.FetchedAt, Key: &WebhookKey{Alg: d.Alg, Crv: d.Crv, KeyID: d.KeyID,
			Kty: d.Kty, Use: d.Use, X: d.X, Y: d.Y, CreatedAt: d.CreatedAt, ExpiredAt: d.ExpiredAt}})
	}
	return out, nil
}

// SaveWebhookKey stores key as Plaid returned it at fetchedAt.
func (s *FirestoreWebhookKeyStore) SaveWebhookKey(ctx context.Context, key *WebhookKey, fetchedAt time.Time) error {
	d := webhookKeyDoc{Alg: key.Alg, Crv: key.Crv, KeyID: key.KeyID, Kty: key.Kty, Use: key.Use, X: key.X, Y: key.Y,
		CreatedAt: key.CreatedAt, ExpiredAt: key.ExpiredAt, FetchedAt: fetchedAt}
	if _, err := s.keys.Doc(eventDocID("kid", key.KeyID)).Set(ctx, d); err != nil {
		return fmt.Errorf("saving webhook key %s: %w", key.KeyID, storeError(err))
	}
	return nil
}
