// Package fstest gives tests a Firestore client on the emulator, isolated
// from every other test by a project id of its own.
package fstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"cloud.google.com/go/firestore"
)

// EmulatorHost returns FIRESTORE_EMULATOR_HOST. When it is unset the test is
// skipped, unless REQUIRE_FIRESTORE_EMULATOR is set (scripts/test.sh sets
// it), in which case the test fails: CI must never pass by skipping storage
// tests.
func EmulatorHost(t testing.TB) string {
	t.Helper()
	host := os.Getenv("FIRESTORE_EMULATOR_HOST")
	if host == "" {
		if os.Getenv("REQUIRE_FIRESTORE_EMULATOR") != "" {
			t.Fatal("FIRESTORE_EMULATOR_HOST is not set; run the tests through scripts/test.sh")
		}
		t.Skip("FIRESTORE_EMULATOR_HOST is not set; run scripts/test.sh to test against the Firestore emulator")
	}
	return host
}

// ProjectID returns a fresh project id: the emulator keeps each project's
// data apart, so tests using different ids can run in parallel.
func ProjectID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-", " ", "-").Replace(t.Name()))
	if len(name) > 16 {
		name = name[:16]
	}
	return "test-" + strings.Trim(name, "-") + "-" + hex.EncodeToString(b)
}

// NewClient returns a Firestore emulator client in a fresh project, closed
// when the test ends.
func NewClient(t testing.TB) *firestore.Client {
	t.Helper()
	EmulatorHost(t)
	return NewClientFor(t, ProjectID(t))
}

// NewClientFor returns an emulator client for project, closed when the test
// ends.
func NewClientFor(t testing.TB, project string) *firestore.Client {
	t.Helper()
	EmulatorHost(t)
	client, err := firestore.NewClient(context.Background(), project)
	if err != nil {
		t.Fatalf("firestore.NewClient: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}
