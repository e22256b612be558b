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

// runSegment runs the rules over the collection from the run's cursor, to
// the end or until budget is spent (see segment).
func (s *Service) runSegment(ctx context.Context, run *RunRecord, budget time.Duration, progress func(Statistics), log *slog.Logger) (segmentEnd, error) {
	pageSize := cmp.Or(s.config.CleanupPageSize, DefaultCleanupPageSize)
	seg := &segment{
		svc: s, run: run, log: log, progress: progress,
		rules: tokenRun{id: run.ID, actor: run.Actor, dryRun: run.DryRun,
			threshold: time.Duration(run.DaysThreshold) * 24 * time.Hour},
		pageSize: pageSize, batch: min(pageSize, cleanupBatch),
		workers: cmp.Or(s.config.CleanupConcurrency, DefaultCleanupWorkers),
		budget:  budget, started: time.Now(), lastSave: time.Now(),
		writeCtx: context.WithoutCancel(ctx),
		cursor:   run.Cursor,
	}
	return seg.runStages(WithPlaidPriority(ctx, PriorityBatch))
}

// segment is one invocation's pass over the collection as a pipeline of
// four stages, so that reading, Plaid latency and writing overlap:
//
//	readPages → send → decide (workers) → write (a few writers)
//
// readPages reads the next page while send hands the current one to the
// workers; the workers make the Plaid calls the rules need; the writers
// apply the outcomes in batches. Memory is bounded by two pages and the
// channels, whatever the collection size. When the budget is spent, send
// stops after a batch, everything in flight drains, and the run
// checkpoints with the cursor after the last token sent. Cancelling the
// context (the lease was lost, the caller stopped) stops reading and Plaid
// calls; what was decided is still written.
type segment struct {
	svc      *Service
	run      *RunRecord
	rules    tokenRun
	log      *slog.Logger
	progress func(Statistics)

	pageSize, batch, workers int
	budget                   time.Duration
	started                  time.Time       // the budget is wall time, whatever the domain clock says
	writeCtx                 context.Context // detached: what Plaid confirmed is recorded even when the segment stops

	// cursor (after the last token sent to a worker) and end are written
	// by send alone, and read only after the stages' errgroup returned.
	cursor string
	end    segmentEnd

	// mu guards what every writer adds to: run.Statistics, run.Errors and
	// lastSave.
	mu       sync.Mutex
	lastSave time.Time
}

// tokenPage is one page of the collection as readPages hands it to send.
type tokenPage struct {
	tokens []*Token
	next   string
}

// runStages runs the four stages and, when they all finished, moves the
// run's cursor to where send stopped.
func (g *segment) runStages(ctx context.Context) (segmentEnd, error) {
	pages := make(chan tokenPage)
	tokens := make(chan *Token, g.batch)
	outcomes := make(chan tokenOutcome, g.batch)
	stages, sctx := errgroup.WithContext(ctx)
	readCtx, stopReading := context.WithCancel(sctx)
	defer stopReading()

	stages.Go(func() error {
		defer close(pages)
		return g.readPages(sctx, readCtx, pages)
	})
	stages.Go(func() error {
		defer close(tokens)
		defer stopReading()
		return g.send(sctx, pages, tokens)
	})
	stages.Go(func() error {
		defer close(outcomes)
		return g.decide(sctx, tokens, outcomes)
	})
	var writers sync.WaitGroup
	for range min(cleanupWriters, g.workers) {
		writers.Go(func() { g.write(outcomes) })
	}

	err := stages.Wait()
	writers.Wait()
	if err != nil {
		return g.end, err
	}
	g.run.Cursor = g.cursor
	return g.end, nil
}

// readPages reads pages from the run's cursor until the collection ends or
// send stops it (readCtx is cancelled at the budget).
func (g *segment) readPages(ctx, readCtx context.Context, pages chan<- tokenPage) error {
	after := g.run.Cursor
	for {
		page, next, err := g.svc.tokens.Page(readCtx, after, g.pageSize)
		if err != nil {
			if readCtx.Err() != nil && ctx.Err() == nil {
				return nil // send stopped at the budget
			}
			return err
		}
		select {
		case pages <- tokenPage{page, next}:
		case <-readCtx.Done():
			return nil // send stopped; a cancelled segment's error is send's
		}
		if next == "" {
			return nil
		}
		after = next
	}
}

// send hands tokens to the workers, advancing the cursor, and stops at a
// batch boundary once the budget is spent.
func (g *segment) send(ctx context.Context, pages <-chan tokenPage, tokens chan<- *Token) error {
	sent := 0
	for p := range pages {
		for i, t := range p.tokens {
			select {
			case tokens <- t:
			case <-ctx.Done():
				return ctx.Err()
			}
			p.tokens[i] = nil // the page no longer holds it: memory is one page, not two
			g.cursor = t.ItemID
			sent++
			more := i < len(p.tokens)-1 || p.next != ""
			if sent%g.batch == 0 && more && g.budgetSpent() {
				g.end = segmentBudget
				return nil
			}
		}
		if p.next == "" {
			return nil
		}
		g.cursor = p.next // past the page's documents that are not tokens
		if g.budgetSpent() {
			g.end = segmentBudget
			return nil
		}
	}
	return ctx.Err() // readPages failed, or the segment was cancelled
}

func (g *segment) budgetSpent() bool {
	return g.budget > 0 && time.Since(g.started) >= g.budget
}

// decide runs the workers: each applies the rules to one token at a time.
// A decided outcome is passed on even when the segment is stopping (a
// removal Plaid confirmed must reach a writer); tokens not yet decided are
// drained undecided.
func (g *segment) decide(ctx context.Context, tokens <-chan *Token, outcomes chan<- tokenOutcome) error {
	var workers errgroup.Group
	for range g.workers {
		workers.Go(func() error {
			for t := range tokens {
				if ctx.Err() != nil {
					continue
				}
				o := g.svc.decideToken(ctx, t, g.rules, g.log)
				outcomes <- o
				if o.fatal != nil {
					return o.fatal
				}
			}
			return nil
		})
	}
	return workers.Wait()
}

// write is one writer: it applies outcomes in batches of up to
// maxWriteBatch, or fewer when no more are waiting, and records the totals.
func (g *segment) write(outcomes <-chan tokenOutcome) {
	batch := make([]tokenOutcome, 0, maxWriteBatch)
	flush := func() {
		g.record(g.svc.writeOutcomes(g.writeCtx, g.run, batch, g.log))
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
}

// record adds a written batch to the run's totals, reports progress, and
// saves the run's record at most every progressSaveEvery (a failed save
// only delays the progress it shows).
func (g *segment) record(stats Statistics, errs []RunError) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.run.Statistics.Add(stats)
	g.run.Errors = appendBounded(g.run.Errors, errs...)
	if g.progress != nil {
		g.progress(g.run.Statistics)
	}
	if time.Since(g.lastSave) < progressSaveEvery {
		return
	}
	g.lastSave = time.Now()
	if err := g.svc.runs.SaveRun(g.writeCtx, g.run); err != nil {
		g.log.WarnContext(g.writeCtx, "saving cleanup progress failed", slog.String("error", err.Error()))
	}
}

func appendBounded(dst []RunError, src ...RunError) []RunError {
	for _, e := range src {
		if len(dst) >= maxRunErrors {
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
	now := s.clock.Now()
	for j, err := range s.tokens.Apply(ctx, writes) {
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
					Status: new(StatusRevoked), PlaidRemoved: new(true), UpdatedAt: &now,
					ErrorCode: new("ITEM_NOT_FOUND"),
				}})
			}
		default:
			stats.Errors++
			runErrs = append(runErrs, RunError{ItemID: o.token.ItemID, Stage: "firestore_write", Error: err.Error()})
		}
	}
	for j, err := range s.tokens.Apply(ctx, repairs) {
		if err != nil && !errors.Is(err, ErrNotFound) {
			runErrs = append(runErrs, RunError{ItemID: repairs[j].ItemID, Stage: "firestore_repair", Error: err.Error()})
			log.ErrorContext(ctx, "recording a Plaid removal failed", slog.String("item_id", repairs[j].ItemID), slog.String("error", err.Error()))
		}
	}
	return stats, runErrs
}
