package lifecycle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/sethvargo/go-retry"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FirestoreTokenStore is the TokenStore over the plaid_tokens collection.
type FirestoreTokenStore struct {
	client *firestore.Client
	tokens *firestore.CollectionRef
	reads  batchedReads
}

var _ TokenStore = (*FirestoreTokenStore)(nil)

// NewFirestoreTokenStore returns a store over client's plaid_tokens
// collection.
func NewFirestoreTokenStore(client *firestore.Client) *FirestoreTokenStore {
	return &FirestoreTokenStore{client: client, tokens: client.Collection(TokensCollection)}
}

// Get returns the token with itemID.
func (s *FirestoreTokenStore) Get(ctx context.Context, itemID string) (*Token, error) {
	if !ValidItemID(itemID) {
		return nil, fmt.Errorf("getting token: %w", ErrNotFound)
	}
	snap, err := s.reads.get(ctx, s.client, s.tokens.Doc(itemID))
	if err != nil {
		return nil, fmt.Errorf("getting token %s: %w", itemID, storeError(err))
	}
	if !snap.Exists() {
		return nil, fmt.Errorf("getting token %s: %w", itemID, ErrNotFound)
	}
	t, ok := tokenFromSnapshot(snap)
	if !ok {
		// The old service's per-user document: not a token (DESIGN §5).
		return nil, fmt.Errorf("getting token %s: not a token document: %w", itemID, ErrNotFound)
	}
	return t, nil
}

// Create stores a new token document. It fails with ErrChanged if a
// document with the same item id exists.
func (s *FirestoreTokenStore) Create(ctx context.Context, t *Token) error {
	if !ValidItemID(t.ItemID) {
		return Errorf(CodeInvalid, "token has no valid item_id")
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
func (s *FirestoreTokenStore) ListByUser(ctx context.Context, userID string) ([]*Token, error) {
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
		if t, ok := tokenFromSnapshot(snap); ok {
			out = append(out, t)
		}
	}
}

// Page returns the tokens among the next limit documents in item id order.
// Snapshots are decoded as they stream in and dropped, so a large page holds
// its tokens only.
func (s *FirestoreTokenStore) Page(ctx context.Context, after string, limit int) ([]*Token, string, error) {
	q := s.tokens.OrderBy(firestore.DocumentID, firestore.Asc).Limit(limit)
	if after != "" {
		q = q.StartAfter(after)
	}
	iter := q.Documents(ctx)
	defer iter.Stop()
	out := make([]*Token, 0, min(limit, 1024))
	read, last := 0, ""
	for {
		snap, err := iter.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, "", fmt.Errorf("reading tokens after %q: %w", after, storeError(err))
		}
		read, last = read+1, snap.Ref.ID
		if t, ok := tokenFromSnapshot(snap); ok {
			out = append(out, t)
		}
	}
	next := ""
	if read == limit {
		next = last
	}
	return out, next, nil
}

// Mutate reads the document and writes what decide says, in one
// transaction.
func (s *FirestoreTokenStore) Mutate(ctx context.Context, itemID string, decide func(existing *Token) (Mutation, error)) (*Token, error) {
	if !ValidItemID(itemID) {
		return nil, fmt.Errorf("writing token: %w", ErrNotFound)
	}
	ref := s.tokens.Doc(itemID)
	var out *Token
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		var existing *Token
		snap, err := tx.Get(ref)
		switch {
		case isNotFound(err):
		case err != nil:
			return err
		default:
			t, ok := tokenFromSnapshot(snap)
			if !ok {
				return Errorf(CodeConflict, "document %s is not a token", itemID)
			}
			existing = t
		}
		m, err := decide(existing)
		switch {
		case err != nil:
			return err
		case m.Create != nil:
			out = m.Create
			return tx.Create(ref, encodeToken(m.Create))
		case m.Patch != nil:
			m.Patch.applyTo(existing)
			out = existing
			return tx.Update(ref, patchUpdates(*m.Patch))
		default:
			out = existing
			return nil
		}
	})
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, err // decide's own verdict
		}
		return nil, fmt.Errorf("writing token %s: %w", itemID, storeError(err))
	}
	out.Version = time.Time{}
	return out, nil
}

// Update applies p to the token, conditionally on ifVersion when set.
func (s *FirestoreTokenStore) Update(ctx context.Context, itemID string, p Patch, ifVersion time.Time) (time.Time, error) {
	if !ValidItemID(itemID) {
		return time.Time{}, fmt.Errorf("updating token: %w", ErrNotFound)
	}
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
func (s *FirestoreTokenStore) Delete(ctx context.Context, itemID string, ifVersion time.Time) error {
	if ifVersion.IsZero() {
		return Errorf(CodeInvalid, "deleting token %s: refusing an unconditional delete", itemID)
	}
	if !ValidItemID(itemID) {
		return fmt.Errorf("deleting token: %w", ErrNotFound)
	}
	if _, err := s.tokens.Doc(itemID).Delete(ctx, firestore.LastUpdateTime(ifVersion)); err != nil {
		return fmt.Errorf("deleting token %s: %w", itemID, storeError(err))
	}
	return nil
}

// Apply performs writes: patches and plain deletes through a BulkWriter
// (parallel, batched, retried by the client library), and writes with an
// audit entry in atomic commits alongside, each write with its entry (a
// BulkWriter batch is not atomic): a hundred to a commit, and alone when
// their commit is refused (writeAuditedGroup).
func (s *FirestoreTokenStore) Apply(ctx context.Context, writes []Write) []error {
	errs := make([]error, len(writes))
	var (
		bw      *firestore.BulkWriter
		jobs    = make([]*firestore.BulkWriterJob, len(writes))
		audited []int // deletes with an audit entry, by index in writes
	)
	for i, w := range writes {
		doc := s.tokens.Doc(w.ItemID)
		var err error
		switch {
		case !ValidItemID(w.ItemID):
			err = ErrNotFound
		case w.Delete && w.IfVersion.IsZero():
			err = Errorf(CodeInvalid, "deleting token %s: refusing an unconditional delete", w.ItemID)
		case w.Audit != nil && w.IfVersion.IsZero():
			err = Errorf(CodeInvalid, "writing token %s: an audited write needs the version it was decided on", w.ItemID)
		case w.Audit != nil:
			audited = append(audited, i)
			continue
		default:
			if bw == nil {
				bw = s.client.BulkWriter(ctx)
			}
			if w.Delete {
				jobs[i], err = bw.Delete(doc, firestore.LastUpdateTime(w.IfVersion))
			} else {
				jobs[i], err = bw.Update(doc, patchUpdates(w.Patch), precondition(w.IfVersion)...)
			}
		}
		if err != nil {
			errs[i] = fmt.Errorf("queueing write to token %s: %w", w.ItemID, storeError(err))
		}
	}
	var groups sync.WaitGroup
	for start := 0; start < len(audited); start += auditedWritesPerCommit {
		group := audited[start:min(start+auditedWritesPerCommit, len(audited))]
		groups.Go(func() { s.writeAuditedGroup(ctx, writes, group, errs) })
	}
	if bw != nil {
		bw.End()
	}
	for i, job := range jobs {
		if job == nil {
			continue
		}
		if _, err := job.Results(); err != nil {
			errs[i] = fmt.Errorf("writing token %s: %w", writes[i].ItemID, storeError(err))
		}
	}
	groups.Wait()
	return errs
}

const (
	// auditedWritesPerCommit is how many writes, each with its audit
	// entry, one atomic commit carries (two writes each; a commit takes
	// 500). One commit a token made the cleanup 1.7x its floor at 100,000
	// tokens on the emulator: 25,000 commits where the floor sends 1,250
	// batches of deletes.
	auditedWritesPerCommit = 100
	// maxAuditedWrites bounds the commits of single writes with their
	// audit entries in flight for one group that could not land whole.
	maxAuditedWrites = 32
)

// writeAuditedGroup makes the writes at indices group, each with its audit
// entry, in one atomic commit, and sets their errs. Usually they all land
// together. One refused precondition (a token the app used meanwhile)
// refuses the whole commit, and a failed commit may have landed with its
// answer lost: then each goes again alone (writeAudited), which tells
// which landed, which changed, and which to retry.
func (s *FirestoreTokenStore) writeAuditedGroup(ctx context.Context, writes []Write, group []int, errs []error) {
	ws := make([]Write, 0, len(group))
	for _, i := range group {
		if writes[i].Audit.RunID == "" && writes[i].Audit.Reason == "" {
			ws = nil // writeAudited says why
			break
		}
		ws = append(ws, writes[i])
	}
	if len(ws) > 1 && s.commitAudited(ctx, ws) == nil {
		return
	}
	slots := make(chan struct{}, maxAuditedWrites)
	var alone sync.WaitGroup
	for _, i := range group {
		alone.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			errs[i] = s.writeAudited(ctx, writes[i])
		})
	}
	alone.Wait()
}

// commitAudited commits ws, each conditional on its version and with its
// audit entry, in one atomic Commit. A WriteBatch is that, in one round
// trip; the Transaction its deprecation points to would add a
// BeginTransaction (and a Rollback when refused) for reads this commit
// does not make.
func (s *FirestoreTokenStore) commitAudited(ctx context.Context, ws []Write) error {
	//lint:ignore SA1019 see above: an atomic commit without reads.
	batch := s.client.Batch()
	for _, w := range ws {
		doc := s.tokens.Doc(w.ItemID)
		if w.Delete {
			batch.Delete(doc, firestore.LastUpdateTime(w.IfVersion))
		} else {
			batch.Update(doc, patchUpdates(w.Patch), firestore.LastUpdateTime(w.IfVersion))
		}
		batch.Create(s.auditEntryRef(w), w.Audit)
	}
	_, err := batch.Commit(ctx)
	return err
}

// auditEntryRef is where w's audit entry goes: its id is the run's (or,
// outside a run, the reason's), the item's and the version's, the same for
// every attempt of that write.
func (s *FirestoreTokenStore) auditEntryRef(w Write) *firestore.DocumentRef {
	return s.client.Collection(AuditCollection).Doc(fmt.Sprintf("%s_%s_%d", cmp.Or(w.Audit.RunID, w.Audit.Reason), w.ItemID, w.IfVersion.UnixNano()))
}

// writeAudited makes w, if the token is unchanged since w.IfVersion, and
// creates its audit entry, in one commit. The entry's id is the run's (or
// the reason's), the item's and the version's, so an attempt that landed
// with its answer lost (Firestore went away, the deadline passed) is
// recognised: the retry is refused by its own precondition, finds the
// entry, and reports success. A refusal without that entry is ErrChanged
// or ErrNotFound, as for any conditional write.
func (s *FirestoreTokenStore) writeAudited(ctx context.Context, w Write) error {
	if w.Audit.RunID == "" && w.Audit.Reason == "" {
		return Errorf(CodeInvalid, "writing token %s: an audit entry needs its run's id or its reason", w.ItemID)
	}
	entry := s.auditEntryRef(w)
	backoff := retry.WithMaxRetries(5, retry.WithCappedDuration(5*time.Second, retry.NewExponential(250*time.Millisecond)))
	err := retry.Do(ctx, backoff, func(ctx context.Context) error {
		err := s.commitAudited(ctx, []Write{w})
		switch status.Code(err) {
		case codes.OK:
			return nil
		case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.Internal, codes.ResourceExhausted:
			return retry.RetryableError(err)
		case codes.NotFound, codes.FailedPrecondition, codes.AlreadyExists:
			// Refused: did an earlier attempt (this call's, or a killed
			// invocation's of the same run) land?
			snap, gerr := entry.Get(ctx)
			switch {
			case gerr == nil && snap.Exists():
				return nil
			case gerr != nil && status.Code(gerr) != codes.NotFound:
				return retry.RetryableError(gerr)
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("writing token %s with its audit entry: %w", w.ItemID, storeError(err))
	}
	return nil
}

// Summaries streams every token projected to the summary fields, so the
// recount reads a fraction of each document and holds one at a time.
func (s *FirestoreTokenStore) Summaries(ctx context.Context, visit func(*TokenSummary) error) error {
	iter := s.tokens.Select(summaryFields...).Documents(ctx)
	defer iter.Stop()
	for {
		snap, err := iter.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return queryError("reading token summaries", err)
		}
		if sum, ok := summaryFromData(snap.Ref.ID, snap.Data()); ok {
			if err := visit(sum); err != nil {
				return err
			}
		}
	}
}

// Reads of single documents that arrive together (a cleanup's re-reads
// before stale removals, a burst of revocations) are sent as one
// BatchGetDocuments: the same documents read, a fraction of the round trips
// (on the emulator, a twelfth of the CPU per document: 50 documents in 8 ms
// against 2 ms for one). A read is never joined to a batch already sent, so
// it still reads the document as it is after the call: the re-read before
// an irreversible call keeps its meaning. While fewer than
// maxReadBatchesInFlight batches are out, a read goes at once, alone; the
// others wait for the next free batch.
const (
	maxReadBatch           = 100
	maxReadBatchesInFlight = 4
	// readBatchTimeout bounds one batch, which runs detached from the
	// callers (each caller stops waiting when its own context ends).
	readBatchTimeout = 30 * time.Second
)

// batchedReads coalesces concurrent single-document reads. The zero value
// is ready to use.
type batchedReads struct {
	mu       sync.Mutex
	queue    []*readRequest
	inFlight int
}

type readRequest struct {
	ref  *firestore.DocumentRef
	ctx  context.Context // the first caller's, for its values (trace, logger); not its cancellation
	done chan readResult // buffered: the batch never blocks on a caller that gave up
}

type readResult struct {
	snap *firestore.DocumentSnapshot
	err  error
}

// get reads ref, possibly in one batch with other reads; a missing
// document is a snapshot that does not exist, not an error.
func (b *batchedReads) get(ctx context.Context, client *firestore.Client, ref *firestore.DocumentRef) (*firestore.DocumentSnapshot, error) {
	r := &readRequest{ref: ref, ctx: ctx, done: make(chan readResult, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, r)
	var batch []*readRequest
	if b.inFlight < maxReadBatchesInFlight {
		batch = b.takeLocked()
	}
	b.mu.Unlock()
	if batch != nil {
		go b.send(client, batch)
	}
	select {
	case res := <-r.done:
		return res.snap, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// takeLocked takes the next batch off the queue and counts it in flight.
func (b *batchedReads) takeLocked() []*readRequest {
	n := min(len(b.queue), maxReadBatch)
	batch := make([]*readRequest, n)
	copy(batch, b.queue)
	b.queue = b.queue[n:]
	if len(b.queue) == 0 {
		b.queue = nil
	}
	b.inFlight++
	return batch
}

// send reads batch, then the batches queued meanwhile, until none is left.
func (b *batchedReads) send(client *firestore.Client, batch []*readRequest) {
	for batch != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), readBatchTimeout)
		refs := make([]*firestore.DocumentRef, len(batch))
		for i, r := range batch {
			refs[i] = r.ref
		}
		snaps, err := client.GetAll(ctx, refs)
		cancel()
		for i, r := range batch {
			if err != nil {
				r.done <- readResult{err: err}
			} else {
				r.done <- readResult{snap: snaps[i]}
			}
		}
		b.mu.Lock()
		b.inFlight--
		batch = nil
		if len(b.queue) > 0 {
			batch = b.takeLocked()
		}
		b.mu.Unlock()
	}
}

func tokenFromSnapshot(snap *firestore.DocumentSnapshot) (*Token, bool) {
	t, ok := tokenFromData(snap.Ref.ID, snap.Data())
	if ok {
		t.Version = snap.UpdateTime
	}
	return t, ok
}

func precondition(ifVersion time.Time) []firestore.Precondition {
	if ifVersion.IsZero() {
		return nil // Update already requires the document to exist.
	}
	return []firestore.Precondition{firestore.LastUpdateTime(ifVersion)}
}

func patchUpdates(p Patch) []firestore.Update {
	var u []firestore.Update
	set := func(path string, v any) { u = append(u, firestore.Update{Path: path, Value: v}) }
	if p.Status != nil {
		set("status", string(*p.Status))
	}
	if p.ClearErrorCode {
		set("error_code", firestore.Delete)
	} else if p.ErrorCode != nil {
		set("error_code", *p.ErrorCode)
	}
	if p.PlaidRemoved != nil {
		set("plaid_removed", *p.PlaidRemoved)
	}
	if p.LastUsedAt != nil {
		set("last_used_at", *p.LastUsedAt)
	}
	if p.LastValidatedAt != nil {
		set("last_validated_at", *p.LastValidatedAt)
	}
	if p.UpdatedAt != nil {
		set("updated_at", *p.UpdatedAt)
	}
	if p.AccessToken != nil {
		set("access_token", *p.AccessToken)
	}
	if p.InstitutionID != nil {
		set("institution_id", *p.InstitutionID)
	}
	if p.InstitutionName != nil {
		set("institution_name", *p.InstitutionName)
	}
	if p.Environment != nil {
		set("environment", *p.Environment)
	}
	if p.Metadata != nil {
		set("metadata", metadataMap(*p.Metadata))
	}
	return u
}

func metadataMap(m Metadata) map[string]any {
	return map[string]any{"name": m.Name, "url": m.URL, "primary_color": m.PrimaryColor, "logo": m.Logo}
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
		"metadata":          metadataMap(t.Metadata),
	}
	if t.ErrorCode != "" {
		doc["error_code"] = t.ErrorCode
	}
	if len(t.AccountMasks) > 0 {
		doc["account_masks"] = t.AccountMasks
	}
	return doc
}
