package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/internal/wait"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// The local listener turns later writes by any writer into the changes
// Eventarc would deliver; the first snapshot is the baseline.
func TestListenTokenChanges(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	env.SeedSample(t)
	baseline := make(chan time.Time, 1)
	var mu sync.Mutex
	var got []lifecycle.TokenChange
	done := make(chan error, 1)
	go func() {
		done <- listenTokenChanges(ctx, env.Client, func(rt time.Time) { baseline <- rt }, func(chs []lifecycle.TokenChange) {
			mu.Lock()
			got = append(got, chs...)
			mu.Unlock()
		})
	}()
	select {
	case <-baseline:
	case <-time.After(30 * time.Second):
		t.Fatal("no baseline snapshot")
	}
	if _, err := env.Service.ExactAnalytics(ctx, lifecycle.ExactOptions{Repair: true, Trigger: "test"}); err != nil {
		t.Fatal(err)
	}
	w := testenv.NewTokenWriter(env.Client)
	w.Set(t, "item-new", testenv.TokenData(testenv.ActiveToken("item-new", "user-new", 0).Token))
	w.Update(t, "item-bob-chase", map[string]any{"status": "revoked"})
	w.Delete(t, "item-erin-old")
	w.Set(t, "user-legacy", map[string]any{"items": map[string]any{}})
	// Fewer than four is reported below, with what did arrive.
	wait.Poll(30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 4
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("listenTokenChanges: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	type seen struct {
		Item     string
		Old, New bool
	}
	var kinds []seen
	for _, c := range got {
		kinds = append(kinds, seen{c.ItemID(), c.Old != nil, c.New != nil})
	}
	want := []seen{{"item-new", false, true}, {"item-bob-chase", true, true}, {"item-erin-old", true, false}, {"", false, false}}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("changes seen (-want +got):\n%s", diff)
	}
	for range 2 { // a second delivery counts nothing
		if _, err := env.Service.CountTokenChanges(context.Background(), got); err != nil {
			t.Fatal(err)
		}
	}
	res, err := env.Service.ExactAnalytics(context.Background(), lifecycle.ExactOptions{Trigger: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Drift) != 0 || res.UsersDrifted != 0 {
		t.Errorf("after the listened changes: drift %v, %d users drifted; want none", res.Drift, res.UsersDrifted)
	}
}
