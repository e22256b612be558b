// Command manage-tokens is the operators' CLI (DESIGN §9): cleanup,
// analytics, revocation, the legacy migration and key rotation, on the same
// service the functions run, configured by the same environment variables
// (or a profile: --profile local is what scripts/dev.sh writes).
//
//	go run ./scripts/manage-tokens cleanup [--days N] [--dry-run] [--take-over RUN_ID [--force]] [--json]
//	go run ./scripts/manage-tokens runs [--limit N] [--json]
//	go run ./scripts/manage-tokens run [--follow] [--json] <run_id>
//	go run ./scripts/manage-tokens analytics [--exact] [--json]
//	go run ./scripts/manage-tokens report [--out FILE]
//	go run ./scripts/manage-tokens revoke [--dry-run] [--json] <user_id>
//	go run ./scripts/manage-tokens migrate-legacy [--dry-run] [--json]
//	go run ./scripts/manage-tokens reencrypt [--dry-run] [--json]
//	go run ./scripts/manage-tokens completion bash|zsh|fish
//	go run ./scripts/manage-tokens <command> --help
//	go run ./scripts/manage-tokens --version
//
// Every command also takes --profile NAME|FILE and --actor NAME. Commands
// and flags are parsed by cobra (as kubectl's and gh's are): per-command
// help, "did you mean" for a misspelled command or flag, and shell
// completion.
//
// Results go to stdout. Logs (WARN and above unless LOG_LEVEL says
// otherwise), errors and the progress bar go to stderr: on a terminal, logs
// are text lines a person reads and the bar is drawn; otherwise, or with
// --json, logs are Cloud Logging's JSON lines, and the bar is drawn only on
// a terminal. Exit status: 0 done, 1 failure, 2 bad usage, 3 finished but
// left work for later (exitHelp).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/finwell/plaid-token-lifecycle/internal/profile"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	con := console{stdout: os.Stdout, stderr: os.Stderr, terminal: term.IsTerminal(int(os.Stderr.Fd()))}
	code := run(ctx, os.Args[1:], con, os.LookupEnv)
	stop()
	os.Exit(code)
}

// Exit statuses (DESIGN §9): a cron job or a script tells them apart.
const (
	exitOK      = 0 // the command did all it was asked
	exitFailure = 1 // it failed (or found nothing where it was pointed)
	exitUsage   = 2 // bad command line
	exitLater   = 3 // it finished but left work for later
)

// exitHelp is the exit status paragraph of every help.
const exitHelp = `exit status:
  0  done: the command did all it was asked
  1  failure (including a project that holds nothing of this service)
  2  bad usage
  3  finished, but left work for later: tokens kept for the next run
     because of errors, Items not yet removed at Plaid
`

const program = "manage-tokens"

// console is where the CLI writes: results on stdout, everything else on
// stderr, which is either a person's terminal or a pipe or log file.
// main asks the operating system; tests say.
type console struct {
	stdout, stderr io.Writer
	terminal       bool // stderr is a terminal
}

// invocation is one parsed command line.
type invocation struct {
	days     int // cleanup; 0: STALE_DAYS
	userID   string
	runID    string
	takeOver string // cleanup: the dead run whose lease to take
	force    bool   // cleanup: take it over even though it renewed its lease recently
	follow   bool   // run: until it finishes
	exact    bool   // analytics: recount, print the drift, repair
	limit    int    // runs: how many
	out      string // report: the file; "" or "-": stdout
	shell    string // completion
	dryRun   bool
	json     bool

	// The global flags, which every command takes.
	actor   string // who the run and audit records name
	profile string // the settings file to load
}

// cli is one run's service and outputs.
type cli struct {
	cfg            lifecycle.Config
	client         *firestore.Client
	svc            *lifecycle.Service
	stdout, stderr io.Writer
	status         *statusLine // stderr when it is a terminal, else nil
	actor          string
	emulator       string // FIRESTORE_EMULATOR_HOST, for error messages
}

// usageErr is a bad command line: run prints it with the command's usage
// and exits 2.
type usageErr struct {
	cmd string // "" for manage-tokens itself
	err error
}

func (e *usageErr) Error() string { return e.err.Error() }

// run is the whole CLI, callable in-process: it returns the exit status.
func run(ctx context.Context, args []string, con console, getenv func(string) (string, bool)) int {
	args = doubleDashFlags(args)
	if len(args) == 0 {
		fmt.Fprint(con.stderr, globalUsage())
		return exitUsage
	}
	switch name := args[0]; name {
	case "-h", "--help":
		fmt.Fprint(con.stdout, globalUsage())
		return exitOK
	case "help":
		if len(args) == 1 {
			fmt.Fprint(con.stdout, globalUsage())
			return exitOK
		}
		cmd, ok := lookupCommand(args[1])
		if !ok {
			return unknownCommand(con.stderr, args[1])
		}
		fmt.Fprint(con.stdout, cmd.help())
		return exitOK
	case "--version":
		args[0] = "version"
	case cobra.ShellCompRequestCmd, cobra.ShellCompNoDescRequestCmd:
		// The shell completion scripts call back here.
	default:
		if _, ok := lookupCommand(name); !ok {
			return unknownCommand(con.stderr, name)
		}
	}

	code := exitOK
	var inv invocation
	root := newRoot(&inv, func(c *cobra.Command, cmd command) error {
		code = execute(ctx, con, getenv, c, cmd, inv)
		return nil
	})
	root.SetArgs(args)
	root.SetOut(con.stdout)
	root.SetErr(con.stderr)
	root.SetContext(ctx)
	if err := root.Execute(); err != nil {
		var ue *usageErr
		if errors.As(err, &ue) {
			cmd, _ := lookupCommand(ue.cmd)
			return usageError(con.stderr, cmd, ue.err)
		}
		return fail(con.stderr, err)
	}
	return code
}

// newRoot builds the cobra command tree of the commands table, bound to
// inv; do runs the command the line names.
func newRoot(inv *invocation, do func(*cobra.Command, command) error) *cobra.Command {
	root := &cobra.Command{
		Use:           program,
		SilenceErrors: true,
		SilenceUsage:  true,
		// The completion command is ours (commands table), with the same
		// help as every other.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	defineGlobalFlags(root.PersistentFlags(), inv)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageErr{cmd: c.Name(), err: flagError(c, err)}
	})
	root.SetHelpFunc(func(c *cobra.Command, _ []string) {
		if cmd, ok := lookupCommand(c.Name()); ok {
			fmt.Fprint(c.OutOrStdout(), cmd.help())
			return
		}
		fmt.Fprint(c.OutOrStdout(), globalUsage())
	})
	for _, cmd := range commands {
		c := &cobra.Command{
			Use:   cmd.name,
			Short: cmd.summary,
			Long:  strings.TrimSpace(cmd.about),
			Args: func(_ *cobra.Command, args []string) error {
				if err := cmd.bindArgs(inv, args); err != nil {
					return &usageErr{cmd: cmd.name, err: err}
				}
				return nil
			},
			RunE:              func(c *cobra.Command, _ []string) error { return do(c, cmd) },
			ValidArgsFunction: cmd.complete,
		}
		for _, define := range cmd.flags {
			define(c.Flags(), inv)
		}
		root.AddCommand(c)
	}
	return root
}

// execute runs cmd: a standalone one as it is, any other on the service
// built from the configuration.
func execute(ctx context.Context, con console, getenv func(string) (string, bool), c *cobra.Command, cmd command, inv invocation) int {
	if cmd.standalone != nil {
		return cmd.standalone(con, inv, c.Root())
	}
	getenv, err := profile.Apply(inv.profile, getenv)
	if err != nil {
		return fail(con.stderr, err)
	}
	cl := &cli{stdout: con.stdout, stderr: con.stderr, actor: resolveActor(inv.actor, getenv)}
	if con.terminal {
		cl.status = &statusLine{w: con.stderr}
		cl.stderr = cl.status // log lines go above the progress bar
	}
	cl.cfg, err = lifecycle.LoadConfigFrom(getenv, cmd.needs)
	if err != nil {
		return fail(cl.stderr, err)
	}
	level := slog.LevelWarn // an operator reads the report, not the INFO lines
	if v, ok := getenv("LOG_LEVEL"); ok && strings.TrimSpace(v) != "" {
		level = cl.cfg.LogLevel
	}
	logger := lifecycle.NewJSONLogger(cl.stderr, level)
	if con.terminal && !inv.json {
		logger = newTextLogger(cl.stderr, level)
	}
	ctx = lifecycle.WithLogger(ctx, logger)

	cl.emulator, _ = getenv("FIRESTORE_EMULATOR_HOST")
	cl.client, err = lifecycle.NewFirestoreClient(ctx, cl.cfg)
	if err != nil {
		return fail(cl.stderr, err)
	}
	defer cl.client.Close()
	cl.svc, err = lifecycle.NewFirestoreService(cl.cfg, cl.client, nil)
	if err != nil {
		return fail(cl.stderr, err)
	}
	// analytics --exact may initialize an empty deployment: the one
	// command that runs where nothing of the service is yet.
	if err := cl.checkFirestore(ctx, !(cmd.name == "analytics" && inv.exact)); err != nil {
		return fail(cl.stderr, err)
	}
	return cmd.exec(cl, ctx, inv)
}

// doubleDashFlags rewrites flags written the Go flag package's way, with
// one dash (-days=3, -json, -help), as cobra reads them (--days=3): the old
// tool took both. -h stays; arguments after "--" are left alone.
func doubleDashFlags(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' && isLetter(a[1]) && isLetter(a[2]) {
			out[i] = "-" + a
		}
	}
	return out
}

func isLetter(b byte) bool { return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' }

// flagError rewrites pflag's errors in the help's terms, with a "did you
// mean" for a misspelled flag.
func flagError(c *cobra.Command, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "unknown flag: "); ok {
		if s := suggestFlag(c, strings.TrimLeft(name, "-")); s != "" {
			return fmt.Errorf("unknown flag %s (did you mean --%s?)", name, s)
		}
		return fmt.Errorf("unknown flag %s", name)
	}
	if rest, ok := strings.CutPrefix(msg, "unknown shorthand flag: "); ok {
		// 'f' in -force: a long flag written with one dash that
		// doubleDashFlags left alone, e.g. -f.
		_, flag, _ := strings.Cut(rest, " in ")
		return fmt.Errorf("unknown flag %s", flag)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		if _, flag, ok := strings.Cut(name, " in "); ok {
			name = flag
		}
		return fmt.Errorf("%s needs a value", name)
	}
	// invalid argument %q for %q flag: %v
	if rest, ok := strings.CutPrefix(msg, "invalid argument "); ok {
		if value, rest, ok := cutQuoted(rest); ok {
			if rest, ok := strings.CutPrefix(rest, " for "); ok {
				if flag, rest, ok := cutQuoted(rest); ok {
					why := strings.TrimPrefix(rest, " flag: ")
					flag, _, _ = strings.Cut(flag, ", ") // "-d, --days"
					if f := c.Flags().Lookup(strings.TrimLeft(flag, "-")); f != nil && f.Value.Type() == "bool" {
						return fmt.Errorf("%s takes no value, got %q", flag, value)
					}
					return fmt.Errorf("%s %s, got %q", flag, why, value)
				}
			}
		}
	}
	return err
}

// suggestFlag is the flag of c closest to name, if one is close.
func suggestFlag(c *cobra.Command, name string) string {
	best, bestDist := "", 3
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if d := editDistance(name, f.Name); d < bestDist || strings.HasPrefix(f.Name, name) && bestDist > 0 {
			best, bestDist = f.Name, min(d, bestDist)
		}
	})
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// cutQuoted cuts a Go-quoted string off the front of s.
func cutQuoted(s string) (value, rest string, ok bool) {
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", s, false
	}
	value, err = strconv.Unquote(q)
	return value, s[len(q):], err == nil
}

// usageError prints a bad command line's error, the command's usage line
// and where its help is, and returns the usage status.
func usageError(stderr io.Writer, cmd command, err error) int {
	if cmd.name == "" {
		fmt.Fprintf(stderr, "%s: %v\nRun '%s --help' for more.\n", program, err, program)
		return exitUsage
	}
	fmt.Fprintf(stderr, "%s %s: %v\n%s\nRun '%s %s --help' for its flags and arguments.\n",
		program, cmd.name, err, cmd.usageLine(), program, cmd.name)
	return exitUsage
}

// unknownCommand refuses a command line that does not start with a
// command, suggesting the commands whose names are close.
func unknownCommand(stderr io.Writer, name string) int {
	if strings.HasPrefix(name, "-") {
		fmt.Fprintf(stderr, "%s: unknown flag --%s: flags follow the command\n", program, strings.TrimLeft(name, "-"))
	} else {
		fmt.Fprintf(stderr, "%s: unknown command %q\n", program, name)
		root := newRoot(new(invocation), nil)
		root.SuggestionsMinimumDistance = 2
		if s := root.SuggestionsFor(name); len(s) > 0 {
			fmt.Fprintf(stderr, "\nDid you mean this?\n\t%s\n\n", strings.Join(s, "\n\t"))
		}
	}
	fmt.Fprintf(stderr, "usage: %s <command> [flags]; commands: %s\nRun '%s --help' for more.\n",
		program, strings.Join(commandNames(), ", "), program)
	return exitUsage
}

// globalUsage is the help of manage-tokens itself: every command in one line.
func globalUsage() string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: %s <command> [flags] [arguments]\n\ncommands:\n", program)
	tw := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	for _, cmd := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", cmd.name, cmd.summary)
	}
	tw.Flush()
	fmt.Fprintf(&b, `
Run '%s <command> --help' for a command's flags and arguments,
'%s --version' for the build.

Every command acts unless given --dry-run, which reports what it would do.
--json prints one JSON object on stdout instead of the report.
Logs (WARN and above; LOG_LEVEL changes it) go to stderr: text lines on a
terminal, Cloud Logging's JSON lines in a pipe or with --json. A progress
bar is drawn on stderr when it is a terminal.

Configuration comes from the environment, as for the functions:
GOOGLE_CLOUD_PROJECT, FIRESTORE_DATABASE, TOKEN_ENCRYPTION_KEY(_PREVIOUS),
LEGACY_TOKEN_ENCRYPTION_KEY, PLAID_CLIENT_ID, PLAID_SECRET, PLAID_ENV, ...
(FIRESTORE_EMULATOR_HOST to work on the emulator), or from a profile:
--profile local reads %s, which scripts/dev.sh writes
for the local system it runs.

%s`, program, program, profile.HelpPath("local"), exitHelp)
	return b.String()
}

// globalFlagsHelp lists the flags every command takes.
func globalFlagsHelp(tw io.Writer) {
	fs := pflag.NewFlagSet("global", pflag.ContinueOnError)
	defineGlobalFlags(fs, new(invocation))
	fmt.Fprint(tw, "\nglobal flags:\n")
	fs.VisitAll(func(f *pflag.Flag) { flagHelpLine(tw, f) })
}

// flagHelpLine is a flag's line in a help, its usage on more lines if it
// has them.
func flagHelpLine(tw io.Writer, f *pflag.Flag) {
	name, usage := pflag.UnquoteUsage(f)
	if name != "" {
		name = " " + name
	}
	lines := strings.Split(usage, "\n")
	fmt.Fprintf(tw, "  --%s%s\t%s\n", f.Name, name, lines[0])
	for _, l := range lines[1:] {
		fmt.Fprintf(tw, "\t%s\n", l)
	}
}

// usageLine is cmd's synopsis: "usage: manage-tokens cleanup [--days N] ...".
func (cmd command) usageLine() string {
	parts := []string{"usage:", program, cmd.name}
	cmd.flagSet(new(invocation)).VisitAll(func(f *pflag.Flag) {
		if name, _ := pflag.UnquoteUsage(f); name != "" {
			parts = append(parts, "[--"+f.Name+" "+name+"]")
		} else {
			parts = append(parts, "[--"+f.Name+"]")
		}
	})
	for _, a := range cmd.args {
		parts = append(parts, "<"+a.name+">")
	}
	return strings.Join(parts, " ")
}

// help is cmd's own help: synopsis, what it does, its arguments and flags.
func (cmd command) help() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n%s\n", cmd.usageLine(), strings.TrimSpace(cmd.about))
	tw := tabwriter.NewWriter(&b, 0, 0, 3, ' ', 0)
	if len(cmd.args) > 0 {
		fmt.Fprint(tw, "\narguments:\n")
		for _, a := range cmd.args {
			fmt.Fprintf(tw, "  <%s>\t%s\n", a.name, a.usage)
		}
	}
	fmt.Fprint(tw, "\nflags:\n")
	cmd.flagSet(new(invocation)).VisitAll(func(f *pflag.Flag) { flagHelpLine(tw, f) })
	fmt.Fprint(tw, "  -h, --help\tprint this help\n")
	if cmd.standalone == nil {
		globalFlagsHelp(tw)
	}
	tw.Flush()
	fmt.Fprint(&b, "\n"+exitHelp)
	return b.String()
}

// flagSet returns cmd's own flags, bound to inv.
func (cmd command) flagSet(inv *invocation) *pflag.FlagSet {
	fs := pflag.NewFlagSet(program+" "+cmd.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, define := range cmd.flags {
		define(fs, inv)
	}
	return fs
}

// bindArgs checks the positional arguments and binds them to inv.
func (cmd command) bindArgs(inv *invocation, args []string) error {
	if len(args) > len(cmd.args) {
		return fmt.Errorf("unexpected argument %q", args[len(cmd.args)])
	}
	for i, a := range cmd.args {
		if i >= len(args) {
			return fmt.Errorf("missing <%s>", a.name)
		}
		v := strings.TrimSpace(args[i])
		if v == "" {
			return fmt.Errorf("<%s> is empty", a.name)
		}
		if a.valid != nil {
			if err := a.valid(v); err != nil {
				return err
			}
		}
		*a.bind(inv) = v
	}
	return nil
}

// complete offers the values of cmd's next positional argument, where they
// are a fixed set.
func (cmd command) complete(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) < len(cmd.args) && cmd.args[len(args)].values != nil {
		return cmd.args[len(args)].values, cobra.ShellCompDirectiveNoFileComp
	}
	return nil, cobra.ShellCompDirectiveNoFileComp
}

// versionText says what this binary was built from: the main module's
// version, the VCS revision and time `go build` stamps in a checkout (go
// run, go test and -buildvcs=false do not), and the Go version.
func versionText(bi *debug.BuildInfo, ok bool) string {
	if !ok {
		return program + " (no build information: built without module support)\n"
	}
	settings := make(map[string]string)
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	version := bi.Main.Version
	if version == "" {
		version = "(devel)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", program, version)
	tw := tabwriter.NewWriter(&b, 0, 0, 1, ' ', 0)
	if bi.Main.Path != "" {
		fmt.Fprintf(tw, "module:\t%s\n", bi.Main.Path)
	}
	if rev := settings["vcs.revision"]; rev != "" {
		if settings["vcs.modified"] == "true" {
			rev += " (with uncommitted changes)"
		}
		fmt.Fprintf(tw, "revision:\t%s\n", rev)
		if t := settings["vcs.time"]; t != "" {
			fmt.Fprintf(tw, "time:\t%s\n", t)
		}
	} else {
		fmt.Fprintf(tw, "revision:\tunknown (go run and go build -buildvcs=false do not record it)\n")
	}
	fmt.Fprintf(tw, "go:\t%s\n", bi.GoVersion)
	tw.Flush()
	return b.String()
}

// firestoreCheckTimeout bounds the first Firestore reads. The client
// retries an unreachable server for as long as the context lasts; an
// operator should hear about a wrong FIRESTORE_EMULATOR_HOST or project at
// once.
const firestoreCheckTimeout = 20 * time.Second

// checkFirestore makes small reads, so that a Firestore that cannot be
// reached fails the command before it starts. With requireService it also
// refuses a database that holds nothing of this service, no token, run
// record, counter or snapshot: a misspelled GOOGLE_CLOUD_PROJECT (the
// emulator accepts any) must not report a clean, empty success.
func (c *cli) checkFirestore(ctx context.Context, requireService bool) error {
	ctx, cancel := context.WithTimeout(ctx, firestoreCheckTimeout)
	defer cancel()
	where := fmt.Sprintf("Firestore %s/%s", c.cfg.Project, c.cfg.FirestoreDatabase)
	for _, col := range []string{lifecycle.TokensCollection, lifecycle.RunsCollection, lifecycle.StatsCollection, lifecycle.SnapshotsCollection} {
		docs, err := c.client.Collection(col).Select().Limit(1).Documents(ctx).GetAll()
		switch {
		case err == nil:
		case errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded:
			hint := "is the network up and GOOGLE_CLOUD_PROJECT right?"
			if c.emulator != "" {
				hint = "is the emulator at FIRESTORE_EMULATOR_HOST=" + c.emulator + " running?"
			}
			return fmt.Errorf("no answer in time from %s: %s", where, hint)
		default:
			return fmt.Errorf("cannot read %s: %w", where, err)
		}
		if len(docs) > 0 || !requireService {
			return nil
		}
	}
	hint := "is GOOGLE_CLOUD_PROJECT (or FIRESTORE_DATABASE) right?"
	if c.emulator != "" {
		hint = "is GOOGLE_CLOUD_PROJECT right? The emulator at " + c.emulator + " accepts any project id, empty; scripts/dev.sh's profile names its project (--profile local)"
	}
	return fmt.Errorf("%s holds no token and no record of this service (no run, counter or snapshot): %s. "+
		"A new, empty deployment is initialized by its first scheduled run, or now by `%s analytics --exact`", where, hint, program)
}

// fail prints err on one line and returns the failure status.
func fail(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, program+": "+oneLine(err.Error()))
	return exitFailure
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, ":\n", ": ")
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
