package functions

import (
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
)

func TestMain(m *testing.M) {
	// Handlers log through the logger in the request context, else
	// slog.Default; keep test output to the failures. LOG_TESTS=1 shows them.
	if os.Getenv("LOG_TESTS") == "" {
		slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	os.Exit(emulator.Main(m))
}
