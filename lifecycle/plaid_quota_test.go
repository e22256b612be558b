package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// The pacers' tests run in testing/synctest bubbles: time is the bubble's
// fake clock, which moves only when every goroutine waits, so waits are
// measured exactly and a test of minutes of traffic takes milliseconds.
// The QuotaStore is in memory, answering after a Firestore round trip of
// fake time.

// slotDoc names one quota document: a slot of an endpoint's window.
type slotDoc struct {
	endpoint string
	window   int64
	slot     int
}

// memoryQuota is a QuotaStore in memory. Every call takes latency, and it
// records every write it took (one per slot, when taken) and every create
// it was asked for, taken or refused, per document.
type memoryQuota struct {
	latency time.Duration

	mu       sync.Mutex
	takenAt  map[slotDoc]time.Time // when each slot was taken
	slots    map[slotDoc]lifecycle.QuotaSlot
	attempts map[slotDoc]int
	writes   map[slotDoc]int
	calls    int
}

func newMemoryQuota(latency time.Duration) *memoryQuota {
	return &memoryQuota{latency: latency, takenAt: map[slotDoc]time.Time{}, slots: map[slotDoc]lifecycle.QuotaSlot{},
		attempts: map[slotDoc]int{}, writes: map[slotDoc]int{}}
}

func (m *memoryQuota) roundTrip(ctx context.Context) error {
	m.mu.Lock()
	m.calls++
	m.mu.Unlock()
	if m.latency == 0 {
		return nil
	}
	select {
	case <-time.After(m.latency):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *memoryQuota) TakeQuotaSlot(ctx context.Context, endpoint string, window int64, slot lifecycle.QuotaSlot) (bool, error) {
	if err := m.roundTrip(ctx); err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d := slotDoc{endpoint, window, slot.Index}
	m.attempts[d]++
	if _, taken := m.takenAt[d]; taken {
		return false, nil
	}
	m.takenAt[d], m.slots[d] = time.Now(), slot
	m.writes[d]++
	return true, nil
}

func (m *memoryQuota) TakenQuotaSlots(ctx context.Context, endpoint string, window int64) ([]lifecycle.QuotaSlot, error) {
	if err := m.roundTrip(ctx); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []lifecycle.QuotaSlot
	for d, slot := range m.slots {
		if d.endpoint == endpoint && d.window == window {
			out = append(out, slot)
		}
	}
	return out, nil
}

func (m *memoryQuota) UsersTookQuota(ctx context.Context, endpoint string, window int64) (bool, error) {
	slots, err := m.TakenQuotaSlots(ctx, endpoint, window)
	return slices.ContainsFunc(slots, func(s lifecycle.QuotaSlot) bool { return s.Users }), err
}

// windowFull reports whether every slot of endpoint's window (at rpm) was
// taken at t.
func (m *memoryQuota) windowFull(endpoint string, rpm int, window int64, t time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for s := range lifecycle.QuotaSlotsForTest(rpm, window) {
		at, ok := m.takenAt[slotDoc{endpoint, window, s}]
		if !ok || at.After(t) {
			return false
		}
	}
	return true
}

func (m *memoryQuota) storeCalls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// callLog records the calls that got through a pacer, and users' waits.
type callLog struct {
	mu       sync.Mutex
	batch    []time.Time
	users    []time.Time
	refused  []time.Time // users' calls refused (the revocation goes local)
	userWait []time.Duration
}

func (c *callLog) add(list *[]time.Time, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	*list = append(*list, t)
}

// user makes one user's call through p and records it.
func (c *callLog) user(t *testing.T, p lifecycle.Pacer, endpoint string) error {
	return c.call(t, lifecycle.WithPlaidPriority(t.Context(), lifecycle.PriorityInteractive), p, endpoint)
}

// committed makes one committed call through p, given within to wait, and
// records it.
func (c *callLog) committed(t *testing.T, p lifecycle.Pacer, endpoint string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(lifecycle.WithPlaidPriority(t.Context(), lifecycle.PriorityCommitted), within)
	defer cancel()
	return c.call(t, ctx, p, endpoint)
}

func (c *callLog) call(t *testing.T, ctx context.Context, p lifecycle.Pacer, endpoint string) error {
	start := time.Now()
	err := p.Wait(ctx, endpoint)
	c.mu.Lock()
	c.userWait = append(c.userWait, time.Since(start))
	c.mu.Unlock()
	switch {
	case err == nil:
		c.add(&c.users, time.Now())
	case errors.Is(err, lifecycle.ErrQuotaSaturatedForTest):
		c.add(&c.refused, time.Now())
	default:
		t.Errorf("a user's call: %v", err)
	}
	return err
}

func (c *callLog) all() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append(slices.Clone(c.batch), c.users...)
}

// mostInAnyMinute is the most calls of times in any 60-second span, as
// Plaid counts them.
func mostInAnyMinute(times []time.Time) int {
	ts := slices.Clone(times)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	most, j := 0, 0
	for i := range ts {
		for j < len(ts) && ts[j].Sub(ts[i]) < time.Minute {
			j++
		}
		most = max(most, j-i)
	}
	return most
}

const window = 2 * time.Second // SharedPacer's window

func windowOf(t time.Time) int64 { return t.UnixNano() / int64(window) }

// A fleet of 45 instances (Terraform's maximum of every function that calls
// Plaid: RevokeItem 20, RevokeAllTokens 20, DailyCleanup 3, TokenCleanup 2)
// at the full rate of /item/remove (2,000/min) and of /item/get
// (5,000/min): a cleanup saturating it from one instance while users call
// through the 44 others, for three minutes.
// Plaid's limit holds in every 60 s, every quota document is written once
// (once per window: half a write a second), a user's call goes local only
// when every slot of its window was already taken, and no user waits more
// than InteractiveMaxWait.
func TestSharedPacerFleetAtTheFullRate(t *testing.T) {
	t.Parallel()
	for endpoint, rpm := range map[string]int{"/item/remove": lifecycle.DefaultItemRemoveRPM, "/item/get": lifecycle.DefaultItemGetRPM} {
		t.Run(endpoint, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) { fleetAtTheFullRate(t, endpoint, rpm) })
		})
	}
}

func fleetAtTheFullRate(t *testing.T, endpoint string, rpm int) {
	const instances, cleanupWorkers = 45, 32
	const run = 3 * time.Minute
	store := newMemoryQuota(20 * time.Millisecond)
	settings := lifecycle.PlaidSettings{ItemGetRPM: rpm, ItemRemoveRPM: rpm}
	var log callLog
	ctx, cancel := context.WithTimeout(t.Context(), run)
	defer cancel()
	start := time.Now()

	var wg sync.WaitGroup
	cleanup := lifecycle.NewSharedPacer(store, settings)
	batchCtx := lifecycle.WithPlaidPriority(ctx, lifecycle.PriorityBatch)
	for range cleanupWorkers {
		wg.Go(func() {
			for cleanup.Wait(batchCtx, endpoint) == nil {
				log.add(&log.batch, time.Now())
			}
		})
	}
	// Users: instance i sees a call every 1.5+i/10 s, the first at
	// i·37 ms: 44 instances, about 12 calls a second in all, more than
	// the users' reserve at 2,000/min (a fifth: 6.5 a second).
	for i := 1; i < instances; i++ {
		p := lifecycle.NewSharedPacer(store, settings)
		every := 1500*time.Millisecond + time.Duration(i)*100*time.Millisecond
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 37 * time.Millisecond)
			for ctx.Err() == nil {
				wg.Go(func() { log.user(t, p, endpoint) })
				time.Sleep(every)
			}
		})
	}
	wg.Wait()

	calls := log.all()
	if got := mostInAnyMinute(calls); got > rpm {
		t.Errorf("%d calls in one 60 s span; Plaid's limit is %d", got, rpm)
	}
	// The fleet used its quota: the calls of the two full minutes after
	// the first are at least 90% of the rate (the windows keep 2/62 of
	// it; a slot a user's instance took is partly lost).
	inMinutes := 0
	for _, c := range calls {
		if d := c.Sub(start); d >= time.Minute && d < 3*time.Minute {
			inMinutes++
		}
	}
	if want := 2 * rpm * 90 / 100; inMinutes < want {
		t.Errorf("%d calls in minutes 2 and 3, want at least %d (90%% of %d/min)", inMinutes, want, rpm)
	}
	// Every quota document is written once, in its window: at most
	// half a write a second. The creates Firestore refuses (the slot
	// was another's) write nothing; after one, an instance reads which
	// slots are taken, so they stay fewer than the documents.
	docs, refused := map[int64]int{}, 0
	for d, n := range store.writes {
		if n != 1 {
			t.Errorf("quota document %v written %d times", d, n)
		}
		docs[d.window]++
	}
	for d, n := range store.attempts {
		refused += n - store.writes[d]
	}
	if refused >= len(store.writes) {
		t.Errorf("%d creates refused for %d quota documents; want fewer", refused, len(store.writes))
	}
	for w, n := range docs {
		if slots := lifecycle.QuotaSlotsForTest(rpm, w); n > slots {
			t.Errorf("window %d: %d quota documents, more than its %d slots", w, n, slots)
		}
	}
	// Users first: a user's call went local only when every slot of its
	// window was taken (the fleet's limit spent), and none waited past
	// InteractiveMaxWait.
	for _, r := range log.refused {
		if !store.windowFull(endpoint, rpm, windowOf(r), r) {
			t.Errorf("a user's call was refused at %v while its window had free slots", r.Sub(start))
		}
	}
	if w := slices.Max(log.userWait); w > lifecycle.InteractiveMaxWait {
		t.Errorf("a user waited %v for the quota; want at most %v", w, lifecycle.InteractiveMaxWait)
	}
	if len(log.users) == 0 || len(log.batch) == 0 {
		t.Errorf("users' calls %d, batch calls %d: want both", len(log.users), len(log.batch))
	}
	t.Logf("%d instances, %v at %d/min: %d batch calls, %d users' calls through, %d refused (window full); "+
		"most in any 60 s %d; %d quota documents, each written once; %d creates refused",
		instances, run, rpm, len(log.batch), len(log.users), len(log.refused), mostInAnyMinute(calls),
		len(store.writes), refused)
}

// Batch work alone reaches the whole rate, from one process or from
// several taking slots of the same windows (the reserve included, late in
// each window no user needed it), and never passes it.
func TestSharedPacerBatchAloneReachesTheRate(t *testing.T) {
	t.Parallel()
	for _, processes := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d processes", processes), func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				const rpm, endpoint = 600, "/item/get"
				store := newMemoryQuota(20 * time.Millisecond)
				settings := lifecycle.PlaidSettings{ItemGetRPM: rpm, ItemRemoveRPM: rpm}
				ctx, cancel := context.WithTimeout(lifecycle.WithPlaidPriority(t.Context(), lifecycle.PriorityBatch), 3*time.Minute)
				defer cancel()
				start := time.Now()
				var log callLog
				var wg sync.WaitGroup
				for range processes {
					p := lifecycle.NewSharedPacer(store, settings)
					for range 32 {
						wg.Go(func() {
							for p.Wait(ctx, endpoint) == nil {
								log.add(&log.batch, time.Now())
							}
						})
					}
				}
				wg.Wait()
				if got := mostInAnyMinute(log.batch); got > rpm {
					t.Errorf("%d calls in one 60 s span, more than %d", got, rpm)
				}
				// The windows' caps hold rpm·60/62 a minute (580 at 600/min).
				inMinutes := 0
				for _, c := range log.batch {
					if d := c.Sub(start); d >= time.Minute && d < 3*time.Minute {
						inMinutes++
					}
				}
				if want := 2 * rpm * 60 / 62 * 98 / 100; inMinutes < want {
					t.Errorf("%d calls in minutes 2 and 3, want at least %d (98%% of the windows' caps)", inMinutes, want)
				}
				t.Logf("%d processes: %d calls in minutes 2 and 3, most in any 60 s %d", processes, inMinutes, mostInAnyMinute(log.batch))
			})
		})
	}
}

// Users revoke through one instance while a cleanup on another saturates
// the quota: users' calls all get through, taken from the reserve the
// cleanup leaves them, and the cleanup has the rest.
func TestSharedPacerKeepsTheReserveForUsers(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const rpm, endpoint = 2000, "/item/get"
		store := newMemoryQuota(20 * time.Millisecond)
		settings := lifecycle.PlaidSettings{ItemGetRPM: rpm, ItemRemoveRPM: rpm}
		var log callLog
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		var wg sync.WaitGroup
		cleanup := lifecycle.NewSharedPacer(store, settings)
		for range 16 {
			wg.Go(func() {
				for cleanup.Wait(lifecycle.WithPlaidPriority(ctx, lifecycle.PriorityBatch), endpoint) == nil {
					log.add(&log.batch, time.Now())
				}
			})
		}
		// Five users a second, less than the reserve's 6.5.
		users := lifecycle.NewSharedPacer(store, settings)
		sent := 0
		for time.Sleep(10 * time.Millisecond); ctx.Err() == nil; time.Sleep(200 * time.Millisecond) {
			sent++
			wg.Go(func() { log.user(t, users, endpoint) })
		}
		wg.Wait()
		if len(log.refused) != 0 || len(log.users) != sent {
			t.Errorf("users: %d through, %d refused; want all %d through", len(log.users), len(log.refused), sent)
		}
		if got := mostInAnyMinute(log.all()); got > rpm {
			t.Errorf("%d calls in one 60 s span, more than %d", got, rpm)
		}
		// The cleanup had the rest: the minute's cap (29 or 30 windows of
		// 2000·2/62) less the users' calls, less what their slots lost.
		if got, want := len(log.batch), 1800-len(log.users); got < want {
			t.Errorf("the cleanup made %d calls in the minute, want at least %d", got, want)
		}
		t.Logf("cleanup %d calls, users %d through in one minute", len(log.batch), len(log.users))
	})
}

// Hundreds of users revoking at once through one instance: one round trip
// to the store serves them all (the slots they need, written in
// parallel), as many get through as the window holds, and the others are
// answered as soon as the window is known full. Users arriving later in
// that window are refused at once, without asking the store, and the
// next window serves users again.
func TestSharedPacerServesABurstOfUsersTogether(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const latency, endpoint = 20 * time.Millisecond, "/item/remove"
		store := newMemoryQuota(latency)
		p := lifecycle.NewSharedPacer(store, lifecycle.PlaidSettings{ItemRemoveRPM: 2000})
		wave := func(users int) *callLog {
			var log callLog
			var wg sync.WaitGroup
			for range users {
				wg.Go(func() { log.user(t, p, endpoint) })
			}
			wg.Wait()
			return &log
		}
		first := wave(300)
		// 2,000/min: a window of 2 s holds 64 or 65 calls.
		if n := len(first.users); n < 64 || n > 65 || n+len(first.refused) != 300 {
			t.Errorf("300 users at once: %d through, %d refused; want the window's 64 or 65 through, the rest refused", n, len(first.refused))
		}
		// Each user waited for at most a few round trips: the slots, taken
		// together, and the users who came first.
		if w := slices.Max(first.userWait); w > 3*latency {
			t.Errorf("a user of the burst waited %v; want at most three round trips (%v)", w, 3*latency)
		}
		callsAfterBurst := store.storeCalls()

		time.Sleep(500 * time.Millisecond) // same window
		second := wave(100)
		if len(second.users) != 0 || slices.Max(second.userWait) != 0 || store.storeCalls() != callsAfterBurst {
			t.Errorf("100 users later in a full window: %d through, longest wait %v, %d store calls; want all refused at once, no store call",
				len(second.users), slices.Max(second.userWait), store.storeCalls()-callsAfterBurst)
		}

		time.Sleep(window) // the next window
		if third := wave(10); len(third.users) != 10 {
			t.Errorf("10 users in the next window: %d through, want 10", len(third.users))
		}
		t.Logf("burst: %d through, %d refused, longest wait %v; %d store calls for the burst", len(first.users), len(first.refused),
			slices.Max(first.userWait), callsAfterBurst)
	})
}

// However slow the store, a user waits for the quota no longer than
// InteractiveMaxWait, queueing behind other users included.
func TestSharedPacerBoundsUsersWaitingForASlowStore(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		store := newMemoryQuota(3 * time.Second)
		p := lifecycle.NewSharedPacer(store, lifecycle.PlaidSettings{ItemRemoveRPM: 2000})
		var log callLog
		var wg sync.WaitGroup
		for range 300 {
			wg.Go(func() { log.user(t, p, "/item/remove") })
		}
		wg.Wait()
		if len(log.refused) != 300 {
			t.Errorf("%d of 300 users refused; want all (the store answers after 3 s)", len(log.refused))
		}
		for _, w := range log.userWait {
			if w != lifecycle.InteractiveMaxWait {
				t.Fatalf("a user waited %v; want exactly InteractiveMaxWait (%v)", w, lifecycle.InteractiveMaxWait)
			}
		}
		if n := store.storeCalls(); n >= 300 {
			t.Errorf("%d store calls for 300 users; want fewer than one per user", n)
		}
	})
}

// A user's call that finds the quota saturated fails at once instead of
// queueing behind it.
func TestPacersFailUsersAtOnceWhenSaturated(t *testing.T) {
	t.Parallel()
	settings := lifecycle.PlaidSettings{ItemGetRPM: 60, ItemRemoveRPM: 60}
	for name, newPacer := range map[string]func() lifecycle.Pacer{
		"local":  func() lifecycle.Pacer { return lifecycle.NewLocalPacer(settings) },
		"shared": func() lifecycle.Pacer { return lifecycle.NewSharedPacer(newMemoryQuota(0), settings) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				p := newPacer()
				var log callLog
				for range 10 {
					log.user(t, p, "/item/remove")
				}
				// 60/min: one call now (the limiter's burst; a 2 s window's
				// one or two slots), the others refused.
				if n := len(log.users); n < 1 || n > 2 || len(log.refused) != 10-n {
					t.Errorf("10 users' calls at 60/min: %d through, %d refused", n, len(log.refused))
				}
				if w := slices.Max(log.userWait); w != 0 {
					t.Errorf("a user's call waited %v; want an answer at once", w)
				}
			})
		})
	}
}

// A committed call (an exchanged Item's reading or removal, which has no
// local fallback) goes first as a user's call, but waits for later windows
// within its context: a burst of them larger than the quota allows at once
// all goes through, spread over the time it needs, under Plaid's limit;
// one whose deadline comes before its turn is refused as saturated,
// without waiting for nothing.
func TestPacersLetCommittedCallsWaitForLaterWindows(t *testing.T) {
	t.Parallel()
	const rpm = 2000
	settings := lifecycle.PlaidSettings{ItemGetRPM: rpm, ItemRemoveRPM: rpm}
	for name, newPacer := range map[string]func() lifecycle.Pacer{
		"local":  func() lifecycle.Pacer { return lifecycle.NewLocalPacer(settings) },
		"shared": func() lifecycle.Pacer { return lifecycle.NewSharedPacer(newMemoryQuota(20*time.Millisecond), settings) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				p := newPacer()
				var burst, late callLog
				var wg sync.WaitGroup
				for range 300 {
					wg.Go(func() { burst.committed(t, p, "/item/get", 30*time.Second) })
				}
				// A second in, the rest of the burst waits its turn: a call
				// given 100 ms is refused at once, not at its deadline.
				time.Sleep(time.Second)
				late.committed(t, p, "/item/get", 100*time.Millisecond)
				wg.Wait()
				if len(late.refused) != 1 || late.userWait[0] >= 100*time.Millisecond {
					t.Errorf("a committed call given 100 ms behind a burst: %d refused after %v; want refused before its deadline",
						len(late.refused), late.userWait)
				}
				// 300 calls at 2,000/min take about 9 s: every one waits
				// its turn, none is refused, Plaid's limit holds.
				if len(burst.users) != 300 || len(burst.refused) != 0 {
					t.Errorf("300 committed calls at once: %d through, %d refused; want all through", len(burst.users), len(burst.refused))
				}
				if most := mostInAnyMinute(burst.users); most > rpm {
					t.Errorf("%d calls in a minute; Plaid allows %d", most, rpm)
				}
				if w := slices.Max(burst.userWait); w < 5*time.Second || w > 12*time.Second {
					t.Errorf("the last committed call waited %v; want the 8 to 10 s 300 calls take at %d/min", w, rpm)
				}
			})
		})
	}
}

// Batch workers waiting for a saturated quota are served in turn: none
// starves while the others take every slot (a cleanup's worker that waits
// past the Plaid client's bound counts an error for its token).
func TestPacersServeBatchWorkersInTurn(t *testing.T) {
	t.Parallel()
	const rpm, workers = 1200, 40 // 20 calls a second for 40 workers: each waits about 2 s
	settings := lifecycle.PlaidSettings{ItemGetRPM: rpm, ItemRemoveRPM: rpm}
	for name, newPacer := range map[string]func() lifecycle.Pacer{
		"local":  func() lifecycle.Pacer { return lifecycle.NewLocalPacer(settings) },
		"shared": func() lifecycle.Pacer { return lifecycle.NewSharedPacer(newMemoryQuota(20*time.Millisecond), settings) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				p := newPacer()
				ctx, cancel := context.WithTimeout(lifecycle.WithPlaidPriority(t.Context(), lifecycle.PriorityBatch), time.Minute)
				defer cancel()
				start := time.Now()
				var mu sync.Mutex
				var longest time.Duration
				settled := make([]int, workers) // calls after the first 10 s, per worker
				total := 0
				var wg sync.WaitGroup
				for i := range workers {
					wg.Go(func() {
						for {
							asked := time.Now()
							err := p.Wait(ctx, "/item/get")
							mu.Lock()
							longest = max(longest, time.Since(asked))
							if err == nil && time.Since(start) >= 10*time.Second {
								settled[i]++
							}
							if err == nil {
								total++
							}
							mu.Unlock()
							if err != nil {
								return
							}
						}
					})
				}
				wg.Wait()
				// In turn: once every worker has queued (the first caller
				// may take the first free slots alone before the others
				// start), each makes as many calls as the others, give or
				// take the turn in progress at either end (times are the
				// bubble's, so how the goroutines were scheduled does not
				// matter). And none waited more than for the 39 ahead of
				// it: 39 calls at 19 or more a second, plus at most one
				// window's gap.
				if lo, hi := slices.Min(settled), slices.Max(settled); hi-lo > 2 {
					t.Errorf("after the first 10 s, workers made from %d to %d calls each; want all served in turn", lo, hi)
				}
				if longest > 4*time.Second {
					t.Errorf("a batch call waited %v for its turn; want at most 4 s", longest)
				}
				t.Logf("%d calls; after the first 10 s %d to %d per worker; longest wait %v", total, slices.Min(settled), slices.Max(settled), longest)
			})
		})
	}
}

// Under a saturated quota a user's revocation is revoked locally and its
// removal at Plaid is left to cleanup, which finishes it (DESIGN §7, §12).
// That the answer comes at once is the pacers' tests' (above), in fake
// time; here the outcome in Firestore and at Plaid.
func TestRevokeUnderSaturatedQuotaRevokesLocally(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.WithRPM(600000, 60)) // one /item/remove a second
	var tokens []string
	for i := range 12 {
		tok := testenv.ActiveToken(fmt.Sprintf("item-sat-%02d", i), "user-sat", 1)
		env.Seed(t, tok)
		tokens = append(tokens, tok.ItemID)
	}
	n, err := env.Service.RevokeAllTokens(context.Background(), "user-sat")
	if err != nil || n != len(tokens) {
		t.Fatalf("RevokeAllTokens = %d, %v; want %d", n, err, len(tokens))
	}
	pending := 0
	for _, id := range tokens {
		doc := env.Doc(t, id)
		if doc.Status != lifecycle.StatusRevoked {
			t.Errorf("%s is %s, want revoked", id, doc.Status)
		}
		if !doc.PlaidRemoved {
			pending++
			if env.Plaid.Removed("access-sandbox-" + id) {
				t.Errorf("%s was removed at Plaid but says plaid_removed: false", id)
			}
		}
	}
	if pending == 0 {
		t.Fatal("every removal went through at 60/min; the test did not saturate the quota")
	}
	// Cleanup finishes the removals at Plaid (here with room in the quota).
	fast, err := lifecycle.NewPlaidClient(lifecycle.PlaidClientConfig{PlaidSettings: lifecycle.PlaidSettings{
		PlaidClientID: env.Plaid.ClientID, PlaidSecret: env.Plaid.Secret, PlaidEnv: "sandbox", PlaidBaseURL: env.Plaid.URL(),
		ItemGetRPM: 600000, ItemRemoveRPM: 600000}})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := lifecycle.NewService(env.Config, lifecycle.Deps{Tokens: env.Tokens, Runs: env.Runs, Legacy: env.Legacy,
		Stats: env.Stats, Plaid: fast, Cipher: env.Vault, Clock: env.Clock})
	if err != nil {
		t.Fatal(err)
	}
	res, err := svc.Cleanup(context.Background(), lifecycle.CleanupRequest{DaysThreshold: 90, Trigger: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Statistics.RevokedRemoved != len(tokens) {
		t.Errorf("cleanup removed %d revoked tokens, want %d", res.Statistics.RevokedRemoved, len(tokens))
	}
	for _, id := range tokens {
		if !env.Plaid.Removed("access-sandbox-" + id) {
			t.Errorf("%s was never removed at Plaid", id)
		}
	}
}
