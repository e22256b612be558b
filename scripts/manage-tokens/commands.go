package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// command is one subcommand: its help, its flags and arguments, the
// configuration it needs and what it does. Adding a command is adding an
// entry to commands.
type command struct {
	name    string
	summary string // one line in the global usage
	about   string // what it does, the body of its --help
	flags   []flagDef
	args    []argDef // positional, in order, all required
	needs   lifecycle.Needs
	exec    func(c *cli, ctx context.Context, inv invocation) int
	// standalone, if set, runs instead of exec, without configuration or
	// Firestore.
	standalone func(con console) int
}

// flagDef defines one flag on fs, bound to a field of inv. Its usage text
// names its value in back quotes, as flag.UnquoteUsage reads it: the help
// shows "--days N".
type flagDef func(fs *flag.FlagSet, inv *invocation)

// argDef is a positional argument: <name> in the help.
type argDef struct {
	name, usage string
	bind        func(inv *invocation) *string
}

var commands = []command{
	{
		name:    "cleanup",
		summary: "remove dead and stale tokens (at Plaid first), mark invalid ones",
		about: `
Runs the token cleanup now, with the rules of the daily scheduled run:
expired and revoked tokens, and active tokens unused for more than --days
days, are removed at Plaid (/item/remove) first and then deleted; active
tokens that Plaid says are gone are marked expired; tokens that need their
user get an error code. Only one cleanup runs at a time: while another run
holds the lease, this one is refused with the holder's run id, who started
it and until when its lease holds. A run whose process died holds the lease
until it lapses (CLEANUP_LEASE_TTL, 5m); --take-over <run_id> takes it
from that run at once (it is marked abandoned) and starts this one. A run
that renewed its lease within two renewal periods is alive and is not
taken over unless --force is given too.`,
		flags: []flagDef{daysFlag, dryRunFlag, takeOverFlag, jsonFlag},
		needs: lifecycle.Needs{Store: true, Vault: true, Plaid: true},
		exec:  (*cli).cleanup,
	},
	{
		name:    "run",
		summary: "report a cleanup run by its id; --follow waits until it finishes",
		about: `
Prints a cleanup run's record: its status (running, checkpointed, succeeded,
failed, abandoned), trigger, actor, start and end, invocations and
statistics. The run ids come from the TokenCleanup function's answers (202
run_id and status_url), from refusals naming the lease holder, and from
the logs. With --follow it reports again every few seconds until the run
has finished, and exits 1 if it failed or was abandoned.`,
		flags: []flagDef{followFlag, jsonFlag},
		args: []argDef{{name: "run_id", usage: "the cleanup run",
			bind: func(inv *invocation) *string { return &inv.runID }}},
		needs: lifecycle.Needs{Store: true},
		exec:  (*cli).run,
	},
	{
		name:    "analytics",
		summary: "count tokens by status, user, age, institution and environment",
		about: `
Prints token analytics, as the TokenAnalytics function answers them: from
the counters TokenStats keeps (a handful of documents, whatever the number
of tokens), with the trend of tokens created, used and removed per day.
Until a repair has initialized the counters (a first deploy on existing
data) they are counted from every token instead, and a note says so.

With --exact it recounts every token, compares the counters with the
recount as of the same time, prints the drift per key (it should be none)
and repairs the counters: the drift is added to them and recorded. The
first --exact run backfills counters that were never initialized.

Needs only GOOGLE_CLOUD_PROJECT (and FIRESTORE_DATABASE): no encryption
key, no Plaid credentials.`,
		flags: []flagDef{exactFlag, jsonFlag},
		needs: lifecycle.Needs{Store: true},
		exec:  (*cli).analytics,
	},
	{
		name:    "revoke",
		summary: "revoke every token of a user",
		about: `
Revokes every token of <user_id> that may still be live at Plaid (active,
needing the user, or expired), as an admin: each Item is removed at Plaid
first, then its token is marked revoked and audited. A token whose removal
Plaid did not confirm is revoked at once all the same; a later cleanup
finishes the removal at Plaid.`,
		flags: []flagDef{dryRunFlag, jsonFlag},
		args: []argDef{{name: "user_id", usage: "the user (the JWT's sub) whose tokens are revoked",
			bind: func(inv *invocation) *string { return &inv.userID }}},
		needs: lifecycle.Needs{Store: true, Vault: true, Plaid: true},
		exec:  (*cli).revoke,
	},
	{
		name:    "migrate-legacy",
		summary: "carry the old service's per-user documents over, one per item",
		about: `
Carries the old service's data over: each per-user document with an items
map becomes one document per item, its access token encrypted with
TOKEN_ENCRYPTION_KEY (the old Fernet tokens decrypt with
LEGACY_TOKEN_ENCRYPTION_KEY); nothing is lost, and running it again changes
nothing. Run it with --dry-run first. It exits 1 while a document is left in
place (a conflict or an error, listed in the report).`,
		flags: []flagDef{dryRunFlag, jsonFlag},
		needs: lifecycle.Needs{Store: true, Vault: true},
		exec:  (*cli).migrateLegacy,
	},
	{
		name:    "reencrypt",
		summary: "move every token to the current encryption key",
		about: `
Re-encrypts every token with the current key, TOKEN_ENCRYPTION_KEY,
decrypting those on older keys with TOKEN_ENCRYPTION_KEY_PREVIOUS;
plaintext tokens are encrypted too. Run it after rotating the key; once it
exits 0, the old keys can leave TOKEN_ENCRYPTION_KEY_PREVIOUS. It exits 1
while a token could not be re-encrypted.`,
		flags: []flagDef{dryRunFlag, jsonFlag},
		needs: lifecycle.Needs{Store: true, Vault: true},
		exec:  (*cli).reencrypt,
	},
	{
		name:    "version",
		summary: "print what this binary was built from (also --version)",
		about: `
Prints the module version, the VCS revision and time this binary was built
from (go build records them in a checkout; go run does not), and the Go
version.`,
		standalone: func(con console) int {
			bi, ok := debug.ReadBuildInfo()
			fmt.Fprint(con.stdout, versionText(bi, ok))
			return exitOK
		},
	},
}

func lookupCommand(name string) (command, bool) {
	for _, cmd := range commands {
		if cmd.name == name {
			return cmd, true
		}
	}
	return command{}, false
}

func commandNames() []string {
	names := make([]string, len(commands))
	for i, cmd := range commands {
		names[i] = cmd.name
	}
	return names
}

// The flags the commands share.
var (
	daysFlag flagDef = func(fs *flag.FlagSet, inv *invocation) {
		fs.Var(daysValue{&inv.days}, "days", fmt.Sprintf(
			"an active token unused for more than `N` days is stale; N is 1 to %d\n(default: STALE_DAYS, or 90)", lifecycle.MaxDaysThreshold))
	}
	dryRunFlag flagDef = func(fs *flag.FlagSet, inv *invocation) {
		fs.BoolVar(&inv.dryRun, "dry-run", false, "report what would be done, change nothing")
	}
	takeOverFlag flagDef = func(fs *flag.FlagSet, inv *invocation) {
		fs.StringVar(&inv.takeOver, "take-over", "", "take the cleanup lease from the dead run `RUN_ID`, which is marked abandoned")
		fs.BoolVar(&inv.force, "force", false, "with --take-over: take the lease even from a run that renewed it recently (it may still be working)")
	}
	followFlag flagDef = func(fs *flag.FlagSet, inv *invocation) {
		fs.BoolVar(&inv.follow, "follow", false, "report until the run has finished")
	}
	exactFlag flagDef = func(fs *flag.FlagSet, inv *invocation) {
		fs.BoolVar(&inv.exact, "exact", false, "recount every token, print the counters' drift and repair them")
	}
	jsonFlag flagDef = func(fs *flag.FlagSet, inv *invocation) {
		fs.BoolVar(&inv.json, "json", false, "print one JSON object on stdout instead of the report")
	}
)

// daysValue is --days: a whole number of days the service accepts as a
// stale threshold.
type daysValue struct{ days *int }

func (v daysValue) String() string {
	if v.days == nil || *v.days == 0 {
		return ""
	}
	return strconv.Itoa(*v.days)
}

func (v daysValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || lifecycle.ValidateDaysThreshold(n) != nil {
		return fmt.Errorf("must be an integer from 1 to %d", lifecycle.MaxDaysThreshold)
	}
	*v.days = n
	return nil
}

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
	bar := c.progressBar(ctx, "cleanup")
	res, err := c.svc.Cleanup(ctx, lifecycle.CleanupRequest{
		DaysThreshold: days, DryRun: inv.dryRun, Trigger: lifecycle.TriggerCLI, Actor: c.actor,
		TakeOver: inv.takeOver, ForceTakeOver: inv.force,
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

// followEvery spaces the reports of run --follow.
var followEvery = 3 * time.Second

func (c *cli) run(ctx context.Context, inv invocation) int {
	for {
		run, err := c.svc.CleanupRun(ctx, inv.runID)
		if err != nil {
			return fail(c.stderr, err)
		}
		if !inv.follow || run.Status.Finished() {
			if inv.json {
				if code := c.printJSON(run); code != exitOK {
					return code
				}
			} else {
				c.printRun(run)
			}
			if run.Status == lifecycle.RunFailed || run.Status == lifecycle.RunAbandoned {
				return exitFailure
			}
			return exitOK
		}
		if c.status != nil {
			c.status.show(fmt.Sprintf("run %s: %s, %d tokens checked, invocation %d", run.ID, run.Status,
				run.Statistics.TotalChecked, run.Invocations))
		}
		select {
		case <-ctx.Done():
			return fail(c.stderr, ctx.Err())
		case <-time.After(followEvery):
		}
	}
}

// printRun prints a run record the way the cleanup report reads.
func (c *cli) printRun(run *lifecycle.RunRecord) {
	if c.status != nil {
		c.status.clear()
	}
	st := run.Statistics
	w := c.report("🧹 Cleanup Run " + run.ID + ":")
	fmt.Fprintf(w, "%sStatus: %s\n", indent, run.Status)
	fmt.Fprintf(w, "%sStarted: %s by %s (%s)\n", indent, run.StartedAt.UTC().Format(time.RFC3339), run.Actor, run.Trigger)
	if !run.EndedAt.IsZero() {
		fmt.Fprintf(w, "%sEnded: %s\n", indent, run.EndedAt.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(w, "%sInvocations: %d\n", indent, run.Invocations)
	fmt.Fprintf(w, "%sTotal tokens checked: %d\n", indent, st.TotalChecked)
	fmt.Fprintf(w, "%sExpired tokens removed: %d\n", indent, st.ExpiredRemoved)
	fmt.Fprintf(w, "%sStale tokens removed: %d\n", indent, st.StaleRemoved)
	fmt.Fprintf(w, "%sInvalid tokens marked: %d\n", indent, st.InvalidMarked)
	fmt.Fprintf(w, "%sRevoked tokens removed: %d\n", indent, st.RevokedRemoved)
	fmt.Fprintf(w, "%sTotal cleaned: %d\n", indent, st.TotalCleaned)
	if run.Failure != "" {
		fmt.Fprintf(w, "%sFailure: %s\n", indent, run.Failure)
	}
	if run.DryRun {
		fmt.Fprintln(w, dryRunLine)
	}
}

func (c *cli) analytics(ctx context.Context, inv invocation) int {
	exact := inv.exact
	var a *lifecycle.Analytics
	var res *lifecycle.ExactResult
	if exact {
		var err error
		if res, err = c.svc.ExactAnalytics(ctx, lifecycle.ExactOptions{Repair: true, Trigger: lifecycle.TriggerCLI}); err != nil {
			return fail(c.stderr, err)
		}
		a = res.Analytics
	} else {
		var err error
		if a, err = c.svc.Analytics(ctx); err != nil {
			return fail(c.stderr, err)
		}
		if a.Source == lifecycle.SourceRecount {
			fmt.Fprintf(c.stderr, "%s: the analytics counters are not initialized: counted every token instead; "+
				"run `%s analytics --exact` to backfill them\n", program, program)
		}
	}
	if inv.json {
		// TokenAnalytics's HTTP body (DESIGN §4), and with --exact what the
		// recount found and did.
		out := struct {
			Analytics *lifecycle.Analytics `json:"analytics"`
			Exact     *cliExactReport      `json:"exact,omitempty"`
		}{Analytics: a}
		if res != nil {
			out.Exact = &cliExactReport{Drift: res.Drift, UsersDrifted: res.UsersDrifted,
				CountersInitialized: res.CountersInitialized, Repaired: res.Repaired}
			if res.Repair != nil {
				out.Exact.RepairID = res.Repair.ID
			}
		}
		return c.printJSON(out)
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
	if len(a.Trend) > 0 {
		fmt.Fprintf(w, "%sLast %d days (created / used / removed):\n", indent, trendLines)
		for _, d := range a.Trend[max(0, len(a.Trend)-trendLines):] {
			fmt.Fprintf(w, "%s%s: %d / %d / %d\n", listIndent, d.Date, d.Created, d.Used, d.Removed)
		}
	}
	from := "the counters"
	if a.Source == lifecycle.SourceRecount {
		from = "a recount of every token"
	}
	fmt.Fprintf(w, "%sAs of: %s (%s)\n", indent, a.AsOf.UTC().Format(time.RFC3339), from)
	if res != nil {
		fmt.Fprintln(w, "🔎 Counters compared with the recount:")
		if !res.CountersInitialized {
			fmt.Fprintf(w, "%sCounters were not initialized: this run backfilled them\n", indent)
		}
		if len(res.Drift) == 0 {
			fmt.Fprintf(w, "%sDrift: none\n", indent)
		} else {
			fmt.Fprintf(w, "%sDrift (recount minus counters):\n", indent)
			for _, g := range slices.Sorted(maps.Keys(res.Drift)) {
				for _, k := range slices.Sorted(maps.Keys(res.Drift[g])) {
					fmt.Fprintf(w, "%s%s %s: %+d\n", listIndent, g, k, res.Drift[g][k])
				}
			}
		}
		fmt.Fprintf(w, "%sUsers whose token count drifted: %d\n", indent, res.UsersDrifted)
		if res.Repaired {
			fmt.Fprintf(w, "%sRepaired: the drift was added to the counters and recorded (repair %s)\n", indent, res.Repair.ID)
		}
	}
	return exitOK
}

// trendLines is how many days of trend the text report prints (--json has
// all of them).
const trendLines = 7

// cliExactReport is what analytics --exact found and did, in --json.
type cliExactReport struct {
	Drift               lifecycle.Counters `json:"drift"`
	UsersDrifted        int                `json:"users_drifted"`
	CountersInitialized bool               `json:"counters_initialized"`
	Repaired            bool               `json:"repaired"`
	RepairID            string             `json:"repair_id,omitempty"`
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
	bar := c.progressBar(ctx, "migrate")
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
	bar := c.progressBar(ctx, "reencrypt")
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
