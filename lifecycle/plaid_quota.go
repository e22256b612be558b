package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
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
//   - the fleet keeps interactiveReserve of each window for users' calls
//     while users come, and batch work takes the rest of the window
//     progressively, so batch work alone still reaches the whole rate;
//   - a user's call never waits for a later window: when the quota has no
//     room now it fails at once as transient, and it never waits more than
//     InteractiveMaxWait for a room it may get; a revocation then revokes
//     locally at once and leaves the removal at Plaid to cleanup
//     (plaid_removed: false, DESIGN §7);
//   - except a committed call (PriorityCommitted: an exchanged Item's
//     reading or removal, which has no local fallback), which goes first
//     as a user's call and waits for later windows within its context.
//
// A Pacer enforces that. LocalPacer does it for one process (the CLI, tests);
// SharedPacer does it for the whole fleet through a QuotaStore (Firestore),
// in slots that each cost one write: see SharedPacer.

// Pacer decides when a Plaid call may go out.
type Pacer interface {
	// Wait returns when endpoint may be called once more. It fails when ctx
	// ends first, and for an interactive call (PlaidPriorityFrom(ctx)) with
	// errQuotaSaturated when the quota has no room for it now, or none
	// within InteractiveMaxWait.
	Wait(ctx context.Context, endpoint string) error
}

const (
	// interactiveReserve is the share of each SharedPacer window batch
	// work leaves to users' calls: all of it while users come, none when
	// none came in the window's first three quarters.
	interactiveReserve = 0.2
	// InteractiveMaxWait bounds a user's wait for the quota: a revocation
	// must answer within a second or two under any load.
	InteractiveMaxWait = time.Second
	// quotaWindow is the length of a SharedPacer window. Short windows keep
	// calls spread over the minute and lose little of it (a 60 s span
	// touches 60/W+1 windows, so the caps add up to rpm·W/(60+W) each).
	quotaWindow = 2 * time.Second
	// partSlots is how many slots each part of a window's cap (the users'
	// reserve, batch work's share) is cut into at most: the reserve in
	// slots of one call up to 5,000/min, so that dozens of instances with a
	// user waiting each find one and lose nothing of it; batch work's in
	// a quarter of a window's worth a round trip. A window costs
	// Firestore at most 2·partSlots writes.
	partSlots = 32
	// batchPoll bounds how long a batch call sleeps before looking for a
	// free slot again.
	batchPoll = 20 * time.Millisecond
)

// errQuotaSaturated is what an interactive call gets when the quota has no
// room for it now, or none within InteractiveMaxWait.
var errQuotaSaturated = errors.New("the Plaid quota is saturated: no room for a user's call now")

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
	maxWait := InteractiveMaxWait
	if PlaidPriorityFrom(ctx) == PriorityCommitted {
		maxWait = time.Duration(math.MaxInt64)
		if deadline, ok := ctx.Deadline(); ok {
			maxWait = time.Until(deadline)
		}
	}
	r := l.Reserve()
	if !r.OK() || r.Delay() > maxWait {
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

// QuotaStore keeps which slots of the fleet's Plaid quota are taken.
type QuotaStore interface {
	// TakeQuotaSlot takes slot of endpoint's window unless a process took
	// it before: true when this call took it. A slot is written once, by
	// the process that takes it, and never again.
	TakeQuotaSlot(ctx context.Context, endpoint string, window int64, slot QuotaSlot) (bool, error)
	// TakenQuotaSlots returns the slots of endpoint's window taken so far.
	TakenQuotaSlots(ctx context.Context, endpoint string, window int64) ([]QuotaSlot, error)
	// UsersTookQuota reports whether a slot of endpoint's window was taken
	// for users' calls.
	UsersTookQuota(ctx context.Context, endpoint string, window int64) (bool, error)
}

// QuotaSlot is one slot of a SharedPacer window.
type QuotaSlot struct {
	Index   int  // in the window's slot table
	Permits int  // the calls it allows
	Users   bool // taken for users' calls (else for batch work)
}

// SharedPacer paces every instance together. Time is cut into windows of
// quotaWindow, and each window's fleet-wide cap (windowCap: no 60-second
// span holds more than the endpoint's rate) into a table of slots
// (slotTable): interactiveReserve of it, the users' reserve, in small
// slots, and batch work's share in larger ones. A process takes a whole
// slot in one write to the QuotaStore (the first writer wins) and spends
// its permits locally until the window ends. So:
//
//   - a call costs no Firestore round trip of its own: the users waiting
//     in a process take one round trip together, as many slots as they
//     are (written in parallel), and batch work a quarter of its share;
//   - every quota document is written once in its life, whatever the
//     number of instances: one write per document per window, half a
//     write a second, under Firestore's sustained limit of one (the
//     arithmetic is in docs/PERFORMANCE.md); a process that finds a slot
//     taken reads which are, once, instead of trying them one by one;
//   - users go first: they take any free slot at any time, the reserve's
//     first, while batch work takes its share a quarter per quarter of
//     the window, and the reserve in the last quarter only if no user
//     took a slot of the window: batch work alone still reaches the
//     whole rate;
//   - once every slot of the window is known taken, users' calls fail at
//     once, without a round trip.
//
// A slot taken and not used up is lost to the fleet for that window, the
// price of no shared counter: nothing for a user's call in a slot of the
// reserve (one call each up to 5,000/min), and at most the rest of a
// batch slot when users take those too.
type SharedPacer struct {
	store  QuotaStore
	rpm    map[string]int
	mu     sync.Mutex
	leases map[string]*quotaLease
}

// NewSharedPacer paces /item/get and /item/remove at the settings' rates
// for every process sharing store. Time is the system clock's: the
// windows are the fleet's, shared through the store, and its timers are
// real (tests run it in a testing/synctest bubble).
func NewSharedPacer(store QuotaStore, s PlaidSettings) *SharedPacer {
	return &SharedPacer{
		store: store,
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

// slotTable is window w's slots: the permits of each, the users' reserve
// in slots [0, reserve), batch work's share after it. Every process
// computes the same table; the permits add up to windowCap.
type slotTable struct {
	permits []int
	reserve int
}

func newSlotTable(rpm int, w int64) slotTable {
	capacity := windowCap(rpm, w)
	users := int(float64(capacity)*interactiveReserve + 0.5)
	t := slotTable{permits: splitPermits(nil, users, partSlots)}
	t.reserve = len(t.permits)
	t.permits = splitPermits(t.permits, capacity-users, partSlots)
	return t
}

// splitPermits appends n permits cut into at most parts slots, their sizes
// one apart at most.
func splitPermits(slots []int, n, parts int) []int {
	parts = min(parts, n)
	for i := range parts {
		slots = append(slots, (i+1)*n/parts-i*n/parts)
	}
	return slots
}

// quotaLease is what one process holds of one endpoint's current window.
type quotaLease struct {
	// sem is held while the lease is read or changed, the store's round
	// trips included: one request to the store at a time, which serves
	// every caller waiting behind it, and a caller waits for it no longer
	// than its context allows (a user's call, at most InteractiveMaxWait).
	sem chan struct{}
	// turn lines up this process's batch callers (batchTurn).
	turn batchTurn
	// usersWaiting counts users' calls waiting for sem or holding it: the
	// demand one request to the store serves.
	usersWaiting atomic.Int32

	// Held under sem, for window only: permits do not carry over, a
	// window's slots are final.
	window             int64
	slots              slotTable
	known              []bool // slot known taken, by this process or another
	batch, interactive int    // permits taken and not used yet
	batchTaken         int    // permits taken for batch work
	// usersSeen: a user took a slot of the window, here or (as read when
	// the reserve would open) elsewhere; usersRead: that read was made.
	usersSeen, usersRead bool
}

func newQuotaLease() *quotaLease {
	return &quotaLease{sem: make(chan struct{}, 1), turn: newBatchTurn(), window: -1}
}

func (l *quotaLease) lock(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *quotaLease) unlock() { <-l.sem }

// moveTo makes w the lease's window.
func (l *quotaLease) moveTo(w int64, rpm int) {
	if l.window == w {
		return
	}
	l.window, l.slots = w, newSlotTable(rpm, w)
	l.known = make([]bool, len(l.slots.permits))
	l.batch, l.interactive, l.batchTaken = 0, 0, 0
	l.usersSeen, l.usersRead = false, false
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
		l = newQuotaLease()
		p.leases[endpoint] = l
	}
	p.mu.Unlock()
	if PlaidPriorityFrom(ctx) == PriorityBatch {
		return p.waitBatch(ctx, l, endpoint, rpm)
	}
	return p.waitInteractive(ctx, l, endpoint, rpm)
}

// waitInteractive is a user's call: a permit this process holds, or slots
// for every user waiting here, taken together. It never waits for a later
// window, nor past InteractiveMaxWait in the queue for the lease and the
// store (hundreds of users at once queue there); a committed call waits
// for both as long as ctx allows.
func (p *SharedPacer) waitInteractive(ctx context.Context, l *quotaLease, endpoint string, rpm int) error {
	l.usersWaiting.Add(1)
	defer l.usersWaiting.Add(-1)
	committed := PlaidPriorityFrom(ctx) == PriorityCommitted
	takeCtx, cancel := ctx, context.CancelFunc(func() {})
	if !committed {
		takeCtx, cancel = context.WithTimeout(ctx, InteractiveMaxWait)
	}
	defer cancel()
	saturated := func(err error) error {
		if ctx.Err() == nil && takeCtx.Err() != nil {
			return errQuotaSaturated
		}
		return err
	}
	if err := l.lock(takeCtx); err != nil {
		return saturated(err)
	}
	held := true
	defer func() {
		if held {
			l.unlock()
		}
	}()
	for {
		if err := takeCtx.Err(); err != nil {
			return saturated(err) // ran out of time waiting for the lease
		}
		l.moveTo(currentWindow(time.Now()), rpm)
		// A user goes first: this process's batch permits are theirs too.
		for _, pool := range []*int{&l.interactive, &l.batch} {
			if *pool > 0 {
				*pool--
				return nil
			}
		}
		// Slots worth what the users waiting here need (as many as are
		// free), the reserve's first.
		free := append(l.free(0, l.slots.reserve), l.free(l.slots.reserve, len(l.known))...)
		picks := l.worth(free, int(l.usersWaiting.Load()))
		if len(picks) == 0 && !committed {
			return errQuotaSaturated // every slot of the window is taken
		}
		if len(picks) == 0 {
			// The next window, without the lease meanwhile: the users
			// here share it, and every one sleeping is counted waiting.
			next := windowStart(l.window + 1)
			if deadline, ok := ctx.Deadline(); ok && deadline.Before(next) {
				return errQuotaSaturated
			}
			l.unlock()
			held = false
			if err := sleepCtx(ctx, time.Until(next)); err != nil {
				return err
			}
			if err := l.lock(ctx); err != nil {
				return err
			}
			held = true
			continue
		}
		won, err := l.take(takeCtx, p.store, endpoint, picks, true)
		if err != nil {
			return saturated(err)
		}
		l.interactive += won
		l.usersSeen = l.usersSeen || won > 0
	}
}

// waitBatch is batch work's call: in turn, a permit this process holds, or
// free slots within batch work's allowance; when there is none it sleeps
// until the allowance grows, or until the next window.
func (p *SharedPacer) waitBatch(ctx context.Context, l *quotaLease, endpoint string, rpm int) error {
	if err := l.turn.take(ctx); err != nil {
		return err
	}
	defer l.turn.done()
	for {
		next, err := p.tryBatch(ctx, l, endpoint, rpm)
		if err != nil || next.IsZero() {
			return err
		}
		if err := sleepCtx(ctx, time.Until(next)); err != nil {
			return err
		}
	}
}

// tryBatch takes a permit for batch work, or returns when to look again.
// Batch work's allowance grows by a quarter of its share (the window less
// interactiveReserve) each quarter of the window, so users arriving later
// in it still find slots; in the last quarter it takes the reserve too if
// no user took a slot of the window.
func (p *SharedPacer) tryBatch(ctx context.Context, l *quotaLease, endpoint string, rpm int) (time.Time, error) {
	if err := l.lock(ctx); err != nil {
		return time.Time{}, err
	}
	defer l.unlock()
	for {
		now := time.Now()
		w := currentWindow(now)
		l.moveTo(w, rpm)
		start := windowStart(w)
		quarter := int(now.Sub(start) * 4 / quotaWindow)
		if l.batch > 0 {
			l.batch--
			return time.Time{}, nil
		}
		if quarter == 3 && l.interactive > 0 && l.usersWaiting.Load() == 0 {
			// Users' permits nobody here waits for, about to expire.
			l.interactive--
			return time.Time{}, nil
		}
		capacity := windowCap(rpm, w)
		share := capacity - int(float64(capacity)*interactiveReserve+0.5)
		picks := l.worth(l.free(l.slots.reserve, len(l.known)), ((quarter+1)*share+3)/4-l.batchTaken)
		if len(picks) == 0 && quarter == 3 {
			// Batch work's share is spent (by this process or others):
			// the reserve too, unless a user took a slot of the window.
			if !l.usersSeen && !l.usersRead {
				l.usersRead = true
				users, err := p.store.UsersTookQuota(ctx, endpoint, w)
				if err != nil {
					return time.Time{}, fmt.Errorf("reading Plaid quota: %w", err)
				}
				l.usersSeen = users
			}
			if !l.usersSeen {
				picks = l.worth(l.free(0, l.slots.reserve), capacity-l.batchTaken)
			}
		}
		if len(picks) == 0 {
			if quarter == 3 || len(l.free(0, len(l.known))) == 0 {
				return start.Add(quotaWindow), nil
			}
			return start.Add(time.Duration(quarter+1) * quotaWindow / 4), nil
		}
		won, err := l.take(ctx, p.store, endpoint, picks, false)
		if err != nil {
			return time.Time{}, err
		}
		l.batch += won
		l.batchTaken += won
	}
}

func currentWindow(now time.Time) int64 { return now.UnixNano() / int64(quotaWindow) }

// windowStart is when window w begins.
func windowStart(w int64) time.Time { return time.Unix(0, w*int64(quotaWindow)) }

// free returns the slots of [from, to) not known taken, in random order:
// processes asking at once then mostly pick different ones.
func (l *quotaLease) free(from, to int) []int {
	var out []int
	for s := from; s < to; s++ {
		if !l.known[s] {
			out = append(out, s)
		}
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// worth returns the first of slots worth n permits, or all of them.
func (l *quotaLease) worth(slots []int, n int) []int {
	for i, s := range slots {
		if n <= 0 {
			return slots[:i]
		}
		n -= l.slots.permits[s]
	}
	return slots
}

func (l *quotaLease) markKnown(s int) {
	if s >= 0 && s < len(l.known) {
		l.known[s] = true
	}
}

// take takes picks from the store at once (for users or batch work) and
// returns the permits of those this process won. Every slot the store
// answered for is known taken from then on; when another process had taken
// one, the window's taken slots are read once, so that the next picks go
// to free ones rather than trying the taken ones one by one. It fails only
// when it won nothing and the store failed.
func (l *quotaLease) take(ctx context.Context, store QuotaStore, endpoint string, picks []int, users bool) (int, error) {
	won := make([]bool, len(picks))
	errs := make([]error, len(picks))
	var wg sync.WaitGroup
	for i, s := range picks {
		slot := QuotaSlot{Index: s, Permits: l.slots.permits[s], Users: users}
		wg.Go(func() { won[i], errs[i] = store.TakeQuotaSlot(ctx, endpoint, l.window, slot) })
	}
	wg.Wait()
	got, lost := 0, false
	for i, s := range picks {
		switch {
		case errs[i] != nil:
			continue // maybe taken: asking again tells
		case won[i]:
			got += l.slots.permits[s]
		default:
			lost = true
		}
		l.known[s] = true
	}
	if lost {
		// Best effort: without it the next picks find the taken slots one
		// by one.
		taken, _ := store.TakenQuotaSlots(ctx, endpoint, l.window)
		for _, s := range taken {
			l.markKnown(s.Index)
			l.usersSeen = l.usersSeen || s.Users
		}
	}
	if err := errors.Join(errs...); err != nil && got == 0 {
		return 0, fmt.Errorf("taking Plaid quota: %w", err)
	}
	return got, nil
}
