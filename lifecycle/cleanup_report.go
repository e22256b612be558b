package lifecycle

import "log/slog"

// Statistics are a cleanup run's counts, with the keys of DESIGN §4 and a
// few more. Every token checked lands in exactly one of the outcome
// counts, so
//
//	TotalChecked = ExpiredRemoved + RevokedRemoved + StaleRemoved + InvalidMarked
//	             + NeedsUser + Validated + ValidationSkipped + SkippedChanged + Errors
//
// and TotalCleaned = ExpiredRemoved + StaleRemoved + RevokedRemoved:
// invalid tokens are marked, not removed, in the run that finds them.
type Statistics struct {
	TotalChecked   int `json:"total_checked" firestore:"total_checked"`
	ExpiredRemoved int `json:"expired_removed" firestore:"expired_removed"`
	StaleRemoved   int `json:"stale_removed" firestore:"stale_removed"`
	InvalidMarked  int `json:"invalid_marked" firestore:"invalid_marked"`
	RevokedRemoved int `json:"revoked_removed" firestore:"revoked_removed"`
	TotalCleaned   int `json:"total_cleaned" firestore:"total_cleaned"`
	// NeedsUser counts active tokens found needing the user (error_code set).
	NeedsUser int `json:"needs_user" firestore:"needs_user"`
	// Validated counts active tokens Plaid confirmed in good standing.
	Validated int `json:"validated" firestore:"validated"`
	// ValidationSkipped counts active tokens not sent to /item/get because
	// they were validated (by a cleanup or a verified webhook) within
	// VALIDATION_INTERVAL (DESIGN §12).
	ValidationSkipped int `json:"validation_skipped" firestore:"validation_skipped"`
	// SkippedChanged counts documents left alone because they changed or
	// vanished during the run (the app used the token meanwhile).
	SkippedChanged int `json:"skipped_changed" firestore:"skipped_changed"`
	// Errors counts tokens the run could not finish (transient Plaid or
	// Firestore faults, undecryptable tokens): they are kept for the next run.
	Errors int `json:"errors" firestore:"errors"`
}

// Add adds o's counts to s.
func (s *Statistics) Add(o Statistics) {
	s.TotalChecked += o.TotalChecked
	s.ExpiredRemoved += o.ExpiredRemoved
	s.StaleRemoved += o.StaleRemoved
	s.InvalidMarked += o.InvalidMarked
	s.RevokedRemoved += o.RevokedRemoved
	s.NeedsUser += o.NeedsUser
	s.Validated += o.Validated
	s.ValidationSkipped += o.ValidationSkipped
	s.SkippedChanged += o.SkippedChanged
	s.Errors += o.Errors
	s.TotalCleaned = s.ExpiredRemoved + s.StaleRemoved + s.RevokedRemoved
}

// Outcomes is the sum of the outcome counts, which equals TotalChecked.
func (s Statistics) Outcomes() int {
	return s.ExpiredRemoved + s.RevokedRemoved + s.StaleRemoved + s.InvalidMarked +
		s.NeedsUser + s.Validated + s.ValidationSkipped + s.SkippedChanged + s.Errors
}

func (s Statistics) logAttrs() []any {
	return []any{
		slog.Int("total_checked", s.TotalChecked), slog.Int("expired_removed", s.ExpiredRemoved),
		slog.Int("stale_removed", s.StaleRemoved), slog.Int("invalid_marked", s.InvalidMarked),
		slog.Int("revoked_removed", s.RevokedRemoved), slog.Int("total_cleaned", s.TotalCleaned),
		slog.Int("needs_user", s.NeedsUser), slog.Int("validated", s.Validated),
		slog.Int("validation_skipped", s.ValidationSkipped), slog.Int("skipped_changed", s.SkippedChanged),
		slog.Int("errors", s.Errors),
	}
}

// Cleanup triggers, as recorded in run records.
const (
	TriggerHTTP     = "http"
	TriggerSchedule = "schedule"
	TriggerCLI      = "cli"
)

// CleanupResult is the outcome of one invocation of a cleanup run.
type CleanupResult struct {
	RunID      string
	DryRun     bool
	Statistics Statistics // totals of the whole run so far
	Errors     []RunError
	// Done is false when the run checkpointed: it goes on in another
	// invocation (see HandedOver).
	Done bool
	// HandedOver says the checkpointed run's continuation was queued on the
	// cleanup topic. False with Done false: it could not be, and the next
	// scheduled run resumes it once its lease lapses.
	HandedOver bool
}

// CleanupReport is a finished invocation as the API and the CLI's --json
// render it (DESIGN §4).
type CleanupReport struct {
	Message    string     `json:"message"`
	DryRun     bool       `json:"dry_run"`
	RunID      string     `json:"run_id"`
	Statistics Statistics `json:"statistics"`
}

// Report renders r for callers.
func (r *CleanupResult) Report() CleanupReport {
	msg := "Token cleanup completed"
	if r.DryRun {
		msg = "Token cleanup dry run completed"
	}
	return CleanupReport{Message: msg, DryRun: r.DryRun, RunID: r.RunID, Statistics: r.Statistics}
}
