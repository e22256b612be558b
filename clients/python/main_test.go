// Package python holds no Go code: its tests check that the Python
// reference implementation beside them (plaid_token_vault/) and the Go
// service agree, byte for byte, on every format of a stored token, and that
// an app reading plaid_tokens with it keeps working through migrate-legacy.
// They run the Python side as a separate process, so `go test ./...` (and
// scripts/test.sh) runs them.
package python

import (
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
)

func TestMain(m *testing.M) {
	if os.Getenv("LOG_TESTS") == "" {
		slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	os.Exit(emulator.Main(m))
}
