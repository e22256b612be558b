// Package wait is how tests wait for what happens on its own time: a
// process that starts listening, an event another process delivers, a run
// that finishes in the background. Until polls a condition and fails the
// test, naming what it awaited, once the deadline passes; FreePort finds a
// port to start a process on. Time that a test controls (pacers, leases,
// clocks) is never waited for: testing/synctest and injected clocks make it
// exact instead.
package wait

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// Until polls cond until it holds (Poll); past within it fails the test
// with "timed out after within waiting for what".
func Until(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	if !Poll(within, cond) {
		t.Fatalf("timed out after %s waiting for %s", within, what)
	}
}

// Poll calls cond, every 20 ms at first and at most every 200 ms, until it
// holds (true) or within has passed (false). It never fails a test itself,
// so a goroutine other than the test's may call it.
func Poll(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	delay := 20 * time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(delay)
		delay = min(2*delay, 200*time.Millisecond)
	}
	return true
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port), nil
}

// Port is FreePort for a test: it fails the test when no port is free.
func Port(t testing.TB) string {
	t.Helper()
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
