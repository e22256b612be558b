// Command manage-tokens is the operators' CLI (DESIGN §9): cleanup,
// analytics, revocation, the legacy migration and key rotation, on the same
// service the functions run, configured by the same environment variables.
//
//	go run ./scripts/manage-tokens cleanup --days 90 [--dry-run] [--json]
//	go run ./scripts/manage-tokens analytics [--json]
//	go run ./scripts/manage-tokens revoke <user_id> [--dry-run] [--json]
//	go run ./scripts/manage-tokens migrate-legacy [--dry-run] [--json]
//	go run ./scripts/manage-tokens reencrypt [--dry-run] [--json]
//
// Results go to stdout; logs (JSON, WARN and above unless LOG_LEVEL says
// otherwise), errors and the progress bar go to stderr. Exit status: 0
// success, 1 failure, 2 bad usage.
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
	"strings"
	"syscall"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const usage = `usage: manage-tokens <command> [flags]

commands:
  cleanup --days N [--dry-run] [--json]   remove expired, revoked and stale tokens
                                          (at Plaid first) and mark invalid ones;
                                          N is 1..3650, default STALE_DAYS (90)
  analytics [--json]                      count tokens by status, user, age,
                                          institution and environment
  revoke <user_id> [--dry-run] [--json]   revoke every token of a user
  migrate-legacy [--dry-run] [--json]     carry the old service's per-user
                                          documents over to one document per item
  reencrypt [--dry-run] [--json]          move every token to the current
                                          encryption key

Every command acts unless given --dry-run, which reports what it would do.
--json prints one JSON object on stdout instead of the report.
Configuration comes from the environment, as for the functions:
GOOGLE_CLOUD_PROJECT, FIRESTORE_DATABASE, TOKEN_ENCRYPTION_KEY(_PREVIOUS),
LEGACY_TOKEN_ENCRYPTION_KEY, PLAID_CLIENT_ID, PLAID_SECRET, PLAID_ENV, ...

exit status: 0 success, 1 failure, 2 bad usage
`

// invocation is one parsed command line.
type invocation struct {
	days   int // cleanup; 0: STALE_DAYS
	userID string
	dryRun bool
	json   bool
}

// command is one subcommand: what configuration it needs and what it does.
type command struct {
	needs lifecycle.Needs
	// dryRun and days say which flags it accepts; userID that it takes
	// <user_id>.
	dryRun, days, userID bool
	exec                 func(c *cli, ctx context.Context, inv invocation) int
}

var commands = map[string]command{
	"cleanup":        {needs: lifecycle.Needs{Store: true, Vault: true, Plaid: true}, dryRun: true, days: true, exec: (*cli).cleanup},
	"analytics":      {needs: lifecycle.Needs{Store: true}, exec: (*cli).analytics},
	"revoke":         {needs: lifecycle.Needs{Store: true, Vault: true, Plaid: true}, dryRun: true, userID: true, exec: (*cli).revoke},
	"migrate-legacy": {needs: lifecycle.Needs{Store: true, Vault: true}, dryRun: true, exec: (*cli).migrateLegacy},
	"reencrypt":      {needs: lifecycle.Needs{Store: true, Vault: true}, dryRun: true, exec: (*cli).reencrypt},
}

// cli is one run's service and outputs.
type cli struct {
	cfg            lifecycle.Config
	client         *firestore.Client
	svc            *lifecycle.Service
	stdout, stderr io.Writer
	actor          string
	emulator       string // FIRESTORE_EMULATOR_HOST, for error messages
}

// run is the whole CLI, callable in-process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) (string, bool)) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "manage-tokens: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	inv, err := parse(args[0], cmd, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return exitOK
		}
		fmt.Fprintf(stderr, "manage-tokens %s: %v\n\n%s", args[0], err, usage)
		return exitUsage
	}

	cfg, err := lifecycle.LoadConfigFrom(getenv, cmd.needs)
	if err != nil {
		return fail(stderr, err)
	}
	level := slog.LevelWarn // an operator reads the report, not the INFO lines
	if v, ok := getenv("LOG_LEVEL"); ok && strings.TrimSpace(v) != "" {
		level = cfg.LogLevel
	}
	ctx = lifecycle.WithLogger(ctx, lifecycle.NewJSONLogger(stderr, level))

	c := &cli{cfg: cfg, stdout: stdout, stderr: stderr, actor: actor(getenv)}
	c.emulator, _ = getenv("FIRESTORE_EMULATOR_HOST")
	c.client, err = lifecycle.NewFirestoreClient(ctx, cfg)
	if err != nil {
		return fail(stderr, err)
	}
	defer c.client.Close()
	c.svc, err = lifecycle.NewFirestoreService(ctx, cfg, c.client)
	if err != nil {
		return fail(stderr, err)
	}
	if err := c.checkFirestore(ctx); err != nil {
		return fail(stderr, err)
	}
	return cmd.exec(c, ctx, inv)
}

// parse reads the flags and arguments of cmd. Flags may come before or
// after <user_id>.
func parse(name string, cmd command, args []string) (invocation, error) {
	var inv invocation
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run prints the one error line and the usage
	fs.BoolVar(&inv.json, "json", false, "print one JSON object")
	if cmd.dryRun {
		fs.BoolVar(&inv.dryRun, "dry-run", false, "report what would be done, change nothing")
	}
	if cmd.days {
		fs.IntVar(&inv.days, "days", 0, "days unused after which an active token is stale (1..3650)")
	}
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return inv, err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if cmd.days {
		set := false
		fs.Visit(func(f *flag.Flag) { set = set || f.Name == "days" })
		if set {
			if lifecycle.ValidateDaysThreshold(inv.days) != nil {
				return inv, fmt.Errorf("--days must be an integer from 1 to %d, got %d", lifecycle.MaxDaysThreshold, inv.days)
			}
		}
	}
	switch {
	case cmd.userID && len(positional) == 0:
		return inv, errors.New("missing <user_id>")
	case cmd.userID && len(positional) > 1:
		return inv, fmt.Errorf("one <user_id> expected, got %d arguments", len(positional))
	case cmd.userID:
		inv.userID = strings.TrimSpace(positional[0])
		if inv.userID == "" {
			return inv, errors.New("<user_id> is empty")
		}
	case len(positional) > 0:
		return inv, fmt.Errorf("unexpected argument %q", positional[0])
	}
	return inv, nil
}

// newService builds the service the functions run. Commands that make no
// Plaid call (analytics, migrate-legacy, reencrypt) do not require the
// Plaid credentials, and analytics not the encryption key either, which
// NewFirestoreService insists on: for them the missing parts are stand-ins
// that fail, naming the variable, if ever called.
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
	fmt.Fprintln(stderr, "manage-tokens: "+oneLine(err.Error()))
	return exitFailure
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, ":\n", ": ")
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
