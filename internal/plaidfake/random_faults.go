package plaidfake

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// FaultKind is a kind of fault SetRandomFaults injects: the failures a
// Plaid client meets in production.
type FaultKind int

// Fault kinds.
const (
	// FaultRateLimit answers 429 RATE_LIMIT_EXCEEDED (ITEM_GET_LIMIT or
	// ITEM_REMOVE_LIMIT for the item endpoints, RATE_LIMIT otherwise).
	FaultRateLimit FaultKind = iota + 1
	// FaultServerError answers 500 API_ERROR INTERNAL_SERVER_ERROR.
	FaultServerError
	// FaultTimeout never answers: the request is held until the client
	// gives up (its timeout), the fake closes, or maxTimeoutHold passes,
	// and the connection is then dropped. The request has no effect.
	FaultTimeout
	// FaultReset drops the connection before the request is handled: the
	// client sees a transport error and the request has no effect.
	FaultReset
	// FaultLostAnswer handles the request (an /item/remove removes the
	// Item) and then drops the connection instead of answering: the client
	// sees a transport error for a call that succeeded, and a retried
	// removal meets ITEM_NOT_FOUND.
	FaultLostAnswer
)

// AllFaultKinds are every FaultKind, the default of SetRandomFaults.
var AllFaultKinds = []FaultKind{FaultRateLimit, FaultServerError, FaultTimeout, FaultReset, FaultLostAnswer}

var faultKindNames = map[FaultKind]string{
	FaultRateLimit:   "rate_limit",
	FaultServerError: "server_error",
	FaultTimeout:     "timeout",
	FaultReset:       "reset",
	FaultLostAnswer:  "lost_answer",
}

func (k FaultKind) String() string {
	if n, ok := faultKindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("FaultKind(%d)", int(k))
}

// ParseFaultKind reads a FaultKind by its String name (rate_limit,
// server_error, timeout, reset, lost_answer).
func ParseFaultKind(name string) (FaultKind, error) {
	for k, n := range faultKindNames {
		if n == strings.TrimSpace(name) {
			return k, nil
		}
	}
	return 0, fmt.Errorf("plaidfake: unknown fault kind %q (want one of rate_limit, server_error, timeout, reset, lost_answer)", name)
}

// maxTimeoutHold bounds how long a FaultTimeout holds a request whose
// client never gives up.
const maxTimeoutHold = 10 * time.Minute

// fault is the answer of an answering fault kind on path.
func (k FaultKind) fault(path string) fault {
	switch k {
	case FaultRateLimit:
		code := "RATE_LIMIT"
		switch path {
		case PathItemGet:
			code = "ITEM_GET_LIMIT"
		case PathItemRemove:
			code = "ITEM_REMOVE_LIMIT"
		}
		return fault{status: http.StatusTooManyRequests, errType: "RATE_LIMIT_EXCEEDED", code: code}
	case FaultServerError:
		return fault{status: http.StatusInternalServerError, errType: "API_ERROR", code: "INTERNAL_SERVER_ERROR"}
	default:
		return fault{status: 0} // a dropped connection
	}
}

// randomFaults is the state of SetRandomFaults. Guarded by Server.mu.
type randomFaults struct {
	rate     float64
	seed     int64
	kinds    []FaultKind
	attempts map[string]int    // requests seen per (path, token or key id) since SetRandomFaults
	injected map[FaultKind]int // every fault injected, over the server's life
}

// SetRandomFaults makes a fraction rate (0 to 1) of the requests to every
// endpoint fail with one of kinds (every kind when none is given), after
// any FailNext and FailAlways faults. Rate 0 turns random faults off.
//
// Which requests fail is deterministic by seed, whatever order concurrent
// requests arrive in: the decision for a request is a hash of seed, the
// path, the request's access token (or key id, public token or
// institution id) and how many requests with that path and token came
// before it since this call. So the same seed fails the same attempts of
// the same tokens in every run, and a retry of a failed call is decided
// afresh. InjectedFaults counts what was injected.
func (s *Server) SetRandomFaults(rate float64, seed int64, kinds ...FaultKind) {
	if rate < 0 || rate > 1 {
		panic(fmt.Sprintf("plaidfake: SetRandomFaults rate %v is not in [0, 1]", rate))
	}
	if len(kinds) == 0 {
		kinds = AllFaultKinds
	}
	for _, k := range kinds {
		if _, ok := faultKindNames[k]; !ok {
			panic(fmt.Sprintf("plaidfake: SetRandomFaults: unknown fault kind %d", int(k)))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.random.rate, s.random.seed, s.random.kinds = rate, seed, slices.Clone(kinds)
	s.random.attempts = make(map[string]int)
}

// InjectedFaults returns how many faults of each kind SetRandomFaults
// injected so far (FailNext and FailAlways faults are not counted).
func (s *Server) InjectedFaults() map[FaultKind]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[FaultKind]int, len(s.random.injected))
	for k, n := range s.random.injected {
		out[k] = n
	}
	return out
}

// FaultsInjected returns how many faults SetRandomFaults injected so far,
// all kinds together.
func (s *Server) FaultsInjected() int {
	n := 0
	for _, c := range s.InjectedFaults() {
		n += c
	}
	return n
}

// randomFault decides whether this request meets a random fault.
func (s *Server) randomFault(path string, body requestBody) (FaultKind, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rf := &s.random
	if rf.rate <= 0 || len(rf.kinds) == 0 {
		return 0, false
	}
	id := cmp.Or(body.AccessToken, body.KeyID, body.PublicToken, body.InstitutionID)
	key := path + "\x00" + id
	n := rf.attempts[key]
	rf.attempts[key] = n + 1

	h := sha256.New()
	fmt.Fprintf(h, "%d\x00%s\x00%d", rf.seed, key, n)
	sum := h.Sum(nil)
	// 53 random bits make a uniform float in [0, 1).
	u := float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53)
	if u >= rf.rate {
		return 0, false
	}
	kind := rf.kinds[binary.BigEndian.Uint64(sum[8:16])%uint64(len(rf.kinds))]
	if rf.injected == nil {
		rf.injected = make(map[FaultKind]int)
	}
	rf.injected[kind]++
	return kind, true
}

// Removal is one Item removed by /item/remove.
type Removal struct {
	AccessToken string
	ItemID      string    // the Item's id as AddItem registered it
	Time        time.Time // when the fake removed it, before answering
}

// Removals returns every Item removed so far, in removal order, with the
// time each was removed.
func (s *Server) Removals() []Removal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.removals)
}

// OnRemoved sets a hook run each time /item/remove removes an Item: after
// the Item is gone at the fake and before the caller can know (before the
// answer is sent, or lost), outside the fake's lock. A test uses it to see
// what the caller's storage held at the moment of the removal, e.g. that
// the token's document still existed. nil removes it.
func (s *Server) OnRemoved(hook func(Removal)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onRemoved = hook
}
