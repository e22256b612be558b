package lifecycle

import (
	"fmt"
	"time"
)

// claimRequest is what a caller asks of ClaimCleanup.
type claimRequest struct {
	eventID           string
	continueRunID     string
	scheduled         bool   // a DailyCleanup delivery
	takeOver          string // run id an operator takes the lease from
	forceTakeOver     bool   // take it even from a run that renewed its lease recently
	newRun            *RunRecord
	startCheckpointed bool // create the run checkpointed, to hand it over at once
}

// claimOutcome is what the claim decided.
type claimOutcome struct {
	action     string
	run        *RunRecord // the run this invocation now runs; nil: none
	abandoned  *RunRecord // a run this claim marked abandoned
	heldBy     *Lease     // the live lease that kept a new run from starting
	retryLater bool
	// forcedLive says the take-over superseded a run that had renewed its
	// lease recently: it may still be working.
	forcedLive bool
}

// decideClaim is the state machine at the top of cleanup_run.go: from what
// a claim's transaction read, what it writes and what the invocation does.
// It is a pure function of its arguments (no I/O, no clock), so that every
// case is tested table-driven, without a store.
func decideClaim(st ClaimState, req claimRequest, now time.Time, leaseTTL time.Duration) (ClaimWrites, claimOutcome, error) {
	c := &claim{st: st, req: req, now: now, ttl: leaseTTL}
	var err error
	switch {
	case st.Event != nil:
		c.redelivery()
	case req.continueRunID != "":
		c.continuation()
	default:
		err = c.newRun()
	}
	return c.w, c.out, err
}

// claim is one decision in progress: what it read, and what it has decided
// to write and do so far.
type claim struct {
	st  ClaimState
	req claimRequest
	now time.Time
	ttl time.Duration

	w   ClaimWrites
	out claimOutcome
}

// redelivery decides for an event seen before: its run goes on (or not) as
// that run's state says.
func (c *claim) redelivery() {
	run := c.st.Runs[c.st.Event.RunID]
	if run == nil {
		c.out.action = actionDuplicate
		return
	}
	c.continueRun(run, true)
}

// continuation decides for a checkpointed run's continuation message.
func (c *claim) continuation() {
	run := c.st.Runs[c.req.continueRunID]
	if run == nil {
		c.out.action = actionDropped
		c.recordEvent("", actionDropped)
		return
	}
	c.continueRun(run, false)
}

// continueRun decides for a run this delivery names: the run its event
// record points to (a redelivery) or its continuation message.
func (c *claim) continueRun(run *RunRecord, redelivery bool) {
	segmentAlive := run.Status == RunRunning && c.now.Before(run.LeaseUntil)
	switch {
	case run.Status.Finished():
		c.out.action = actionFinished
		c.recordEvent(run.ID, actionFinished)
	case run.Status == RunCheckpointed && redelivery && run.ContinuationSent:
		c.out.action = actionDuplicate // its continuation is on its way
	case run.Status == RunCheckpointed, !segmentAlive:
		c.resume(run)
	case redelivery && run.SegmentEvent == c.req.eventID:
		// This event's own invocation may still be running, or may have
		// died: only the lease will tell. Ask Pub/Sub to come back.
		c.out.action, c.out.retryLater = actionInProgress, true
	default:
		c.out.action = actionInProgress // another delivery runs it
		c.recordEvent(run.ID, actionInProgress)
	}
}

// newRun decides for a new run: it takes the lease unless a live run holds
// it, superseding a dead holder (or resuming it, for a scheduled event).
func (c *claim) newRun() error {
	run := c.req.newRun
	run.Status, run.Invocations = RunRunning, 1
	if c.req.startCheckpointed {
		run.Status, run.Invocations = RunCheckpointed, 0
	}
	var holder *RunRecord
	if c.st.Lease != nil {
		holder = c.st.Runs[c.st.Lease.Holder]
	}
	switch {
	case c.req.takeOver != "":
		if err := c.takeOverFrom(run, holder); err != nil {
			return err
		}
	case run.DryRun:
		// A dry run changes nothing, so it needs no exclusivity.
	case c.leaseLive():
		if !c.req.scheduled {
			return leaseHeld(c.st.Lease)
		}
		c.out.action, c.out.heldBy = actionSkipped, c.st.Lease
		c.recordEvent(c.st.Lease.Holder, actionSkipped)
		return nil
	case holder != nil && !holder.Status.Finished():
		// The lease lapsed on a run that never finished: its invocation
		// died, or its continuation was lost. A scheduled event resumes it
		// from its cursor rather than start over.
		if c.req.scheduled && (holder.Status == RunRunning || holder.Status == RunCheckpointed) {
			c.resume(holder)
			return nil
		}
		c.abandon(holder, run, fmt.Sprintf("its lease lapsed; superseded by run %s (%s)", run.ID, run.Trigger))
	}
	c.take(run, actionStarted)
	return nil
}

// takeOverFrom lets an operator supersede the run holding the lease. A run
// that renewed its lease within two renewal periods is alive: taking it
// over would have two runs call Plaid for the same tokens, so it is refused
// unless forced.
func (c *claim) takeOverFrom(run, holder *RunRecord) error {
	l := c.st.Lease
	if l == nil || l.Holder != c.req.takeOver {
		who := "no run"
		if l != nil && l.Holder != "" {
			who = "run " + l.Holder
		}
		return Errorf(CodeConflict, "run %s does not hold the cleanup lease (%s does); nothing to take over", c.req.takeOver, who)
	}
	if run.DryRun {
		return Errorf(CodeInvalid, "a dry run takes no lease; it cannot take one over")
	}
	if holder == nil || holder.Status.Finished() {
		return nil
	}
	// The holder's own renewal period, from the lease it wrote (another
	// process may run with another CLEANUP_LEASE_TTL).
	period := leaseRenewEvery(l.ExpiresAt.Sub(l.RenewedAt))
	if since := c.now.Sub(l.RenewedAt); !l.RenewedAt.IsZero() && since < 2*period {
		if !c.req.forceTakeOver {
			return Errorf(CodeConflict, "run %s renewed its lease %s ago: it is alive, not dead; wait for it, "+
				"or take it over anyway with --force (both runs would then work at once until it notices, "+
				"within %s)", holder.ID, since.Round(time.Millisecond), period)
		}
		c.out.forcedLive = true
	}
	c.abandon(holder, run, fmt.Sprintf("taken over by %s as run %s", run.Actor, run.ID))
	return nil
}

func (c *claim) leaseLive() bool {
	l := c.st.Lease
	return l != nil && l.Holder != "" && c.now.Before(l.ExpiresAt)
}

// resume gives run a new invocation, unless another run holds the lease
// (then this one was superseded).
func (c *claim) resume(run *RunRecord) {
	if !run.DryRun && c.leaseLive() && c.st.Lease.Holder != run.ID {
		c.out.action, c.out.heldBy = actionSkipped, c.st.Lease
		c.recordEvent(run.ID, actionSkipped)
		return
	}
	run.Status = RunRunning
	run.Invocations++
	c.take(run, actionResumed)
}

// take makes run this invocation's: its lease (for a run that is not a dry
// run, the cleanup lease too), its record, the event's record.
func (c *claim) take(run *RunRecord, action string) {
	run.LeaseUntil = c.now.Add(c.ttl)
	run.SegmentEvent = c.req.eventID
	run.ContinuationSent = false
	if c.req.eventID != "" {
		run.EventIDs = append(run.EventIDs, c.req.eventID)
	}
	if !run.DryRun {
		c.w.Lease = &Lease{Holder: run.ID, ExpiresAt: run.LeaseUntil, RenewedAt: c.now, Trigger: run.Trigger, Actor: run.Actor,
			StartedAt: run.StartedAt}
	}
	c.w.Runs = append(c.w.Runs, run)
	c.recordEvent(run.ID, action)
	c.out.action, c.out.run = action, run
}

func (c *claim) abandon(run, by *RunRecord, why string) {
	run.Status, run.EndedAt, run.SupersededBy = RunAbandoned, c.now, by.ID
	run.Failure = why
	run.ContinuationSent = false
	c.w.Runs = append(c.w.Runs, run)
	c.out.abandoned = run
}

// recordEvent records the delivery's event, the first time it is seen.
func (c *claim) recordEvent(runID, outcome string) {
	if c.req.eventID != "" && c.st.Event == nil {
		c.w.Event = &EventRecord{EventID: c.req.eventID, Kind: eventKindCleanup, RunID: runID, Outcome: outcome,
			ReceivedAt: c.now, ExpireAt: c.now.Add(eventRecordTTL)}
	}
}

// leaseRenewEvery is how often a working invocation renews its lease.
func leaseRenewEvery(ttl time.Duration) time.Duration { return ttl / 5 }
