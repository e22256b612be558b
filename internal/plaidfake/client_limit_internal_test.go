package plaidfake

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The limit is counted in a sliding 60-second window: a call is refused
// while perMinute calls were accepted within the 60 seconds before it, and
// refused calls do not count.
func TestClientLimitSlidingWindow(t *testing.T) {
	t.Parallel()
	s := newServer(DefaultClientID, DefaultSecret, []Option{WithClientRateLimit(PathItemGet, 2)})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var got []bool
	for _, at := range []time.Duration{0, 10 * time.Second, 30 * time.Second, 59 * time.Second, 60 * time.Second, 61 * time.Second, 70 * time.Second, 70 * time.Second} {
		got = append(got, s.overClientLimit(PathItemGet, t0.Add(at)))
	}
	// 0 and 10 s accepted; 30 and 59 s refused; at 60 s the call of 0 s has
	// left the window; at 61 s the 10 s one is still in it; at 70 s it has
	// left, and a second call at 70 s finds the window full again.
	want := []bool{false, false, true, true, false, true, false, true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("refused (-want +got):\n%s", diff)
	}
	if s.overClientLimit(PathItemRemove, t0) {
		t.Error("a path without a limit was refused")
	}
}
