package lifecycle

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FirestoreQuotaStore is the QuotaStore over plaid_token_quota: one small
// document per slot taken, id "<endpoint>-<window>-<slot>" (e.g.
// item_remove-882000000-7), created once by the process that takes it and
// never written again, deleted by a TTL policy on expire_at an hour after
// its window.
type FirestoreQuotaStore struct {
	client *firestore.Client
}

var _ QuotaStore = (*FirestoreQuotaStore)(nil)

// NewFirestoreQuotaStore returns the store over client.
func NewFirestoreQuotaStore(client *firestore.Client) *FirestoreQuotaStore {
	return &FirestoreQuotaStore{client: client}
}

// quotaTTL is how long a window's slots are kept after the window.
const quotaTTL = time.Hour

// quotaSlotPrefix is the id prefix of endpoint's slots in window.
func quotaSlotPrefix(endpoint string, window int64) string {
	return strings.ReplaceAll(strings.Trim(endpoint, "/"), "/", "_") + "-" + strconv.FormatInt(window, 10) + "-"
}

// quotaSlotDoc is a slot's document.
type quotaSlotDoc struct {
	Endpoint string    `firestore:"endpoint"`
	Window   int64     `firestore:"window"`
	Slot     int       `firestore:"slot"`
	Permits  int       `firestore:"permits"`
	Users    bool      `firestore:"users"`
	ExpireAt time.Time `firestore:"expire_at"`
}

// TakeQuotaSlot creates the slot's document: the create is the claim, and
// Firestore refuses a second one (AlreadyExists), so no transaction and no
// contention. A create retried by the client library after a lost answer
// finds its own document and reports the slot as another's: its permits are
// lost for the window, never counted twice.
func (s *FirestoreQuotaStore) TakeQuotaSlot(ctx context.Context, endpoint string, window int64, slot QuotaSlot) (bool, error) {
	id := quotaSlotPrefix(endpoint, window) + strconv.Itoa(slot.Index)
	windowEnd := time.Unix(0, (window+1)*int64(quotaWindow))
	_, err := s.client.Collection(quotaCollection).Doc(id).Create(ctx, quotaSlotDoc{
		Endpoint: endpoint, Window: window, Slot: slot.Index, Permits: slot.Permits, Users: slot.Users,
		ExpireAt: windowEnd.Add(quotaTTL),
	})
	switch {
	case err == nil:
		return true, nil
	case status.Code(err) == codes.AlreadyExists:
		return false, nil
	default:
		return false, fmt.Errorf("taking quota slot %s: %w", id, storeError(err))
	}
}

// inWindow restricts q to the window's slot documents, by id range: ids
// sort as strings, and every id of the window lies in [prefix, prefix+"~"),
// "~" sorting after the digits. No index is needed beyond the document
// id's (and the single-field one of a field compared for equality).
func (s *FirestoreQuotaStore) inWindow(q firestore.Query, endpoint string, window int64) firestore.Query {
	prefix := quotaSlotPrefix(endpoint, window)
	col := s.client.Collection(quotaCollection)
	return q.OrderBy(firestore.DocumentID, firestore.Asc).StartAt(col.Doc(prefix)).EndBefore(col.Doc(prefix + "~"))
}

// TakenQuotaSlots lists the window's slot documents: one read per slot
// taken.
func (s *FirestoreQuotaStore) TakenQuotaSlots(ctx context.Context, endpoint string, window int64) ([]QuotaSlot, error) {
	prefix := quotaSlotPrefix(endpoint, window)
	docs, err := s.inWindow(s.client.Collection(quotaCollection).Query, endpoint, window).Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("reading quota slots %s*: %w", prefix, storeError(err))
	}
	slots := make([]QuotaSlot, 0, len(docs))
	for _, d := range docs {
		var doc quotaSlotDoc
		if err := d.DataTo(&doc); err != nil {
			return nil, fmt.Errorf("reading quota slot %s: %w", d.Ref.ID, err)
		}
		slots = append(slots, QuotaSlot{Index: doc.Slot, Permits: doc.Permits, Users: doc.Users})
	}
	return slots, nil
}

// UsersTookQuota looks for one users' slot of the window: one read,
// whatever batch work took.
func (s *FirestoreQuotaStore) UsersTookQuota(ctx context.Context, endpoint string, window int64) (bool, error) {
	q := s.inWindow(s.client.Collection(quotaCollection).Where("users", "==", true), endpoint, window)
	docs, err := q.Limit(1).Select().Documents(ctx).GetAll()
	if err != nil {
		return false, fmt.Errorf("reading quota slots %s*: %w", quotaSlotPrefix(endpoint, window), storeError(err))
	}
	return len(docs) > 0, nil
}
