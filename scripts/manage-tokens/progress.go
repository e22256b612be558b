package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// progress is a one-line progress bar on stderr, redrawn in place. It is
// shown only when stderr is a terminal: never in a pipe, a log file or
// --json output.
type progress struct {
	w     io.Writer // nil: disabled
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
func (c *cli) progressBar(ctx context.Context, label string, wanted bool) *progress {
	f, ok := c.stderr.(*os.File)
	if !wanted || !ok || !term.IsTerminal(int(f.Fd())) {
		return &progress{}
	}
	p := &progress{w: f, label: label}
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
	if p.w == nil {
		return
	}
	if p.total <= 0 {
		fmt.Fprintf(p.w, "\r%s: %d documents", p.label, done)
		return
	}
	frac := min(float64(done)/float64(p.total), 1)
	filled := int(frac * barWidth)
	fmt.Fprintf(p.w, "\r%s [%s%s] %d/%d (%3.0f%%)", p.label,
		strings.Repeat("#", filled), strings.Repeat(".", barWidth-filled), done, p.total, frac*100)
}

// finish clears the bar's line, so the report starts on a clean screen.
func (p *progress) finish() {
	if p.w == nil {
		return
	}
	fmt.Fprint(p.w, "\r\033[K")
}
