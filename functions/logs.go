package functions

import (
	"bufio"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// jsonLogs makes every line a deployed function writes a Cloud Logging JSON
// object (DESIGN §11), once per process, on first use: slog's and the log
// package's default logger write JSON to stdout, and os.Stderr becomes a
// pipe whose lines (the Functions Framework's "Function error: ..." when a
// CloudEvent function asks for a retry, its recovered panics, any library's
// plain text) are re-written as JSON ERROR entries. It acts only under the
// Functions Framework (FUNCTION_TARGET or Cloud Run's K_SERVICE set), never
// in a test binary or a tool that imports this package.
var jsonLogs = sync.OnceFunc(func() {
	if os.Getenv("FUNCTION_TARGET") == "" && os.Getenv("K_SERVICE") == "" {
		return
	}
	level := slog.LevelInfo
	if v := os.Getenv("LOG_LEVEL"); v != "" {
		_ = level.UnmarshalText([]byte(strings.ToUpper(v)))
	}
	slog.SetDefault(lifecycle.NewJSONLogger(os.Stdout, level))
	realStderr := os.Stderr
	r, w, err := os.Pipe()
	if err != nil {
		return // stderr stays as it is
	}
	os.Stderr = w
	go forwardAsJSON(r, lifecycle.NewJSONLogger(realStderr, slog.LevelDebug))
})

// forwardAsJSON writes each line read from r as one ERROR entry.
func forwardAsJSON(r io.Reader, log *slog.Logger) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			log.Error(line, slog.String("stream", "stderr"))
		}
	}
}
