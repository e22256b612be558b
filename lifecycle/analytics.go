package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

// Analytics reports the tokens' health. Firestore counts what it can count
// (aggregation queries: totals per status and error_tokens); the groupings
// it cannot do (institutions, environments, unique users, stale counts)
// come from one stream of the tokens projected to the fields they need, so
// memory holds only the set of user ids and the two maps whatever the size
// of the collection. It never calls Plaid.
//
// The counts run concurrently and are not one snapshot: under concurrent
// writes, total_tokens may differ by a few from the sum of institutions.
func (s *Service) Analytics(ctx context.Context) (*Analytics, error) {
	a, err := s.Records.tokenAnalytics(ctx, s.Clock.Now())
	if err != nil {
		return nil, fmt.Errorf("computing analytics: %w", err)
	}
	return a, nil
}

// tokenCount is one aggregation query of the analytics.
type tokenCount struct {
	query firestore.Query
	dst   *int
}

// tokenAnalytics computes the analytics at now. Records reads the token
// collection here because the counts are Firestore aggregation queries,
// which TokenStore does not abstract.
func (r *Records) tokenAnalytics(ctx context.Context, now time.Time) (*Analytics, error) {
	tokens := r.client.Collection(TokensCollection)
	a := &Analytics{Institutions: map[string]int{}, Environments: map[string]int{}}
	counts := []tokenCount{
		{tokens.Query, &a.TotalTokens},
		{tokens.Where("status", "==", string(StatusActive)), &a.ActiveTokens},
		{tokens.Where("status", "==", string(StatusExpired)), &a.ExpiredTokens},
		{tokens.Where("status", "==", string(StatusRevoked)), &a.RevokedTokens},
		// error_code > "" matches every non-empty string and skips documents
		// without the field. Needs the (status, error_code) composite index
		// of CompositeIndexes.
		{tokens.Where("status", "==", string(StatusActive)).Where("error_code", ">", ""), &a.ErrorTokens},
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range counts {
		g.Go(func() error {
			n, err := countQuery(gctx, c.query)
			if err != nil {
				return err
			}
			*c.dst = n
			return nil
		})
	}
	var groups tokenGroups
	g.Go(func() error {
		var err error
		groups, err = r.groupTokens(gctx, now)
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	a.Institutions, a.Environments = groups.institutions, groups.environments
	a.UniqueUsers, a.StaleTokens30Days, a.StaleTokens90Days = groups.users, groups.stale30, groups.stale90
	return a, nil
}

// countQuery runs a COUNT aggregation of q.
func countQuery(ctx context.Context, q firestore.Query) (int, error) {
	res, err := q.NewAggregationQuery().WithCount("count").Get(ctx)
	if err != nil {
		return 0, queryError("counting tokens", err)
	}
	var out struct {
		Count int64 `firestore:"count"`
	}
	if err := res.DataTo(&out); err != nil {
		return 0, fmt.Errorf("decoding token count: %w", err)
	}
	return int(out.Count), nil
}

// tokenGroups are the analytics that need every token.
type tokenGroups struct {
	institutions, environments map[string]int
	users, stale30, stale90    int
}

// analyticsFields are the only fields the grouping stream reads.
var analyticsFields = []string{
	"user_id", "status", "institution_name", "environment", "created_at", "updated_at", "last_used_at",
}

// groupTokens streams every token, projected to analyticsFields, and
// groups them.
func (r *Records) groupTokens(ctx context.Context, now time.Time) (tokenGroups, error) {
	g := tokenGroups{institutions: map[string]int{}, environments: map[string]int{}}
	users := map[string]struct{}{}
	iter := r.client.Collection(TokensCollection).Select(analyticsFields...).Documents(ctx)
	defer iter.Stop()
	for {
		snap, err := iter.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return g, queryError("reading tokens for analytics", err)
		}
		t := summaryToken(snap.Data())
		inst := t.InstitutionName
		if strings.TrimSpace(inst) == "" {
			inst = UnknownInstitution
		}
		g.institutions[inst]++
		env := t.Environment
		if strings.TrimSpace(env) == "" {
			env = UnknownEnvironment
		}
		g.environments[env]++
		if t.UserID != "" {
			users[t.UserID] = struct{}{}
		}
		if t.Status == StatusActive {
			idle := now.Sub(t.LastActivity())
			if idle > staleWindow30 {
				g.stale30++
			}
			if idle > staleWindow90 {
				g.stale90++
			}
		}
	}
	g.users = len(users)
	return g, nil
}

// summaryToken reads the projected fields leniently: a field of an
// unexpected type (legacy data) reads as unset instead of failing the whole
// report.
func summaryToken(data map[string]any) *Token {
	str := func(k string) string { v, _ := data[k].(string); return v }
	ts := func(k string) time.Time { v, _ := data[k].(time.Time); return v }
	return &Token{
		UserID: str("user_id"), Status: Status(str("status")),
		InstitutionName: str("institution_name"), Environment: str("environment"),
		CreatedAt: ts("created_at"), UpdatedAt: ts("updated_at"), LastUsedAt: ts("last_used_at"),
	}
}

// queryError maps a failed query. FailedPrecondition here means a missing
// index, not a changed document (what storeError would make of it): an
// operator's fault that a retry does not fix.
func queryError(what string, err error) error {
	if status.Code(err) == codes.FailedPrecondition {
		return WrapError(CodeInternal, err, what+": Firestore refused the query (missing index?)")
	}
	return fmt.Errorf("%s: %w", what, storeError(err))
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
	return s.Records.saveSnapshot(ctx, snap)
}

// AnalyticsHistory returns the newest n snapshots (1..MaxAnalyticsHistory),
// newest first.
func (s *Service) AnalyticsHistory(ctx context.Context, n int) ([]AnalyticsSnapshot, error) {
	if n < 1 || n > MaxAnalyticsHistory {
		return nil, Errorf(CodeInvalid, "history must be an integer from 1 to %d", MaxAnalyticsHistory)
	}
	return s.Records.snapshots(ctx, n)
}

func (r *Records) saveSnapshot(ctx context.Context, snap AnalyticsSnapshot) (bool, error) {
	ref := r.client.Collection(SnapshotsCollection).Doc(eventDocID("analytics", snap.EventID))
	_, err := ref.Create(ctx, snap)
	if status.Code(err) == codes.AlreadyExists {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("saving analytics snapshot of event %s: %w", snap.EventID, storeError(err))
	}
	return true, nil
}

// snapshots reads the newest n snapshots (single-field index on taken_at).
func (r *Records) snapshots(ctx context.Context, n int) ([]AnalyticsSnapshot, error) {
	iter := r.client.Collection(SnapshotsCollection).OrderBy("taken_at", firestore.Desc).Limit(n).Documents(ctx)
	defer iter.Stop()
	out := make([]AnalyticsSnapshot, 0, n)
	for {
		snap, err := iter.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, queryError("reading analytics history", err)
		}
		var s AnalyticsSnapshot
		if err := snap.DataTo(&s); err != nil {
			return nil, fmt.Errorf("decoding analytics snapshot %s: %w", snap.Ref.ID, err)
		}
		if s.Analytics.Institutions == nil {
			s.Analytics.Institutions = map[string]int{}
		}
		if s.Analytics.Environments == nil {
			s.Analytics.Environments = map[string]int{}
		}
		out = append(out, s)
	}
}
