package lifecycle

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCountChanges walks TokenStats' counting rule case by case, without a
// store: the emulator tests cover the transaction around it.
func TestCountChanges(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 2, 0, 0, 0, time.UTC)
	horizon := now.Add(-time.Hour)
	token := func(user string) *TokenSummary {
		return &TokenSummary{ItemID: "item-" + user, UserID: user, Status: StatusActive, InstitutionName: "Chase Bank",
			Environment: "sandbox", CreatedAt: now.Add(-48 * time.Hour)}
	}
	created := func(id, user string, at time.Time) TokenChange {
		return TokenChange{EventID: id, At: at, New: token(user)}
	}
	deleted := func(id, user string, at time.Time) TokenChange {
		return TokenChange{EventID: id, At: at, Old: token(user)}
	}
	validated := func(id, user string) TokenChange { // no counted field changes
		return TokenChange{EventID: id, At: now, Old: token(user), New: token(user)}
	}
	type want struct {
		Outcomes []changeOutcome
		Applied  []string         // event ids recorded
		Unique   []int64          // the unique users change each applied change made
		Users    map[string]int64 // counts written
	}
	tests := []struct {
		name    string
		changes []TokenChange
		st      CountState
		want    want
	}{
		{"a first token makes a user", []TokenChange{created("e1", "alice", now)}, CountState{},
			want{[]changeOutcome{changeApplied}, []string{"e1"}, []int64{1}, map[string]int64{"alice": 1}}},
		{"a second token does not", []TokenChange{created("e1", "alice", now)}, CountState{Users: map[string]int64{"alice": 1}},
			want{[]changeOutcome{changeApplied}, []string{"e1"}, []int64{0}, map[string]int64{"alice": 2}}},
		{"the last token's removal unmakes the user", []TokenChange{deleted("e1", "bob", now)}, CountState{Users: map[string]int64{"bob": 1}},
			want{[]changeOutcome{changeApplied}, []string{"e1"}, []int64{-1}, map[string]int64{"bob": 0}}},
		{"a redelivery is a duplicate", []TokenChange{created("e1", "alice", now)}, CountState{Recorded: map[string]bool{"e1": true}},
			want{Outcomes: []changeOutcome{changeDuplicate}}},
		{"the same event twice in one call counts once",
			[]TokenChange{created("e1", "alice", now), created("e1", "alice", now)}, CountState{},
			want{[]changeOutcome{changeApplied, changeDuplicate}, []string{"e1"}, []int64{1}, map[string]int64{"alice": 1}}},
		{"a change the repair's recount counted is covered",
			[]TokenChange{created("e1", "alice", horizon), created("e2", "carol", horizon.Add(time.Microsecond))},
			CountState{State: StatsState{Horizon: horizon}},
			want{[]changeOutcome{changeCovered, changeApplied}, []string{"e2"}, []int64{1}, map[string]int64{"carol": 1}}},
		{"a change of no counted field is empty", []TokenChange{validated("e1", "alice")}, CountState{Users: map[string]int64{"alice": 1}},
			want{Outcomes: []changeOutcome{changeEmpty}}},
		{"a user who moves by one and back is not written",
			[]TokenChange{created("e1", "dave", now), deleted("e2", "dave", now)}, CountState{Users: map[string]int64{"dave": 3}},
			want{[]changeOutcome{changeApplied, changeApplied}, []string{"e1", "e2"}, []int64{0, 0}, nil}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			deltas := make([]StatsDelta, len(tc.changes))
			for i, c := range tc.changes {
				deltas[i] = ChangeDelta(c)
			}
			outcomes, w := countChanges(tc.changes, deltas, tc.st, now)
			got := want{Outcomes: outcomes, Users: w.Users}
			for _, a := range w.Applied {
				got.Applied = append(got.Applied, a.EventID)
				got.Unique = append(got.Unique, a.Counters.Get(CounterTokens, CounterUniqueUsers))
				if !a.AppliedAt.Equal(now) || a.ItemID == "" {
					t.Errorf("applied %s: at %v, item %q", a.EventID, a.AppliedAt, a.ItemID)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("countChanges (-want +got):\n%s", diff)
			}
		})
	}
}
