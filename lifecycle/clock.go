package lifecycle

import "time"

// Clock tells the time. Operations take it so tests pin "now"
// (internal/testenv has a settable one).
type Clock interface {
	Now() time.Time
}

// SystemClock is the real clock, in UTC.
type SystemClock struct{}

// Now returns the current UTC time.
func (SystemClock) Now() time.Time { return time.Now().UTC() }
