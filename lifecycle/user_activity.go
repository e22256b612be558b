package lifecycle

import (
	"strconv"
	"time"
)

// User activity for the weekly report (DESIGN §9). The analytics counters
// (§12) count tokens, not users' days: a user active on Monday and Friday
// leaves one last_used_at per token, the Friday. So user activity comes from
// the weekly recount, which reads every token anyway (no extra read, memory
// of one entry per user): each user's latest use and number of active
// Items, exact as of the recount's read time. What it cannot give, the
// distinct users of every past day, the report labels for what it is: users
// by the day of their latest use.

// UserActivity is what the weekly recount found about users, as of AsOf.
type UserActivity struct {
	// AsOf is the recount's read time: every figure is exact as of then.
	AsOf time.Time `json:"as_of" firestore:"as_of"`
	// Users counts users with at least one token, whatever its status.
	Users int `json:"users" firestore:"users"`
	// ActiveDay, ActiveWeek and ActiveMonth count users who used a token
	// (last_used_at) in the 1, 7 and 30 days before AsOf.
	ActiveDay   int `json:"active_day" firestore:"active_day"`
	ActiveWeek  int `json:"active_week" firestore:"active_week"`
	ActiveMonth int `json:"active_month" firestore:"active_month"`
	// LatestUseByDay counts users by the UTC day of their latest use, for
	// the activityDays days up to AsOf's (YYYY-MM-DD keys, zero days left
	// out). A user counts once, on that day.
	LatestUseByDay map[string]int `json:"latest_use_by_day" firestore:"latest_use_by_day"`
	// ItemsPerUser counts users by their number of active tokens: keys
	// "1" to "9", and itemsPerUserMax for ten or more. Users without an
	// active token are not counted.
	ItemsPerUser map[string]int `json:"items_per_user" firestore:"items_per_user"`
}

// activityDays is how many days LatestUseByDay covers.
const activityDays = 28

// itemsPerUserMax is the ItemsPerUser key of users with ten or more active
// tokens.
const itemsPerUserMax = "10+"

// itemsPerUserKey is the ItemsPerUser key of a user with n active tokens.
func itemsPerUserKey(n int64) string {
	if n >= 10 {
		return itemsPerUserMax
	}
	return strconv.FormatInt(n, 10)
}

// userActivityCount accumulates users' latest use and active tokens over a
// recount.
type userActivityCount struct {
	latestUse map[string]time.Time
	active    map[string]int64
}

func (c *userActivityCount) add(t *TokenSummary) {
	if t.UserID == "" {
		return
	}
	if c.latestUse == nil {
		c.latestUse, c.active = map[string]time.Time{}, map[string]int64{}
	}
	if last, ok := c.latestUse[t.UserID]; !ok || t.LastUsedAt.After(last) {
		c.latestUse[t.UserID] = t.LastUsedAt // zero: never used
	}
	if t.Status == StatusActive {
		c.active[t.UserID]++
	}
}

// summary is the activity as of asOf.
func (c *userActivityCount) summary(asOf time.Time) *UserActivity {
	a := &UserActivity{AsOf: asOf, Users: len(c.latestUse), LatestUseByDay: map[string]int{}, ItemsPerUser: map[string]int{}}
	firstDay := dayKey(asOf.UTC().Truncate(24*time.Hour).AddDate(0, 0, -(activityDays - 1)))
	for _, last := range c.latestUse {
		if last.IsZero() || last.After(asOf) {
			// Never used, or a clock ahead of the recount's: not counted
			// as activity before asOf.
			continue
		}
		age := asOf.Sub(last)
		if age <= 24*time.Hour {
			a.ActiveDay++
		}
		if age <= 7*24*time.Hour {
			a.ActiveWeek++
		}
		if age <= 30*24*time.Hour {
			a.ActiveMonth++
		}
		if day := dayKey(last); day >= firstDay {
			a.LatestUseByDay[day]++
		}
	}
	for _, n := range c.active {
		if n > 0 {
			a.ItemsPerUser[itemsPerUserKey(n)]++
		}
	}
	return a
}

// UserActivity is the users' activity the recount saw, as of asOf (its
// read time).
func (r *Recount) UserActivity(asOf time.Time) *UserActivity {
	return r.activity.summary(asOf)
}
