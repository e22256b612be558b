package lifecycle

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strings"
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
	// as UnknownInstitution.
	Institutions map[string]int `json:"institutions" firestore:"institutions"`
	// Environments counts every token by environment, a missing one as
	// UnknownEnvironment.
	Environments map[string]int `json:"environments" firestore:"environments"`
}

// Keys for tokens without an institution name or an environment.
const (
	UnknownInstitution = "Unknown"
	UnknownEnvironment = "unknown"
)

// Stale windows of the analytics (fixed by their keys, whatever STALE_DAYS
// says about cleanup).
const (
	staleWindow30 = 30 * 24 * time.Hour
	staleWindow90 = 90 * 24 * time.Hour
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

// Analytics reports the tokens' health, counted from one stream of every
// token projected to the fields it needs (TokenStore.Summaries): memory
// holds only the set of user ids and the two maps whatever the size of the
// collection. It never calls Plaid.
func (s *Service) Analytics(ctx context.Context) (*Analytics, error) {
	now := s.Clock.Now()
	a := &Analytics{Institutions: map[string]int{}, Environments: map[string]int{}}
	users := map[string]struct{}{}
	err := s.Tokens.Summaries(ctx, func(t *TokenSummary) error {
		a.TotalTokens++
		switch t.Status {
		case StatusActive:
			a.ActiveTokens++
			if t.ErrorCode != "" {
				a.ErrorTokens++
			}
			idle := now.Sub(t.LastActivity())
			if idle > staleWindow30 {
				a.StaleTokens30Days++
			}
			if idle > staleWindow90 {
				a.StaleTokens90Days++
			}
		case StatusExpired:
			a.ExpiredTokens++
		case StatusRevoked:
			a.RevokedTokens++
		}
		a.Institutions[cmp.Or(strings.TrimSpace(t.InstitutionName), UnknownInstitution)]++
		a.Environments[cmp.Or(strings.TrimSpace(t.Environment), UnknownEnvironment)]++
		if t.UserID != "" {
			users[t.UserID] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("computing analytics: %w", err)
	}
	a.UniqueUsers = len(users)
	return a, nil
}

// AnalyticsSnapshot is a dated copy of the analytics, one per weekly run,
// kept in SnapshotsCollection.
type AnalyticsSnapshot struct {
	TakenAt   time.Time `json:"taken_at" firestore:"taken_at"`
	EventID   string    `json:"-" firestore:"event_id"`
	Analytics Analytics `json:"analytics" firestore:"analytics"`
}

// MaxAnalyticsHistory is the most snapshots AnalyticsHistory returns: a
// year of weekly runs.
const MaxAnalyticsHistory = 52

// SaveAnalyticsSnapshot stores a as the snapshot of the CloudEvent eventID,
// taken now. The document id derives from the event id, so a redelivered
// event stores nothing more: it returns false then.
func (s *Service) SaveAnalyticsSnapshot(ctx context.Context, eventID string, a *Analytics) (bool, error) {
	if eventID == "" {
		return false, Errorf(CodeInvalid, "an analytics snapshot needs the event id")
	}
	snap := AnalyticsSnapshot{TakenAt: s.Clock.Now(), EventID: eventID, Analytics: *a}
	return s.Runs.SaveSnapshot(ctx, snap)
}

// AnalyticsHistory returns the newest n snapshots (1..MaxAnalyticsHistory),
// newest first.
func (s *Service) AnalyticsHistory(ctx context.Context, n int) ([]AnalyticsSnapshot, error) {
	if n < 1 || n > MaxAnalyticsHistory {
		return nil, Errorf(CodeInvalid, "history must be an integer from 1 to %d", MaxAnalyticsHistory)
	}
	return s.Runs.Snapshots(ctx, n)
}
