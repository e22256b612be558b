package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

const (
	banner      = "🚀 Personal Wealth Management - Token Management"
	dryRunLine  = "   (dry run: nothing was changed)"
	indent      = "   "
	listIndent  = "      "
	maxProblems = 20 // problems listed in the text report; --json has them all
)

func (c *cli) cleanup(ctx context.Context, inv invocation) int {
	days := inv.days
	if days == 0 {
		days = c.cfg.StaleDays
	}
	bar := c.progressBar(ctx, "cleanup", !inv.json)
	res, err := c.svc.Cleanup(ctx, lifecycle.CleanupRequest{
		DaysThreshold: days, DryRun: inv.dryRun, Trigger: lifecycle.TriggerCLI, Actor: c.actor,
		Progress: func(st lifecycle.Statistics) { bar.update(st.TotalChecked) },
	})
	bar.finish()
	if err != nil {
		return fail(c.stderr, err)
	}
	if inv.json {
		return c.printJSON(res.Report())
	}
	st := res.Statistics
	w := c.report("🧹 Token Cleanup Results:")
	fmt.Fprintf(w, "%sTotal tokens checked: %d\n", indent, st.TotalChecked)
	fmt.Fprintf(w, "%sExpired tokens removed: %d\n", indent, st.ExpiredRemoved)
	fmt.Fprintf(w, "%sStale tokens removed: %d\n", indent, st.StaleRemoved)
	fmt.Fprintf(w, "%sInvalid tokens marked: %d\n", indent, st.InvalidMarked)
	fmt.Fprintf(w, "%sRevoked tokens removed: %d\n", indent, st.RevokedRemoved)
	fmt.Fprintf(w, "%sTotal cleaned: %d\n", indent, st.TotalCleaned)
	if st.SkippedChanged > 0 {
		fmt.Fprintf(w, "%sLeft alone (used during the run): %d\n", indent, st.SkippedChanged)
	}
	if st.Errors > 0 {
		fmt.Fprintf(w, "%sNot finished (kept for the next run): %d\n", indent, st.Errors)
	}
	if res.DryRun {
		fmt.Fprintln(w, dryRunLine)
	}
	return exitOK
}

func (c *cli) analytics(ctx context.Context, inv invocation) int {
	a, err := c.svc.Analytics(ctx)
	if err != nil {
		return fail(c.stderr, err)
	}
	if inv.json {
		// TokenAnalytics's HTTP body (DESIGN §4).
		return c.printJSON(struct {
			Analytics *lifecycle.Analytics `json:"analytics"`
		}{a})
	}
	w := c.report("📊 Token Analytics:")
	fmt.Fprintf(w, "%sTotal tokens: %d\n", indent, a.TotalTokens)
	fmt.Fprintf(w, "%sActive tokens: %d\n", indent, a.ActiveTokens)
	fmt.Fprintf(w, "%sExpired tokens: %d\n", indent, a.ExpiredTokens)
	fmt.Fprintf(w, "%sRevoked tokens: %d\n", indent, a.RevokedTokens)
	fmt.Fprintf(w, "%sError tokens: %d\n", indent, a.ErrorTokens)
	fmt.Fprintf(w, "%sUnique users: %d\n", indent, a.UniqueUsers)
	fmt.Fprintf(w, "%sStale tokens (30+ days): %d\n", indent, a.StaleTokens30Days)
	fmt.Fprintf(w, "%sStale tokens (90+ days): %d\n", indent, a.StaleTokens90Days)
	printCounts(w, "Institutions:", a.Institutions)
	printCounts(w, "Environments:", a.Environments)
	return exitOK
}

// printCounts prints a count map, largest first, then by name.
func printCounts(w io.Writer, title string, counts map[string]int) {
	fmt.Fprintf(w, "%s%s\n", indent, title)
	keys := slices.SortedFunc(maps.Keys(counts), func(a, b string) int {
		return cmp.Or(cmp.Compare(counts[b], counts[a]), strings.Compare(a, b))
	})
	for _, k := range keys {
		fmt.Fprintf(w, "%s%s: %d\n", listIndent, k, counts[k])
	}
}

func (c *cli) revoke(ctx context.Context, inv invocation) int {
	var count int
	var err error
	if inv.dryRun {
		var tokens []*lifecycle.Token
		tokens, err = c.svc.RevocableTokens(ctx, inv.userID)
		count = len(tokens)
	} else {
		count, err = c.svc.RevokeAllTokensAsAdmin(ctx, inv.userID, c.actor)
	}
	if err != nil {
		if count > 0 {
			err = fmt.Errorf("revoked %d tokens, then: %w", count, err)
		}
		return fail(c.stderr, err)
	}
	if inv.json {
		msg := fmt.Sprintf("Revoked %d tokens successfully", count)
		if inv.dryRun {
			msg = fmt.Sprintf("Would revoke %d tokens", count)
		}
		return c.printJSON(struct {
			Message      string `json:"message"`
			RevokedCount int    `json:"revoked_count"`
			UserID       string `json:"user_id"`
			DryRun       bool   `json:"dry_run"`
		}{msg, count, inv.userID, inv.dryRun})
	}
	w := c.report("")
	if inv.dryRun {
		fmt.Fprintf(w, "🔒 Would revoke %d tokens for %s\n", count, inv.userID)
		fmt.Fprintln(w, dryRunLine)
	} else {
		fmt.Fprintf(w, "🔒 Revoked %d tokens for %s\n", count, inv.userID)
	}
	return exitOK
}

func (c *cli) migrateLegacy(ctx context.Context, inv invocation) int {
	bar := c.progressBar(ctx, "migrate", !inv.json)
	r, err := c.svc.MigrateLegacy(ctx, lifecycle.MigrateOptions{
		DryRun: inv.dryRun, LegacyKey: c.cfg.LegacyEncryptionKey,
		Progress: func(r lifecycle.MigrateReport) { bar.update(r.DocumentsScanned) },
	})
	bar.finish()
	if err != nil {
		return fail(c.stderr, err)
	}
	if inv.json {
		msg := "Legacy migration completed"
		if r.DryRun {
			msg = "Legacy migration dry run completed"
		}
		if code := c.printJSON(struct {
			Message string `json:"message"`
			*lifecycle.MigrateReport
		}{msg, r}); code != exitOK {
			return code
		}
	} else {
		w := c.report("📦 Legacy Migration Results:")
		fmt.Fprintf(w, "%sDocuments scanned: %d\n", indent, r.DocumentsScanned)
		fmt.Fprintf(w, "%sLegacy users found: %d\n", indent, r.LegacyUsers)
		fmt.Fprintf(w, "%sUsers migrated: %d\n", indent, r.UsersMigrated)
		fmt.Fprintf(w, "%sUsers left in place: %d\n", indent, r.UsersLeftInPlace)
		fmt.Fprintf(w, "%sItems found: %d\n", indent, r.Items)
		fmt.Fprintf(w, "%sItems migrated: %d\n", indent, r.ItemsMigrated)
		fmt.Fprintf(w, "%sItems already migrated: %d\n", indent, r.ItemsAlreadyMigrated)
		fmt.Fprintf(w, "%sPlaintext tokens: %d\n", indent, r.PlaintextTokens)
		fmt.Fprintf(w, "%sFernet tokens: %d\n", indent, r.FernetTokens)
		fmt.Fprintf(w, "%sItems with status error (now active, %s): %d\n", indent, lifecycle.LegacyErrorCode, r.LegacyErrorItems)
		if r.UndatedItems > 0 {
			fmt.Fprintf(w, "%sItems without any date (updated_at set to now): %d\n", indent, r.UndatedItems)
		}
		fmt.Fprintf(w, "%sConflicts: %d\n", indent, r.Conflicts)
		fmt.Fprintf(w, "%sErrors: %d\n", indent, r.Errors)
		for i, p := range r.Problems {
			if i == maxProblems {
				fmt.Fprintf(w, "%s... and %d more (--json lists up to %d)\n", listIndent, r.Conflicts+r.Errors-i, len(r.Problems))
				break
			}
			where := p.UserID
			if p.ItemID != "" {
				where += " / " + p.ItemID
			}
			fmt.Fprintf(w, "%s%s (%s): %s\n", listIndent, where, p.Kind, p.Error)
		}
		if r.DryRun {
			fmt.Fprintln(w, dryRunLine)
		}
	}
	if n := r.UsersLeftInPlace; n > 0 {
		verb := "were"
		if r.DryRun {
			verb = "would be"
		}
		fmt.Fprintf(c.stderr, "manage-tokens: %d legacy documents %s left in place (%d conflicts, %d errors); fix them and run again\n",
			n, verb, r.Conflicts, r.Errors)
		return exitFailure
	}
	return exitOK
}

func (c *cli) reencrypt(ctx context.Context, inv invocation) int {
	bar := c.progressBar(ctx, "reencrypt", !inv.json)
	r, err := c.svc.Reencrypt(ctx, lifecycle.ReencryptOptions{
		DryRun:   inv.dryRun,
		Progress: func(r lifecycle.ReencryptReport) { bar.update(r.Checked) },
	})
	bar.finish()
	if err != nil {
		return fail(c.stderr, err)
	}
	if inv.json {
		msg := "Re-encryption completed"
		if r.DryRun {
			msg = "Re-encryption dry run completed"
		}
		if code := c.printJSON(struct {
			Message string `json:"message"`
			*lifecycle.ReencryptReport
		}{msg, r}); code != exitOK {
			return code
		}
	} else {
		w := c.report("🔑 Re-encryption Results:")
		fmt.Fprintf(w, "%sCurrent key id: %s\n", indent, r.KeyID)
		fmt.Fprintf(w, "%sTokens checked: %d\n", indent, r.Checked)
		fmt.Fprintf(w, "%sTokens re-encrypted: %d\n", indent, r.Reencrypted)
		fmt.Fprintf(w, "%sPlaintext tokens encrypted: %d\n", indent, r.Plaintext)
		fmt.Fprintf(w, "%sAlready on the current key: %d\n", indent, r.AlreadyCurrent)
		if r.Skipped > 0 {
			fmt.Fprintf(w, "%sSkipped (no access token; run migrate-legacy): %d\n", indent, r.Skipped)
		}
		fmt.Fprintf(w, "%sFailed: %d\n", indent, r.Failed)
		for i, f := range r.Failures {
			if i == maxProblems {
				fmt.Fprintf(w, "%s... and %d more\n", listIndent, r.Failed-i)
				break
			}
			fmt.Fprintf(w, "%s%s: %s\n", listIndent, f.ItemID, f.Error)
		}
		if r.DryRun {
			fmt.Fprintln(w, dryRunLine)
		}
	}
	if r.Failed > 0 {
		fmt.Fprintf(c.stderr, "manage-tokens: %d tokens could not be re-encrypted; keep their keys in TOKEN_ENCRYPTION_KEY_PREVIOUS\n", r.Failed)
		return exitFailure
	}
	return exitOK
}

// report prints the banner and the report's title, and returns where the
// report goes.
func (c *cli) report(title string) io.Writer {
	fmt.Fprintln(c.stdout, banner)
	fmt.Fprintln(c.stdout, strings.Repeat("=", 50))
	if title != "" {
		fmt.Fprintln(c.stdout, title)
	}
	return c.stdout
}

// printJSON prints v as one JSON object on stdout.
func (c *cli) printJSON(v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fail(c.stderr, fmt.Errorf("writing JSON: %w", err))
	}
	return exitOK
}
