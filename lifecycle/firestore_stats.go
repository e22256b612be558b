package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FirestoreStatsStore is the StatsStore over plaid_token_stats (counter
// shards and the state document), plaid_token_stats_users and
// plaid_token_stats_events.
//
// Contention: a change's transaction reads only the state document (which
// only repairs write), its event record and its users' counts, and adds to
// the counter shards with blind increments (firestore.Increment, never
// reading a shard), so changes of different users never conflict, however
// many arrive at once. Shards spread the write load of bursts (a cleanup
// deleting thousands of tokens a second) over statsShards documents.
type FirestoreStatsStore struct {
	client *firestore.Client
}

var _ StatsStore = (*FirestoreStatsStore)(nil)

// NewFirestoreStatsStore returns a StatsStore over client.
func NewFirestoreStatsStore(client *firestore.Client) *FirestoreStatsStore {
	return &FirestoreStatsStore{client: client}
}

const (
	// statsShards is how many counter shards there are: an analytics read
	// reads them and the state document, statsShards+1 documents, whatever
	// the number of tokens.
	statsShards   = 16
	statsStateDoc = "state"
	// maxShardTransforms keeps a shard's field transforms in one commit
	// under Firestore's 500.
	maxShardTransforms = 450
	// statsEventTTL keeps an applied change's record beyond Eventarc's and
	// Pub/Sub's retry windows (7 days): a redelivery always finds it.
	statsEventTTL = 8 * 24 * time.Hour
	// statsTxAttempts: the transaction of a change conflicts only with
	// another change of the same user or a repair raising the horizon.
	// The client library waits about a second, growing, before each
	// retry; a user's burst of changes (revoke-all) may need several.
	statsTxAttempts = 10
	// readTimeMargin lets a chosen read time pass before it is read at:
	// Firestore refuses a read time in its future.
	readTimeMargin = 50 * time.Millisecond
)

func shardDocID(i int) string { return fmt.Sprintf("shard-%02d", i) }

func (s *FirestoreStatsStore) stateRef() *firestore.DocumentRef {
	return s.client.Collection(StatsCollection).Doc(statsStateDoc)
}

func (s *FirestoreStatsStore) shardRef(i int) *firestore.DocumentRef {
	return s.client.Collection(StatsCollection).Doc(shardDocID(i))
}

func (s *FirestoreStatsStore) userRef(userID string) *firestore.DocumentRef {
	return s.client.Collection(statsUsersCollection).Doc(eventDocID("u", userID))
}

func (s *FirestoreStatsStore) eventRef(eventID string) *firestore.DocumentRef {
	return s.client.Collection(statsEventsCollection).Doc(eventDocID("token", eventID))
}

// Counter keys become Firestore field names: names Firestore reserves
// (__.*__) and keys starting with the escape itself get an escape prefix,
// so that any institution name a writer stored is a valid, reversible key.
const keyEscape = "~"

func storedKey(k string) string {
	if strings.HasPrefix(k, "__") || strings.HasPrefix(k, keyEscape) {
		return keyEscape + k
	}
	return k
}

func loadedKey(k string) string { return strings.TrimPrefix(k, keyEscape) }

// encodeCounters is c as nested maps with stored keys.
func encodeCounters(c Counters) map[string]any {
	out := make(map[string]any, len(c))
	for g, m := range c {
		inner := make(map[string]any, len(m))
		for k, n := range m {
			inner[storedKey(k)] = n
		}
		out[g] = inner
	}
	return out
}

// decodeCounters reads nested maps of integers; anything else is skipped.
func decodeCounters(data map[string]any, into Counters) {
	for g, v := range data {
		m, ok := v.(map[string]any)
		if !ok {
			continue
		}
		for k, n := range m {
			if i, ok := n.(int64); ok {
				into.Add(g, loadedKey(k), i)
			}
		}
	}
}

// increments is c as nested maps of firestore.Increment, for a Set with
// MergeAll: blind adds that never read the document.
func increments(c Counters) map[string]any {
	out := make(map[string]any, len(c))
	for g, m := range c {
		inner := make(map[string]any, len(m))
		for k, n := range m {
			inner[storedKey(k)] = firestore.Increment(n)
		}
		out[g] = inner
	}
	return out
}

// shardPlan collects one transaction's increments per shard, each change
// on the shard of its item id unless that shard's transforms would pass
// maxShardTransforms, then on the next one with room (any shard will do:
// reads sum them all).
type shardPlan struct {
	incs [statsShards]Counters
}

func (p *shardPlan) add(key string, c Counters) {
	h := fnv.New32a()
	h.Write([]byte(key))
	start := int(h.Sum32() % statsShards)
	for j := range statsShards {
		i := (start + j) % statsShards
		if p.incs[i] == nil {
			p.incs[i] = Counters{}
		}
		if j < statsShards-1 && p.incs[i].Keys()+c.Keys() > maxShardTransforms {
			continue
		}
		p.incs[i].AddAll(c, 1)
		return
	}
}

func (p *shardPlan) write(tx *firestore.Transaction, s *FirestoreStatsStore) error {
	for i, inc := range p.incs {
		if inc.Compact(); len(inc) == 0 {
			continue
		}
		if err := tx.Set(s.shardRef(i), increments(inc), firestore.MergeAll); err != nil {
			return err
		}
	}
	return nil
}

// appliedChangeDoc is an applied change's record. Its delta is one JSON
// string rather than nested maps: Firestore indexes every field of a map,
// and nothing queries the delta (only at, the commit time).
type appliedChangeDoc struct {
	EventID   string    `firestore:"event_id"`
	ItemID    string    `firestore:"item_id"`
	At        time.Time `firestore:"at"`
	Delta     string    `firestore:"delta"` // appliedDelta as JSON
	AppliedAt time.Time `firestore:"applied_at"`
	ExpireAt  time.Time `firestore:"expire_at"`
}

// appliedDelta is what an applied change added: the counters (with the
// unique users change it made) and the users' token counts.
type appliedDelta struct {
	Counters Counters         `json:"c"`
	Users    map[string]int64 `json:"u,omitempty"`
}

// userCountDoc is one user's token count.
type userCountDoc struct {
	UserID string `firestore:"user_id"`
	Count  int64  `firestore:"count"`
}

func decodeState(snap *firestore.DocumentSnapshot) StatsState {
	if snap == nil || !snap.Exists() {
		return StatsState{}
	}
	data := snap.Data()
	st := StatsState{
		InitializedAt: timestamp(data, "initialized_at"),
		Horizon:       timestamp(data, "horizon"),
		RepairID:      str(data, "repair_id"),
		RepairUntil:   timestamp(data, "repair_until"),
	}
	if lr, ok := data["last_repair"].(map[string]any); ok {
		r := &StatsRepair{ID: str(lr, "id"), Trigger: str(lr, "trigger"), ReadTime: timestamp(lr, "read_time"),
			StartedAt: timestamp(lr, "started_at"), EndedAt: timestamp(lr, "ended_at"), Drift: Counters{}}
		if d, ok := lr["drift"].(map[string]any); ok {
			decodeCounters(d, r.Drift)
		}
		if n, ok := lr["users_drifted"].(int64); ok {
			r.UsersDrifted = int(n)
		}
		r.WasInitialized, _ = lr["was_initialized"].(bool)
		st.LastRepair = r
	}
	return st
}

// runTx runs f in a transaction, retried while it aborts (a conflict with
// another change of the same user, or a repair raising the horizon).
func (s *FirestoreStatsStore) runTx(ctx context.Context, f func(context.Context, *firestore.Transaction) error) error {
	return s.client.RunTransaction(ctx, f, firestore.MaxAttempts(statsTxAttempts))
}

// CountChanges reads the state, the event records of eventIDs and the
// counts of users, and writes what count says, in one transaction (see
// StatsStore).
func (s *FirestoreStatsStore) CountChanges(ctx context.Context, eventIDs, users []string, count func(CountState) (CountWrites, error)) error {
	if len(eventIDs) > MaxTokenChangesPerCall {
		return Errorf(CodeInvalid, "%d token changes in one call; at most %d", len(eventIDs), MaxTokenChangesPerCall)
	}
	refs := []*firestore.DocumentRef{s.stateRef()}
	seen := map[string]bool{}
	for _, ref := range append(mapRefs(eventIDs, s.eventRef), mapRefs(users, s.userRef)...) {
		if !seen[ref.Path] {
			seen[ref.Path] = true
			refs = append(refs, ref)
		}
	}
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snaps, err := tx.GetAll(refs)
		if err != nil {
			return err
		}
		st := CountState{State: decodeState(snaps[0]), Recorded: map[string]bool{}, Users: map[string]int64{}}
		for _, snap := range snaps[1:] {
			switch {
			case !snap.Exists():
			case snap.Ref.Parent.ID == statsUsersCollection:
				var u userCountDoc
				if err := snap.DataTo(&u); err != nil {
					return fmt.Errorf("decoding user count %s: %w", snap.Ref.ID, err)
				}
				st.Users[u.UserID] = u.Count
			default:
				var a appliedChangeDoc
				if err := snap.DataTo(&a); err != nil {
					return fmt.Errorf("decoding applied change %s: %w", snap.Ref.ID, err)
				}
				st.Recorded[a.EventID] = true
			}
		}
		w, err := count(st)
		if err != nil {
			return err
		}
		return s.writeCounted(tx, w)
	})
	if err != nil {
		return statsError("counting token changes", err)
	}
	return nil
}

func mapRefs(ids []string, ref func(string) *firestore.DocumentRef) []*firestore.DocumentRef {
	out := make([]*firestore.DocumentRef, len(ids))
	for i, id := range ids {
		out[i] = ref(id)
	}
	return out
}

// writeCounted writes w in tx: each applied change's record, the counters'
// increments spread over the shards, the users' new counts (a count back
// to zero deletes the user's document).
func (s *FirestoreStatsStore) writeCounted(tx *firestore.Transaction, w CountWrites) error {
	var plan shardPlan
	for _, a := range w.Applied {
		delta, err := json.Marshal(appliedDelta{Counters: a.Counters, Users: a.Users})
		if err != nil {
			return err
		}
		doc := appliedChangeDoc{EventID: a.EventID, ItemID: a.ItemID, At: a.At, Delta: string(delta),
			AppliedAt: a.AppliedAt, ExpireAt: a.AppliedAt.Add(statsEventTTL)}
		if err := tx.Create(s.eventRef(a.EventID), doc); err != nil {
			return err
		}
		plan.add(a.ItemID, a.Counters)
	}
	if err := plan.write(tx, s); err != nil {
		return err
	}
	return s.writeUserCounts(tx, w.Users)
}

// writeUserCounts writes users' new token counts; a count back to zero
// deletes the user's document.
func (s *FirestoreStatsStore) writeUserCounts(tx *firestore.Transaction, counts map[string]int64) error {
	for u, n := range counts {
		var err error
		if n == 0 {
			err = tx.Delete(s.userRef(u))
		} else {
			err = tx.Set(s.userRef(u), userCountDoc{UserID: u, Count: n})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// statsError maps a failed stats operation: a transaction that kept
// aborting (contention) is worth a retry, like an unavailable Firestore.
func statsError(what string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	if status.Code(err) == codes.Aborted {
		return WrapError(CodeUnavailable, err, what+": the transaction kept conflicting")
	}
	return fmt.Errorf("%s: %w", what, storeError(err))
}

// ReadStats reads the counter shards and the state document (statsShards+1
// documents by id, in one batch), then what opts ask for at that read
// time.
func (s *FirestoreStatsStore) ReadStats(ctx context.Context, opts StatsRead) (*StatsReading, error) {
	refs := []*firestore.DocumentRef{s.stateRef()}
	for i := range statsShards {
		refs = append(refs, s.shardRef(i))
	}
	// One batch get of known ids: a consistent read at one read time, by
	// key (a query would cost the emulator a scan).
	snaps, err := s.client.GetAll(ctx, refs)
	if err != nil {
		return nil, fmt.Errorf("reading the analytics counters: %w", storeError(err))
	}
	r := &StatsReading{Counters: Counters{}, ReadTime: snaps[0].ReadTime, State: decodeState(snaps[0])}
	for _, snap := range snaps[1:] {
		if snap.Exists() {
			decodeCounters(snap.Data(), r.Counters)
		}
	}
	readAt := []firestore.ReadOption{firestore.ReadTime(r.ReadTime)}
	r.Counters.Compact()
	if opts.Users {
		r.Users = map[string]int64{}
		q := s.client.Collection(statsUsersCollection).Query
		iter := q.WithReadOptions(readAt...).Documents(ctx)
		defer iter.Stop()
		for {
			snap, err := iter.Next()
			if errors.Is(err, iterator.Done) {
				break
			}
			if err != nil {
				return nil, queryError("reading the users' token counts", err)
			}
			var u userCountDoc
			if err := snap.DataTo(&u); err != nil {
				return nil, fmt.Errorf("decoding user count %s: %w", snap.Ref.ID, err)
			}
			if u.Count != 0 {
				r.Users[u.UserID] = u.Count
			}
		}
	}
	if !opts.ChangesAfter.IsZero() {
		q := s.client.Collection(statsEventsCollection).Where("at", ">", opts.ChangesAfter)
		iter := q.WithReadOptions(readAt...).Documents(ctx)
		defer iter.Stop()
		for {
			snap, err := iter.Next()
			if errors.Is(err, iterator.Done) {
				break
			}
			if err != nil {
				return nil, queryError("reading the applied token changes", err)
			}
			var doc appliedChangeDoc
			if err := snap.DataTo(&doc); err != nil {
				return nil, fmt.Errorf("decoding applied change %s: %w", snap.Ref.ID, err)
			}
			var delta appliedDelta
			if err := json.Unmarshal([]byte(doc.Delta), &delta); err != nil {
				return nil, fmt.Errorf("decoding the delta of applied change %s: %w", snap.Ref.ID, err)
			}
			if delta.Counters == nil {
				delta.Counters = Counters{}
			}
			r.Later = append(r.Later, AppliedChange{EventID: doc.EventID, ItemID: doc.ItemID, At: doc.At, AppliedAt: doc.AppliedAt,
				Counters: delta.Counters, Users: delta.Users})
		}
	}
	return r, nil
}

// RecountTokens streams every token's summary at one read time: the end
// (last microsecond) of the second notBefore, or now, falls in.
func (s *FirestoreStatsStore) RecountTokens(ctx context.Context, notBefore time.Time, visit func(*TokenSummary) error) (time.Time, error) {
	base := time.Now().UTC()
	if notBefore.After(base) {
		base = notBefore.UTC()
	}
	t0 := base.Truncate(time.Second).Add(time.Second - time.Microsecond)
	if wait := time.Until(t0.Add(readTimeMargin)); wait > 0 {
		if err := sleepCtx(ctx, wait); err != nil {
			return time.Time{}, err
		}
	}
	q := s.client.Collection(TokensCollection).Select(summaryFields...)
	iter := q.WithReadOptions(firestore.ReadTime(t0)).Documents(ctx)
	defer iter.Stop()
	for {
		snap, err := iter.Next()
		if errors.Is(err, iterator.Done) {
			return t0, nil
		}
		if err != nil {
			return time.Time{}, queryError("recounting the tokens", err)
		}
		if sum, ok := summaryFromData(snap.Ref.ID, snap.Data()); ok {
			if err := visit(sum); err != nil {
				return time.Time{}, err
			}
		}
	}
}

// ClaimRepair takes the repair lease in the state document.
func (s *FirestoreStatsStore) ClaimRepair(ctx context.Context, repairID string, now, until time.Time) error {
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(s.stateRef())
		if err != nil && !isNotFound(err) {
			return err
		}
		st := decodeState(snap)
		if st.RepairID != "" && st.RepairID != repairID && now.Before(st.RepairUntil) {
			return Errorf(CodeConflict, "analytics repair %s is running (its lease holds until %s)",
				st.RepairID, st.RepairUntil.UTC().Format(time.RFC3339))
		}
		return tx.Set(s.stateRef(), map[string]any{"repair_id": repairID, "repair_until": until}, firestore.MergeAll)
	})
	if err != nil {
		return statsError("claiming the analytics repair lease", err)
	}
	return nil
}

// holdsRepair reads the state in tx and checks repairID still holds the
// lease.
func (s *FirestoreStatsStore) holdsRepair(tx *firestore.Transaction, repairID string, now time.Time) (StatsState, error) {
	snap, err := tx.Get(s.stateRef())
	if err != nil && !isNotFound(err) {
		return StatsState{}, err
	}
	st := decodeState(snap)
	if st.RepairID != repairID || !now.Before(st.RepairUntil) {
		return st, fmt.Errorf("analytics repair %s: the lease is %q's until %s: %w", repairID, st.RepairID,
			st.RepairUntil.UTC().Format(time.RFC3339), ErrRepairLeaseLost)
	}
	return st, nil
}

// RaiseHorizon sets the horizon to t0 while repairID holds the lease.
func (s *FirestoreStatsStore) RaiseHorizon(ctx context.Context, repairID string, t0, now time.Time) error {
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		st, err := s.holdsRepair(tx, repairID, now)
		if err != nil {
			return err
		}
		if !t0.After(st.Horizon) {
			return nil
		}
		return tx.Set(s.stateRef(), map[string]any{"horizon": t0}, firestore.MergeAll)
	})
	if err != nil {
		if errors.Is(err, ErrRepairLeaseLost) {
			return err
		}
		return statsError("raising the analytics repair horizon", err)
	}
	return nil
}

// ApplyRepair adds a repair's corrections while repairID holds the lease.
func (s *FirestoreStatsStore) ApplyRepair(ctx context.Context, repairID string, now time.Time, counters Counters, users map[string]int64) error {
	if counters.Keys() > maxRepairKeysPerCall || len(users) > maxRepairUsersPerCall {
		return Errorf(CodeInvalid, "a repair call of %d keys and %d users; at most %d and %d",
			counters.Keys(), len(users), maxRepairKeysPerCall, maxRepairUsersPerCall)
	}
	refs := make([]*firestore.DocumentRef, 0, len(users))
	for _, u := range sortedKeys(users) {
		refs = append(refs, s.userRef(u))
	}
	err := s.runTx(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		if _, err := s.holdsRepair(tx, repairID, now); err != nil {
			return err
		}
		counts := map[string]int64{}
		if len(refs) > 0 {
			snaps, err := tx.GetAll(refs)
			if err != nil {
				return err
			}
			for _, snap := range snaps {
				if !snap.Exists() {
					continue
				}
				var u userCountDoc
				if err := snap.DataTo(&u); err != nil {
					return fmt.Errorf("decoding user count %s: %w", snap.Ref.ID, err)
				}
				counts[u.UserID] = u.Count
			}
		}
		before := maps.Clone(counts)
		inc := counters.Clone()
		inc.Add(CounterTokens, CounterUniqueUsers, moveUserCounts(counts, users))
		var plan shardPlan
		plan.add(repairID, inc)
		if err := plan.write(tx, s); err != nil {
			return err
		}
		return s.writeUserCounts(tx, changedCounts(before, counts))
	})
	if err != nil {
		if errors.Is(err, ErrRepairLeaseLost) {
			return err
		}
		return statsError("repairing the analytics counters", err)
	}
	return nil
}

// EndRepair frees the lease and, with rec, records the repair.
func (s *FirestoreStatsStore) EndRepair(ctx context.Context, repairID string, rec *StatsRepair) error {
	err := s.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		snap, err := tx.Get(s.stateRef())
		if err != nil && !isNotFound(err) {
			return err
		}
		st := decodeState(snap)
		if st.RepairID != repairID {
			return nil // taken over: the state is another repair's now
		}
		fields := map[string]any{"repair_id": "", "repair_until": time.Time{}}
		paths := []firestore.FieldPath{{"repair_id"}, {"repair_until"}}
		if rec != nil {
			// Merge on last_repair replaces the whole previous record.
			fields["last_repair"] = map[string]any{
				"id": rec.ID, "trigger": rec.Trigger, "read_time": rec.ReadTime,
				"started_at": rec.StartedAt, "ended_at": rec.EndedAt,
				"drift": encodeCounters(rec.Drift), "users_drifted": int64(rec.UsersDrifted),
				"was_initialized": rec.WasInitialized,
			}
			paths = append(paths, firestore.FieldPath{"last_repair"})
			if st.InitializedAt.IsZero() {
				fields["initialized_at"] = rec.EndedAt
				paths = append(paths, firestore.FieldPath{"initialized_at"})
			}
		}
		return tx.Set(s.stateRef(), fields, firestore.Merge(paths...))
	})
	if err != nil {
		return statsError("ending the analytics repair", err)
	}
	return nil
}
