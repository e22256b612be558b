package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// lockedWriter serializes writes to w, as a terminal does.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestTextLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := newTextLogger(&buf, slog.LevelWarn)
	log.Info("not shown")
	log.Warn("retrying Plaid call", "endpoint", "/item/get", "attempt", 1)
	log.Error("cleanup failed", "error", errors.New("plaid /item/remove: 503"))
	log.With("run_id", "r1").WithGroup("stats").Warn("slow", "pages", 3)
	log.Warn("two\nlines")
	log.Log(context.Background(), slog.LevelError+4, "worse")
	want := `WARN  retrying Plaid call endpoint=/item/get attempt=1
ERROR cleanup failed error="plaid /item/remove: 503"
WARN  slow run_id=r1 stats.pages=3
WARN  two; lines
ERROR+4 worse
`
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("text log (-want +got):\n%s", diff)
	}
}

func TestTextLoggerConcurrent(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var buf bytes.Buffer
	log := newTextLogger(lockedWriter{&mu, &buf}, slog.LevelInfo)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				log.With("worker", i).Info("tick", "j", j)
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	line := regexp.MustCompile(`^INFO  tick worker=\d j=\d+$`)
	for _, l := range lines {
		if !line.MatchString(l) {
			t.Fatalf("interleaved line %q", l)
		}
	}
	if len(lines) != 400 {
		t.Errorf("%d lines, want 400", len(lines))
	}
}
