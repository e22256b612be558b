//go:build race

package faults

// raceEnabled: this test binary has the race detector, so the binaries it
// runs are built with it too.
const raceEnabled = true
