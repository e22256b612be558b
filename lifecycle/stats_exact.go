package lifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/google/uuid"
)

// How the counters stay exact (DESIGN §12):
//
//   - TokenStats counts each write's delta once (stats_count.go).
//   - ExactAnalytics recounts every token as of one read time T0 and
//     compares with the counters as of T0: the counters read after the
//     recount, minus the deltas of the applied changes committed after T0
//     (their records keep commit time and delta). Any difference is drift.
//   - A repair makes the difference stable before it corrects it: while it
//     holds the one repair lease, it raises the horizon to T0, after which
//     no change committed at or before T0 is applied any more (the recount
//     counted them). The counters' share of changes up to T0 is then fixed,
//     the drift computed after the horizon is final, and it is added to the
//     counters with increments (and per-user corrections), so that changes
//     applied meanwhile are never lost. The first repair on existing data
//     is the backfill.
//   - Unique users are exact through the users' counts: the repair corrects
//     each user whose count is off, and the unique users counter moves
//     with their crossings between 0 and more, as in countChanges.

// repairLeaseTTL bounds a repair (a recount of every token, then the
// corrections): an event-driven function stops after 9 minutes anyway.
const repairLeaseTTL = 10 * time.Minute

// Before a repair fixes its horizon, changes just committed may still be
// on their way to TokenStats: a drift is read again a few times, a little
// apart, so that those in flight land and are not reported as drift.
var (
	driftRechecks     = 3
	driftRecheckDelay = 700 * time.Millisecond
)

// Triggers of a recount beside those of cleanup runs (TriggerHTTP,
// TriggerSchedule, TriggerCLI).
const (
	TriggerRepairRequest = "repair_request" // {"repair": true} on the analytics topic
	TriggerServe         = "serve"          // scripts/serve bringing the counters up to date on start
)

// ExactOptions asks ExactAnalytics for a recount.
type ExactOptions struct {
	// Repair adds the drift found to the counters and records it; without
	// it nothing is written (TokenAnalytics only reads Firestore).
	Repair bool
	// Trigger says who asked: schedule, repair_request, http, cli, serve.
	Trigger string
	// NotBefore: the recount reads the tokens as of this time or later
	// (scripts/serve: its listener's first snapshot).
	NotBefore time.Time
	// UnlessRepairedSince skips a repair when the last one recounted as of
	// this time or later: a repair request that one already answered.
	UnlessRepairedSince time.Time
}

// ExactResult is an exact recount compared with the counters.
type ExactResult struct {
	// Analytics are the recount's, as of its read time (Source
	// SourceRecount), with the counters' trend.
	Analytics *Analytics `json:"analytics"`
	// Drift is recount minus counters as of the same time, per key (zero
	// keys left out): empty when the counters are exact.
	Drift Counters `json:"drift"`
	// UsersDrifted counts users whose token count in the counters was off.
	UsersDrifted int `json:"users_drifted"`
	// CountersInitialized says whether a repair had initialized the
	// counters before this call.
	CountersInitialized bool `json:"counters_initialized"`
	// Repaired: the drift was added to the counters (Repair was asked).
	Repaired bool `json:"repaired"`
	// Repair is the record of the repair, when one ran (or, Skipped, the
	// one that made this one needless).
	Repair *StatsRepair `json:"repair,omitempty"`
	// Skipped: no recount ran, the last repair answered the request
	// (ExactOptions.UnlessRepairedSince); Analytics is nil.
	Skipped bool `json:"skipped,omitempty"`
	// Activity is the users' activity the recount saw, as of its read
	// time: the weekly report's user charts.
	Activity *UserActivity `json:"-"`
}

// Exact reports whether the counters agreed with the recount and were
// initialized: nothing to repair.
func (r *ExactResult) Exact() bool {
	return r.CountersInitialized && len(r.Drift) == 0 && r.UsersDrifted == 0
}

// ExactAnalytics recounts every token as of one read time and compares the
// counters with it (see the top of this file); with Repair it also makes
// the counters exact and records the drift. A repair needs the one repair
// lease: while another holds it, the error has CodeConflict.
func (s *Service) ExactAnalytics(ctx context.Context, opts ExactOptions) (*ExactResult, error) {
	if s.stats == nil {
		return nil, Errorf(CodeUnavailable, "this program keeps no analytics counters")
	}
	log := Logger(ctx)
	started := s.clock.Now()
	if opts.Repair && !opts.UnlessRepairedSince.IsZero() {
		r, err := s.stats.ReadStats(ctx, StatsRead{})
		if err != nil {
			return nil, fmt.Errorf("reading the analytics counters: %w", err)
		}
		if last := r.State.LastRepair; last != nil && !last.ReadTime.Before(opts.UnlessRepairedSince) {
			log.InfoContext(ctx, "analytics repair already done", slog.String("trigger", opts.Trigger),
				slog.String("repair_id", last.ID), slog.Time("read_time", last.ReadTime))
			return &ExactResult{Skipped: true, Repair: last, CountersInitialized: true}, nil
		}
	}
	repairID := ""
	if opts.Repair {
		repairID = uuid.NewString()
		if err := s.stats.ClaimRepair(ctx, repairID, started, started.Add(repairLeaseTTL)); err != nil {
			return nil, err
		}
	}
	res, err := s.exactAnalytics(ctx, opts, repairID, started)
	if opts.Repair && (err != nil || res.Repair == nil) {
		endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalSaveTimeout)
		defer cancel()
		if endErr := s.stats.EndRepair(endCtx, repairID, nil); endErr != nil {
			log.WarnContext(ctx, "releasing the analytics repair lease failed", slog.String("error", endErr.Error()))
		}
	}
	if err != nil {
		return nil, err
	}
	attrs := []slog.Attr{slog.String("trigger", opts.Trigger), slog.Bool("repaired", res.Repaired),
		slog.Bool("counters_initialized", res.CountersInitialized), slog.Int("users_drifted", res.UsersDrifted),
		slog.Int("drift_keys", res.Drift.Keys()), driftAttr(res.Drift),
		slog.Time("as_of", res.Analytics.AsOf)}
	switch {
	case res.Exact():
		log.LogAttrs(ctx, slog.LevelInfo, "analytics counters exact", attrs...)
	case !res.CountersInitialized:
		log.LogAttrs(ctx, slog.LevelInfo, "analytics counters not initialized", attrs...)
	default:
		// Counters that drift lost or doubled an event: worth a look.
		log.LogAttrs(ctx, slog.LevelWarn, "analytics counters drifted", attrs...)
	}
	return res, nil
}

func (s *Service) exactAnalytics(ctx context.Context, opts ExactOptions, repairID string, started time.Time) (*ExactResult, error) {
	rc, t0, err := s.recount(ctx, opts.NotBefore)
	if err != nil {
		return nil, err
	}
	want := rc.Finish()
	var reading *StatsReading
	var cmp statsComparison
	for attempt := 0; ; attempt++ {
		if reading, err = s.stats.ReadStats(ctx, StatsRead{Users: true, ChangesAfter: t0}); err != nil {
			return nil, fmt.Errorf("reading the analytics counters: %w", err)
		}
		cmp = compareStats(want, rc.Users, reading)
		// Counters never initialized drift for good: no use waiting.
		if cmp.exact() || attempt == driftRechecks || reading.State.InitializedAt.IsZero() {
			break
		}
		if err := sleepCtx(ctx, driftRecheckDelay); err != nil {
			return nil, err
		}
	}
	res := &ExactResult{CountersInitialized: !reading.State.InitializedAt.IsZero()}
	if repairID != "" {
		if err := s.stats.RaiseHorizon(ctx, repairID, t0, s.clock.Now()); err != nil {
			return nil, err
		}
		// Final now: no change at or before T0 is applied any more.
		if reading, err = s.stats.ReadStats(ctx, StatsRead{Users: true, ChangesAfter: t0}); err != nil {
			return nil, fmt.Errorf("reading the analytics counters: %w", err)
		}
		cmp = compareStats(want, rc.Users, reading)
		if err := s.applyRepair(ctx, repairID, cmp); err != nil {
			return nil, err
		}
		rec := &StatsRepair{ID: repairID, Trigger: opts.Trigger, ReadTime: t0, StartedAt: started,
			EndedAt: s.clock.Now(), Drift: cmp.drift, UsersDrifted: len(cmp.users), WasInitialized: res.CountersInitialized}
		if err := s.stats.EndRepair(ctx, repairID, rec); err != nil {
			return nil, err
		}
		res.Repaired, res.Repair = true, rec
	}
	res.Drift, res.UsersDrifted = cmp.drift, len(cmp.users)
	a := analyticsFrom(want, s.clock.Now(), 0)
	a.AsOf, a.Source = t0, SourceRecount
	a.Trend = analyticsFrom(reading.Counters, s.clock.Now(), TrendDays).Trend
	res.Analytics = a
	res.Activity = rc.UserActivity(t0)
	return res, nil
}

// applyRepair adds the corrections in calls within the store's bounds.
func (s *Service) applyRepair(ctx context.Context, repairID string, cmp statsComparison) error {
	type key struct{ group, key string }
	var keys []key
	for _, g := range sortedKeys(cmp.shards) {
		for _, k := range sortedKeys(cmp.shards[g]) {
			keys = append(keys, key{g, k})
		}
	}
	users := sortedKeys(cmp.users)
	for len(keys) > 0 || len(users) > 0 {
		counters := Counters{}
		for _, k := range keys[:min(len(keys), maxRepairKeysPerCall)] {
			counters.Add(k.group, k.key, cmp.shards[k.group][k.key])
		}
		keys = keys[min(len(keys), maxRepairKeysPerCall):]
		fix := map[string]int64{}
		for _, u := range users[:min(len(users), maxRepairUsersPerCall)] {
			fix[u] = cmp.users[u]
		}
		users = users[min(len(users), maxRepairUsersPerCall):]
		if err := s.stats.ApplyRepair(ctx, repairID, s.clock.Now(), counters, fix); err != nil {
			return err
		}
	}
	return nil
}

// statsComparison is a recount compared with the counters as of its read
// time.
type statsComparison struct {
	drift  Counters         // recount minus counters, exact groups only
	shards Counters         // what to add to the shards
	users  map[string]int64 // what to add to users' counts
}

func (c statsComparison) exact() bool {
	return len(c.drift) == 0 && len(c.shards) == 0 && len(c.users) == 0
}

// compareStats compares the recount (want, wantUsers) with the counters of
// r as of the recount's read time: r's counters and users' counts minus
// the applied changes committed after it. Unique users as of then are the
// users whose count was above zero, plus whatever the unique users counter
// disagreed with its users' counts at r's read time (never, unless a write
// was lost): the repair adds the users' corrections, which move the
// counter through their crossings, and takes that disagreement away.
func compareStats(want Counters, wantUsers map[string]int64, r *StatsReading) statsComparison {
	asOf := r.Counters.only(exactGroups).Clone()
	users := maps.Clone(r.Users)
	if users == nil {
		users = map[string]int64{}
	}
	for _, ch := range r.Later {
		asOf.AddAll(ch.Counters.only(exactGroups), -1)
		for u, n := range ch.Users {
			users[u] -= n
		}
	}
	var positiveNow, positiveThen int64
	for _, n := range r.Users {
		positiveNow += positive(n)
	}
	for _, n := range users {
		positiveThen += positive(n)
	}
	gap := r.Counters.Get(CounterTokens, CounterUniqueUsers) - positiveNow
	if asOf[CounterTokens] == nil {
		asOf[CounterTokens] = map[string]int64{}
	}
	asOf[CounterTokens][CounterUniqueUsers] = positiveThen + gap

	drift := want.only(exactGroups).Clone()
	drift.AddAll(asOf, -1)
	drift.Compact()
	shards := drift.Clone()
	if shards[CounterTokens] != nil {
		delete(shards[CounterTokens], CounterUniqueUsers)
	}
	shards.Add(CounterTokens, CounterUniqueUsers, -gap)
	shards.Compact()

	fix := map[string]int64{}
	for u, n := range wantUsers {
		if d := n - users[u]; d != 0 {
			fix[u] = d
		}
	}
	for u, n := range users {
		if _, ok := wantUsers[u]; !ok && n != 0 {
			fix[u] = -n
		}
	}
	return statsComparison{drift: drift, shards: shards, users: fix}
}

// driftAttr is the drift as a log group of groups.
func driftAttr(c Counters) slog.Attr {
	groups := make([]any, 0, len(c))
	for _, g := range sortedKeys(c) {
		keys := make([]any, 0, len(c[g]))
		for _, k := range sortedKeys(c[g]) {
			keys = append(keys, slog.Int64(k, c[g][k]))
		}
		groups = append(groups, slog.Group(g, keys...))
	}
	return slog.Group("drift", groups...)
}
