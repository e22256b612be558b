package lifecycle_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// memoryQuota is a QuotaStore in memory, counting per window.
type memoryQuota struct {
	mu   sync.Mutex
	used map[string]int
}

func (m *memoryQuota) TakeQuota(_ context.Context, endpoint string, window int64, n, limit int) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.used == nil {
		m.used = map[string]int{}
	}
	k := fmt.Sprint(endpoint, window)
	took := max(0, min(n, limit-m.used[k]))
	m.used[k] += took
	return took, nil
}

// Several processes sharing one quota never exceed the rate in any minute
// together, batch work never takes more than its share of a window, and a
// user's call finds room while batch work saturates its share.
func TestSharedPacerFleetStaysUnderTheRate(t *testing.T) {
	t.Parallel()
	const rpm = 600
	store := &memoryQuota{}
	settings := lifecycle.PlaidSettings{ItemGetRPM: rpm, ItemRemoveRPM: rpm}
	var calls []time.Time
	var mu sync.Mutex
	batch := lifecycle.WithPlaidPriority(context.Background(), lifecycle.PriorityBatch)
	ctx, cancel := context.WithTimeout(batch, 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 3 { // three instances, eight workers each
		p := lifecycle.NewSharedPacer(store, settings)
		for range 8 {
			wg.Go(func() {
				for p.Wait(ctx, "/item/get") == nil {
					mu.Lock()
					calls = append(calls, time.Now())
					mu.Unlock()
				}
			})
		}
	}
	// Meanwhile users revoke: their calls get through.
	interactive := lifecycle.NewSharedPacer(store, settings)
	userCtx := lifecycle.WithPlaidPriority(context.Background(), lifecycle.PriorityInteractive)
	var userOK, userRefused atomic.Int32
	wg.Go(func() {
		for i := 0; i < 8; i++ {
			time.Sleep(400 * time.Millisecond)
			start := time.Now()
			err := interactive.Wait(userCtx, "/item/get")
			if time.Since(start) > lifecycle.InteractiveMaxWait+200*time.Millisecond {
				t.Errorf("a user's call waited %v", time.Since(start))
			}
			if err == nil {
				userOK.Add(1)
				mu.Lock()
				calls = append(calls, time.Now())
				mu.Unlock()
			} else {
				userRefused.Add(1)
			}
		}
	})
	wg.Wait()

	// Any 60 s span holds at most rpm calls: here, any span of the run,
	// scaled, holds at most rpm/60 per second plus one window's worth.
	perWindow := map[int64]int{}
	for _, c := range calls {
		perWindow[c.UnixNano()/int64(2*time.Second)]++
	}
	for w, n := range perWindow {
		if limit := rpm*2/62 + 1; n > limit {
			t.Errorf("window %d: %d calls, more than its cap %d", w, n, limit)
		}
	}
	if userOK.Load() < 6 {
		t.Errorf("users' calls: %d got through, %d refused; want nearly all through while batch work saturates its share", userOK.Load(), userRefused.Load())
	}
	// Batch work used the rest: at least 90% of the rate (600/min: 10/s)
	// over the full windows of the run.
	if got, want := len(calls), 40; got < want {
		t.Errorf("%d calls in 5 s, want at least %d", got, want)
	}
	t.Logf("%d calls in 5 s by 3 instances (rate %d/min); users %d through, %d refused", len(calls), rpm, userOK.Load(), userRefused.Load())
}

// A user's call that finds the quota saturated fails fast instead of
// queueing behind it.
func TestPacersFailUsersFastWhenSaturated(t *testing.T) {
	t.Parallel()
	settings := lifecycle.PlaidSettings{ItemGetRPM: 60, ItemRemoveRPM: 60}
	for name, p := range map[string]lifecycle.Pacer{
		"local":  lifecycle.NewLocalPacer(settings),
		"shared": lifecycle.NewSharedPacer(&memoryQuota{}, settings),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := lifecycle.WithPlaidPriority(context.Background(), lifecycle.PriorityInteractive)
			var refused int
			start := time.Now()
			for range 10 {
				if err := p.Wait(ctx, "/item/remove"); err != nil {
					refused++
				}
			}
			if refused == 0 || time.Since(start) > 10*lifecycle.InteractiveMaxWait {
				t.Errorf("10 users' calls at 60/min: %d refused in %v; want refusals, each within %v", refused, time.Since(start), lifecycle.InteractiveMaxWait)
			}
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
	for name, p := range map[string]lifecycle.Pacer{
		"local":  lifecycle.NewLocalPacer(settings),
		"shared": lifecycle.NewSharedPacer(&memoryQuota{}, settings),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(lifecycle.WithPlaidPriority(context.Background(), lifecycle.PriorityBatch), 8*time.Second)
			defer cancel()
			var longest atomic.Int64
			var calls atomic.Int32
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for {
						start := time.Now()
						if p.Wait(ctx, "/item/get") != nil {
							// A wait cut short by the end of the test counts too.
							d := time.Since(start)
							for s := longest.Load(); int64(d) > s && !longest.CompareAndSwap(s, int64(d)); s = longest.Load() {
							}
							return
						}
						calls.Add(1)
						d := time.Since(start)
						for s := longest.Load(); int64(d) > s && !longest.CompareAndSwap(s, int64(d)); s = longest.Load() {
						}
					}
				})
			}
			wg.Wait()
			// In turn, a call waits for the workers ahead of it: about 2 s,
			// up to two windows more. Out of turn, some wait the whole 8 s.
			if got := time.Duration(longest.Load()); got > 6*time.Second {
				t.Errorf("a batch call waited %v for its turn (%d calls in all); want each served within about %v", got, calls.Load(), workers*time.Minute/rpm)
			}
			t.Logf("%d calls; longest wait %v", calls.Load(), time.Duration(longest.Load()))
		})
	}
}

// slowQuota is a memoryQuota whose every call takes as long as a Firestore
// transaction under load.
type slowQuota struct {
	memoryQuota
	delay time.Duration
	calls atomic.Int32
}

func (q *slowQuota) TakeQuota(ctx context.Context, endpoint string, window int64, n, limit int) (int, error) {
	q.calls.Add(1)
	select {
	case <-time.After(q.delay):
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return q.memoryQuota.TakeQuota(ctx, endpoint, window, n, limit)
}

// Hundreds of users revoking at once on one instance queue for its lease of
// the quota: none waits past InteractiveMaxWait for it, however slow the
// store, and once a window is full they stop asking the store for it.
func TestSharedPacerBoundsUsersQueueingForTheStore(t *testing.T) {
	t.Parallel()
	store := &slowQuota{delay: 20 * time.Millisecond}
	p := lifecycle.NewSharedPacer(store, lifecycle.PlaidSettings{ItemGetRPM: 2000, ItemRemoveRPM: 2000})
	ctx := lifecycle.WithPlaidPriority(context.Background(), lifecycle.PriorityInteractive)
	const users = 300
	var through, refused atomic.Int32
	var slowest atomic.Int64
	var wg sync.WaitGroup
	for range users {
		wg.Go(func() {
			start := time.Now()
			err := p.Wait(ctx, "/item/remove")
			d := time.Since(start)
			for {
				s := slowest.Load()
				if int64(d) <= s || slowest.CompareAndSwap(s, int64(d)) {
					break
				}
			}
			if err != nil {
				refused.Add(1)
			} else {
				through.Add(1)
			}
		})
	}
	wg.Wait()
	// 300 calls one after another on a 20 ms store would take 6 s.
	if got, bound := time.Duration(slowest.Load()), lifecycle.InteractiveMaxWait+500*time.Millisecond; got > bound {
		t.Errorf("the slowest of %d users waited %v for the quota; want at most %v", users, got, bound)
	}
	// 2,000/min allows about 64 calls a 2-second window: most are refused
	// (revoked locally), some got through, and the store was not asked
	// once per refused user.
	if through.Load() == 0 || refused.Load() == 0 || int(through.Load()+refused.Load()) != users {
		t.Errorf("%d through, %d refused of %d users; want both, adding up", through.Load(), refused.Load(), users)
	}
	if through.Load() > 2*(2000*2/62+1) {
		t.Errorf("%d calls through in at most two windows, more than their caps", through.Load())
	}
	t.Logf("%d users: %d through, %d refused, slowest %v, %d store calls", users, through.Load(), refused.Load(), time.Duration(slowest.Load()), store.calls.Load())
}

// The Firestore quota counter never hands out more than its limit, however
// many instances take from it at once.
func TestFirestoreQuotaStoreIsExact(t *testing.T) {
	t.Parallel()
	store := lifecycle.NewFirestoreQuotaStore(emulator.NewClient(t))
	ctx := context.Background()
	var total atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				n, err := store.TakeQuota(ctx, "/item/get", 42, 3, 20)
				if err != nil {
					t.Error(err)
					return
				}
				if n == 0 {
					return
				}
				total.Add(int64(n))
			}
		})
	}
	wg.Wait()
	if total.Load() != 20 {
		t.Errorf("took %d permits of a window limited to 20", total.Load())
	}
	if n, err := store.TakeQuota(ctx, "/item/remove", 42, 3, 20); err != nil || n != 3 {
		t.Errorf("another endpoint's window: took %d, %v; want 3", n, err)
	}
}

// Under a saturated quota a user's revocation still answers at once: the
// token is revoked locally and its removal at Plaid is left to cleanup,
// which finishes it (DESIGN §7, §12).
func TestRevokeUnderSaturatedQuotaAnswersAtOnce(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.WithRPM(600000, 60)) // one /item/remove a second
	var tokens []string
	for i := range 12 {
		tok := testenv.ActiveToken(fmt.Sprintf("item-sat-%02d", i), "user-sat", 1)
		env.Seed(t, tok)
		tokens = append(tokens, tok.ItemID)
	}
	start := time.Now()
	n, err := env.Service.RevokeAllTokens(context.Background(), "user-sat")
	took := time.Since(start)
	if err != nil || n != len(tokens) {
		t.Fatalf("RevokeAllTokens = %d, %v; want %d", n, err, len(tokens))
	}
	if took > 5*lifecycle.InteractiveMaxWait {
		t.Errorf("revoking 12 tokens at 60 removals/min took %v", took)
	}
	pending := 0
	for _, id := range tokens {
		doc := env.Doc(t, id)
		if doc.Status != lifecycle.StatusRevoked {
			t.Errorf("%s is %s, want revoked", id, doc.Status)
		}
		if !doc.PlaidRemoved {
			pending++
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
	env.Service.Plaid = fast
	res, err := env.Service.Cleanup(context.Background(), lifecycle.CleanupRequest{DaysThreshold: 90, Trigger: "test"})
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
