package lifecycle

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Cleanup tuning. Pages bound memory; workers bound concurrent Plaid calls
// (the per-endpoint limiters bound their rate).
const (
	// DefaultCleanupPageSize is how many documents one query reads. Every
	// query costs a round trip and, on the emulator, a scan of the whole
	// collection (measured: 1.2 s per query at 100,000 documents, whatever
	// its limit), so pages are large; what waits for a worker and how
	// often the budget is checked are bounded by cleanupBatch instead.
	DefaultCleanupPageSize = 10000
	DefaultCleanupWorkers  = 128
	// cleanupBatch bounds the tokens read and waiting for a worker, and
	// how many are sent to workers between two looks at the budget: what a
	// segment still has to finish once its budget is spent.
	cleanupBatch   = 1000
	cleanupWriters = 3
	// maxWriteBatch bounds one BulkWriter batch of token writes.
	maxWriteBatch = 250
	// writeTimeout bounds one batch of writes. Writes run detached from the
	// caller's cancellation: a removal Plaid confirmed must be recorded even
	// when the run is being stopped or its HTTP client went away.
	writeTimeout = 2 * time.Minute
	// progressSaveEvery spaces the saves of a running run's record.
	progressSaveEvery = time.Minute
)

// segmentEnd says why a segment stopped.
type segmentEnd int

const (
	segmentFinished segmentEnd = iota // the last page was read
	segmentBudget                     // the time budget was spent, between two batches
)

// runSegment runs the rules over the collection from the run's cursor as a
// pipeline: a reader reads pages (the next while the current one is sent
// to workers), workers make the Plaid calls the rules need, and a few
// writers apply their writes in BulkWriter batches, so reading, Plaid
// latency and writing overlap. Memory is bounded by two pages and the
// channels, whatever the collection size. When the budget is spent the
// sender stops after a batch, everything in flight drains, and the run
// checkpoints with the cursor after the last token sent. Cancelling ctx
// (the lease was lost, the caller stopped) stops reading and Plaid calls;
// what was decided is still written.
func (s *Service) runSegment(ctx context.Context, run *RunRecord, budget time.Duration, progress func(Statistics), log *slog.Logger) (segmentEnd, error) {
	started := time.Now() // the budget is wall time, whatever the domain clock says
	rules := tokenRun{id: run.ID, actor: run.Actor, dryRun: run.DryRun,
		threshold: time.Duration(run.DaysThreshold) * 24 * time.Hour}
	pageSize := cmp.Or(s.Config.CleanupPageSize, DefaultCleanupPageSize)
	workers := cmp.Or(s.Config.CleanupConcurrency, DefaultCleanupWorkers)
	writeCtx := context.WithoutCancel(ctx)
	ctx = WithPlaidPriority(ctx, PriorityBatch) // the default; said here because it matters

	batch := min(pageSize, cleanupBatch)
	tokens := make(chan *Token, batch)
	outcomes := make(chan tokenOutcome, batch)
	var (
		cursor = run.Cursor // after the last token sent to a worker; read after Wait
		end    = segmentFinished
	)
	g, gctx := errgroup.WithContext(ctx)
	budgetSpent := func() bool { return budget > 0 && time.Since(started) >= budget }

	// The page reader reads the next page while the sender hands the
	// current one to workers, so that a query's latency overlaps work.
	// The sender stops it when the budget is spent.
	type tokenPage struct {
		tokens []*Token
		next   string
	}
	pages := make(chan tokenPage)
	readCtx, stopReading := context.WithCancel(gctx)
	defer stopReading()
	g.Go(func() error { // page reader
		defer close(pages)
		after := run.Cursor
		for {
			page, next, err := s.Tokens.Page(readCtx, after, pageSize)
			if err != nil {
				if readCtx.Err() != nil && gctx.Err() == nil {
					return nil // the sender stopped at the budget
				}
				return err
			}
			select {
			case pages <- tokenPage{page, next}:
			case <-readCtx.Done():
				return nil // the sender stopped; a cancelled segment's error is the sender's
			}
			if next == "" {
				return nil
			}
			after = next
		}
	})
	g.Go(func() error { // sender
		defer close(tokens)
		defer stopReading()
		sent := 0
		for p := range pages {
			for i, t := range p.tokens {
				select {
				case tokens <- t:
				case <-gctx.Done():
					return gctx.Err()
				}
				p.tokens[i] = nil // the page no longer holds it: memory is one page, not two
				cursor = t.ItemID
				sent++
				more := i < len(p.tokens)-1 || p.next != ""
				if sent%batch == 0 && more && budgetSpent() {
					end = segmentBudget
					return nil
				}
			}
			if p.next == "" {
				return nil
			}
			cursor = p.next // past the page's documents that are not tokens
			if budgetSpent() {
				end = segmentBudget
				return nil
			}
		}
		return gctx.Err() // the page reader failed, or the segment was cancelled
	})

	g.Go(func() error { // workers
		defer close(outcomes)
		var wg errgroup.Group
		for range workers {
			wg.Go(func() error {
				for t := range tokens {
					if gctx.Err() != nil {
						continue // stopping: drain what the reader sent, undecided
					}
					o := s.decideToken(gctx, t, rules, log)
					// Sent even when gctx is done: a decided outcome (a
					// removal Plaid confirmed) must reach a writer.
					outcomes <- o
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
	record := func(stats Statistics, errs []RunError) {
		mu.Lock()
		defer mu.Unlock()
		run.Statistics.Add(stats)
		run.Errors = appendBounded(run.Errors, errs...)
		if progress != nil {
			progress(run.Statistics)
		}
		if time.Since(lastSave) < progressSaveEvery {
			return
		}
		// Show progress in the record; a failure only delays that.
		lastSave = time.Now()
		if err := s.Runs.SaveRun(writeCtx, run); err != nil {
			log.WarnContext(ctx, "saving cleanup progress failed", slog.String("error", err.Error()))
		}
	}
	var writers sync.WaitGroup
	for range min(cleanupWriters, workers) {
		writers.Go(func() {
			batch := make([]tokenOutcome, 0, maxWriteBatch)
			flush := func() {
				record(s.writeOutcomes(writeCtx, run, batch, log))
				batch = batch[:0]
			}
			for o := range outcomes {
				batch = append(batch, o)
				if len(batch) >= maxWriteBatch || len(outcomes) == 0 {
					flush()
				}
			}
			if len(batch) > 0 {
				flush()
			}
		})
	}

	err := g.Wait()
	writers.Wait()
	if err != nil {
		return end, err
	}
	run.Cursor = cursor
	return end, nil
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

// writeOutcomes applies a batch of outcomes' writes in one batch and counts
// what landed.
func (s *Service) writeOutcomes(ctx context.Context, run *RunRecord, batch []tokenOutcome, log *slog.Logger) (Statistics, []RunError) {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	var stats Statistics
	stats.TotalChecked = len(batch)
	var writes []Write
	var written []int
	var runErrs []RunError
	for i := range batch {
		o := &batch[i]
		switch {
		case o.err != nil:
			o.count(&stats)
			runErrs = append(runErrs, *o.err)
		case o.write != nil && !run.DryRun:
			writes = append(writes, *o.write)
			written = append(written, i)
		default:
			o.count(&stats)
		}
	}

	var repairs []Write
	now := s.Clock.Now()
	for j, err := range s.Tokens.Apply(ctx, writes) {
		o := &batch[written[j]]
		switch {
		case err == nil: // a delete landed with its audit entry
			o.count(&stats)
		case errors.Is(err, ErrChanged) || errors.Is(err, ErrNotFound):
			// Changed (the app used the token) or removed by someone else
			// meanwhile: left as it is now.
			stats.SkippedChanged++
			log.InfoContext(ctx, "token changed during cleanup; left in place", slog.String("item_id", o.token.ItemID))
			if o.removedAtPlaid && errors.Is(err, ErrChanged) {
				// The Item is gone at Plaid: the document must not claim a
				// live token the app would keep using.
				repairs = append(repairs, Write{ItemID: o.token.ItemID, Patch: Patch{
					Status: Ptr(StatusRevoked), PlaidRemoved: Ptr(true), UpdatedAt: &now,
					ErrorCode: Ptr("ITEM_NOT_FOUND"),
				}})
			}
		default:
			stats.Errors++
			runErrs = append(runErrs, RunError{ItemID: o.token.ItemID, Stage: "firestore_write", Error: err.Error()})
		}
	}
	for j, err := range s.Tokens.Apply(ctx, repairs) {
		if err != nil && !errors.Is(err, ErrNotFound) {
			runErrs = append(runErrs, RunError{ItemID: repairs[j].ItemID, Stage: "firestore_repair", Error: err.Error()})
			log.ErrorContext(ctx, "recording a Plaid removal failed", slog.String("item_id", repairs[j].ItemID), slog.String("error", err.Error()))
		}
	}
	return stats, runErrs
}
