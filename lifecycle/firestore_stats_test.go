package lifecycle_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sync/errgroup"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// readCounters returns the summed counter shards.
func readCounters(t *testing.T, env *testenv.Env) lifecycle.Counters {
	t.Helper()
	r, err := env.Stats.ReadStats(context.Background(), lifecycle.StatsRead{})
	if err != nil {
		t.Fatalf("ReadStats: %v", err)
	}
	return r.Counters
}

// apply applies changes in one CountTokenChanges call.
func apply(t *testing.T, env *testenv.Env, changes ...lifecycle.TokenChange) lifecycle.StatsApplied {
	t.Helper()
	got, err := env.Service.CountTokenChanges(context.Background(), changes)
	if err != nil {
		t.Fatalf("CountTokenChanges: %v", err)
	}
	return got
}

// exact recounts without repairing and returns the result.
func exact(t *testing.T, env *testenv.Env) *lifecycle.ExactResult {
	t.Helper()
	res, err := env.Service.ExactAnalytics(context.Background(), lifecycle.ExactOptions{Trigger: "test"})
	if err != nil {
		t.Fatalf("ExactAnalytics: %v", err)
	}
	return res
}

// assertNoDrift checks that the counters equal an exact recount.
func assertNoDrift(t *testing.T, env *testenv.Env, what string) {
	t.Helper()
	res := exact(t, env)
	if len(res.Drift) != 0 || res.UsersDrifted != 0 {
		t.Errorf("%s: drift %v, %d users drifted; want none", what, res.Drift, res.UsersDrifted)
	}
}

// writeHistory writes, as another writer would, a history touching every
// kind of change: creates, uses on the same and later days, errors set and
// cleared, status changes, a token moved to another user, a renamed
// institution, deletes and a re-create, a legacy per-user document (not a
// token) and its migration, and a token overwritten by a non-token.
func writeHistory(t *testing.T, w *testenv.TokenWriter) {
	t.Helper()
	day := func(d int) time.Time { return time.Date(2026, 11, d, 10, 0, 0, 0, time.UTC) }
	tok := func(item, user, inst string, used int) map[string]any {
		st := testenv.ActiveToken(item, user, 1).Token
		st.InstitutionName, st.LastUsedAt = inst, day(used)
		return testenv.TokenData(st)
	}
	for i := range 12 {
		w.Set(t, fmt.Sprintf("item-%02d", i), tok(fmt.Sprintf("item-%02d", i), fmt.Sprintf("user-%d", i%4), []string{"Chase Bank", "Citi", ""}[i%3], 1+i))
	}
	w.Update(t, "item-00", map[string]any{"last_used_at": day(1).Add(time.Hour)}) // same day: not a use
	w.Update(t, "item-00", map[string]any{"last_used_at": day(25)})               // a later day
	w.Update(t, "item-01", map[string]any{"error_code": "ITEM_LOGIN_REQUIRED"})
	w.Update(t, "item-01", map[string]any{"error_code": nil})
	w.Update(t, "item-02", map[string]any{"status": "expired"})
	w.Update(t, "item-03", map[string]any{"status": "revoked", "plaid_removed": true})
	w.Update(t, "item-04", map[string]any{"user_id": "user-9"})
	w.Update(t, "item-05", map[string]any{"institution_name": "Wells Fargo", "environment": "production"})
	w.Update(t, "item-06", map[string]any{"last_validated_at": day(27)}) // counts nothing
	w.Delete(t, "item-07")
	w.Delete(t, "item-08")
	w.Set(t, "item-08", tok("item-08", "user-2", "Citi", 20)) // linked again
	w.Set(t, "user-legacy", map[string]any{"user_id": "user-legacy", "items": map[string]any{"item-l": map[string]any{"status": "active"}}})
	w.Delete(t, "user-legacy")
	w.Set(t, "item-l", tok("item-l", "user-legacy", "Citi", 3))
	w.Set(t, "item-09", map[string]any{"note": "overwritten by something that is not a token"})
	w.Update(t, "item-10", map[string]any{"status": "active", "error_code": "PENDING_EXPIRATION"})
	w.Delete(t, "item-10")
}

// copyTokens copies every plaid_tokens document of from into to.
func copyTokens(t *testing.T, from, to *testenv.Env) {
	t.Helper()
	ctx := context.Background()
	snaps, err := from.Client.Collection(lifecycle.TokensCollection).Documents(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range snaps {
		if _, err := to.Client.Collection(lifecycle.TokensCollection).Doc(s.Ref.ID).Set(ctx, s.Data()); err != nil {
			t.Fatal(err)
		}
	}
}

// Counts are exact after duplicate and reordered deliveries: the same
// history applied in order in one project, and shuffled with duplicates in
// random batches in another, gives identical counters, equal to an exact
// recount of the documents.
func TestStatsExactAfterDuplicateAndReorderedDeliveries(t *testing.T) {
	t.Parallel()
	inOrder, shuffled := testenv.New(t), testenv.New(t)
	w := testenv.NewTokenWriter(inOrder.Client)
	writeHistory(t, w)
	changes := w.Changes()
	for _, c := range changes {
		apply(t, inOrder, c)
	}

	copyTokens(t, inOrder, shuffled)
	rng := rand.New(rand.NewPCG(12, 34))
	var deliveries []lifecycle.TokenChange
	for _, c := range changes {
		for range 1 + rng.IntN(3) { // delivered once to three times
			deliveries = append(deliveries, c)
		}
	}
	rng.Shuffle(len(deliveries), func(i, j int) { deliveries[i], deliveries[j] = deliveries[j], deliveries[i] })
	var sum lifecycle.StatsApplied
	for len(deliveries) > 0 {
		n := min(len(deliveries), 1+rng.IntN(7))
		got := apply(t, shuffled, deliveries[:n]...)
		sum.Applied += got.Applied
		sum.Duplicates += got.Duplicates
		sum.Empty += got.Empty
		deliveries = deliveries[n:]
	}

	want := readCounters(t, inOrder)
	if diff := cmp.Diff(want, readCounters(t, shuffled)); diff != "" {
		t.Errorf("counters of shuffled, duplicated deliveries (-in order +shuffled):\n%s", diff)
	}
	nonEmpty := 0
	for _, c := range changes {
		if !lifecycle.ChangeDelta(c).Empty() {
			nonEmpty++
		}
	}
	if sum.Applied != nonEmpty {
		t.Errorf("applied %d changes, want each of the %d that count applied once (%d duplicates skipped)", sum.Applied, nonEmpty, sum.Duplicates)
	}
	// The trend of the history: 12 + 2 + 1 tokens created (the legacy
	// document is not one), 4 removed (item-07, item-08, item-09 by its
	// overwrite, item-10), 1 used on a later day.
	trend := map[string]int64{}
	for _, g := range []string{"created", "removed", "used"} {
		for _, n := range want[g] { // by the UTC day of each write
			trend[g] += n
		}
	}
	if diff := cmp.Diff(map[string]int64{"created": 14, "removed": 4, "used": 1}, trend); diff != "" {
		t.Errorf("trend (-want +got):\n%s", diff)
	}
	for name, env := range map[string]*testenv.Env{"in order": inOrder, "shuffled": shuffled} {
		assertNoDrift(t, env, name)
	}
}

// Concurrent CountTokenChanges calls, many on the same users and
// redelivering each other's changes, count every change once.
func TestStatsConcurrentApply(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	var tokens []sample.Token
	var ids []string
	for i := range 300 {
		st := testenv.ActiveToken(fmt.Sprintf("item-%03d", i), fmt.Sprintf("user-%02d", i%20), i%120)
		st.InstitutionName = []string{"Chase Bank", "Citi", "Bank of America"}[i%3]
		tokens = append(tokens, st)
		ids = append(ids, st.ItemID)
	}
	env.Seed(t, tokens...)
	changes := testenv.CreatedChanges(t, env.Client, ids...)

	var g errgroup.Group
	var mu sync.Mutex
	var total lifecycle.StatsApplied
	for worker := range 8 {
		rng := rand.New(rand.NewPCG(uint64(worker), 7))
		g.Go(func() error {
			// Each worker delivers every change, in its own order.
			order := rng.Perm(len(changes))
			for len(order) > 0 {
				n := min(len(order), 1+rng.IntN(40))
				batch := make([]lifecycle.TokenChange, n)
				for i, k := range order[:n] {
					batch[i] = changes[k]
				}
				order = order[n:]
				got, err := env.Service.CountTokenChanges(context.Background(), batch)
				if err != nil {
					return err
				}
				mu.Lock()
				total.Applied += got.Applied
				total.Duplicates += got.Duplicates
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("concurrent CountTokenChanges: %v", err)
	}
	if total.Applied != len(changes) || total.Duplicates != 7*len(changes) {
		t.Errorf("applied %d, duplicates %d; want %d and %d", total.Applied, total.Duplicates, len(changes), 7*len(changes))
	}
	assertNoDrift(t, env, "after concurrent deliveries")
	c := readCounters(t, env)
	if got := c.Get("tokens", "unique_users"); got != 20 {
		t.Errorf("unique_users = %d, want 20", got)
	}
}

// A lost event and a doubled one are found as drift by a read-only recount
// (which writes nothing), then repaired: the repair records the drift, and
// the counters agree with the recount afterwards, also for every user.
func TestStatsDriftFoundAndRepaired(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	env.SeedSample(t)
	if _, err := env.Service.ExactAnalytics(ctx, lifecycle.ExactOptions{Repair: true, Trigger: "test"}); err != nil {
		t.Fatal(err)
	}
	assertNoDrift(t, env, "after the backfill")

	// Carol's Citi token is deleted by a writer whose event is lost; Dave
	// gets a token whose event is applied under two ids (doubled).
	w := testenv.NewTokenWriter(env.Client)
	w.Delete(t, "item-carol-citi")
	tok := testenv.ActiveToken("item-dave-new", sample.Dave, 40)
	created := w.Set(t, "item-dave-new", testenv.TokenData(tok.Token))
	again := created
	again.EventID += "-doubled"
	apply(t, env, created, again)
	// A new user whose only token's event is lost entirely.
	w.Set(t, "item-frank", testenv.TokenData(testenv.ActiveToken("item-frank", "user-frank", 2).Token))

	before := readCounters(t, env)
	res := exact(t, env)
	wantDrift := lifecycle.Counters{
		// carol-citi still counted, dave-new counted twice, frank missing.
		"tokens":       {"total": -1 - 1 + 1, "unique_users": 1},
		"status":       {"active": -1 - 1 + 1},
		"institutions": {"Citi": -1, "Chase Bank": -1 + 1},
		"activity":     {"2026-11-18": -1, dayOf(testenv.Now, -40): -1, dayOf(testenv.Now, -2): 1},
		"environments": {"sandbox": -1 - 1 + 1},
	}
	if diff := cmp.Diff(wantDrift.Compact(), res.Drift); diff != "" {
		t.Errorf("drift (-want +got):\n%s", diff)
	}
	if res.UsersDrifted != 3 || res.Repaired || !res.CountersInitialized {
		t.Errorf("users drifted %d, repaired %v, initialized %v; want 3 (Carol, Dave, Frank), false, true", res.UsersDrifted, res.Repaired, res.CountersInitialized)
	}
	if diff := cmp.Diff(before, readCounters(t, env)); diff != "" {
		t.Errorf("a recount without repair wrote the counters (-before +after):\n%s", diff)
	}

	rep, err := env.Service.ExactAnalytics(ctx, lifecycle.ExactOptions{Repair: true, Trigger: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Repaired || rep.Repair == nil {
		t.Fatalf("repair result %+v", rep)
	}
	if diff := cmp.Diff(wantDrift.Compact(), rep.Repair.Drift); diff != "" {
		t.Errorf("recorded drift (-want +got):\n%s", diff)
	}
	st, err := env.Stats.ReadStats(ctx, lifecycle.StatsRead{})
	if err != nil {
		t.Fatal(err)
	}
	if st.State.LastRepair == nil || st.State.LastRepair.ID != rep.Repair.ID ||
		cmp.Diff(wantDrift.Compact(), st.State.LastRepair.Drift) != "" || st.State.LastRepair.UsersDrifted != 3 {
		t.Errorf("last repair recorded in the state document: %+v", st.State.LastRepair)
	}
	assertNoDrift(t, env, "after the repair")
	a := analytics(t, env)
	if a.TotalTokens != 16 || a.UniqueUsers != 6 || a.Source != lifecycle.SourceCounters {
		t.Errorf("analytics after the repair: total %d, users %d, source %s; want 16, 6, counters", a.TotalTokens, a.UniqueUsers, a.Source)
	}
}

func dayOf(t time.Time, days int) string { return t.AddDate(0, 0, days).UTC().Format(time.DateOnly) }

// Counters never initialized (a first deploy on existing data): analytics
// recount and say so; a repair backfills the counters, which then agree
// with the recount on every key, and analytics reads the counter documents
// only.
func TestStatsBackfillUninitialized(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	env.SeedSample(t)
	// Events of writes since the deploy arrive before the backfill: they
	// count, the backfill adds the rest.
	w := testenv.NewTokenWriter(env.Client)
	apply(t, env, w.Update(t, "item-alice-chase", map[string]any{"status": "revoked"}))
	a := analytics(t, env)
	if a.Source != lifecycle.SourceRecount {
		t.Errorf("source %q before the backfill, want recount", a.Source)
	}
	want := sampleAnalytics()
	want.ActiveTokens--
	want.RevokedTokens++
	if diff := cmp.Diff(want, a, countsOnly); diff != "" {
		t.Errorf("recounted analytics (-want +got):\n%s", diff)
	}

	res, err := env.Service.ExactAnalytics(ctx, lifecycle.ExactOptions{Repair: true, Trigger: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if res.CountersInitialized || !res.Repaired || res.Repair.WasInitialized || res.UsersDrifted != 5 {
		t.Errorf("backfill: initialized before %v, repaired %v, users drifted %d; want false, true, 5", res.CountersInitialized, res.Repaired, res.UsersDrifted)
	}
	if got := res.Drift.Get("tokens", "total"); got != 15 {
		t.Errorf("backfill drift total %d, want 15 (every token but nothing the event counted)", got)
	}
	a = analytics(t, env)
	if a.Source != lifecycle.SourceCounters || a.AsOf.IsZero() {
		t.Errorf("after the backfill: source %q as of %v, want the counters'", a.Source, a.AsOf)
	}
	if diff := cmp.Diff(want, a, countsOnly); diff != "" {
		t.Errorf("analytics from the counters (-want +got):\n%s", diff)
	}
	if len(a.Trend) != lifecycle.TrendDays {
		t.Errorf("trend of %d days, want %d", len(a.Trend), lifecycle.TrendDays)
	}
	// Reading the counters reads the shards and the state document: at
	// most 17 documents, whatever the number of tokens.
	snaps, err := env.Client.Collection(lifecycle.StatsCollection).Documents(ctx).GetAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) > 17 {
		t.Errorf("%d counter documents, want at most 17", len(snaps))
	}
	assertNoDrift(t, env, "after the backfill")
}

// A repair while other writers write and TokenStats applies their events
// late, some before the repair's horizon and some after it, loses nothing
// and counts nothing twice.
func TestStatsRepairUnderConcurrentWrites(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	var tokens []sample.Token
	for i := range 120 {
		tokens = append(tokens, testenv.ActiveToken(fmt.Sprintf("item-%03d", i), fmt.Sprintf("user-%02d", i%15), i%60))
	}
	env.Seed(t, tokens...)
	if _, err := env.Service.ExactAnalytics(ctx, lifecycle.ExactOptions{Repair: true, Trigger: "test"}); err != nil {
		t.Fatal(err)
	}

	w := testenv.NewTokenWriter(env.Client)
	deliver := make(chan lifecycle.TokenChange, 1000)
	var writers errgroup.Group
	for worker := range 4 {
		writers.Go(func() error {
			rng := rand.New(rand.NewPCG(uint64(worker), 99))
			for i := range 25 {
				id := fmt.Sprintf("item-%03d", worker*30+i%30)
				var ch lifecycle.TokenChange
				switch rng.IntN(4) {
				case 0:
					ch = w.Set(t, fmt.Sprintf("new-%d-%d", worker, i), testenv.TokenData(testenv.ActiveToken(id, fmt.Sprintf("user-new-%d", i%5), 3).Token))
				case 1:
					if testenv.Doc(t, env.Tokens, id) != nil {
						ch = w.Delete(t, id)
					}
				case 2:
					if testenv.Doc(t, env.Tokens, id) != nil {
						ch = w.Update(t, id, map[string]any{"status": "expired"})
					}
				default:
					if testenv.Doc(t, env.Tokens, id) != nil {
						ch = w.Update(t, id, map[string]any{"last_used_at": time.Now().UTC(), "user_id": fmt.Sprintf("user-moved-%d", i%3)})
					}
				}
				if ch.EventID != "" {
					deliver <- ch
				}
			}
			return nil
		})
	}
	// TokenStats: applies the events with delays, redelivering some.
	var appliers errgroup.Group
	for worker := range 3 {
		appliers.Go(func() error {
			rng := rand.New(rand.NewPCG(uint64(worker), 5))
			for ch := range deliver {
				time.Sleep(time.Duration(rng.IntN(700)) * time.Millisecond)
				batch := []lifecycle.TokenChange{ch}
				if rng.IntN(4) == 0 {
					batch = append(batch, ch)
				}
				if _, err := env.Service.CountTokenChanges(ctx, batch); err != nil {
					return err
				}
			}
			return nil
		})
	}
	// Repairs run meanwhile.
	var repairs errgroup.Group
	repairs.Go(func() error {
		for range 2 {
			if _, err := env.Service.ExactAnalytics(ctx, lifecycle.ExactOptions{Repair: true, Trigger: "test"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err := writers.Wait(); err != nil {
		t.Fatal(err)
	}
	close(deliver)
	if err := appliers.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := repairs.Wait(); err != nil {
		t.Fatal(err)
	}
	assertNoDrift(t, env, "after concurrent writes, late events and repairs")
}

// One repair at a time: a second is refused while the first holds the
// lease, and a repair whose lease was taken over writes nothing.
func TestStatsRepairLease(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := context.Background()
	now := testenv.Now
	if err := env.Stats.ClaimRepair(ctx, "first", now, now.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Service.ExactAnalytics(ctx, lifecycle.ExactOptions{Repair: true}); !lifecycle.IsCode(err, lifecycle.CodeConflict) {
		t.Errorf("a second repair: %v, want a conflict", err)
	}
	if err := env.Stats.ClaimRepair(ctx, "second", now.Add(11*time.Minute), now.Add(20*time.Minute)); err != nil {
		t.Fatalf("claiming a lapsed lease: %v", err)
	}
	err := env.Stats.ApplyRepair(ctx, "first", now.Add(12*time.Minute), lifecycle.Counters{"tokens": {"total": 5}}, nil)
	if !lifecycle.IsCode(err, lifecycle.CodeConflict) {
		t.Errorf("ApplyRepair after losing the lease: %v, want the lease lost", err)
	}
	if err := env.Stats.RaiseHorizon(ctx, "first", now, now.Add(12*time.Minute)); !lifecycle.IsCode(err, lifecycle.CodeConflict) {
		t.Errorf("RaiseHorizon after losing the lease: %v, want the lease lost", err)
	}
	if c := readCounters(t, env); len(c) != 0 {
		t.Errorf("counters written by a repair without the lease: %v", c)
	}
	if err := env.Stats.EndRepair(ctx, "second", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Service.ExactAnalytics(ctx, lifecycle.ExactOptions{Repair: true}); err != nil {
		t.Errorf("a repair after the lease was freed: %v", err)
	}
}

// Names any writer may store (Firestore's reserved __x__, the escape
// itself, dots and slashes) are counters' keys like any other.
func TestStatsHostileKeys(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	w := testenv.NewTokenWriter(env.Client)
	names := []string{"__name__", "~tilde", "~~", "a.b/c`d", "__", " spaced "}
	for i, name := range names {
		tok := testenv.ActiveToken(fmt.Sprintf("item-%d", i), "user-1", 1).Token
		tok.InstitutionName, tok.Environment = name, name
		apply(t, env, w.Set(t, tok.ItemID, testenv.TokenData(tok)))
	}
	got := readCounters(t, env)["institutions"]
	want := map[string]int64{"__name__": 1, "~tilde": 1, "~~": 1, "a.b/c`d": 1, "__": 1, "spaced": 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("institutions (-want +got):\n%s", diff)
	}
	assertNoDrift(t, env, "hostile keys")
}
