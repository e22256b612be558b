package lifecycle

import (
	"context"
	"log/slog"
	"maps"
	"time"
)

// TokenStats' counting (DESIGN §12): every write to plaid_tokens, by any
// writer, becomes a delta of the analytics counters (ChangeDelta, stats.go),
// counted exactly once whatever order and however many times it is
// delivered. countChanges is the rule, a pure function of what one
// transaction read; StatsStore.CountChanges reads and writes around it.

// StatsApplied sums what CountTokenChanges did.
type StatsApplied struct {
	Applied, Duplicates, Covered, Empty int
	// Created, Used and Removed are the trend counts the applied changes
	// added (the "token activity" log line carries them).
	Created, Used, Removed int64
	// Linked and Repaired are the Link flow's trend counts, likewise.
	Linked, Repaired int64
}

// CountState is what a counting transaction read.
type CountState struct {
	State StatsState
	// Recorded holds the event ids, among those asked for, whose changes
	// were applied already.
	Recorded map[string]bool
	// Users holds the token counts of the users asked for (0 when none).
	Users map[string]int64
}

// CountWrites is what a counting transaction writes.
type CountWrites struct {
	// Applied are the changes to record, each with what it adds to the
	// counters; their sum is the counters' increment.
	Applied []AppliedChange
	// Users are the users' new token counts (0: no token left).
	Users map[string]int64
}

// AppliedChange is one applied change: its record (DESIGN §12: the event id
// and the increments in one atomic write) and what it added.
type AppliedChange struct {
	EventID   string
	ItemID    string
	At        time.Time // the write's commit time
	AppliedAt time.Time
	Counters  Counters         // with the unique users change it made
	Users     map[string]int64 // the users' count changes
}

// CountTokenChanges counts writes to plaid_tokens into the analytics
// counters (TokenStats), in transactions of MaxTokenChangesPerCall: each
// change exactly once, whatever order and however many times they come.
// It logs the trend the applied changes added ("token activity"), which the
// dashboard charts. An error of CodeUnavailable is worth a retry: nothing
// of the failed transaction's changes was applied.
func (s *Service) CountTokenChanges(ctx context.Context, changes []TokenChange) (StatsApplied, error) {
	var sum StatsApplied
	if s.stats == nil {
		return sum, Errorf(CodeUnavailable, "this program keeps no analytics counters")
	}
	trend := Counters{}
	for start := 0; start < len(changes); start += MaxTokenChangesPerCall {
		chunk := changes[start:min(start+MaxTokenChangesPerCall, len(changes))]
		outcomes, err := s.countChunk(ctx, chunk)
		if err != nil {
			s.logActivity(ctx, sum, trend)
			return sum, err
		}
		for i, o := range outcomes {
			switch o {
			case changeApplied:
				sum.Applied++
				trend.AddAll(ChangeDelta(chunk[i]).Counters.only(trendGroups), 1)
			case changeDuplicate:
				sum.Duplicates++
			case changeCovered:
				sum.Covered++
			case changeEmpty:
				sum.Empty++
			}
		}
	}
	s.logActivity(ctx, sum, trend)
	return sum, nil
}

// countChunk counts at most MaxTokenChangesPerCall changes in one
// transaction.
func (s *Service) countChunk(ctx context.Context, changes []TokenChange) ([]changeOutcome, error) {
	deltas := make([]StatsDelta, len(changes))
	var eventIDs, users []string
	for i, c := range changes {
		if c.EventID == "" {
			return nil, Errorf(CodeInvalid, "a token change without an event id")
		}
		if deltas[i] = ChangeDelta(c); deltas[i].Empty() {
			continue
		}
		eventIDs = append(eventIDs, c.EventID)
		users = append(users, sortedKeys(deltas[i].Users)...)
	}
	outcomes := make([]changeOutcome, len(changes))
	if len(eventIDs) == 0 {
		for i := range outcomes {
			outcomes[i] = changeEmpty
		}
		return outcomes, nil // nothing to count
	}
	err := s.stats.CountChanges(ctx, eventIDs, users, func(st CountState) (CountWrites, error) {
		var w CountWrites
		outcomes, w = countChanges(changes, deltas, st, s.clock.Now())
		return w, nil
	})
	if err != nil {
		return nil, err
	}
	return outcomes, nil
}

// countChanges is the counting rule over what a transaction read (st): a
// change without a delta, one recorded already (a redelivery, or the same
// event twice in one call), or one committed at or before a repair's
// horizon (its recount counted it) is not applied; any other is, once, and
// the unique users counter moves with each user's count crossing between 0
// and more. now stamps the records.
func countChanges(changes []TokenChange, deltas []StatsDelta, st CountState, now time.Time) ([]changeOutcome, CountWrites) {
	outcomes := make([]changeOutcome, len(changes))
	recorded := maps.Clone(st.Recorded)
	if recorded == nil {
		recorded = map[string]bool{}
	}
	counts := maps.Clone(st.Users)
	if counts == nil {
		counts = map[string]int64{}
	}
	var w CountWrites
	for i, c := range changes {
		d := deltas[i]
		switch {
		case d.Empty():
			outcomes[i] = changeEmpty
			continue
		case recorded[c.EventID]:
			outcomes[i] = changeDuplicate
			continue
		case !st.State.Horizon.IsZero() && !c.At.After(st.State.Horizon):
			outcomes[i] = changeCovered
			continue
		}
		applied := d.Counters.Clone()
		applied.Add(CounterTokens, CounterUniqueUsers, moveUserCounts(counts, d.Users))
		applied.Compact()
		w.Applied = append(w.Applied, AppliedChange{EventID: c.EventID, ItemID: c.ItemID(), At: c.At, AppliedAt: now,
			Counters: applied, Users: d.Users})
		recorded[c.EventID] = true
		outcomes[i] = changeApplied
	}
	w.Users = changedCounts(st.Users, counts)
	return outcomes, w
}

// moveUserCounts adds changes to the users' token counts and returns how
// the unique users counter moves: by one for each user whose count crosses
// between 0 and more.
func moveUserCounts(counts, changes map[string]int64) (unique int64) {
	for u, n := range changes {
		old := counts[u]
		counts[u] = old + n
		unique += positive(old+n) - positive(old)
	}
	return unique
}

// positive is 1 for a count above zero: a user who holds a token.
func positive(n int64) int64 {
	if n > 0 {
		return 1
	}
	return 0
}

// changedCounts is the counts of after that differ from before's.
func changedCounts(before, after map[string]int64) map[string]int64 {
	var out map[string]int64
	for u, n := range after {
		if n != before[u] {
			if out == nil {
				out = map[string]int64{}
			}
			out[u] = n
		}
	}
	return out
}

// logActivity logs the trend of applied changes as fields, one line per
// call that added any: log-based metrics chart tokens created, used and
// removed per day from them.
func (s *Service) logActivity(ctx context.Context, sum StatsApplied, trend Counters) {
	total := func(group string) int64 {
		var n int64
		for _, v := range trend[group] {
			n += v
		}
		return n
	}
	sum.Created, sum.Used, sum.Removed = total(CounterCreated), total(CounterUsed), total(CounterRemoved)
	sum.Linked, sum.Repaired = total(CounterLinked), total(CounterRepaired)
	if sum.Created == 0 && sum.Used == 0 && sum.Removed == 0 && sum.Repaired == 0 {
		return
	}
	Logger(ctx).LogAttrs(ctx, slog.LevelInfo, "token activity",
		slog.Int64("created", sum.Created), slog.Int64("used", sum.Used), slog.Int64("removed", sum.Removed),
		slog.Int64("linked", sum.Linked), slog.Int64("repaired", sum.Repaired),
		slog.Int("applied", sum.Applied))
}
