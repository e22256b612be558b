package lifecycle

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// One Plaid quota, many instances (DESIGN §12). Plaid limits /item/get and
// /item/remove per client, per minute, whatever the number of processes
// calling; the app shares the client too. PLAID_ITEM_GET_RPM and
// PLAID_ITEM_REMOVE_RPM are this service's share, for all its instances
// together. Within it:
//
//   - a user's call (revocation) goes first: it takes the next free slot,
//     and batch work (cleanup) only takes slots nobody is waiting for;
//   - the fleet keeps InteractiveReserve of each window for users' calls
//     until late in the window, when batch work may use what is left, so
//     batch work alone still reaches the whole rate;
//   - a user's call waits at most InteractiveMaxWait for the quota; past
//     that it fails fast as transient, and a revocation then revokes
//     locally at once and leaves the removal at Plaid to cleanup
//     (plaid_removed: false, DESIGN §7).
//
// A Pacer enforces that. LocalPacer does it for one process (the CLI, tests);
// SharedPacer does it for the whole fleet through a QuotaStore (Firestore):
// instances lease permits in small blocks from a counter per window.

// Pacer decides when a Plaid call may go out.
type Pacer interface {
	// Wait returns when endpoint may be called once more. It fails when ctx
	// ends first, and for an interactive call (PlaidPriorityFrom(ctx)) when
	// the wait would pass InteractiveMaxWait.
	Wait(ctx context.Context, endpoint string) error
}

const (
	// InteractiveReserve is the share of each SharedPacer window kept for
	// users' calls until reserveUntil of the window has passed.
	InteractiveReserve = 0.2
	reserveUntil       = 0.75
	// InteractiveMaxWait bounds a user's wait for the quota: a revocation
	// must answer within a second or two under any load.
	InteractiveMaxWait = time.Second
	// quotaWindow is the length of a SharedPacer window. Short windows keep
	// calls spread over the minute; each costs a Firestore counter.
	quotaWindow = 2 * time.Second
	// batchPoll bounds how long a batch call sleeps before looking for a
	// free slot again.
	batchPoll = 20 * time.Millisecond
)

// errQuotaSaturated is what an interactive call gets when the quota has no
// room within InteractiveMaxWait.
var errQuotaSaturated = fmt.Errorf("the Plaid quota is saturated: no room within %s", InteractiveMaxWait)

// LocalPacer paces one process, a limiter per endpoint at its rate. A
// user's call reserves the next slot; a batch call takes a slot only when
// one is free at once, else sleeps briefly and looks again, so it never
// queues ahead of a user's call.
type LocalPacer struct {
	limits map[string]*rate.Limiter
	turns  map[string]batchTurn
}

// NewLocalPacer paces /item/get and /item/remove at the settings' rates.
func NewLocalPacer(s PlaidSettings) *LocalPacer {
	return &LocalPacer{
		limits: map[string]*rate.Limiter{
			plaidEndpointItemGet:    newPerMinuteLimiter(orDefault(s.ItemGetRPM, DefaultItemGetRPM), 0),
			plaidEndpointItemRemove: newPerMinuteLimiter(orDefault(s.ItemRemoveRPM, DefaultItemRemoveRPM), 0),
		},
		turns: map[string]batchTurn{plaidEndpointItemGet: newBatchTurn(), plaidEndpointItemRemove: newBatchTurn()},
	}
}

// batchTurn lines batch callers up, first come first served: only the one
// whose turn it is looks for a free slot. Without it, callers polling for
// slots all at once were served at random, and under a tight rate some
// waited past the Plaid client's bound on a call while others took every
// slot. (A channel's blocked senders are served in order.)
type batchTurn chan struct{}

func newBatchTurn() batchTurn { return make(batchTurn, 1) }

// take waits for the caller's turn, or for ctx to end; the caller passes
// the turn on with done.
func (t batchTurn) take(ctx context.Context) error {
	select {
	case t <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t batchTurn) done() { <-t }

// Wait implements Pacer.
func (p *LocalPacer) Wait(ctx context.Context, endpoint string) error {
	l, ok := p.limits[endpoint]
	if !ok {
		return nil
	}
	if PlaidPriorityFrom(ctx) == PriorityBatch {
		// In turn, take a slot only when one is free now; never reserve
		// one and cancel it (under contention the limiter does not give a
		// cancelled reservation's time back exactly).
		turn := p.turns[endpoint]
		if err := turn.take(ctx); err != nil {
			return err
		}
		defer turn.done()
		for !l.Allow() {
			// Until the next slot, unless users' calls take it first.
			d := time.Duration((1 - l.Tokens()) / float64(l.Limit()) * float64(time.Second))
			if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < d {
				return fmt.Errorf("waiting %v for the rate limit would pass the deadline: %w", d, context.DeadlineExceeded)
			}
			if err := sleepCtx(ctx, max(min(d, batchPoll), time.Millisecond)); err != nil {
				return err
			}
		}
		return nil
	}
	r := l.Reserve()
	if !r.OK() || r.Delay() > InteractiveMaxWait {
		r.Cancel()
		return errQuotaSaturated
	}
	if err := sleepCtx(ctx, r.Delay()); err != nil {
		r.Cancel()
		return err
	}
	return nil
}

// sleepCtx sleeps d, or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// QuotaStore keeps the fleet's count of Plaid calls per window.
type QuotaStore interface {
	// TakeQuota takes up to n permits of endpoint's window so that the
	// window's total stays at or below limit, and returns how many it took
	// (0 when the window is full).
	TakeQuota(ctx context.Context, endpoint string, window int64, n, limit int) (int, error)
}

// SharedPacer paces every instance together: each window of quotaWindow
// has a fleet-wide cap, counted in the QuotaStore, from which instances
// lease small blocks of permits. Caps are set so that no 60-second span
// (which covers parts of 60/W+1 windows) holds more than the endpoint's
// rate.
type SharedPacer struct {
	store  QuotaStore
	now    func() time.Time
	rpm    map[string]int
	mu     sync.Mutex
	leases map[string]*quotaLease
}

// quotaLease is what one process holds of one endpoint's current window.
type quotaLease struct {
	// sem is held while the permits are taken or leased: one lease request
	// at a time goes to the store, and a caller waits for it no longer
	// than its context allows (a user's call, at most InteractiveMaxWait).
	sem chan struct{}
	// turn lines up this process's batch callers (batchTurn).
	turn               batchTurn
	window             int64
	batch, interactive int // permits leased and not used yet
	// batchFull and wholeFull: the store had no room left in window for
	// batch calls, or at all. A window's count only grows, so callers of
	// this process stop asking the store until the next window.
	batchFull, wholeFull bool
}

// NewSharedPacer paces /item/get and /item/remove at the settings' rates
// for every process sharing store.
func NewSharedPacer(store QuotaStore, s PlaidSettings) *SharedPacer {
	return &SharedPacer{
		store: store,
		now:   time.Now,
		rpm: map[string]int{
			plaidEndpointItemGet:    orDefault(s.ItemGetRPM, DefaultItemGetRPM),
			plaidEndpointItemRemove: orDefault(s.ItemRemoveRPM, DefaultItemRemoveRPM),
		},
		leases: map[string]*quotaLease{},
	}
}

// windowCap is the fleet-wide cap of window w for rpm: on average
// rpm·W/(60+W), spread so the caps of any run of windows add up exactly.
func windowCap(rpm int, w int64) int {
	perWindow := float64(rpm) * quotaWindow.Seconds() / (60 + quotaWindow.Seconds())
	return int(float64(w+1)*perWindow) - int(float64(w)*perWindow)
}

// Wait implements Pacer.
func (p *SharedPacer) Wait(ctx context.Context, endpoint string) error {
	rpm, ok := p.rpm[endpoint]
	if !ok {
		return nil
	}
	p.mu.Lock()
	l := p.leases[endpoint]
	if l == nil {
		l = &quotaLease{sem: make(chan struct{}, 1), turn: newBatchTurn()}
		p.leases[endpoint] = l
	}
	p.mu.Unlock()

	interactive := PlaidPriorityFrom(ctx) == PriorityInteractive
	giveUp := p.now().Add(InteractiveMaxWait)
	takeCtx := ctx
	if !interactive {
		if err := l.turn.take(ctx); err != nil {
			return err
		}
		defer l.turn.done()
	} else {
		// Hundreds of users at once queue for the lease and the store: the
		// bound covers that queue too, not only the wait for a window.
		var cancel context.CancelFunc
		takeCtx, cancel = context.WithDeadline(ctx, giveUp)
		defer cancel()
	}
	for {
		now := p.now()
		w := now.UnixNano() / int64(quotaWindow)
		lateInWindow := now.UnixNano()%int64(quotaWindow) >= int64(reserveUntil*float64(quotaWindow))
		taken, err := l.take(takeCtx, p.store, endpoint, w, rpm, interactive || lateInWindow, interactive)
		if err != nil && interactive && ctx.Err() == nil && takeCtx.Err() != nil {
			return errQuotaSaturated
		}
		if err != nil || taken {
			return err
		}
		// No room for this call in the window (yet): a batch call looks
		// again when the reserve opens up, then at the next window.
		start := time.Unix(0, w*int64(quotaWindow))
		next := start.Add(quotaWindow)
		if reserve := start.Add(time.Duration(reserveUntil * float64(quotaWindow))); !interactive && now.Before(reserve) {
			next = reserve
		}
		if interactive && next.After(giveUp) {
			return errQuotaSaturated
		}
		if err := sleepCtx(ctx, next.Sub(now)); err != nil {
			return err
		}
	}
}

// take uses a leased permit of window w, leasing a block when none is left;
// false when the window has no room. Without wholeWindow, the reserve of
// users' calls is not room.
func (l *quotaLease) take(ctx context.Context, store QuotaStore, endpoint string, w int64, rpm int, wholeWindow, interactive bool) (bool, error) {
	select {
	case l.sem <- struct{}{}:
		defer func() { <-l.sem }()
	case <-ctx.Done():
		return false, ctx.Err()
	}
	if l.window != w {
		// Permits do not carry over: a window's count is final.
		l.window, l.batch, l.interactive = w, 0, 0
		l.batchFull, l.wholeFull = false, false
	}
	pool := &l.batch
	if interactive {
		pool = &l.interactive
	}
	if *pool > 0 {
		*pool--
		return true, nil
	}
	if l.wholeFull || (!wholeWindow && l.batchFull) {
		return false, nil
	}
	limit := windowCap(rpm, w)
	if !wholeWindow {
		limit -= int(float64(limit)*InteractiveReserve + 0.5)
	}
	block := max(1, windowCap(rpm, w)/4)
	if interactive {
		block = 1 // users' calls are few; never hold permits batch work could use
	}
	n, err := store.TakeQuota(ctx, endpoint, w, block, limit)
	if err != nil {
		return false, fmt.Errorf("taking Plaid quota: %w", err)
	}
	if n == 0 {
		if wholeWindow {
			l.wholeFull = true
		} else {
			l.batchFull = true
		}
		return false, nil
	}
	*pool = n - 1
	return true, nil
}
