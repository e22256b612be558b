package lifecycle_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// ChangeDelta for every kind of change a writer can make.
func TestChangeDelta(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 28, 14, 0, 0, 0, time.UTC) // the write's day: 2026-11-28
	day := func(d int) time.Time { return time.Date(2026, 11, d, 9, 30, 0, 0, time.UTC) }
	active := func(mutate ...func(*lifecycle.TokenSummary)) *lifecycle.TokenSummary {
		s := &lifecycle.TokenSummary{ItemID: "item-1", UserID: "user-1", Status: lifecycle.StatusActive,
			InstitutionName: "Chase Bank", Environment: "sandbox",
			CreatedAt: day(1), UpdatedAt: day(2), LastUsedAt: day(20)}
		for _, m := range mutate {
			m(s)
		}
		return s
	}
	// token is what one active Chase sandbox token of user-1 last used on
	// 2026-11-20 counts for, times sign.
	token := func(sign int64) lifecycle.Counters {
		return lifecycle.Counters{
			"tokens": {"total": sign}, "status": {"active": sign}, "institutions": {"Chase Bank": sign},
			"environments": {"sandbox": sign}, "activity": {"2026-11-20": sign},
		}
	}
	with := func(c lifecycle.Counters, group, key string, n int64) lifecycle.Counters {
		c.Add(group, key, n)
		return c.Compact()
	}
	users := func(kv ...any) map[string]int64 {
		m := map[string]int64{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = int64(kv[i+1].(int))
		}
		return m
	}
	tests := []struct {
		name     string
		old, new *lifecycle.TokenSummary
		at       time.Time
		want     lifecycle.StatsDelta
	}{
		{"create", nil, active(), at,
			lifecycle.StatsDelta{Counters: with(token(1), "created", "2026-11-28", 1), Users: users("user-1", 1)}},
		{"create with an error: an error token", nil, active(func(s *lifecycle.TokenSummary) { s.ErrorCode = "ITEM_LOGIN_REQUIRED" }), at,
			lifecycle.StatsDelta{Counters: with(with(token(1), "created", "2026-11-28", 1), "tokens", "error", 1), Users: users("user-1", 1)}},
		{"delete", active(), nil, at,
			lifecycle.StatsDelta{Counters: with(token(-1), "removed", "2026-11-28", 1), Users: users("user-1", -1)}},
		{"validation: nothing counted changes", active(), active(func(s *lifecycle.TokenSummary) { s.UpdatedAt = day(27) }), at,
			lifecycle.StatsDelta{Counters: lifecycle.Counters{}, Users: users()}},
		{"used again the same day: not used twice", active(), active(func(s *lifecycle.TokenSummary) { s.LastUsedAt = day(20).Add(time.Hour) }), at,
			lifecycle.StatsDelta{Counters: lifecycle.Counters{}, Users: users()}},
		{"used on a later day: used once, activity moves", active(), active(func(s *lifecycle.TokenSummary) { s.LastUsedAt = day(28) }), at,
			lifecycle.StatsDelta{Counters: lifecycle.Counters{"activity": {"2026-11-20": -1, "2026-11-28": 1}, "used": {"2026-11-28": 1}}, Users: users()}},
		{"first use ever", active(func(s *lifecycle.TokenSummary) { s.LastUsedAt = time.Time{} }), active(func(s *lifecycle.TokenSummary) { s.LastUsedAt = day(28) }), at,
			lifecycle.StatsDelta{Counters: lifecycle.Counters{"activity": {"2026-11-02": -1, "2026-11-28": 1}, "used": {"2026-11-28": 1}}, Users: users()}},
		{"marked expired: leaves active, error and activity", active(func(s *lifecycle.TokenSummary) { s.ErrorCode = "X" }),
			active(func(s *lifecycle.TokenSummary) { s.Status, s.ErrorCode = lifecycle.StatusExpired, "ITEM_NOT_FOUND" }), at,
			lifecycle.StatsDelta{Counters: lifecycle.Counters{"status": {"active": -1, "expired": 1}, "tokens": {"error": -1},
				"activity": {"2026-11-20": -1}}, Users: users()}},
		{"error resolved: repaired", active(func(s *lifecycle.TokenSummary) { s.ErrorCode = "ITEM_LOGIN_REQUIRED" }), active(), at,
			lifecycle.StatsDelta{Counters: lifecycle.Counters{"tokens": {"error": -1}, "repaired": {"2026-11-28": 1}}, Users: users()}},
		{"revoked", active(), active(func(s *lifecycle.TokenSummary) { s.Status = lifecycle.StatusRevoked }), at,
			lifecycle.StatsDelta{Counters: lifecycle.Counters{"status": {"active": -1, "revoked": 1}, "activity": {"2026-11-20": -1}}, Users: users()}},
		{"an unknown status counts as other, not active", nil, active(func(s *lifecycle.TokenSummary) { s.Status = "error" }), at,
			lifecycle.StatsDelta{Counters: lifecycle.Counters{"tokens": {"total": 1}, "status": {"other": 1}, "institutions": {"Chase Bank": 1},
				"environments": {"sandbox": 1}, "created": {"2026-11-28": 1}}, Users: users("user-1", 1)}},
		{"moved to another user", active(), active(func(s *lifecycle.TokenSummary) { s.UserID = "user-2" }), at,
			lifecycle.StatsDelta{Counters: lifecycle.Counters{}, Users: users("user-1", -1, "user-2", 1)}},
		{"institution renamed, environment set", active(func(s *lifecycle.TokenSummary) { s.Environment = "" }),
			active(func(s *lifecycle.TokenSummary) { s.InstitutionName = " Chase " + strings.Repeat("x", 300) }), at,
			lifecycle.StatsDelta{Counters: lifecycle.Counters{"institutions": {"Chase Bank": -1, "Chase " + strings.Repeat("x", 250): 1},
				"environments": {"unknown": -1, "sandbox": 1}}, Users: users()}},
		{"no name, no environment, no user, no times", nil, &lifecycle.TokenSummary{ItemID: "odd", Status: lifecycle.StatusActive}, at,
			lifecycle.StatsDelta{Counters: lifecycle.Counters{"tokens": {"total": 1}, "status": {"active": 1}, "institutions": {"Unknown": 1},
				"environments": {"unknown": 1}, "activity": {"none": 1}, "created": {"2026-11-28": 1}}, Users: users()}},
		{"a legacy document migrated: the token is created", nil, active(), at,
			lifecycle.StatsDelta{Counters: with(token(1), "created", "2026-11-28", 1), Users: users("user-1", 1)}},
		{"not a token before or after (legacy per-user document)", nil, nil, at,
			lifecycle.StatsDelta{Counters: lifecycle.Counters{}, Users: users()}},
		{"no commit time: no trend", nil, active(), time.Time{},
			lifecycle.StatsDelta{Counters: token(1), Users: users("user-1", 1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := lifecycle.ChangeDelta(lifecycle.TokenChange{EventID: "e", At: tt.at, Old: tt.old, New: tt.new})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ChangeDelta (-want +got):\n%s", diff)
			}
			// A delete undoes a create: the reverse change has the opposite
			// counts (trend aside).
			back := lifecycle.ChangeDelta(lifecycle.TokenChange{EventID: "r", Old: tt.new, New: tt.old})
			sum := got.Counters.Clone()
			sum.AddAll(back.Counters, 1)
			for _, g := range []string{"created", "used", "removed", "linked", "repaired"} {
				delete(sum, g)
			}
			if sum.Compact(); len(sum) != 0 {
				t.Errorf("a change and its reverse do not cancel: %v", sum)
			}
		})
	}
}

// The recount builds the counters the creates' deltas sum to.
func TestRecountMatchesDeltas(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 2, 0, 0, 0, time.UTC)
	rc := lifecycle.NewRecount()
	sum := lifecycle.Counters{}
	users := map[string]int64{}
	for i, st := range []lifecycle.Status{"active", "active", "expired", "revoked", "weird"} {
		s := &lifecycle.TokenSummary{ItemID: string(rune('a' + i)), UserID: []string{"u1", "u1", "u2", "", "u3"}[i], Status: st,
			InstitutionName: "Citi", LastUsedAt: now.AddDate(0, 0, -i*40)}
		rc.Add(s)
		d := lifecycle.ChangeDelta(lifecycle.TokenChange{New: s})
		sum.AddAll(d.Counters, 1)
		for u, n := range d.Users {
			users[u] += n
		}
	}
	sum.Add("tokens", "unique_users", int64(len(users)))
	if diff := cmp.Diff(sum.Compact(), rc.Finish()); diff != "" {
		t.Errorf("recount (-deltas +recount):\n%s", diff)
	}
}
