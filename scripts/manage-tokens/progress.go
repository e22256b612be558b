package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// statusLine is stderr when it is a terminal: it keeps one status line,
// the progress bar, redrawn in place at the bottom, and writes every other
// line (logs, errors) above it, so neither garbles the other.
type statusLine struct {
	mu     sync.Mutex
	w      io.Writer
	status string // on the screen now; "" when none
}

// Write writes whole lines above the status line.
func (s *statusLine) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status == "" {
		return s.w.Write(p)
	}
	if _, err := io.WriteString(s.w, "\r\033[K"); err != nil {
		return 0, err
	}
	n, err := s.w.Write(p)
	if err == nil {
		_, err = io.WriteString(s.w, "\r"+s.status)
	}
	return n, err
}

// show draws line as the status line.
func (s *statusLine) show(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = line
	io.WriteString(s.w, "\r"+line)
}

// clear erases the status line, so that what follows starts on a clean
// line.
func (s *statusLine) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status != "" {
		io.WriteString(s.w, "\r\033[K")
		s.status = ""
	}
}

// progress is a one-line progress bar on the status line. It is shown only
// when stderr is a terminal, --json or not (stdout stays the report or the
// one JSON object): never in a pipe or a log file.
type progress struct {
	out   *statusLine // nil: disabled
	label string
	total int // 0: unknown
}

const (
	barWidth = 30
	// countTimeout bounds the count behind the bar's total: the bar is a
	// nicety and must not hold the command up.
	countTimeout = 10 * time.Second
)

// progressBar returns the bar of a command that goes through every token,
// its total from a Firestore count aggregation over plaid_tokens.
func (c *cli) progressBar(ctx context.Context, label string) *progress {
	if c.status == nil {
		return &progress{}
	}
	p := &progress{out: c.status, label: label}
	ctx, cancel := context.WithTimeout(ctx, countTimeout)
	defer cancel()
	res, err := c.client.Collection(lifecycle.TokensCollection).NewAggregationQuery().WithCount("n").Get(ctx)
	var count struct {
		N int64 `firestore:"n"`
	}
	if err == nil && res.DataTo(&count) == nil {
		p.total = int(count.N)
	}
	p.update(0)
	return p
}

// update redraws the bar at done documents.
func (p *progress) update(done int) {
	if p.out == nil {
		return
	}
	if p.total <= 0 {
		p.out.show(fmt.Sprintf("%s: %d documents", p.label, done))
		return
	}
	frac := min(float64(done)/float64(p.total), 1)
	filled := int(frac * barWidth)
	p.out.show(fmt.Sprintf("%s [%s%s] %d/%d (%3.0f%%)", p.label,
		strings.Repeat("#", filled), strings.Repeat(".", barWidth-filled), done, p.total, frac*100))
}

// finish clears the bar's line, so the report starts on a clean screen.
func (p *progress) finish() {
	if p.out == nil {
		return
	}
	p.out.clear()
}
