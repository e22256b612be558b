package lifecycle_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// On the emulator, a quota slot is taken once however many processes ask
// for it at once, its document is written once and never again (a refused
// create leaves it as it was), it expires an hour after its window, and the
// window's taken slots read back with who took them.
func TestFirestoreQuotaStoreTakesEachSlotOnce(t *testing.T) {
	t.Parallel()
	client := emulator.NewClient(t)
	store := lifecycle.NewFirestoreQuotaStore(client)
	ctx := context.Background()
	const window, slots = 42, 10
	var won [slots]atomic.Int32
	var wg sync.WaitGroup
	for p := range 8 { // eight processes asking for every slot at once
		wg.Go(func() {
			for s := range slots {
				ok, err := store.TakeQuotaSlot(ctx, "/item/get", window, lifecycle.QuotaSlot{Index: s, Permits: 2, Users: p%2 == 0})
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					won[s].Add(1)
				}
			}
		})
	}
	wg.Wait()
	for s := range slots {
		if n := won[s].Load(); n != 1 {
			t.Errorf("slot %d taken %d times, want once", s, n)
		}
	}

	doc, err := client.Collection("plaid_token_quota").Doc("item_get-42-3").Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if doc.UpdateTime != doc.CreateTime {
		t.Errorf("slot document updated after its creation (%v, then %v)", doc.CreateTime, doc.UpdateTime)
	}
	windowEnd := time.Unix(0, 43*int64(2*time.Second))
	if got, ok := doc.Data()["expire_at"].(time.Time); !ok || !got.Equal(windowEnd.Add(time.Hour)) {
		t.Errorf("expire_at = %v, want an hour after the window, %v", doc.Data()["expire_at"], windowEnd.Add(time.Hour))
	}
	if ok, err := store.TakeQuotaSlot(ctx, "/item/get", window, lifecycle.QuotaSlot{Index: 3, Permits: 2}); ok || err != nil {
		t.Errorf("taking a taken slot again: %v, %v; want false, nil", ok, err)
	}
	again, err := client.Collection("plaid_token_quota").Doc("item_get-42-3").Get(ctx)
	if err != nil || !again.UpdateTime.Equal(doc.UpdateTime) {
		t.Errorf("a refused create changed the slot document: %v, %v", again.UpdateTime, err)
	}

	// Another endpoint's window, and the next window, are their own.
	for _, other := range []struct {
		endpoint string
		window   int64
	}{{"/item/remove", window}, {"/item/get", window + 1}, {"/item/get", 420}} {
		if ok, err := store.TakeQuotaSlot(ctx, other.endpoint, other.window, lifecycle.QuotaSlot{Index: 3, Permits: 1}); !ok || err != nil {
			t.Errorf("slot 3 of %s's window %d: %v, %v; want it free", other.endpoint, other.window, ok, err)
		}
	}
	taken, err := store.TakenQuotaSlots(ctx, "/item/get", window)
	if err != nil {
		t.Fatal(err)
	}
	var indexes []int
	for _, s := range taken {
		indexes = append(indexes, s.Index)
	}
	if diff := cmp.Diff([]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, slices.Sorted(slices.Values(indexes))); diff != "" {
		t.Errorf("taken slots of window 42, not 420's (-want +got):\n%s", diff)
	}

	// Read back as taken: for users or batch work, and their permits.
	for _, slot := range []lifecycle.QuotaSlot{{Index: 0, Permits: 1, Users: true}, {Index: 1, Permits: 5}} {
		if ok, err := store.TakeQuotaSlot(ctx, "/item/remove", 7, slot); !ok || err != nil {
			t.Fatalf("taking %+v: %v, %v", slot, ok, err)
		}
	}
	taken, err = store.TakenQuotaSlots(ctx, "/item/remove", 7)
	if err != nil {
		t.Fatal(err)
	}
	want := []lifecycle.QuotaSlot{{Index: 0, Permits: 1, Users: true}, {Index: 1, Permits: 5}}
	if diff := cmp.Diff(want, taken); diff != "" {
		t.Errorf("window 7's slots read back (-want +got):\n%s", diff)
	}
	// Whether users took a slot: in window 7 of /item/remove yes; in the
	// next window of /item/get, whose slot 3 was taken for batch work, no.
	for _, w := range []struct {
		endpoint string
		window   int64
		users    bool
	}{{"/item/remove", 7, true}, {"/item/get", window + 1, false}, {"/item/get", 8, false}} {
		if got, err := store.UsersTookQuota(ctx, w.endpoint, w.window); err != nil || got != w.users {
			t.Errorf("UsersTookQuota(%s, %d) = %v, %v; want %v", w.endpoint, w.window, got, err, w.users)
		}
	}
}
