package testenv

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
)

// LogBuffer collects log output, such as the JSON lines of
// lifecycle.NewJSONLogger or a child process's output. It is safe for
// concurrent writers and for reading while they write. The zero value is
// ready to use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Entries returns the JSON log lines whose "message" is msg, in order and
// without their "time" and source location fields, so they compare with
// cmp.Diff. A line that is
// not JSON fails the test.
func (b *LogBuffer) Entries(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if e["message"] == msg {
			delete(e, "time")
			delete(e, "logging.googleapis.com/sourceLocation")
			out = append(out, e)
		}
	}
	return out
}
