package plaidfake

import (
	"time"
)

// Plaid limits each endpoint per client, whatever the number of processes
// calling with the client's credentials (PLAID.md: /item/get 5,000/min,
// /item/remove 2,000/min in production). SetClientRateLimit makes the fake
// enforce such a limit, so that a test or the benchmark can show whether a
// fleet of processes stays under one quota or provokes 429s.

// clientWindow is the span Plaid's per-minute limits are counted over.
const clientWindow = time.Minute

// clientLimit is the per-client limit of one path: the arrival times of
// the calls it accepted within the last clientWindow, oldest first.
type clientLimit struct {
	perMinute int
	accepted  []time.Time
	refused   int
}

// WithClientRateLimit sets a per-client limit at start (see
// SetClientRateLimit).
func WithClientRateLimit(path string, perMinute int) Option {
	return func(s *Server) { s.setClientRateLimit(path, perMinute) }
}

// SetClientRateLimit makes path accept at most perMinute calls in any
// 60-second window, counted over every caller together, as Plaid counts
// its per-client limits. A call beyond it is answered 429
// RATE_LIMIT_EXCEEDED (ITEM_GET_LIMIT or ITEM_REMOVE_LIMIT for the item
// endpoints, RATE_LIMIT otherwise), has no effect, and does not count
// towards the limit. Calls are counted when they arrive, before any latency
// and before injected faults. perMinute 0 removes the limit.
func (s *Server) SetClientRateLimit(path string, perMinute int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setClientRateLimit(path, perMinute)
}

func (s *Server) setClientRateLimit(path string, perMinute int) {
	p := normalizePath(path)
	if perMinute <= 0 {
		delete(s.clientLimits, p)
		return
	}
	if s.clientLimits == nil {
		s.clientLimits = make(map[string]*clientLimit)
	}
	s.clientLimits[p] = &clientLimit{perMinute: perMinute}
}

// RateLimited returns how many calls to path the per-client limit refused.
func (s *Server) RateLimited(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.clientLimits[normalizePath(path)]; l != nil {
		return l.refused
	}
	return 0
}

// overClientLimit counts a call to path arriving at now and reports
// whether the per-client limit refuses it. s.mu must be held.
func (s *Server) overClientLimit(path string, now time.Time) bool {
	l := s.clientLimits[path]
	if l == nil {
		return false
	}
	cutoff := now.Add(-clientWindow)
	drop := 0
	for drop < len(l.accepted) && !l.accepted[drop].After(cutoff) {
		drop++
	}
	l.accepted = l.accepted[drop:]
	if len(l.accepted) >= l.perMinute {
		l.refused++
		return true
	}
	l.accepted = append(l.accepted, now)
	return false
}
