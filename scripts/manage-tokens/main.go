// Command manage-tokens is the operators' CLI (DESIGN §9): cleanup,
// analytics, revocation, the legacy migration and key rotation, on the same
// service the functions run, configured by the same environment variables.
//
//	go run ./scripts/manage-tokens cleanup [--days N] [--dry-run] [--take-over RUN_ID [--force]] [--json]
//	go run ./scripts/manage-tokens run [--follow] [--json] <run_id>
//	go run ./scripts/manage-tokens analytics [--json]
//	go run ./scripts/manage-tokens revoke [--dry-run] [--json] <user_id>
//	go run ./scripts/manage-tokens migrate-legacy [--dry-run] [--json]
//	go run ./scripts/manage-tokens reencrypt [--dry-run] [--json]
//	go run ./scripts/manage-tokens <command> --help
//	go run ./scripts/manage-tokens --version
//
// Results go to stdout. Logs (WARN and above unless LOG_LEVEL says
// otherwise), errors and the progress bar go to stderr: on a terminal, logs
// are text lines a person reads and the bar is drawn; otherwise, or with
// --json, logs are Cloud Logging's JSON lines, and the bar is drawn only on
// a terminal. Exit status: 0 success, 1 failure, 2 bad usage.
package main

import (
	"context"
	"errors"
	"flag"
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
	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	con := console{stdout: os.Stdout, stderr: os.Stderr, terminal: term.IsTerminal(int(os.Stderr.Fd()))}
	code := run(ctx, os.Args[1:], con, os.LookupEnv)
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

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
	dryRun   bool
	json     bool
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

// run is the whole CLI, callable in-process: it returns the exit status.
func run(ctx context.Context, args []string, con console, getenv func(string) (string, bool)) int {
	if len(args) == 0 {
		fmt.Fprint(con.stderr, globalUsage())
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
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
	case "-version", "--version":
		name = "version"
	}
	cmd, ok := lookupCommand(name)
	if !ok {
		return unknownCommand(con.stderr, name)
	}
	inv, err := parse(cmd, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(con.stdout, cmd.help())
		return exitOK
	}
	if err != nil {
		return usageError(con.stderr, cmd, err)
	}
	if cmd.standalone != nil {
		return cmd.standalone(con)
	}

	c := &cli{stdout: con.stdout, stderr: con.stderr, actor: actor(getenv)}
	if con.terminal {
		c.status = &statusLine{w: con.stderr}
		c.stderr = c.status // log lines go above the progress bar
	}
	c.cfg, err = lifecycle.LoadConfigFrom(getenv, cmd.needs)
	if err != nil {
		return fail(c.stderr, err)
	}
	level := slog.LevelWarn // an operator reads the report, not the INFO lines
	if v, ok := getenv("LOG_LEVEL"); ok && strings.TrimSpace(v) != "" {
		level = c.cfg.LogLevel
	}
	logger := lifecycle.NewJSONLogger(c.stderr, level)
	if con.terminal && !inv.json {
		logger = lifecycle.NewTextLogger(c.stderr, level)
	}
	ctx = lifecycle.WithLogger(ctx, logger)

	c.emulator, _ = getenv("FIRESTORE_EMULATOR_HOST")
	c.client, err = lifecycle.NewFirestoreClient(ctx, c.cfg)
	if err != nil {
		return fail(c.stderr, err)
	}
	defer c.client.Close()
	c.svc, err = lifecycle.NewFirestoreService(c.cfg, c.client, nil)
	if err != nil {
		return fail(c.stderr, err)
	}
	if err := c.checkFirestore(ctx); err != nil {
		return fail(c.stderr, err)
	}
	return cmd.exec(c, ctx, inv)
}

// parse reads the flags and arguments of cmd. Flags may come before or
// after the arguments. It returns flag.ErrHelp for -h, -help and --help.
func parse(cmd command, args []string) (invocation, error) {
	var inv invocation
	fs := cmd.flagSet(&inv)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return inv, flagError(err)
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) > len(cmd.args) {
		return inv, fmt.Errorf("unexpected argument %q", positional[len(cmd.args)])
	}
	for i, a := range cmd.args {
		if i >= len(positional) {
			return inv, fmt.Errorf("missing <%s>", a.name)
		}
		v := strings.TrimSpace(positional[i])
		if v == "" {
			return inv, fmt.Errorf("<%s> is empty", a.name)
		}
		*a.bind(&inv) = v
	}
	return inv, nil
}

// flagSet returns cmd's flags, bound to inv. It prints nothing: run prints
// the help and the errors, naming flags with two dashes.
func (cmd command) flagSet(inv *invocation) *flag.FlagSet {
	fs := flag.NewFlagSet(program+" "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for _, define := range cmd.flags {
		define(fs, inv)
	}
	return fs
}

// flagError rewrites the flag package's errors, which name flags with one
// dash (-days), in the help's terms (--days).
func flagError(err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		return fmt.Errorf("unknown flag --%s", strings.TrimLeft(name, "-"))
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return fmt.Errorf("--%s needs a value", strings.TrimLeft(name, "-"))
	}
	// invalid value %q for flag -%s: %v
	if rest, ok := strings.CutPrefix(msg, "invalid value "); ok {
		if value, rest, ok := cutQuoted(rest); ok {
			if rest, ok := strings.CutPrefix(rest, " for flag -"); ok {
				name, why, _ := strings.Cut(rest, ": ")
				return fmt.Errorf("--%s %s, got %q", name, why, value)
			}
		}
	}
	// invalid boolean value %q for -%s: %v
	if rest, ok := strings.CutPrefix(msg, "invalid boolean value "); ok {
		if value, rest, ok := cutQuoted(rest); ok {
			if rest, ok := strings.CutPrefix(rest, " for -"); ok {
				name, _, _ := strings.Cut(rest, ": ")
				return fmt.Errorf("--%s takes no value, got %q", name, value)
			}
		}
	}
	return err
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
	fmt.Fprintf(stderr, "%s %s: %v\n%s\nRun '%s %s --help' for its flags and arguments.\n",
		program, cmd.name, err, cmd.usageLine(), program, cmd.name)
	return exitUsage
}

func unknownCommand(stderr io.Writer, name string) int {
	if strings.HasPrefix(name, "-") {
		fmt.Fprintf(stderr, "%s: unknown flag --%s: flags follow the command\n", program, strings.TrimLeft(name, "-"))
	} else {
		fmt.Fprintf(stderr, "%s: unknown command %q\n", program, name)
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
(FIRESTORE_EMULATOR_HOST to work on the emulator).

exit status: 0 success, 1 failure, 2 bad usage
`, program, program)
	return b.String()
}

// usageLine is cmd's synopsis: "usage: manage-tokens cleanup [--days N] ...".
func (cmd command) usageLine() string {
	parts := []string{"usage:", program, cmd.name}
	cmd.flagSet(new(invocation)).VisitAll(func(f *flag.Flag) {
		if name, _ := flag.UnquoteUsage(f); name != "" {
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
	cmd.flagSet(new(invocation)).VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		if name != "" {
			name = " " + name
		}
		lines := strings.Split(usage, "\n")
		fmt.Fprintf(tw, "  --%s%s\t%s\n", f.Name, name, lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(tw, "\t%s\n", l)
		}
	})
	fmt.Fprint(tw, "  -h, --help\tprint this help\n")
	tw.Flush()
	fmt.Fprint(&b, "\nexit status: 0 success, 1 failure, 2 bad usage\n")
	return b.String()
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

// firestoreCheckTimeout bounds the first Firestore read. The client retries
// an unreachable server for as long as the context lasts; an operator
// should hear about a wrong FIRESTORE_EMULATOR_HOST or project at once.
const firestoreCheckTimeout = 20 * time.Second

// checkFirestore makes one small read, so that a Firestore that cannot be
// reached fails the command before it starts.
func (c *cli) checkFirestore(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, firestoreCheckTimeout)
	defer cancel()
	_, err := c.client.Collection(lifecycle.TokensCollection).Select().Limit(1).Documents(ctx).GetAll()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded:
		where := "is the network up and GOOGLE_CLOUD_PROJECT right?"
		if c.emulator != "" {
			where = "is the emulator at FIRESTORE_EMULATOR_HOST=" + c.emulator + " running?"
		}
		return fmt.Errorf("no answer in time from Firestore %s/%s: %s", c.cfg.Project, c.cfg.FirestoreDatabase, where)
	default:
		return fmt.Errorf("cannot read Firestore %s/%s: %w", c.cfg.Project, c.cfg.FirestoreDatabase, err)
	}
}

// actor is who runs the CLI, as run records and audit entries name them.
func actor(getenv func(string) (string, bool)) string {
	for _, k := range []string{"USER", "USERNAME"} {
		if v, ok := getenv(k); ok && strings.TrimSpace(v) != "" {
			return "cli:" + strings.TrimSpace(v)
		}
	}
	return "cli"
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
