package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// report renders the weekly report (DESIGN §9) to stdout or --out.
func (c *cli) report(ctx context.Context, inv invocation) int {
	r, err := c.svc.WeeklyReport(ctx)
	if err != nil {
		return fail(c.stderr, err)
	}
	var page bytes.Buffer
	if err := lifecycle.RenderWeeklyReport(&page, r); err != nil {
		return fail(c.stderr, err)
	}
	if inv.out == "" || inv.out == "-" {
		if _, err := c.stdout.Write(page.Bytes()); err != nil {
			return fail(c.stderr, fmt.Errorf("writing the report: %w", err))
		}
		return exitOK
	}
	if err := os.WriteFile(inv.out, page.Bytes(), 0o644); err != nil {
		return fail(c.stderr, fmt.Errorf("writing the report: %w", err))
	}
	where := inv.out
	if abs, err := filepath.Abs(inv.out); err == nil {
		where = "file://" + abs
	}
	fmt.Fprintf(c.stderr, "%s: wrote the weekly report (%d bytes); open %s in a browser\n", program, page.Len(), where)
	return exitOK
}
