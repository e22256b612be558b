package lifecycle

import (
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// The analytics counters (DESIGN §12): every write to plaid_tokens, by any
// writer, becomes one TokenChange (the document before and after), and
// ChangeDelta turns it into counter deltas. Deltas are sums, so they
// commute: applied exactly once each (the event id is recorded with the
// increments), the counters are exact whatever order and how many times
// Eventarc delivers the events. An exact recount builds the very same
// counters from every document (RecountCounters), so the two compare key
// by key.

// TokenChange is one write to a plaid_tokens document.
type TokenChange struct {
	// EventID identifies the write: the CloudEvent id of Eventarc's
	// delivery (the same on every redelivery), or an id derived from the
	// document and its update time.
	EventID string
	// At is the write's commit time: the new document's update time, or for
	// a delete the event's time.
	At time.Time
	// Old and New are the document before and after the write; nil when it
	// did not exist or is not a token (DESIGN §5: a document without a
	// status, such as the old service's per-user documents).
	Old, New *TokenSummary
}

// ItemID is the id of the document the change wrote.
func (c *TokenChange) ItemID() string {
	if c.New != nil {
		return c.New.ItemID
	}
	if c.Old != nil {
		return c.Old.ItemID
	}
	return ""
}

// Counter groups: a Counters value maps a group to its counts by key.
const (
	// CounterTokens holds the scalar counts, keyed by CounterTotal,
	// CounterError and CounterUniqueUsers.
	CounterTokens = "tokens"
	// CounterStatus counts tokens by status: active, expired, revoked, and
	// statusOther for a status this service does not know.
	CounterStatus = "status"
	// CounterInstitutions counts tokens by institution name
	// (unknownInstitution when missing).
	CounterInstitutions = "institutions"
	// CounterEnvironments counts tokens by environment (unknownEnvironment
	// when missing).
	CounterEnvironments = "environments"
	// CounterActivity counts active tokens by the UTC day (YYYY-MM-DD) of
	// their last activity (TokenSummary.LastActivity), noActivity when
	// they have no time at all: the stale counts come from it.
	CounterActivity = "activity"
	// CounterCreated, CounterUsed and CounterRemoved are the trend: per UTC
	// day of the write, tokens created, tokens whose last_used_at moved to
	// a later day, and tokens removed. Only events keep them (a recount
	// cannot see the past), so they take no part in drift and repair.
	CounterCreated = "created"
	CounterUsed    = "used"
	CounterRemoved = "removed"
	// CounterLinked and CounterRepaired are the trend of the app's side of
	// an Item's life, per UTC day of the write: Items linked (a token
	// created active, its created_at on the write's own day: a migrated or
	// restored document keeps its old created_at and is no new link), and
	// Items repaired (an active token's error_code cleared, whoever cleared
	// it: a verification after update mode, a validation, LOGIN_REPAIRED).
	CounterLinked   = "linked"
	CounterRepaired = "repaired"
)

// Keys of the CounterTokens group, the status key of unknown statuses and
// the activity key of tokens without any activity time.
const (
	CounterTotal       = "total"
	CounterError       = "error"
	CounterUniqueUsers = "unique_users"
	statusOther        = "other"
	noActivity         = "none"
)

// exactGroups are the groups an exact recount rebuilds and a repair
// corrects: everything but the trend.
var exactGroups = []string{CounterTokens, CounterStatus, CounterInstitutions, CounterEnvironments, CounterActivity}

// trendGroups are the per-day trend groups.
var trendGroups = []string{CounterCreated, CounterUsed, CounterRemoved, CounterLinked, CounterRepaired}

// maxCounterKey bounds a counter key in bytes. Institution names and
// environments come from any writer; a key is also a Firestore field name
// (at most 1,500 bytes), so longer values are cut, the same way in the
// counters and in the recount.
const maxCounterKey = 256

// Counters are counts by group and key. A Counters value is also a delta
// (a change to counts) and a drift (recount minus counters): they add.
type Counters map[string]map[string]int64

// Add adds n to group's key.
func (c Counters) Add(group, key string, n int64) {
	if n == 0 {
		return
	}
	m := c[group]
	if m == nil {
		m = map[string]int64{}
		c[group] = m
	}
	m[key] += n
}

// Get returns group's count for key.
func (c Counters) Get(group, key string) int64 { return c[group][key] }

// AddAll adds sign times every count of d.
func (c Counters) AddAll(d Counters, sign int64) {
	for g, m := range d {
		for k, n := range m {
			c.Add(g, k, sign*n)
		}
	}
}

// Keys counts the keys of every group.
func (c Counters) Keys() int {
	n := 0
	for _, m := range c {
		n += len(m)
	}
	return n
}

// Clone returns a deep copy.
func (c Counters) Clone() Counters {
	out := make(Counters, len(c))
	for g, m := range c {
		out[g] = maps.Clone(m)
	}
	return out
}

// Compact drops zero counts and empty groups, and returns c.
func (c Counters) Compact() Counters {
	for g, m := range c {
		maps.DeleteFunc(m, func(_ string, n int64) bool { return n == 0 })
		if len(m) == 0 {
			delete(c, g)
		}
	}
	return c
}

// only returns the groups of c named in groups (shared, not copied).
func (c Counters) only(groups []string) Counters {
	out := Counters{}
	for _, g := range groups {
		if m, ok := c[g]; ok {
			out[g] = m
		}
	}
	return out
}

// StatsDelta is what one change does to the counters: the counts, and each
// user's token count. The change of CounterUniqueUsers is not in it: it
// depends on the users' counts before the change, which only the store
// knows (a user whose count moves between 0 and more moves it).
type StatsDelta struct {
	Counters Counters
	Users    map[string]int64
}

// Empty reports whether the delta changes nothing.
func (d StatsDelta) Empty() bool { return len(d.Counters) == 0 && len(d.Users) == 0 }

// ChangeDelta is the pure function from one write to counter deltas: the
// new document's contribution minus the old one's, and the trend of the
// write's day. Writes that change none of the counted fields (a
// validation, a re-encryption, last_used_at moving within a day) have an
// empty delta.
func ChangeDelta(c TokenChange) StatsDelta {
	d := StatsDelta{Counters: Counters{}, Users: map[string]int64{}}
	contribute(d, c.Old, -1)
	contribute(d, c.New, +1)
	if !c.At.IsZero() {
		day := dayKey(c.At)
		switch {
		case c.Old == nil && c.New != nil:
			d.Counters.Add(CounterCreated, day, 1)
		case c.Old != nil && c.New == nil:
			d.Counters.Add(CounterRemoved, day, 1)
		case c.Old != nil && c.New != nil && usedLater(c.Old.LastUsedAt, c.New.LastUsedAt):
			d.Counters.Add(CounterUsed, day, 1)
		}
		if c.Old == nil && c.New != nil && c.New.Status == StatusActive && !c.New.CreatedAt.IsZero() && dayKey(c.New.CreatedAt) == day {
			d.Counters.Add(CounterLinked, day, 1)
		}
		if c.Old != nil && c.New != nil && c.Old.Status == StatusActive && c.Old.ErrorCode != "" &&
			c.New.Status == StatusActive && c.New.ErrorCode == "" {
			d.Counters.Add(CounterRepaired, day, 1)
		}
	}
	d.Counters.Compact()
	maps.DeleteFunc(d.Users, func(_ string, n int64) bool { return n == 0 })
	return d
}

// contribute adds sign times what token t counts for; nil counts nothing.
func contribute(d StatsDelta, t *TokenSummary, sign int64) {
	if t == nil {
		return
	}
	d.Counters.Add(CounterTokens, CounterTotal, sign)
	d.Counters.Add(CounterStatus, statusKey(t.Status), sign)
	if t.Status == StatusActive {
		if t.ErrorCode != "" {
			d.Counters.Add(CounterTokens, CounterError, sign)
		}
		d.Counters.Add(CounterActivity, activityKey(t.LastActivity()), sign)
	}
	d.Counters.Add(CounterInstitutions, counterKey(t.InstitutionName, unknownInstitution), sign)
	d.Counters.Add(CounterEnvironments, counterKey(t.Environment, unknownEnvironment), sign)
	if t.UserID != "" {
		d.Users[t.UserID] += sign
	}
}

// usedLater reports whether last_used_at moved to a later UTC day: a token
// used several times in a day counts once for that day.
func usedLater(old, new time.Time) bool {
	if new.IsZero() {
		return false
	}
	return old.IsZero() || dayKey(new) > dayKey(old)
}

func statusKey(s Status) string {
	if s.Valid() {
		return string(s)
	}
	return statusOther
}

func activityKey(t time.Time) string {
	if t.IsZero() {
		return noActivity
	}
	return dayKey(t)
}

// dayKey is t's UTC date, YYYY-MM-DD: keys sort as the days do.
func dayKey(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// counterKey is the key a name counts under: trimmed, cut to
// maxCounterKey bytes on a rune boundary, dflt when empty.
func counterKey(name, dflt string) string {
	name = strings.TrimSpace(name)
	if name == "" {
		return dflt
	}
	if len(name) > maxCounterKey {
		cut := maxCounterKey
		for cut > 0 && !utf8.RuneStart(name[cut]) {
			cut--
		}
		name = name[:cut]
	}
	return name
}

// Recount accumulates the counters of a set of tokens: what the events'
// deltas sum to when every token was created once.
type Recount struct {
	Counters Counters
	Users    map[string]int64 // tokens per user
	// activity is the users' latest use and active tokens, for the
	// weekly report (user_activity.go).
	activity userActivityCount
}

// NewRecount returns an empty recount.
func NewRecount() *Recount {
	return &Recount{Counters: Counters{}, Users: map[string]int64{}}
}

// Add counts one token.
func (r *Recount) Add(t *TokenSummary) {
	d := StatsDelta{Counters: r.Counters, Users: r.Users}
	contribute(d, t, +1)
	r.activity.add(t)
}

// Finish sets the unique users count and returns the counters.
func (r *Recount) Finish() Counters {
	var unique int64
	for _, n := range r.Users {
		if n > 0 {
			unique++
		}
	}
	if r.Counters[CounterTokens] != nil {
		delete(r.Counters[CounterTokens], CounterUniqueUsers)
	}
	r.Counters.Add(CounterTokens, CounterUniqueUsers, unique)
	return r.Counters.Compact()
}

// Stale windows of the analytics, in whole UTC days (fixed by their keys,
// whatever STALE_DAYS says about cleanup).
const (
	staleDays30 = 30
	staleDays90 = 90
)

// TrendDays is how many days of trend the analytics report.
const TrendDays = 14

// TrendDay is one day of the trend.
type TrendDay struct {
	Date    string `json:"date" firestore:"date"` // YYYY-MM-DD, UTC
	Created int64  `json:"created" firestore:"created"`
	Used    int64  `json:"used" firestore:"used"`
	Removed int64  `json:"removed" firestore:"removed"`
	// Linked and Repaired are Items linked and repaired that day
	// (CounterLinked, CounterRepaired).
	Linked   int64 `json:"linked" firestore:"linked"`
	Repaired int64 `json:"repaired" firestore:"repaired"`
}

// analyticsFrom renders counters as DESIGN §4's analytics on the UTC day
// of now. Stale counts are in whole UTC days: an active token is stale for
// 30 days when the UTC day of its last activity is before the day 30 days
// before today's UTC date (so on 2026-11-28 a token last active on
// 2026-10-28 or earlier is; one active on 2026-10-29 is not), and tokens
// without any activity time always are. Zero counts are left out of the
// maps.
func analyticsFrom(c Counters, now time.Time, trendDays int) *Analytics {
	today := now.UTC().Truncate(24 * time.Hour)
	cut30 := dayKey(today.AddDate(0, 0, -staleDays30))
	cut90 := dayKey(today.AddDate(0, 0, -staleDays90))
	a := &Analytics{
		TotalTokens:   int(c.Get(CounterTokens, CounterTotal)),
		ActiveTokens:  int(c.Get(CounterStatus, string(StatusActive))),
		ExpiredTokens: int(c.Get(CounterStatus, string(StatusExpired))),
		RevokedTokens: int(c.Get(CounterStatus, string(StatusRevoked))),
		ErrorTokens:   int(c.Get(CounterTokens, CounterError)),
		UniqueUsers:   int(c.Get(CounterTokens, CounterUniqueUsers)),
		Institutions:  nonZero(c[CounterInstitutions]),
		Environments:  nonZero(c[CounterEnvironments]),
	}
	for day, n := range c[CounterActivity] {
		if day == noActivity || day < cut30 {
			a.StaleTokens30Days += int(n)
		}
		if day == noActivity || day < cut90 {
			a.StaleTokens90Days += int(n)
		}
	}
	for i := trendDays - 1; i >= 0; i-- {
		day := dayKey(today.AddDate(0, 0, -i))
		a.Trend = append(a.Trend, TrendDay{Date: day, Created: c.Get(CounterCreated, day),
			Used: c.Get(CounterUsed, day), Removed: c.Get(CounterRemoved, day),
			Linked: c.Get(CounterLinked, day), Repaired: c.Get(CounterRepaired, day)})
	}
	return a
}

func nonZero(m map[string]int64) map[string]int {
	out := make(map[string]int, len(m))
	for k, n := range m {
		if n != 0 {
			out[k] = int(n)
		}
	}
	return out
}

// TokenSummaryFromDocument reads a plaid_tokens document's fields the way
// every reader of this package does (leniently: see tokenFromData). ok is
// false when the document is not a token.
func TokenSummaryFromDocument(itemID string, fields map[string]any) (s *TokenSummary, ok bool) {
	return summaryFromData(itemID, fields)
}

// TokenChangeFromEvent turns an Eventarc Firestore document event into the
// write it reports. ok is false when the document is not one of
// plaid_tokens/{item_id} (a trigger filters on that path; anything else is
// ignored). eventTime, the CloudEvent's time, is the commit time of a
// delete; a create or update has its document's update time.
func TokenChangeFromEvent(eventID string, eventTime time.Time, ev *DocumentEvent) (c TokenChange, ok bool) {
	c = TokenChange{EventID: eventID, At: eventTime}
	for _, st := range []*DocumentState{ev.Old, ev.New} {
		if st != nil && !isTokenDocument(st.Name) {
			return c, false
		}
	}
	if ev.Old != nil {
		c.Old, _ = summaryFromData(ev.Old.ID, ev.Old.Fields)
	}
	if ev.New != nil {
		c.New, _ = summaryFromData(ev.New.ID, ev.New.Fields)
		if !ev.New.UpdateTime.IsZero() {
			c.At = ev.New.UpdateTime
		}
	}
	return c, true
}

// isTokenDocument reports whether name is
// projects/{p}/databases/{d}/documents/plaid_tokens/{id}.
func isTokenDocument(name string) bool {
	parts := strings.Split(name, "/")
	return len(parts) == 7 && parts[5] == TokensCollection && ValidItemID(parts[6])
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// Bounds of one StatsStore call, so that one transaction stays well under
// Firestore's 500 writes and 500 field transforms per document: a call of
// CountChanges writes at most one event record and two users' counts
// per change, plus the counter shards.
const (
	MaxTokenChangesPerCall = 100
	maxRepairKeysPerCall   = 400
	maxRepairUsersPerCall  = 200
)

// changeOutcome is what countChanges did with one change.
type changeOutcome string

// Outcomes of a change.
const (
	changeApplied   changeOutcome = "applied"   // counted now
	changeDuplicate changeOutcome = "duplicate" // its event id was applied before
	changeCovered   changeOutcome = "covered"   // a repair's recount counted it already
	changeEmpty     changeOutcome = "empty"     // changes no counter
)

// StatsRead says what ReadStats reads beside the counters.
type StatsRead struct {
	Users        bool      // every user's token count
	ChangesAfter time.Time // the applied changes committed after it; zero: none
}

// StatsReading is what ReadStats read, all at ReadTime.
type StatsReading struct {
	ReadTime time.Time
	Counters Counters // the shards, summed
	State    StatsState
	Users    map[string]int64 // with StatsRead.Users
	Later    []AppliedChange  // with StatsRead.ChangesAfter, in no order
}

// StatsState is the counters' state document.
type StatsState struct {
	// InitializedAt is when the first repair finished: until then the
	// counters hold only what events added (a first deploy on existing
	// data), and analytics recount instead.
	InitializedAt time.Time
	// Horizon is the newest repair's recount time: a change committed at
	// or before it that is not applied yet was counted by that recount.
	Horizon     time.Time
	RepairID    string    // the repair holding the lease, if any
	RepairUntil time.Time // until when it holds it
	LastRepair  *StatsRepair
}

// StatsRepair records one repair of the counters.
type StatsRepair struct {
	ID      string `json:"id" firestore:"id"`
	Trigger string `json:"trigger" firestore:"trigger"`
	// ReadTime is the recount's read time: the counters were compared as of
	// then.
	ReadTime  time.Time `json:"read_time" firestore:"read_time"`
	StartedAt time.Time `json:"started_at" firestore:"started_at"`
	EndedAt   time.Time `json:"ended_at" firestore:"ended_at"`
	// Drift is recount minus counters per key, zero keys left out: what the
	// repair added. It should be empty.
	Drift Counters `json:"drift" firestore:"drift"`
	// UsersDrifted counts the users whose token count was off.
	UsersDrifted int `json:"users_drifted" firestore:"users_drifted"`
	// WasInitialized says whether the counters had been initialized
	// before (false: this repair was the backfill).
	WasInitialized bool `json:"was_initialized" firestore:"was_initialized"`
}
