package lifecycle

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/sethvargo/go-retry"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FirestoreQuotaStore is the QuotaStore over plaid_token_quota: one small
// counter document per endpoint and window, deleted by a TTL policy on
// expire_at an hour after its window.
type FirestoreQuotaStore struct {
	client *firestore.Client
}

var _ QuotaStore = (*FirestoreQuotaStore)(nil)

// NewFirestoreQuotaStore returns the store over client.
func NewFirestoreQuotaStore(client *firestore.Client) *FirestoreQuotaStore {
	return &FirestoreQuotaStore{client: client}
}

// quotaTTL is how long a window's counter is kept after the window.
const quotaTTL = time.Hour

// TakeQuota takes up to n permits of the window in one transaction.
func (s *FirestoreQuotaStore) TakeQuota(ctx context.Context, endpoint string, window int64, n, limit int) (int, error) {
	id := strings.ReplaceAll(strings.Trim(endpoint, "/"), "/", "_") + "-" + strconv.FormatInt(window, 10)
	ref := s.client.Collection(QuotaCollection).Doc(id)
	var took int
	// Every instance counts in the same document: under contention a
	// transaction can abort more often than the client library retries it
	// (its five attempts back to back). Contention passes; back off, with
	// jitter, and try again.
	backoff := retry.WithMaxRetries(6, retry.WithJitterPercent(50, retry.WithCappedDuration(time.Second, retry.NewExponential(20*time.Millisecond))))
	err := retry.Do(ctx, backoff, func(ctx context.Context) error {
		var err error
		took, err = s.takeQuota(ctx, ref, window, n, limit)
		if status.Code(err) == codes.Aborted {
			return retry.RetryableError(err)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("taking quota of %s: %w", endpoint, storeError(err))
	}
	return took, nil
}

// takeQuota is one attempt of TakeQuota.
func (s *FirestoreQuotaStore) takeQuota(ctx context.Context, ref *firestore.DocumentRef, window int64, n, limit int) (int, error) {
	var took int
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		took = 0
		used := 0
		snap, err := tx.Get(ref)
		switch {
		case err == nil:
			if v, ok := snap.Data()["used"].(int64); ok {
				used = int(v)
			}
		case !isNotFound(err):
			return err
		}
		took = max(0, min(n, limit-used))
		if took == 0 {
			return nil
		}
		windowEnd := time.Unix(0, (window+1)*int64(quotaWindow))
		return tx.Set(ref, map[string]any{"used": used + took, "expire_at": windowEnd.Add(quotaTTL)})
	})
	return took, err
}
