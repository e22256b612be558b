package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/finwell/plaid-token-lifecycle/functions"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// How scripts/serve keeps the analytics counters (DESIGN §3, §12): the
// Firestore emulator has no Eventarc, so serve feeds the service TokenStats
// calls, with the same changes Eventarc would deliver, from one of two
// sources (-token-stats):
//
//   - listener (the default): a snapshot listener on plaid_tokens. Fine for
//     the dev set and tests; on the emulator its cost grows with the square
//     of the collection's size.
//   - trigger: the emulator's own trigger deliveries (an emulator started
//     with --functions_emulator pointing at serve, and a trigger
//     registered), at POST /functions/projects/{project}/triggers/{trigger},
//     decoded as TokenStats decodes Eventarc's events. For large
//     collections (the benchmark).
//
// Either way, on start serve first brings the counters up to date with
// what is stored (the recount with repair: no trigger counted the writes
// made while it was not running), and the changes are applied in batches by
// a few workers. The emulator never retries a delivery, so serve takes it
// over: a delivery is acknowledged once queued, and the applier retries a
// batch until Firestore takes it.
const (
	statsListener = "listener"
	statsTrigger  = "trigger"
	statsOff      = "off"
)

// Tuning of the applier: batches of up to lifecycle.MaxTokenChangesPerCall
// changes (one transaction each), applied by a few workers at once. A batch
// waits up to batchWait for more changes: fewer, fuller transactions leave
// the emulator's CPU to its deliveries, which come one at a time.
const (
	applyWorkers   = 4
	applyQueue     = 50000
	batchWait      = 250 * time.Millisecond
	retryBackoff   = 200 * time.Millisecond
	maxBackoff     = 5 * time.Second
	drainTimeout   = 30 * time.Second
	restartListen  = 5 * time.Second
	repairInterval = 30 * time.Second
)

// statsFeeder applies queued token changes in batches, one queue and
// worker per share of the users: a user's changes are applied by one
// worker, so that two workers' transactions never conflict on a user's
// token count (the emulator resolves such a conflict in seconds).
type statsFeeder struct {
	server *functions.Server
	log    *slog.Logger
	queues []chan lifecycle.TokenChange
	wg     sync.WaitGroup
}

func newStatsFeeder(server *functions.Server, log *slog.Logger) *statsFeeder {
	f := &statsFeeder{server: server, log: log}
	for range applyWorkers {
		f.queues = append(f.queues, make(chan lifecycle.TokenChange, applyQueue/applyWorkers))
	}
	return f
}

// add queues a change on its user's queue; it waits while that is full.
func (f *statsFeeder) add(ctx context.Context, c lifecycle.TokenChange) error {
	key := c.ItemID()
	switch {
	case c.New != nil && c.New.UserID != "":
		key = c.New.UserID
	case c.Old != nil && c.Old.UserID != "":
		key = c.Old.UserID
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	select {
	case f.queues[h.Sum32()%uint32(len(f.queues))] <- c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// start runs the workers; stop has them apply what is queued (for at most
// drainTimeout) and waits for them.
func (f *statsFeeder) start(ctx context.Context) (stop func()) {
	// Batches are applied detached from ctx: a change queued is a change
	// the emulator will not deliver again.
	applyCtx, cancelApply := context.WithCancel(lifecycle.WithLogger(context.WithoutCancel(ctx), f.log))
	done := make(chan struct{})
	for _, queue := range f.queues {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.work(applyCtx, queue, done)
		}()
	}
	return func() {
		close(done)
		giveUp := time.AfterFunc(drainTimeout, cancelApply)
		f.wg.Wait()
		giveUp.Stop()
		cancelApply()
	}
}

func (f *statsFeeder) work(ctx context.Context, queue chan lifecycle.TokenChange, done <-chan struct{}) {
	for {
		select {
		case first := <-queue:
			f.apply(ctx, collect(queue, []lifecycle.TokenChange{first}, true))
		case <-done:
			for {
				batch := collect(queue, nil, false)
				if len(batch) == 0 {
					return
				}
				f.apply(ctx, batch)
			}
		}
	}
}

// collect fills batch up to lifecycle.MaxTokenChangesPerCall with queued
// changes: waiting at most batchWait for more, or, without wait, only
// what is queued now.
func collect(queue chan lifecycle.TokenChange, batch []lifecycle.TokenChange, wait bool) []lifecycle.TokenChange {
	timer := time.NewTimer(batchWait)
	defer timer.Stop()
	for len(batch) < lifecycle.MaxTokenChangesPerCall {
		if wait {
			select {
			case c := <-queue:
				batch = append(batch, c)
			case <-timer.C:
				return batch
			}
			continue
		}
		select {
		case c := <-queue:
			batch = append(batch, c)
		default:
			return batch
		}
	}
	return batch
}

// apply applies one batch, retrying while Firestore is unavailable. A
// batch refused for good is logged and dropped: the next recount with
// repair counts it.
func (f *statsFeeder) apply(ctx context.Context, batch []lifecycle.TokenChange) {
	if len(batch) == 0 {
		return
	}
	backoff := retryBackoff
	for {
		_, err := f.server.CountTokenChanges(ctx, batch)
		switch {
		case err == nil:
			return
		case ctx.Err() != nil:
			f.log.Error("token changes not counted: serve is stopping", slog.Int("changes", len(batch)))
			return
		case !lifecycle.IsCode(err, lifecycle.CodeUnavailable):
			f.log.Error("token changes not counted; the next repair counts them", slog.Int("changes", len(batch)),
				slog.String("error", err.Error()))
			return
		}
		f.log.Warn("counting token changes failed; retrying", slog.String("error", err.Error()), slog.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// repairUntilDone brings the counters up to date with what is stored as
// of notBefore or later, retrying (another repair may hold the lease, e.g.
// one of a serve that died) until it succeeds or ctx ends.
func repairUntilDone(ctx context.Context, server *functions.Server, log *slog.Logger, notBefore time.Time) {
	for {
		res, err := server.RepairCounters(ctx, notBefore)
		if err == nil {
			log.Info("analytics counters up to date", slog.Time("as_of", res.Analytics.AsOf),
				slog.Int("total_tokens", res.Analytics.TotalTokens), slog.Bool("were_initialized", res.CountersInitialized),
				slog.Int("users_drifted", res.UsersDrifted))
			return
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("bringing the analytics counters up to date failed; retrying", slog.String("error", err.Error()),
			slog.Duration("in", repairInterval))
		select {
		case <-ctx.Done():
			return
		case <-time.After(repairInterval):
		}
	}
}

// listen feeds the counters from a snapshot listener on plaid_tokens until
// ctx ends: each time the listener (re)starts, its first snapshot is the
// baseline, and a recount as of then or later brings the counters up to
// date with it.
func listen(ctx context.Context, client *firestore.Client, server *functions.Server, feeder *statsFeeder, log *slog.Logger) {
	for ctx.Err() == nil {
		err := listenTokenChanges(ctx, client,
			func(baseline time.Time) {
				log.Info("listening to plaid_tokens for the analytics counters", slog.Time("baseline", baseline))
				go repairUntilDone(ctx, server, log, baseline)
			},
			func(changes []lifecycle.TokenChange) {
				for _, c := range changes {
					if err := feeder.add(ctx, c); err != nil {
						return
					}
				}
			})
		if err == nil || errors.Is(err, context.Canceled) {
			return
		}
		log.Error("the plaid_tokens listener failed; restarting", slog.String("error", err.Error()), slog.Duration("in", restartListen))
		select {
		case <-ctx.Done():
		case <-time.After(restartListen):
		}
	}
}

// parseStatsMode checks -token-stats.
func parseStatsMode(v string) (string, error) {
	switch v {
	case statsListener, statsTrigger, statsOff:
		return v, nil
	}
	return "", fmt.Errorf("-token-stats must be %s, %s or %s", statsListener, statsTrigger, statsOff)
}
