package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FirestoreStore is the TokenStore over the plaid_tokens collection.
type FirestoreStore struct {
	client *firestore.Client
	tokens *firestore.CollectionRef
}

var _ TokenStore = (*FirestoreStore)(nil)

// NewFirestoreClient opens a Firestore client for cfg's project and
// database. The client library honours FIRESTORE_EMULATOR_HOST.
func NewFirestoreClient(ctx context.Context, cfg Config) (*firestore.Client, error) {
	if cfg.Project == "" {
		return nil, errors.New("GOOGLE_CLOUD_PROJECT is required: the Firestore project id")
	}
	db := cfg.FirestoreDatabase
	if db == "" {
		db = DefaultFirestoreDatabase
	}
	client, err := firestore.NewClientWithDatabase(ctx, cfg.Project, db)
	if err != nil {
		return nil, fmt.Errorf("opening Firestore %s/%s: %w", cfg.Project, db, err)
	}
	return client, nil
}

// NewFirestoreStore returns a store over client's plaid_tokens collection.
func NewFirestoreStore(client *firestore.Client) *FirestoreStore {
	return &FirestoreStore{client: client, tokens: client.Collection(TokensCollection)}
}

// Client returns the underlying Firestore client, for the records kept
// beside the tokens (runs, audit, leases).
func (s *FirestoreStore) Client() *firestore.Client { return s.client }

// Get returns the token with itemID.
func (s *FirestoreStore) Get(ctx context.Context, itemID string) (*Token, error) {
	if itemID == "" {
		return nil, fmt.Errorf("getting token: %w", ErrNotFound)
	}
	snap, err := s.tokens.Doc(itemID).Get(ctx)
	if err != nil {
		return nil, fmt.Errorf("getting token %s: %w", itemID, storeError(err))
	}
	return decodeToken(snap)
}

// Create stores a new token document. It fails with ErrChanged if a
// document with the same item id exists.
func (s *FirestoreStore) Create(ctx context.Context, t *Token) error {
	if t.ItemID == "" {
		return Errorf(CodeInvalid, "token has no item_id")
	}
	res, err := s.tokens.Doc(t.ItemID).Create(ctx, encodeToken(t))
	if err != nil {
		return fmt.Errorf("creating token %s: %w", t.ItemID, storeError(err))
	}
	t.Version = res.UpdateTime
	return nil
}

// ListByUser returns every token of userID (uses the automatic single-field
// index on user_id).
func (s *FirestoreStore) ListByUser(ctx context.Context, userID string) ([]*Token, error) {
	iter := s.tokens.Where("user_id", "==", userID).Documents(ctx)
	defer iter.Stop()
	var out []*Token
	for {
		snap, err := iter.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing tokens of user %s: %w", userID, storeError(err))
		}
		t, err := decodeToken(snap)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
}

// Page returns up to limit tokens in item id order after the cursor.
func (s *FirestoreStore) Page(ctx context.Context, after string, limit int) ([]*Token, error) {
	q := s.tokens.OrderBy(firestore.DocumentID, firestore.Asc).Limit(limit)
	if after != "" {
		q = q.StartAfter(after)
	}
	snaps, err := q.Documents(ctx).GetAll()
	if err != nil {
		return nil, fmt.Errorf("reading tokens after %q: %w", after, storeError(err))
	}
	out := make([]*Token, 0, len(snaps))
	for _, snap := range snaps {
		t, err := decodeToken(snap)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// Update applies p to the token, conditionally on ifVersion when set.
func (s *FirestoreStore) Update(ctx context.Context, itemID string, p Patch, ifVersion time.Time) (time.Time, error) {
	updates := patchUpdates(p)
	if len(updates) == 0 {
		return ifVersion, nil
	}
	res, err := s.tokens.Doc(itemID).Update(ctx, updates, precondition(ifVersion)...)
	if err != nil {
		return time.Time{}, fmt.Errorf("updating token %s: %w", itemID, storeError(err))
	}
	return res.UpdateTime, nil
}

// Delete removes the token document if it has not changed since ifVersion.
func (s *FirestoreStore) Delete(ctx context.Context, itemID string, ifVersion time.Time) error {
	if ifVersion.IsZero() {
		return Errorf(CodeInvalid, "deleting token %s: refusing an unconditional delete", itemID)
	}
	if _, err := s.tokens.Doc(itemID).Delete(ctx, firestore.LastUpdateTime(ifVersion)); err != nil {
		return fmt.Errorf("deleting token %s: %w", itemID, storeError(err))
	}
	return nil
}

// Write is one write of a batch: a conditional delete, or a patch.
type Write struct {
	ItemID    string
	Delete    bool
	Patch     Patch
	IfVersion time.Time // required for deletes
}

// Apply performs writes through a BulkWriter (parallel, batched, retried by
// the client library) and returns one error per write, nil for success.
// Each item id may appear once per call.
func (s *FirestoreStore) Apply(ctx context.Context, writes []Write) []error {
	errs := make([]error, len(writes))
	if len(writes) == 0 {
		return errs
	}
	bw := s.client.BulkWriter(ctx)
	jobs := make([]*firestore.BulkWriterJob, len(writes))
	for i, w := range writes {
		doc := s.tokens.Doc(w.ItemID)
		var err error
		switch {
		case w.Delete && w.IfVersion.IsZero():
			err = Errorf(CodeInvalid, "deleting token %s: refusing an unconditional delete", w.ItemID)
		case w.Delete:
			jobs[i], err = bw.Delete(doc, firestore.LastUpdateTime(w.IfVersion))
		default:
			jobs[i], err = bw.Update(doc, patchUpdates(w.Patch), precondition(w.IfVersion)...)
		}
		if err != nil {
			errs[i] = fmt.Errorf("queueing write to token %s: %w", w.ItemID, storeError(err))
		}
	}
	bw.End()
	for i, job := range jobs {
		if job == nil {
			continue
		}
		if _, err := job.Results(); err != nil {
			errs[i] = fmt.Errorf("writing token %s: %w", writes[i].ItemID, storeError(err))
		}
	}
	return errs
}

func precondition(ifVersion time.Time) []firestore.Precondition {
	if ifVersion.IsZero() {
		return nil // Update already requires the document to exist.
	}
	return []firestore.Precondition{firestore.LastUpdateTime(ifVersion)}
}

func patchUpdates(p Patch) []firestore.Update {
	var u []firestore.Update
	if p.Status != nil {
		u = append(u, firestore.Update{Path: "status", Value: string(*p.Status)})
	}
	if p.ClearErrorCode {
		u = append(u, firestore.Update{Path: "error_code", Value: firestore.Delete})
	} else if p.ErrorCode != nil {
		u = append(u, firestore.Update{Path: "error_code", Value: *p.ErrorCode})
	}
	if p.PlaidRemoved != nil {
		u = append(u, firestore.Update{Path: "plaid_removed", Value: *p.PlaidRemoved})
	}
	if p.LastUsedAt != nil {
		u = append(u, firestore.Update{Path: "last_used_at", Value: *p.LastUsedAt})
	}
	if p.LastValidatedAt != nil {
		u = append(u, firestore.Update{Path: "last_validated_at", Value: *p.LastValidatedAt})
	}
	if p.UpdatedAt != nil {
		u = append(u, firestore.Update{Path: "updated_at", Value: *p.UpdatedAt})
	}
	if p.AccessToken != nil {
		u = append(u, firestore.Update{Path: "access_token", Value: *p.AccessToken})
	}
	return u
}

// encodeToken is the document written when a token is created: the fields
// of DESIGN §5, with unset timestamps stored as null rather than year 1.
func encodeToken(t *Token) map[string]any {
	ts := func(v time.Time) any {
		if v.IsZero() {
			return nil
		}
		return v
	}
	doc := map[string]any{
		"user_id":           t.UserID,
		"access_token":      t.AccessToken,
		"item_id":           t.ItemID,
		"institution_id":    t.InstitutionID,
		"institution_name":  t.InstitutionName,
		"status":            string(t.Status),
		"environment":       t.Environment,
		"created_at":        ts(t.CreatedAt),
		"updated_at":        ts(t.UpdatedAt),
		"last_used_at":      ts(t.LastUsedAt),
		"last_validated_at": ts(t.LastValidatedAt),
		"plaid_removed":     t.PlaidRemoved,
		"metadata": map[string]any{
			"name":          t.Metadata.Name,
			"url":           t.Metadata.URL,
			"primary_color": t.Metadata.PrimaryColor,
			"logo":          t.Metadata.Logo,
		},
	}
	if t.ErrorCode != "" {
		doc["error_code"] = t.ErrorCode
	}
	return doc
}

func decodeToken(snap *firestore.DocumentSnapshot) (*Token, error) {
	var t Token
	if err := snap.DataTo(&t); err != nil {
		return nil, fmt.Errorf("decoding token document %s: %w", snap.Ref.ID, err)
	}
	if t.ItemID == "" {
		t.ItemID = snap.Ref.ID
	}
	t.Version = snap.UpdateTime
	return &t, nil
}

// storeError maps a Firestore error onto the service's error codes.
func storeError(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	switch status.Code(err) {
	case codes.NotFound:
		return errors.Join(ErrNotFound, err)
	case codes.FailedPrecondition, codes.AlreadyExists, codes.Aborted:
		return errors.Join(ErrChanged, err)
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return WrapError(CodeUnavailable, err, "Firestore is unavailable")
	case codes.Canceled:
		return err
	}
	return err
}
