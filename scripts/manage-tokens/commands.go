package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/finwell/plaid-token-lifecycle/internal/profile"
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
	// Firestore; root is the command tree (completion scripts need it).
	standalone func(con console, inv invocation, root *cobra.Command) int
}

// flagDef defines one flag on fs, bound to a field of inv. Its usage text
// names its value in back quotes, as pflag.UnquoteUsage reads it: the help
// shows "--days N".
type flagDef func(fs *pflag.FlagSet, inv *invocation)

// argDef is a positional argument: <name> in the help.
type argDef struct {
	name, usage string
	bind        func(inv *invocation) *string
	// values, if set, are the only values it takes (shell completion
	// offers them); valid checks it.
	values []string
	valid  func(string) error
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
statistics, and the tokens it could not finish. 'manage-tokens runs' lists
the run ids; they also come from cleanup's report, the TokenCleanup
function's answers (202 run_id and status_url) and refusals naming the
lease holder. With --follow it reports again every few seconds until the
run has finished. It exits 1 if the run failed or was abandoned, 3 if it
finished but left tokens for the next run.`,
		flags: []flagDef{followFlag, jsonFlag},
		args: []argDef{{name: "run_id", usage: "the cleanup run",
			bind: func(inv *invocation) *string { return &inv.runID }}},
		needs: lifecycle.Needs{Store: true},
		exec:  (*cli).run,
	},
	{
		name:    "runs",
		summary: "list the newest runs: id, trigger, actor, status and totals",
		about: `
Lists the newest cleanup runs, newest first: run id, start time, trigger
(schedule, http, cli), actor (who started it), status and totals (tokens
checked, removed, marked invalid, not finished). 'manage-tokens run <run_id>'
reports one in full. Dry runs are listed too, marked as such.`,
		flags: []flagDef{limitFlag, jsonFlag},
		needs: lifecycle.Needs{Store: true},
		exec:  (*cli).runs,
	},
	{
		name:    "report",
		summary: "render the weekly report: one HTML page with charts",
		about: `
Renders the weekly report, the page WeeklyAnalytics writes into the report
bucket every week: token creation and usage per day, cleanup runs' done and
not finished tokens, institutions week over week, active users per week and
day, Items per user, and the analytics table. One self-contained HTML file
(inline style and SVG charts, no script, nothing loaded from any network):
open it in a browser, offline.

It reads the analytics counters, the newest run records and the weekly
snapshots, never every token: the user charts come from the latest weekly
recount (WeeklyAnalytics; locally, POST /events/WeeklyAnalytics).

Needs only GOOGLE_CLOUD_PROJECT (and FIRESTORE_DATABASE).`,
		flags: []flagDef{outFlag},
		needs: lifecycle.Needs{Store: true},
		exec:  (*cli).report,
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
		standalone: func(con console, _ invocation, _ *cobra.Command) int {
			bi, ok := debug.ReadBuildInfo()
			fmt.Fprint(con.stdout, versionText(bi, ok))
			return exitOK
		},
	},
	{
		name:    "completion",
		summary: "print the shell completion script for bash, zsh or fish",
		about: `
Prints the completion script of <shell>: commands, flags and fixed values
complete on Tab. Load it in the current shell, or install it once:

  bash:  source <(manage-tokens completion bash)
         manage-tokens completion bash > ~/.local/share/bash-completion/completions/manage-tokens
  zsh:   source <(manage-tokens completion zsh)
         manage-tokens completion zsh > "${fpath[1]}/_manage-tokens"
  fish:  manage-tokens completion fish > ~/.config/fish/completions/manage-tokens.fish

The script calls the manage-tokens binary back for each completion, so
put a built binary on your PATH (go build ./scripts/manage-tokens), not go run.`,
		args: []argDef{{name: "shell", usage: "bash, zsh or fish", values: completionShells,
			bind: func(inv *invocation) *string { return &inv.shell },
			valid: func(v string) error {
				if !slices.Contains(completionShells, v) {
					return fmt.Errorf("<shell> must be bash, zsh or fish, got %q", v)
				}
				return nil
			}}},
		standalone: completion,
	},
}

// completionShells are the shells completion writes scripts for.
var completionShells = []string{"bash", "zsh", "fish"}

// completion prints the completion script of inv.shell for root.
func completion(con console, inv invocation, root *cobra.Command) int {
	var err error
	switch inv.shell {
	case "bash":
		err = root.GenBashCompletionV2(con.stdout, true)
	case "zsh":
		err = root.GenZshCompletion(con.stdout)
	case "fish":
		err = root.GenFishCompletion(con.stdout, true)
	}
	if err != nil {
		return fail(con.stderr, fmt.Errorf("writing the %s completion: %w", inv.shell, err))
	}
	return exitOK
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
	daysFlag flagDef = func(fs *pflag.FlagSet, inv *invocation) {
		fs.Var(daysValue{&inv.days}, "days", fmt.Sprintf(
			"an active token unused for more than `N` days is stale; N is 1 to %d\n(default: STALE_DAYS, or 90)", lifecycle.MaxDaysThreshold))
	}
	dryRunFlag flagDef = func(fs *pflag.FlagSet, inv *invocation) {
		fs.BoolVar(&inv.dryRun, "dry-run", false, "report what would be done, change nothing")
	}
	takeOverFlag flagDef = func(fs *pflag.FlagSet, inv *invocation) {
		fs.StringVar(&inv.takeOver, "take-over", "", "take the cleanup lease from the dead run `RUN_ID`, which is marked abandoned")
		fs.BoolVar(&inv.force, "force", false, "with --take-over: take the lease even from a run that renewed it recently (it may still be working)")
	}
	followFlag flagDef = func(fs *pflag.FlagSet, inv *invocation) {
		fs.BoolVar(&inv.follow, "follow", false, "report until the run has finished")
	}
	exactFlag flagDef = func(fs *pflag.FlagSet, inv *invocation) {
		fs.BoolVar(&inv.exact, "exact", false, "recount every token, print the counters' drift and repair them")
	}
	jsonFlag flagDef = func(fs *pflag.FlagSet, inv *invocation) {
		fs.BoolVar(&inv.json, "json", false, "print one JSON object on stdout instead of the report")
	}
	limitFlag flagDef = func(fs *pflag.FlagSet, inv *invocation) {
		fs.Var(limitValue{&inv.limit}, "limit", fmt.Sprintf("list the newest `N` runs; N is 1 to %d (default %d)", lifecycle.MaxRecentRuns, defaultRuns))
	}
	outFlag flagDef = func(fs *pflag.FlagSet, inv *invocation) {
		fs.StringVar(&inv.out, "out", "", "write the page to `FILE` (default: standard output)")
	}
)

// defineGlobalFlags defines the flags every command takes.
func defineGlobalFlags(fs *pflag.FlagSet, inv *invocation) {
	fs.StringVar(&inv.actor, "actor", "", "the operator that run and audit records name (default: the Google\n"+
		"account of the credentials, else cli:$USER)")
	fs.StringVar(&inv.profile, "profile", "", "read the settings from profile `NAME` ("+profile.HelpPath("NAME")+")\n"+
		"or from the file NAME when it contains a /; they override the\n"+
		"environment (default: $MANAGE_TOKENS_PROFILE)")
}

// defaultRuns is how many runs `runs` lists without --limit.
const defaultRuns = 20

// limitValue is --limit: how many runs to list.
type limitValue struct{ n *int }

func (v limitValue) String() string {
	if v.n == nil || *v.n == 0 {
		return ""
	}
	return strconv.Itoa(*v.n)
}

func (v limitValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > lifecycle.MaxRecentRuns {
		return fmt.Errorf("must be an integer from 1 to %d", lifecycle.MaxRecentRuns)
	}
	*v.n = n
	return nil
}

func (limitValue) Type() string { return "N" }

// daysValue is --days: a whole number of days the service accepts as a
// stale threshold.
type daysValue struct{ days *int }

func (v daysValue) String() string {
	if v.days == nil || *v.days == 0 {
		return ""
	}
	return strconv.Itoa(*v.days)
}

func (daysValue) Type() string { return "N" }

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
	code := cleanupExit(res.Statistics, res.Done)
	if inv.json {
		return cmpOr(c.printJSON(res.Report()), code)
	}
	st := res.Statistics
	w := c.header("🧹 Token Cleanup Results:")
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
	if !res.Done {
		fmt.Fprintf(w, "%sCheckpointed: the run goes on in another invocation\n", indent)
	}
	fmt.Fprintf(w, "%sRun id: %s\n", indent, res.RunID)
	if res.DryRun {
		fmt.Fprintln(w, dryRunLine)
	}
	if code == exitLater {
		fmt.Fprintf(c.stderr, "%s: the run left work for the next one (exit %d): %d tokens not finished; 'manage-tokens run %s' has its errors\n",
			program, exitLater, st.Errors, res.RunID)
	}
	return code
}

// cleanupExit is the exit status of a cleanup that returned: 3 when it
// left tokens for the next run (errors) or has not finished yet.
func cleanupExit(st lifecycle.Statistics, done bool) int {
	if st.Errors > 0 || !done {
		return exitLater
	}
	return exitOK
}

// cmpOr is the first status that is not exitOK.
func cmpOr(codes ...int) int {
	for _, c := range codes {
		if c != exitOK {
			return c
		}
	}
	return exitOK
}

// followEvery spaces the reports of run --follow.
const followEvery = 3 * time.Second

// followWait waits between two reports of run --follow (a test finishes
// the run there instead).
var followWait = func(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(followEvery):
		return nil
	}
}

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
			switch {
			case run.Status == lifecycle.RunFailed || run.Status == lifecycle.RunAbandoned:
				return exitFailure
			case run.Status.Finished():
				return cleanupExit(run.Statistics, true)
			}
			return exitOK // still running: nothing left undone yet
		}
		if c.status != nil {
			c.status.show(fmt.Sprintf("run %s: %s, %d tokens checked, invocation %d", run.ID, run.Status,
				run.Statistics.TotalChecked, run.Invocations))
		}
		if err := followWait(ctx); err != nil {
			return fail(c.stderr, err)
		}
	}
}

// printRun prints a run record the way the cleanup report reads.
func (c *cli) printRun(run *lifecycle.RunRecord) {
	if c.status != nil {
		c.status.clear()
	}
	st := run.Statistics
	w := c.header("🧹 Cleanup Run " + run.ID + ":")
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
	if st.Errors > 0 {
		fmt.Fprintf(w, "%sNot finished (kept for the next run): %d\n", indent, st.Errors)
	}
	for i, e := range run.Errors {
		if i == maxProblems {
			fmt.Fprintf(w, "%s... and %d more (--json lists up to %d)\n", listIndent, st.Errors-i, len(run.Errors))
			break
		}
		fmt.Fprintf(w, "%s%s (%s): %s\n", listIndent, e.ItemID, e.Stage, e.Error)
	}
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
	w := c.header("📊 Token Analytics:")
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
		if len(res.Drift) == 0 && res.UsersDrifted == 0 {
			fmt.Fprintf(w, "%sDrift: none\n", indent)
		} else if len(res.Drift) == 0 {
			fmt.Fprintf(w, "%sDrift: none in the counts\n", indent)
		} else {
			fmt.Fprintf(w, "%sDrift (recount minus counters):\n", indent)
			for _, g := range slices.Sorted(maps.Keys(res.Drift)) {
				for _, k := range slices.Sorted(maps.Keys(res.Drift[g])) {
					fmt.Fprintf(w, "%s%s %s: %+d\n", listIndent, g, k, res.Drift[g][k])
				}
			}
		}
		fmt.Fprintf(w, "%sUsers whose token count drifted: %d\n", indent, res.UsersDrifted)
		switch {
		case !res.Repaired:
		case res.Exact():
			// Nothing was added: saying "repaired" after "none" read as a
			// contradiction.
			fmt.Fprintf(w, "%sCounters exact: nothing to repair (recorded as repair %s)\n", indent, res.Repair.ID)
		default:
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
	// A token whose removal Plaid did not confirm is revoked all the same;
	// its Item is still billed until a cleanup removes it: work left.
	pending := 0
	if !inv.dryRun {
		if pending, err = c.notRemovedAtPlaid(ctx, inv.userID); err != nil {
			return fail(c.stderr, fmt.Errorf("revoked %d tokens, then checking them: %w", count, err))
		}
	}
	code := exitOK
	if pending > 0 {
		code = exitLater
		fmt.Fprintf(c.stderr, "%s: %d of %s's Items are not removed at Plaid yet (Plaid did not confirm); the next cleanup removes them (exit %d)\n",
			program, pending, inv.userID, exitLater)
	}
	if inv.json {
		msg := fmt.Sprintf("Revoked %d tokens successfully", count)
		if inv.dryRun {
			msg = fmt.Sprintf("Would revoke %d tokens", count)
		}
		return cmpOr(c.printJSON(struct {
			Message           string `json:"message"`
			RevokedCount      int    `json:"revoked_count"`
			UserID            string `json:"user_id"`
			DryRun            bool   `json:"dry_run"`
			NotRemovedAtPlaid int    `json:"not_removed_at_plaid"`
		}{msg, count, inv.userID, inv.dryRun, pending}), code)
	}
	w := c.header("")
	if inv.dryRun {
		fmt.Fprintf(w, "🔒 Would revoke %d tokens for %s\n", count, inv.userID)
		fmt.Fprintln(w, dryRunLine)
	} else {
		fmt.Fprintf(w, "🔒 Revoked %d tokens for %s\n", count, inv.userID)
		if pending > 0 {
			fmt.Fprintf(w, "%sNot yet removed at Plaid (the next cleanup removes them): %d\n", indent, pending)
		}
	}
	return code
}

// notRemovedAtPlaid counts userID's revoked tokens whose Item Plaid has not
// confirmed removed.
func (c *cli) notRemovedAtPlaid(ctx context.Context, userID string) (int, error) {
	items, err := c.svc.ListItems(ctx, userID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range items {
		if t.Status == lifecycle.StatusRevoked && !t.PlaidRemoved {
			n++
		}
	}
	return n, nil
}

func (c *cli) runs(ctx context.Context, inv invocation) int {
	limit := cmp.Or(inv.limit, defaultRuns)
	runs, err := c.svc.RecentRuns(ctx, limit)
	if err != nil {
		return fail(c.stderr, err)
	}
	if inv.json {
		if runs == nil {
			runs = []*lifecycle.RunRecord{}
		}
		return c.printJSON(struct {
			Runs []*lifecycle.RunRecord `json:"runs"`
		}{runs})
	}
	w := c.header(fmt.Sprintf("🧾 Recent Runs (newest first, at most %d):", limit))
	if len(runs) == 0 {
		fmt.Fprintf(w, "%sNo run yet\n", indent)
		return exitOK
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%sRUN ID\tSTARTED\tTRIGGER\tACTOR\tSTATUS\tCHECKED\tCLEANED\tMARKED\tNOT FINISHED\n", indent)
	for _, r := range runs {
		st := string(r.Status)
		if r.DryRun {
			st += " (dry run)"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", indent, r.ID, r.StartedAt.UTC().Format(time.RFC3339),
			r.Trigger, r.Actor, st, r.Statistics.TotalChecked, r.Statistics.TotalCleaned, r.Statistics.InvalidMarked, r.Statistics.Errors)
	}
	tw.Flush()
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
		w := c.header("📦 Legacy Migration Results:")
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
		w := c.header("🔑 Re-encryption Results:")
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

// header prints the banner and the report's title, and returns where the
// report goes.
func (c *cli) header(title string) io.Writer {
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
