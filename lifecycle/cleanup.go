package lifecycle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"
)

// Statistics are a cleanup run's counts, with the keys of DESIGN §4.
// TotalCleaned = ExpiredRemoved + StaleRemoved + RevokedRemoved: invalid
// tokens are marked, not removed, in the run that finds them.
type Statistics struct {
	TotalChecked   int `json:"total_checked" firestore:"total_checked"`
	ExpiredRemoved int `json:"expired_removed" firestore:"expired_removed"`
	StaleRemoved   int `json:"stale_removed" firestore:"stale_removed"`
	InvalidMarked  int `json:"invalid_marked" firestore:"invalid_marked"`
	RevokedRemoved int `json:"revoked_removed" firestore:"revoked_removed"`
	TotalCleaned   int `json:"total_cleaned" firestore:"total_cleaned"`
	// NeedsUser counts active tokens found needing the user (error_code set).
	NeedsUser int `json:"needs_user" firestore:"needs_user"`
	// SkippedChanged counts documents left alone because they changed during
	// the run (the app used the token meanwhile).
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
	s.SkippedChanged += o.SkippedChanged
	s.Errors += o.Errors
	s.TotalCleaned = s.ExpiredRemoved + s.StaleRemoved + s.RevokedRemoved
}

func (s Statistics) logAttrs() []any {
	return []any{
		slog.Int("total_checked", s.TotalChecked), slog.Int("expired_removed", s.ExpiredRemoved),
		slog.Int("stale_removed", s.StaleRemoved), slog.Int("invalid_marked", s.InvalidMarked),
		slog.Int("revoked_removed", s.RevokedRemoved), slog.Int("total_cleaned", s.TotalCleaned),
		slog.Int("needs_user", s.NeedsUser), slog.Int("skipped_changed", s.SkippedChanged),
		slog.Int("errors", s.Errors),
	}
}

// Cleanup triggers, as recorded in run records.
const (
	TriggerHTTP     = "http"
	TriggerSchedule = "schedule"
	TriggerCLI      = "cli"
)

// CleanupRequest asks for a cleanup run, or the continuation of one.
type CleanupRequest struct {
	DaysThreshold int  // tokens unused for more than this many days are stale
	DryRun        bool // compute the statistics, change nothing
	Trigger       string
	Actor         string
	EventID       string
	// ContinueRunID continues a checkpointed run; DaysThreshold and DryRun
	// then come from its record.
	ContinueRunID string
	// Budget bounds this invocation's running time; when reached the run
	// checkpoints and the result says to continue. Zero runs to the end.
	Budget time.Duration
	// Progress, if set, is called after each page with the run's totals.
	Progress func(Statistics)
}

// CleanupResult is the outcome of one invocation of a cleanup run.
type CleanupResult struct {
	RunID      string
	DryRun     bool
	Statistics Statistics // totals of the whole run so far
	Errors     []RunError
	// Done is false when the run checkpointed and must be continued with
	// CleanupRequest.ContinueRunID = RunID.
	Done bool
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

// Cleanup tuning. Pages bound memory; workers bound concurrent Plaid calls
// (the per-endpoint limiters bound their rate).
const (
	DefaultCleanupPageSize = 1000
	DefaultCleanupWorkers  = 128
	cleanupWriters         = 3
)

// The cleanup lease: one non-dry run at a time. Renewed after every page,
// so it only lapses when a run died or its continuation was lost.
const (
	cleanupLease    = "cleanup"
	cleanupLeaseTTL = 15 * time.Minute
)

// MaxDaysThreshold is the largest days_threshold accepted (ten years).
const MaxDaysThreshold = 3650

// ValidateDaysThreshold checks a days_threshold parameter (1..3650).
func ValidateDaysThreshold(days int) error {
	if days < 1 || days > MaxDaysThreshold {
		return Errorf(CodeInvalid, "days_threshold must be an integer from 1 to %d", MaxDaysThreshold)
	}
	return nil
}

// Cleanup runs the cleanup rules of DESIGN §7 over every token, streamed in
// pages. Only one non-dry run holds the cleanup lease at a time; a second
// gets an error wrapping ErrLeaseHeld.
func (s *Service) Cleanup(ctx context.Context, req CleanupRequest) (*CleanupResult, error) {
	started := time.Now() // the budget is wall time, whatever the domain clock says
	run, err := s.startRun(ctx, req)
	if err != nil {
		return nil, err
	}
	log := Logger(ctx).With(slog.String("run_id", run.ID), slog.String("trigger", run.Trigger), slog.Bool("dry_run", run.DryRun))
	log.InfoContext(ctx, "cleanup run invoked", slog.Int("days_threshold", run.DaysThreshold),
		slog.String("cursor", run.Cursor), slog.Int("invocation", run.Invocations))

	result, runErr := s.cleanupPages(ctx, run, req, started, log)
	if runErr != nil {
		run.Status, run.Failure, run.EndedAt = RunFailed, runErr.Error(), s.Clock.Now()
	}
	// Save with a fresh context: the record must land even if ctx was
	// cancelled mid-run.
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := s.Records.SaveRun(saveCtx, run); err != nil && runErr == nil {
		runErr = err
	}
	if run.Status != RunCheckpointed && !run.DryRun {
		if err := s.Records.ReleaseLease(saveCtx, cleanupLease, run.ID); err != nil {
			log.WarnContext(ctx, "releasing cleanup lease failed", slog.String("error", err.Error()))
		}
	}
	attrs := append([]any{slog.String("outcome", string(run.Status))}, run.Statistics.logAttrs()...)
	switch run.Status {
	case RunCheckpointed:
		log.InfoContext(ctx, "cleanup run checkpointed", attrs...)
	case RunFailed:
		attrs = append(attrs, slog.String("error", run.Failure))
		log.ErrorContext(ctx, "cleanup run finished", attrs...)
	default:
		log.InfoContext(ctx, "cleanup run finished", attrs...)
	}
	if runErr != nil {
		return result, fmt.Errorf("cleanup run %s: %w", run.ID, runErr)
	}
	return result, nil
}

func (s *Service) startRun(ctx context.Context, req CleanupRequest) (*RunRecord, error) {
	now := s.Clock.Now()
	if req.ContinueRunID != "" {
		run, err := s.Records.GetRun(ctx, req.ContinueRunID)
		if err != nil {
			return nil, err
		}
		if run.Status != RunCheckpointed {
			return nil, Errorf(CodeConflict, "run %s is %s, not checkpointed", run.ID, run.Status)
		}
		if !run.DryRun {
			if err := s.Records.AcquireLease(ctx, cleanupLease, run.ID, now, cleanupLeaseTTL); err != nil {
				return nil, err
			}
		}
		run.Status = RunRunning
		run.Invocations++
		if req.EventID != "" {
			run.EventIDs = append(run.EventIDs, req.EventID)
		}
		return run, nil
	}
	if err := ValidateDaysThreshold(req.DaysThreshold); err != nil {
		return nil, err
	}
	run := &RunRecord{
		ID: uuid.NewString(), Kind: "cleanup", Trigger: req.Trigger, Actor: req.Actor,
		Status: RunRunning, DryRun: req.DryRun, DaysThreshold: req.DaysThreshold,
		StartedAt: now, Invocations: 1,
	}
	if req.EventID != "" {
		run.EventIDs = []string{req.EventID}
	}
	// A dry run changes nothing, so it needs no exclusivity.
	if !run.DryRun {
		if err := s.Records.AcquireLease(ctx, cleanupLease, run.ID, now, cleanupLeaseTTL); err != nil {
			return nil, err
		}
	}
	if err := s.Records.SaveRun(ctx, run); err != nil {
		if !run.DryRun {
			_ = s.Records.ReleaseLease(context.WithoutCancel(ctx), cleanupLease, run.ID)
		}
		return nil, err
	}
	return run, nil
}

// cleanupPages runs the rules over the collection from the run's cursor as
// a pipeline: one reader streams pages, workers make the Plaid calls the
// rules need, and a few writers apply their writes in BulkWriter batches, so
// reading, Plaid latency and writing overlap. Memory is bounded by the
// channels, whatever the collection size. When the budget is spent the
// reader stops at a page boundary, everything in flight drains, and the run
// checkpoints with the cursor after that page.
func (s *Service) cleanupPages(ctx context.Context, run *RunRecord, req CleanupRequest, started time.Time, log *slog.Logger) (*CleanupResult, error) {
	threshold := time.Duration(run.DaysThreshold) * 24 * time.Hour
	pageSize := cmp.Or(s.CleanupPageSize, DefaultCleanupPageSize)
	workers := cmp.Or(s.CleanupWorkers, DefaultCleanupWorkers)
	result := func() *CleanupResult {
		return &CleanupResult{RunID: run.ID, DryRun: run.DryRun, Statistics: run.Statistics, Errors: run.Errors,
			Done: run.Status == RunSucceeded}
	}

	tokens := make(chan *Token, pageSize)
	outcomes := make(chan tokenOutcome, pageSize)
	var (
		cursor      = run.Cursor // after the last page read; read after Wait
		finished    bool         // the last page was read
		budgetSpent bool
	)
	g, gctx := errgroup.WithContext(ctx)

	g.Go(func() error { // reader
		defer close(tokens)
		for {
			page, err := s.Store.Page(gctx, cursor, pageSize)
			if err != nil {
				return err
			}
			for _, t := range page {
				select {
				case tokens <- t:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			if len(page) > 0 {
				cursor = page[len(page)-1].ItemID
			}
			if len(page) < pageSize {
				finished = true
				return nil
			}
			if req.Budget > 0 && time.Since(started) >= req.Budget {
				budgetSpent = true
				return nil
			}
		}
	})

	g.Go(func() error { // workers
		defer close(outcomes)
		var wg errgroup.Group
		for range workers {
			wg.Go(func() error {
				for t := range tokens {
					o := s.decideToken(gctx, t, run, threshold, log)
					select {
					case outcomes <- o:
					case <-gctx.Done():
						return gctx.Err()
					}
					if o.fatal != nil {
						return o.fatal
					}
				}
				return nil
			})
		}
		return wg.Wait()
	})

	// Writers: a few, so that one batch's round trips to Firestore overlap
	// the next. They share the run's totals under mu.
	var mu sync.Mutex
	lastSave := time.Now()
	record := func(stats Statistics, errs []RunError) error {
		mu.Lock()
		defer mu.Unlock()
		run.Statistics.Add(stats)
		run.Errors = appendBounded(run.Errors, errs...)
		if req.Progress != nil {
			req.Progress(run.Statistics)
		}
		if time.Since(lastSave) < time.Minute {
			return nil
		}
		// Once a minute: renew the lease and show progress in the record.
		lastSave = time.Now()
		if !run.DryRun {
			if err := s.Records.AcquireLease(ctx, cleanupLease, run.ID, s.Clock.Now(), cleanupLeaseTTL); err != nil {
				return err
			}
		}
		return s.Records.SaveRun(ctx, run)
	}
	for range min(cleanupWriters, workers) {
		g.Go(func() error {
			// Writes use ctx, not gctx: a removal Plaid confirmed must be
			// recorded even when the run is being stopped.
			const maxBatch = 250
			batch := make([]tokenOutcome, 0, maxBatch)
			flush := func() error {
				stats, errs := s.writeOutcomes(ctx, run, batch, log)
				batch = batch[:0]
				return record(stats, errs)
			}
			for o := range outcomes {
				batch = append(batch, o)
				if len(batch) >= maxBatch || len(outcomes) == 0 {
					if err := flush(); err != nil {
						return err
					}
				}
			}
			if len(batch) > 0 {
				return flush()
			}
			return nil
		})
	}

	if err := g.Wait(); err != nil {
		return result(), err
	}
	run.Cursor = cursor
	switch {
	case finished:
		run.Status, run.EndedAt = RunSucceeded, s.Clock.Now()
	case budgetSpent:
		run.Status = RunCheckpointed
	}
	return result(), nil
}

func appendBounded(dst []RunError, src ...RunError) []RunError {
	for _, e := range src {
		if len(dst) >= MaxRunErrors {
			break
		}
		dst = append(dst, e)
	}
	return dst
}

// tokenOutcome is what the rules decided for one token: the write to make
// and what to count once it lands.
type tokenOutcome struct {
	token *Token
	write *Write
	// onWritten counts the outcome once the write landed (or at once when
	// there is no write).
	onWritten func(*Statistics)
	// audit is recorded after a successful delete.
	audit *AuditEntry
	// removedAtPlaid: /item/remove succeeded in this run. If the delete is
	// then refused because the app touched the document, the document must
	// still say the Item is gone.
	removedAtPlaid bool
	err            *RunError
	fatal          error
}

// writeOutcomes applies a batch of outcomes' writes in one BulkWriter batch
// and counts what landed.
func (s *Service) writeOutcomes(ctx context.Context, run *RunRecord, batch []tokenOutcome, log *slog.Logger) (Statistics, []RunError) {
	var stats Statistics
	stats.TotalChecked = len(batch)
	var writes []Write
	var written []int
	var runErrs []RunError
	for i := range batch {
		o := &batch[i]
		switch {
		case o.err != nil:
			stats.Errors++
			runErrs = append(runErrs, *o.err)
		case o.write != nil && !run.DryRun:
			writes = append(writes, *o.write)
			written = append(written, i)
		case o.onWritten != nil:
			o.onWritten(&stats)
		}
	}

	var audits []AuditEntry
	var repairs []Write
	now := s.Clock.Now()
	for j, err := range s.applyWrites(ctx, writes) {
		o := &batch[written[j]]
		switch {
		case err == nil:
			if o.onWritten != nil {
				o.onWritten(&stats)
			}
			if o.audit != nil {
				audits = append(audits, *o.audit)
			}
		case errors.Is(err, ErrChanged):
			stats.SkippedChanged++
			log.InfoContext(ctx, "token changed during cleanup; left in place", slog.String("item_id", o.token.ItemID))
			if o.removedAtPlaid {
				// The Item is gone at Plaid: the document must not claim a
				// live token the app would keep using.
				repairs = append(repairs, Write{ItemID: o.token.ItemID, Patch: Patch{
					Status: Ptr(StatusRevoked), PlaidRemoved: Ptr(true), UpdatedAt: &now,
					ErrorCode: Ptr("ITEM_NOT_FOUND"),
				}})
			}
		case errors.Is(err, ErrNotFound):
			// Someone else removed it meanwhile: nothing left to do.
		default:
			stats.Errors++
			runErrs = append(runErrs, RunError{ItemID: o.token.ItemID, Stage: "firestore_write", Error: err.Error()})
		}
	}
	for j, err := range s.applyWrites(ctx, repairs) {
		if err != nil && !errors.Is(err, ErrNotFound) {
			stats.Errors++
			runErrs = append(runErrs, RunError{ItemID: repairs[j].ItemID, Stage: "firestore_repair", Error: err.Error()})
			log.ErrorContext(ctx, "recording a Plaid removal failed", slog.String("item_id", repairs[j].ItemID), slog.String("error", err.Error()))
		}
	}
	if err := s.Records.AuditBatch(ctx, audits); err != nil {
		// The removals happened; losing their audit entries is worth an
		// ERROR but not a failed run.
		log.ErrorContext(ctx, "writing audit entries failed", slog.Int("entries", len(audits)), slog.String("error", err.Error()))
	}
	return stats, runErrs
}

// applyWrites uses the store's BulkWriter when it has one.
func (s *Service) applyWrites(ctx context.Context, writes []Write) []error {
	if len(writes) == 0 {
		return nil
	}
	if b, ok := s.Store.(interface {
		Apply(context.Context, []Write) []error
	}); ok {
		return b.Apply(ctx, writes)
	}
	errs := make([]error, len(writes))
	for i, w := range writes {
		if w.Delete {
			errs[i] = s.Store.Delete(ctx, w.ItemID, w.IfVersion)
		} else {
			_, errs[i] = s.Store.Update(ctx, w.ItemID, w.Patch, w.IfVersion)
		}
	}
	return errs
}

// decideToken applies the rules of DESIGN §7 to one token, making the Plaid
// calls they need. It never writes to Firestore itself.
func (s *Service) decideToken(ctx context.Context, t *Token, run *RunRecord, threshold time.Duration, log *slog.Logger) tokenOutcome {
	o := tokenOutcome{token: t}
	now := s.Clock.Now()
	fail := func(stage string, err error) tokenOutcome {
		o.err = &RunError{ItemID: t.ItemID, Stage: stage, Error: err.Error()}
		var pe *PlaidError
		if errors.As(err, &pe) {
			level := slog.LevelWarn
			if pe.Class == ClassConfig {
				level = slog.LevelError
				if pe.Code == "INVALID_API_KEYS" {
					// Every further call would fail the same way.
					o.fatal = WrapError(CodeUnavailable, err, "Plaid refused the service's API keys")
				}
			}
			log.Log(ctx, level, "plaid call failed", slog.String("item_id", t.ItemID), slog.String("stage", stage),
				slog.String("plaid_error_class", pe.Class.String()), slog.String("plaid_error_code", pe.Code),
				slog.String("plaid_request_id", pe.RequestID))
		} else {
			log.WarnContext(ctx, "cleanup could not finish a token", slog.String("item_id", t.ItemID),
				slog.String("stage", stage), slog.String("error", err.Error()))
		}
		return o
	}

	switch {
	case t.Status == StatusExpired || t.Status == StatusRevoked:
		reason := string(t.Status)
		o.onWritten = func(st *Statistics) {
			if t.Status == StatusExpired {
				st.ExpiredRemoved++
			} else {
				st.RevokedRemoved++
			}
		}
		if !t.PlaidRemoved && !run.DryRun {
			if err := s.removeAtPlaid(ctx, t); err != nil {
				return fail("plaid_remove", err)
			}
			o.removedAtPlaid = true
		}
		o.write = &Write{ItemID: t.ItemID, Delete: true, IfVersion: t.Version}
		o.audit = s.auditEntry(t, reason, run)
		return o

	case t.Status == StatusActive && now.Sub(t.LastActivity()) > threshold:
		o.onWritten = func(st *Statistics) { st.StaleRemoved++ }
		o.write = &Write{ItemID: t.ItemID, Delete: true, IfVersion: t.Version}
		o.audit = s.auditEntry(t, "stale", run)
		if run.DryRun {
			return o
		}
		// Re-read just before the irreversible call: a token the app used
		// since the page was read is not stale any more.
		fresh, err := s.Store.Get(ctx, t.ItemID)
		switch {
		case errors.Is(err, ErrNotFound):
			o.write, o.onWritten, o.audit = nil, nil, nil
			return o
		case err != nil:
			return fail("firestore_read", err)
		case !fresh.Version.Equal(t.Version):
			o.write, o.audit = nil, nil
			o.onWritten = func(st *Statistics) { st.SkippedChanged++ }
			return o
		}
		if !t.PlaidRemoved {
			if err := s.removeAtPlaid(ctx, t); err != nil {
				return fail("plaid_remove", err)
			}
			o.removedAtPlaid = true
		}
		return o

	case t.Status == StatusActive:
		return s.validateToken(ctx, t, o, fail)

	default:
		return fail("rules", fmt.Errorf("unknown status %q", t.Status))
	}
}

func (s *Service) validateToken(ctx context.Context, t *Token, o tokenOutcome, fail func(string, error) tokenOutcome) tokenOutcome {
	now := s.Clock.Now()
	access, err := s.Cipher.Decrypt(t.ItemID, t.AccessToken)
	if err != nil {
		return fail("decrypt", err)
	}
	_, err = s.Plaid.GetItem(ctx, access)
	var pe *PlaidError
	switch {
	case err == nil:
		p := Patch{LastValidatedAt: &now}
		if t.ErrorCode != "" {
			p.ClearErrorCode = true // a successful validation clears error_code (§5)
		}
		o.write = &Write{ItemID: t.ItemID, Patch: p, IfVersion: t.Version}
		return o
	case !errors.As(err, &pe):
		return fail("plaid_get", err)
	case pe.Class == ClassGone:
		o.write = &Write{ItemID: t.ItemID, IfVersion: t.Version, Patch: Patch{
			Status: Ptr(StatusExpired), ErrorCode: Ptr(pe.Code), UpdatedAt: &now, LastValidatedAt: &now,
		}}
		o.onWritten = func(st *Statistics) { st.InvalidMarked++ }
		Logger(ctx).WarnContext(ctx, "invalid token marked expired", slog.String("item_id", t.ItemID),
			slog.String("user_id", t.UserID), slog.String("plaid_error_code", pe.Code))
		return o
	case pe.Class == ClassNeedsUser:
		o.write = &Write{ItemID: t.ItemID, IfVersion: t.Version, Patch: Patch{
			ErrorCode: Ptr(pe.Code), LastValidatedAt: &now,
		}}
		o.onWritten = func(st *Statistics) { st.NeedsUser++ }
		return o
	default: // transient or configuration: never the token's fault
		return fail("plaid_get", err)
	}
}

// removeAtPlaid calls /item/remove for t. ITEM_NOT_FOUND and
// INVALID_ACCESS_TOKEN count as removed (the adapter returns nil for them).
func (s *Service) removeAtPlaid(ctx context.Context, t *Token) error {
	access, err := s.Cipher.Decrypt(t.ItemID, t.AccessToken)
	if err != nil {
		return fmt.Errorf("decrypting token of item %s: %w", t.ItemID, err)
	}
	return s.Plaid.RemoveItem(ctx, access)
}

func (s *Service) auditEntry(t *Token, reason string, run *RunRecord) *AuditEntry {
	return &AuditEntry{ItemID: t.ItemID, UserID: t.UserID, Reason: reason, Actor: run.Actor,
		RunID: run.ID, At: s.Clock.Now(), PlaidRemoved: true}
}
