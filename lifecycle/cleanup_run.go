package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/sethvargo/go-retry"
)

// How cleanup runs start, hold the one-at-a-time lease, checkpoint,
// continue and resume (DESIGN §7, §12). The same state machine serves the
// HTTP function, the CLI and the scheduled DailyCleanup events:
//
//   - A new run takes the lease (plaid_token_locks/cleanup) in the same
//     transaction that creates its record and, for an event, the event's
//     record. A live lease held by another run refuses it: HTTP and CLI get
//     a LeaseHeldError naming the holder; a scheduled event is skipped.
//   - A run's invocation renews the lease while it works. One that reaches
//     its budget checkpoints at a page boundary, keeps the lease, and hands
//     the run over: {"continue_run_id"} on the cleanup topic.
//   - A continuation, or a redelivery of the event that started or
//     continued the run, resumes a checkpointed run; so does a scheduled
//     event that finds the lease lapsed on a run that never finished
//     (its invocation died). A redelivery whose run's continuation was
//     queued leaves it to that continuation; one whose segment still holds
//     a live lease is retried later, when the lease tells whether it died.
//   - The resume is one transaction on the run's record and the lease, so
//     two deliveries never run one run at once.

// Continuer hands work on to later DailyCleanup invocations: the cleanup
// topic in production, scripts/serve's own /events/DailyCleanup locally.
type Continuer interface {
	// ContinueCleanup delivers a checkpointed run's continuation.
	ContinueCleanup(ctx context.Context, runID string) error
	// RequestRemoval asks for the early removal of an Item still billed
	// (removal.go).
	RequestRemoval(ctx context.Context, r RemovalRequest) error
}

// DefaultCleanupLeaseTTL is how long a run's lease lasts unless renewed:
// how long a dead run blocks others. Invocations renew it every fifth of it.
const DefaultCleanupLeaseTTL = 5 * time.Minute

// finalSaveTimeout bounds the last writes of an invocation, made detached
// from its context so that they land even when it was cancelled.
const finalSaveTimeout = 30 * time.Second

// CleanupRequest asks for a new cleanup run (HTTP, CLI).
type CleanupRequest struct {
	DaysThreshold int  // tokens unused for more than this many days are stale
	DryRun        bool // compute the statistics, change nothing
	Trigger       string
	Actor         string
	// Budget bounds this invocation's running time; a run that reaches it
	// checkpoints and is handed over to the Continuer. Zero runs to the end.
	Budget time.Duration
	// TakeOver names a run holding the lease that the operator knows is
	// dead: it is marked abandoned and this run takes the lease. A run that
	// renewed its lease recently is alive and is not taken over unless
	// ForceTakeOver says so.
	TakeOver      string
	ForceTakeOver bool
	// Progress, if set, is called after each batch with the run's totals.
	Progress func(Statistics)
}

// CleanupEvent is one delivery of a DailyCleanup CloudEvent: the
// scheduler's message, or a run's continuation.
type CleanupEvent struct {
	EventID       string
	ContinueRunID string // set: continue that run; the rest is the run's own
	DaysThreshold int
	DryRun        bool
	Budget        time.Duration
}

// ScheduledOutcome says what a DailyCleanup delivery did.
type ScheduledOutcome struct {
	// Action: started, resumed, continued, skipped (lease held),
	// duplicate (handled before), in_progress, finished (the run was done),
	// dropped (an unusable message).
	Action string
	RunID  string
	Result *CleanupResult // nil when nothing ran
}

// Actions of ScheduledOutcome and EventRecord.
const (
	actionStarted    = "started"
	actionResumed    = "resumed"
	actionSkipped    = "skipped"
	actionDuplicate  = "duplicate"
	actionInProgress = "in_progress"
	actionFinished   = "finished"
	actionDropped    = "dropped"
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

// Cleanup runs a new cleanup run (DESIGN §7) in this invocation: to its
// end, or, with a budget, until the budget is spent, when the run
// checkpoints and is handed over (the result's Done is false). A held lease
// gives an error wrapping ErrLeaseHeld that says which run holds it.
func (s *Service) Cleanup(ctx context.Context, req CleanupRequest) (*CleanupResult, error) {
	run, err := s.claimNewRun(ctx, req, false)
	if err != nil {
		return nil, err
	}
	res, err := s.runInvocation(ctx, run, req.Budget, req.Progress)
	if err != nil || res.Done {
		return res, err
	}
	res.HandedOver = s.handOver(ctx, run) == nil
	return res, nil
}

// StartCleanup creates a cleanup run and hands it over at once: the run
// happens in DailyCleanup invocations, and the caller follows it by its id
// (the HTTP function's async=true).
func (s *Service) StartCleanup(ctx context.Context, req CleanupRequest) (*CleanupResult, error) {
	if s.continuer == nil {
		return nil, Errorf(CodeUnavailable, "this program cannot hand a cleanup over (no cleanup topic)")
	}
	run, err := s.claimNewRun(ctx, req, true)
	if err != nil {
		return nil, err
	}
	res := &CleanupResult{RunID: run.ID, DryRun: run.DryRun}
	if err := s.handOver(ctx, run); err != nil {
		if run.DryRun {
			// Nothing resumes a dry run (it holds no lease): say it ended.
			_, uerr := s.runs.UpdateRun(context.WithoutCancel(ctx), run.ID, func(r *RunRecord) bool {
				r.Status, r.EndedAt, r.Failure = RunFailed, s.clock.Now(), "its continuation could not be queued: "+err.Error()
				return true
			})
			if uerr != nil {
				Logger(ctx).WarnContext(ctx, "recording an unqueued dry run as failed failed; it will read as failed once its lease lapses",
					slog.String("run_id", run.ID), slog.String("error", uerr.Error()))
			}
			return res, WrapError(CodeUnavailable, err, "the dry run could not be queued and did not run; try again")
		}
		return res, WrapError(CodeUnavailable, err, "the cleanup run was created but could not be queued; the next scheduled run resumes it")
	}
	res.HandedOver = true
	return res, nil
}

// claimNewRun validates req and takes the lease for a new run.
func (s *Service) claimNewRun(ctx context.Context, req CleanupRequest, checkpointed bool) (*RunRecord, error) {
	if err := ValidateDaysThreshold(req.DaysThreshold); err != nil {
		return nil, err
	}
	now := s.clock.Now()
	out, err := s.claim(ctx, "", claimRequest{takeOver: req.TakeOver, forceTakeOver: req.ForceTakeOver,
		startCheckpointed: checkpointed, newRun: newRunRecord(req.Trigger, req.Actor, req.DryRun, req.DaysThreshold, now)}, now)
	if err != nil {
		return nil, err
	}
	switch {
	case out.forcedLive:
		Logger(ctx).ErrorContext(ctx, "cleanup run taken over while alive: both runs work until it notices",
			slog.String("run_id", out.abandoned.ID), slog.String("superseded_by", out.run.ID),
			slog.String("actor", out.run.Actor))
	case out.abandoned != nil:
		Logger(ctx).WarnContext(ctx, "cleanup run abandoned", slog.String("run_id", out.abandoned.ID),
			slog.String("superseded_by", out.run.ID), slog.String("reason", out.abandoned.Failure))
	}
	return out.run, nil
}

// newRunRecord is the record of a run about to start.
func newRunRecord(trigger, actor string, dryRun bool, days int, now time.Time) *RunRecord {
	return &RunRecord{ID: uuid.NewString(), Kind: "cleanup", Trigger: trigger, Actor: actor,
		DryRun: dryRun, DaysThreshold: days, StartedAt: now}
}

// claim decides c (decideClaim) in the store's claim transaction, with the
// runs it names read.
func (s *Service) claim(ctx context.Context, eventID string, c claimRequest, now time.Time) (claimOutcome, error) {
	var ids []string
	for _, id := range []string{c.takeOver, c.continueRunID} {
		if id != "" {
			ids = append(ids, id)
		}
	}
	var out claimOutcome
	err := s.runs.ClaimCleanup(ctx, eventID, ids, func(st ClaimState) (ClaimWrites, error) {
		w, o, err := decideClaim(st, c, now, s.leaseTTL())
		out = o
		return w, err
	})
	return out, err
}

// RunScheduledCleanup handles one delivery of a DailyCleanup event,
// exactly once per run segment whatever Pub/Sub redelivers (see the top of
// this file). It returns an error only when a retry of the delivery could
// help: the store was unavailable, the run's continuation could not be
// queued, or a segment's fate is not known yet.
func (s *Service) RunScheduledCleanup(ctx context.Context, ev CleanupEvent) (*ScheduledOutcome, error) {
	if ev.ContinueRunID == "" {
		if err := ValidateDaysThreshold(ev.DaysThreshold); err != nil {
			Logger(ctx).ErrorContext(ctx, "invalid DailyCleanup message; dropped", slog.String("error", err.Error()))
			return &ScheduledOutcome{Action: actionDropped}, nil
		}
	}
	now := s.clock.Now()
	out, err := s.claim(ctx, ev.EventID, claimRequest{eventID: ev.EventID, continueRunID: ev.ContinueRunID, scheduled: true,
		newRun: newRunRecord(TriggerSchedule, "cloud-scheduler", ev.DryRun, ev.DaysThreshold, now)}, now)
	if err != nil {
		return nil, err
	}
	outcome := &ScheduledOutcome{Action: out.action}
	if out.run != nil {
		outcome.RunID = out.run.ID
	} else if out.heldBy != nil {
		outcome.RunID = out.heldBy.Holder
	}
	if out.abandoned != nil {
		Logger(ctx).WarnContext(ctx, "cleanup run abandoned", slog.String("run_id", out.abandoned.ID),
			slog.String("reason", out.abandoned.Failure))
	}
	if out.run == nil || out.retryLater {
		return outcome, logUnclaimed(ctx, out, outcome.RunID)
	}
	Logger(ctx).InfoContext(ctx, "cleanup event claimed", slog.String("action", out.action), slog.String("run_id", outcome.RunID))
	return outcome, s.runScheduledSegment(ctx, out.run, ev.Budget, outcome)
}

// logUnclaimed logs why a delivery runs nothing, and returns the error
// that asks Pub/Sub to come back when its own segment may still run.
func logUnclaimed(ctx context.Context, out claimOutcome, runID string) error {
	log := Logger(ctx)
	attrs := []any{slog.String("action", out.action), slog.String("run_id", runID)}
	if out.retryLater {
		log.InfoContext(ctx, "cleanup segment of this event may still be running; retry later", attrs...)
		return Errorf(CodeUnavailable, "run %s: the segment this event started still holds its lease; retry later", runID)
	}
	if out.heldBy != nil {
		attrs = append(attrs, slog.String("held_until", out.heldBy.ExpiresAt.Format(time.RFC3339)))
	}
	log.InfoContext(ctx, "cleanup event acknowledged without running", attrs...)
	return nil
}

// runScheduledSegment runs the claimed run's segment and hands a
// checkpointed run over. It returns an error only when a redelivery could
// help.
func (s *Service) runScheduledSegment(ctx context.Context, run *RunRecord, budget time.Duration, outcome *ScheduledOutcome) error {
	res, err := s.runInvocation(ctx, run, budget, nil)
	outcome.Result = res
	if err != nil || res.Done {
		// A failed run's record says what failed; a redelivery would find
		// it finished and do nothing, so do not ask for one.
		return nil
	}
	if err := s.handOver(ctx, run); err != nil {
		// Nothing lost: Pub/Sub redelivers this event, which then resumes
		// the checkpointed run itself.
		return fmt.Errorf("continuing run %s: %w", run.ID, err)
	}
	res.HandedOver = true
	return nil
}

// CleanupRun returns a run's record (GET .../cleanup/runs/{run_id}). A run
// that died is reported, and recorded, as failed (markDead), so that nobody
// waits for it.
func (s *Service) CleanupRun(ctx context.Context, id string) (*RunRecord, error) {
	run, err := s.runs.GetRun(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(CodeNotFound, "no cleanup run %s", id)
	}
	if err != nil {
		return nil, err
	}
	return s.settleDead(ctx, run)
}

// settleDead returns run, marked failed (and so recorded) when it died
// (markDead).
func (s *Service) settleDead(ctx context.Context, run *RunRecord) (*RunRecord, error) {
	if probe := *run; !markDead(&probe, s.clock.Now()) {
		return run, nil
	}
	return s.runs.UpdateRun(ctx, run.ID, func(r *RunRecord) bool { return markDead(r, s.clock.Now()) })
}

// markDead marks run failed when nothing will ever move it on again: it
// says running but its lease lapsed unrenewed (its process died, or was
// stopped), or it is a dry run (which holds no lease, so no scheduled run
// resumes it) checkpointed past its lease because its continuation never
// came. A checkpointed run that is not a dry run is left as it is: it still
// holds the cleanup lease, and the next scheduled run resumes it.
func markDead(run *RunRecord, now time.Time) bool {
	if !now.After(run.LeaseUntil) {
		return false
	}
	lapsed := run.LeaseUntil.UTC().Format(time.RFC3339)
	switch {
	case run.Status == RunRunning:
		run.Failure = "the process died: its invocation stopped renewing its lease, which lapsed at " + lapsed
	case run.Status == RunCheckpointed && run.DryRun:
		run.Failure = "its continuation never came (the lease lapsed at " + lapsed + "); a dry run is not resumed by the schedule"
	default:
		return false
	}
	run.Status, run.EndedAt = RunFailed, now
	return true
}

func (s *Service) leaseTTL() time.Duration {
	if s.config.CleanupLeaseTTL > 0 {
		return s.config.CleanupLeaseTTL
	}
	return DefaultCleanupLeaseTTL
}

// runInvocation runs one segment of run, which this invocation has claimed,
// keeping its lease alive, and records how it ended.
func (s *Service) runInvocation(ctx context.Context, run *RunRecord, budget time.Duration, progress func(Statistics)) (*CleanupResult, error) {
	log := Logger(ctx).With(slog.String("run_id", run.ID), slog.String("trigger", run.Trigger), slog.Bool("dry_run", run.DryRun))
	log.InfoContext(ctx, "cleanup run invoked", slog.Int("days_threshold", run.DaysThreshold),
		slog.String("cursor", run.Cursor), slog.Int("invocation", run.Invocations))

	segCtx, stop := context.WithCancelCause(ctx)
	stopKeeper := s.keepLease(segCtx, run, stop, log)
	end, runErr := s.runSegment(segCtx, run, budget, progress, log)
	stopKeeper()
	lost := errors.Is(context.Cause(segCtx), ErrLeaseLost)
	stop(nil)

	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalSaveTimeout)
	defer cancel()
	if lost {
		// Another run took the lease over and the record is that run's to
		// write now; SaveRun still adds what this invocation did to it.
		if err := s.saveFinalRecord(saveCtx, run); err != nil && !errors.Is(err, ErrLeaseLost) {
			log.WarnContext(ctx, "recording what the superseded run did failed", slog.String("error", err.Error()))
		}
		log.ErrorContext(ctx, "cleanup run lost its lease and stopped", run.Statistics.logAttrs()...)
		return s.result(run), ErrLeaseLost
	}
	s.settle(saveCtx, run, end, runErr, log)
	if err := s.recordEnd(saveCtx, run, runErr, log); err != nil {
		return s.result(run), err
	}
	return s.result(run), nil
}

// settle sets the status an invocation ends with: failed, checkpointed
// (keeping the lease for the continuation) or succeeded.
func (s *Service) settle(ctx context.Context, run *RunRecord, end segmentEnd, runErr error, log *slog.Logger) {
	now := s.clock.Now()
	switch {
	case runErr != nil:
		run.Status, run.Failure, run.EndedAt = RunFailed, runErr.Error(), now
	case end == segmentBudget:
		run.Status = RunCheckpointed
		run.LeaseUntil = now.Add(s.leaseTTL()) // held for the continuation
		if err := s.runs.RenewLease(ctx, run, now, run.LeaseUntil); err != nil {
			log.WarnContext(ctx, "extending the lease of a checkpointed run failed", slog.String("error", err.Error()))
		}
	default:
		run.Status, run.EndedAt = RunSucceeded, now
	}
}

// recordEnd saves the run's record as settle left it, frees the lease of a
// finished run, and logs the outcome. It returns the run's error, or the
// save's when the record could not be written.
func (s *Service) recordEnd(ctx context.Context, run *RunRecord, runErr error, log *slog.Logger) error {
	saveErr := s.saveFinalRecord(ctx, run)
	switch {
	case errors.Is(saveErr, ErrLeaseLost):
		log.ErrorContext(ctx, "cleanup run was taken over by another invocation", run.Statistics.logAttrs()...)
		return saveErr
	case saveErr != nil:
		// The stored record still says running: the lease must keep naming
		// this run, so that once it lapses the next run finds it unfinished
		// and resumes or supersedes it. Released, nothing would point at
		// the record any more and it would say running for ever.
		log.ErrorContext(ctx, "saving the cleanup run's record failed; its lease is kept until it lapses",
			slog.String("error", saveErr.Error()), slog.Time("lease_until", run.LeaseUntil))
		if runErr == nil {
			runErr = saveErr
			if run.Status == RunSucceeded {
				run.Status = RunFailed
			}
		}
	case run.Status.Finished() && !run.DryRun:
		if err := s.runs.ReleaseLease(ctx, run.ID); err != nil {
			log.WarnContext(ctx, "releasing cleanup lease failed", slog.String("error", err.Error()))
		}
	}
	attrs := append([]any{slog.String("outcome", string(run.Status))}, run.Statistics.logAttrs()...)
	switch run.Status {
	case RunCheckpointed:
		log.InfoContext(ctx, "cleanup run checkpointed", attrs...)
	case RunFailed:
		log.ErrorContext(ctx, "cleanup run finished", append(attrs, slog.String("error", run.Failure))...)
	default:
		log.InfoContext(ctx, "cleanup run finished", attrs...)
	}
	if runErr != nil {
		return fmt.Errorf("cleanup run %s: %w", run.ID, runErr)
	}
	return nil
}

// saveFinalRecord saves how an invocation ended, retrying while Firestore
// is unavailable (a client reconnecting after an outage refuses calls for
// a while) until ctx ends.
func (s *Service) saveFinalRecord(ctx context.Context, run *RunRecord) error {
	backoff := retry.WithCappedDuration(5*time.Second, retry.NewExponential(250*time.Millisecond))
	return retry.Do(ctx, backoff, func(ctx context.Context) error {
		err := s.runs.SaveRun(ctx, run)
		if IsCode(err, CodeUnavailable) && ctx.Err() == nil {
			return retry.RetryableError(err)
		}
		return err
	})
}

func (s *Service) result(run *RunRecord) *CleanupResult {
	return &CleanupResult{RunID: run.ID, DryRun: run.DryRun, Statistics: run.Statistics, Errors: run.Errors,
		Done: run.Status.Finished()}
}

// keepLease renews run's lease every fifth of its TTL until the returned
// stop is called. When another run has taken the lease, it stops the
// segment (cancel with ErrLeaseLost): two runs never work at once for
// longer than a renewal period. A renewal that fails otherwise is retried
// at the next tick.
func (s *Service) keepLease(ctx context.Context, run *RunRecord, cancel context.CancelCauseFunc, log *slog.Logger) (stop func()) {
	ttl := s.leaseTTL()
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(leaseRenewEvery(ttl))
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			// The renewal lives in the store only: run is the pipeline's to
			// write meanwhile, and SaveRun keeps the later lease_until.
			now := s.clock.Now()
			err := s.runs.RenewLease(context.WithoutCancel(ctx), run, now, now.Add(ttl))
			switch {
			case err == nil:
			case errors.Is(err, ErrLeaseLost):
				cancel(ErrLeaseLost)
				return
			default:
				log.WarnContext(ctx, "renewing the cleanup lease failed; retrying", slog.String("error", err.Error()))
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// handOver queues the continuation of a checkpointed run and records that
// it did, so that a redelivered event leaves the run to it.
func (s *Service) handOver(ctx context.Context, run *RunRecord) error {
	log := Logger(ctx).With(slog.String("run_id", run.ID))
	if s.continuer == nil {
		err := errors.New("no continuer is configured")
		log.ErrorContext(ctx, "cleanup run checkpointed but cannot be continued; the next scheduled run resumes it once its lease lapses",
			slog.String("error", err.Error()))
		return err
	}
	if err := s.continuer.ContinueCleanup(ctx, run.ID); err != nil {
		log.ErrorContext(ctx, "queueing the cleanup continuation failed", slog.String("error", err.Error()))
		return err
	}
	run.ContinuationSent = true
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalSaveTimeout)
	defer cancel()
	// SaveRun writes only while the record is still this invocation's: a
	// continuation that already resumed the run is never overwritten.
	if err := s.runs.SaveRun(saveCtx, run); err != nil && !errors.Is(err, ErrLeaseLost) {
		// The continuation is queued; a redelivery that does not know it
		// resumes the run too, and the claim lets only one of them run.
		log.WarnContext(ctx, "recording the queued continuation failed", slog.String("error", err.Error()))
	}
	log.InfoContext(ctx, "cleanup continuation queued")
	return nil
}
