package lifecycle_test

import (
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
)

func TestMain(m *testing.M) {
	// Operations log through slog.Default when the context carries no
	// logger; keep test output to the failures. LOG_TESTS=1 shows the logs.
	if os.Getenv("LOG_TESTS") == "" {
		slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	os.Exit(emulator.Main(m))
}
