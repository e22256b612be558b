package lifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Analytics is the token health report, with the keys of DESIGN §4.
type Analytics struct {
	TotalTokens   int `json:"total_tokens" firestore:"total_tokens"`
	ActiveTokens  int `json:"active_tokens" firestore:"active_tokens"`
	ExpiredTokens int `json:"expired_tokens" firestore:"expired_tokens"`
	RevokedTokens int `json:"revoked_tokens" firestore:"revoked_tokens"`
	// ErrorTokens counts active tokens with an unresolved Plaid error
	// (error_code set, e.g. ITEM_LOGIN_REQUIRED): they need the user.
	ErrorTokens int `json:"error_tokens" firestore:"error_tokens"`
	UniqueUsers int `json:"unique_users" firestore:"unique_users"`
	// StaleTokens30Days counts active tokens whose last activity (see
	// Token.LastActivity) is more than 30 days ago; it includes those of
	// StaleTokens90Days.
	StaleTokens30Days int `json:"stale_tokens_30_days" firestore:"stale_tokens_30_days"`
	StaleTokens90Days int `json:"stale_tokens_90_days" firestore:"stale_tokens_90_days"`
	// Institutions counts every token by institution_name, a missing name
	// as unknownInstitution.
	Institutions map[string]int `json:"institutions" firestore:"institutions"`
	// Environments counts every token by environment, a missing one as
	// unknownEnvironment.
	Environments map[string]int `json:"environments" firestore:"environments"`

	// AsOf is the time the counts are exact for: the read time of the
	// counters, or of the recount.
	AsOf time.Time `json:"as_of,omitzero" firestore:"as_of,omitempty"`
	// Source says where the counts come from: SourceCounters, or
	// SourceRecount (every token was read).
	Source string `json:"source,omitempty" firestore:"source,omitempty"`
	// Trend is the last TrendDays UTC days, oldest first, of tokens
	// created, used and removed, from the counters.
	Trend []TrendDay `json:"trend,omitempty" firestore:"trend,omitempty"`
}

// Sources of the analytics.
const (
	// SourceCounters: read from TokenStats' counters (a handful of
	// documents, whatever the number of tokens).
	SourceCounters = "counters"
	// SourceRecount: counted from every token, because an exact recount
	// was asked for, or because the counters were never initialized (a
	// first deploy on existing data: a repair backfills them).
	SourceRecount = "recount"
)

// Keys for tokens without an institution name or an environment.
const (
	unknownInstitution = "Unknown"
	unknownEnvironment = "unknown"
)

// LogAttrs returns every count as a log field (DESIGN §11: statistics are
// fields, not text), the two maps as groups.
func (a *Analytics) LogAttrs() []slog.Attr {
	group := func(key string, m map[string]int) slog.Attr {
		attrs := make([]any, 0, len(m))
		for k, v := range m {
			attrs = append(attrs, slog.Int(k, v))
		}
		return slog.Group(key, attrs...)
	}
	return []slog.Attr{
		slog.Int("total_tokens", a.TotalTokens), slog.Int("active_tokens", a.ActiveTokens),
		slog.Int("expired_tokens", a.ExpiredTokens), slog.Int("revoked_tokens", a.RevokedTokens),
		slog.Int("error_tokens", a.ErrorTokens), slog.Int("unique_users", a.UniqueUsers),
		slog.Int("stale_tokens_30_days", a.StaleTokens30Days), slog.Int("stale_tokens_90_days", a.StaleTokens90Days),
		group("institutions", a.Institutions), group("environments", a.Environments),
	}
}

// Analytics reports the tokens' health from the counters TokenStats keeps
// (DESIGN §12): it reads statsShards+1 documents, never the tokens. Until
// a repair has initialized the counters (a first deploy on existing data),
// it recounts every token instead and says so (Source SourceRecount): the
// caller then asks for a repair, which backfills them. It never calls
// Plaid.
func (s *Service) Analytics(ctx context.Context) (*Analytics, error) {
	if s.stats == nil {
		return s.streamedAnalytics(ctx)
	}
	r, err := s.stats.ReadStats(ctx, StatsRead{})
	if err != nil {
		return nil, fmt.Errorf("reading the analytics counters: %w", err)
	}
	if r.State.InitializedAt.IsZero() {
		rc, t0, err := s.recount(ctx, time.Time{})
		if err != nil {
			return nil, err
		}
		a := analyticsFrom(rc.Finish(), s.clock.Now(), 0)
		a.AsOf, a.Source = t0, SourceRecount
		Logger(ctx).WarnContext(ctx, "analytics counters are not initialized; counted every token instead (a repair backfills them)")
		return a, nil
	}
	a := analyticsFrom(r.Counters, s.clock.Now(), TrendDays)
	a.AsOf, a.Source = r.ReadTime, SourceCounters
	return a, nil
}

// streamedAnalytics counts every token of the token store, for a service
// built without a stats store: the same counters and rules, from one
// stream of every token projected to the fields it needs.
func (s *Service) streamedAnalytics(ctx context.Context) (*Analytics, error) {
	rc := NewRecount()
	err := s.tokens.Summaries(ctx, func(t *TokenSummary) error {
		rc.Add(t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("computing analytics: %w", err)
	}
	a := analyticsFrom(rc.Finish(), s.clock.Now(), 0)
	a.AsOf, a.Source = s.clock.Now(), SourceRecount
	return a, nil
}

// recount counts every token as of one read time, no earlier than
// notBefore, and returns the recount and its read time.
func (s *Service) recount(ctx context.Context, notBefore time.Time) (*Recount, time.Time, error) {
	rc := NewRecount()
	t0, err := s.stats.RecountTokens(ctx, notBefore, func(t *TokenSummary) error {
		rc.Add(t)
		return nil
	})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("recounting the tokens: %w", err)
	}
	return rc, t0, nil
}

// AnalyticsSnapshot is a dated copy of the analytics, one per weekly run,
// kept in SnapshotsCollection.
type AnalyticsSnapshot struct {
	TakenAt   time.Time `json:"taken_at" firestore:"taken_at"`
	EventID   string    `json:"-" firestore:"event_id"`
	Analytics Analytics `json:"analytics" firestore:"analytics"`
	// Repair is the repair of the counters the snapshot's recount made,
	// with the drift it found (it should be none).
	Repair *StatsRepair `json:"repair,omitempty" firestore:"repair,omitempty"`
	// Activity is the users' activity the recount saw (the weekly
	// report's user charts); nil in snapshots older than it.
	Activity *UserActivity `json:"user_activity,omitempty" firestore:"user_activity,omitempty"`
}

// MaxAnalyticsHistory is the most snapshots AnalyticsHistory returns: a
// year of weekly runs.
const MaxAnalyticsHistory = 52

// SaveAnalyticsSnapshot stores a, and the repair that counted it if any,
// as the snapshot of the CloudEvent eventID, taken now. The document id
// derives from the event id, so a redelivered event stores nothing more: it
// returns false then.
func (s *Service) SaveAnalyticsSnapshot(ctx context.Context, eventID string, a *Analytics, repair *StatsRepair) (bool, error) {
	if eventID == "" {
		return false, Errorf(CodeInvalid, "an analytics snapshot needs the event id")
	}
	snap := AnalyticsSnapshot{TakenAt: s.clock.Now(), EventID: eventID, Analytics: *a, Repair: repair}
	return s.runs.SaveSnapshot(ctx, snap)
}

// SaveWeeklySnapshot stores the snapshot of a weekly recount: its
// analytics, repair and users' activity, as SaveAnalyticsSnapshot does.
func (s *Service) SaveWeeklySnapshot(ctx context.Context, eventID string, res *ExactResult) (bool, error) {
	if eventID == "" {
		return false, Errorf(CodeInvalid, "an analytics snapshot needs the event id")
	}
	snap := AnalyticsSnapshot{TakenAt: s.clock.Now(), EventID: eventID, Analytics: *res.Analytics, Repair: res.Repair,
		Activity: res.Activity}
	return s.runs.SaveSnapshot(ctx, snap)
}

// AnalyticsHistory returns the newest n snapshots (1..MaxAnalyticsHistory),
// newest first.
func (s *Service) AnalyticsHistory(ctx context.Context, n int) ([]AnalyticsSnapshot, error) {
	if n < 1 || n > MaxAnalyticsHistory {
		return nil, Errorf(CodeInvalid, "history must be an integer from 1 to %d", MaxAnalyticsHistory)
	}
	return s.runs.Snapshots(ctx, n)
}
