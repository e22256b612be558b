// Command devkit does the local-only chores of scripts/dev.sh:
//
//	devkit seed [--reset]      stores the sample token set (internal/sample) in
//	                           $GOOGLE_CLOUD_PROJECT, encrypted with TOKEN_ENCRYPTION_KEY;
//	                           --reset first deletes every document of plaid_tokens
//	                           and resets the local Plaid stand-in
//	devkit jwt --sub ID        prints an HS256 access token signed with AUTH_JWT_SECRET,
//	                           as the old service issued them (sub, exp, type)
//
// Its settings come from the environment, or from the profile scripts/dev.sh
// writes: --profile local, the default when FIRESTORE_EMULATOR_HOST is not
// set. It refuses to seed anything but the Firestore emulator.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/finwell/plaid-token-lifecycle/internal/profile"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv))
}

const usage = `usage: devkit <command> [flags]

commands:
  seed [--reset]          store the sample token set in the local emulator;
                          --reset first deletes every token document and resets
                          the Plaid stand-in, so the set is as new
  jwt --sub ID [--admin]  print an access token for user ID (24 hours)

Run 'devkit <command> -h' for a command's flags. Settings: the environment,
or --profile NAME (default: local, which scripts/dev.sh writes, when
FIRESTORE_EMULATOR_HOST is not set).
`

// run is devkit, callable in-process; it returns the exit status: 0 done,
// 1 failure, 2 bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) (string, bool)) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "devkit:", err)
		return 1
	}
	fs := flag.NewFlagSet("devkit "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	prof := fs.String("profile", "", "settings from this profile (default: local when FIRESTORE_EMULATOR_HOST is not set)")
	var exec func(getenv func(string) (string, bool)) error
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "seed":
		reset := fs.Bool("reset", false, "delete every token document and reset the Plaid stand-in first")
		fs.Usage = func() {
			fmt.Fprint(fs.Output(), "usage: devkit seed [--reset] [--profile NAME]\n\nStores the sample token set (15 tokens of 5 users) in the local Firestore\nemulator. Seeding again leaves existing documents as they are; --reset makes\nthe set as new: every plaid_tokens document is deleted (the analytics counters\nfollow, as for any delete), the Plaid stand-in forgets its removals, then the\nset is stored.\n\nflags:\n")
			fs.PrintDefaults()
		}
		exec = func(getenv func(string) (string, bool)) error { return seed(ctx, stderr, getenv, *reset) }
	case "jwt":
		sub := fs.String("sub", "", "the user id (the sub claim); required")
		admin := fs.Bool("admin", false, "add the admin: true claim")
		ttl := fs.Duration("ttl", 24*time.Hour, "lifetime")
		fs.Usage = func() {
			fmt.Fprint(fs.Output(), "usage: devkit jwt --sub ID [--admin] [--ttl 24h] [--profile NAME]\n\nPrints an HS256 access token signed with AUTH_JWT_SECRET, as the old service\nissued them (sub, exp, type): what to send as Authorization: Bearer <JWT>.\n\nflags:\n")
			fs.PrintDefaults()
		}
		exec = func(getenv func(string) (string, bool)) error { return mint(stdout, getenv, *sub, *admin, *ttl) }
	default:
		fmt.Fprintf(stderr, "devkit: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "devkit %s: unexpected argument %q\n", args[0], fs.Arg(0))
		return 2
	}
	name := *prof
	if v, _ := getenv("FIRESTORE_EMULATOR_HOST"); name == "" && v == "" {
		if p, _ := getenv(profile.EnvVar); p == "" {
			name = profile.Local
		}
	}
	getenv, err := profile.Apply(name, getenv)
	if err != nil {
		return fail(err)
	}
	if err := exec(getenv); err != nil {
		return fail(err)
	}
	return 0
}

// seed stores the sample set in the emulator; with reset, it first deletes
// every plaid_tokens document and has the Plaid stand-in forget what it
// removed.
func seed(ctx context.Context, stderr io.Writer, getenv func(string) (string, bool), reset bool) error {
	if v, _ := getenv("FIRESTORE_EMULATOR_HOST"); v == "" {
		return errors.New("FIRESTORE_EMULATOR_HOST is not set: devkit only seeds the local emulator")
	}
	cfg, err := lifecycle.LoadConfigFrom(getenv, lifecycle.Needs{Store: true, Vault: true})
	if err != nil {
		return err
	}
	client, err := lifecycle.NewFirestoreClient(ctx, cfg)
	if err != nil {
		return err
	}
	defer client.Close()
	vault, err := lifecycle.NewVault(cfg.EncryptionKey, cfg.EncryptionKeyPrevious, cfg.EncryptionSalt)
	if err != nil {
		return err
	}
	tokens := lifecycle.NewFirestoreTokenStore(client)
	if reset {
		n, err := deleteTokens(ctx, tokens)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "deleted %d token documents from project %s\n", n, cfg.Project)
		if control, _ := getenv("PLAID_STANDIN_CONTROL_URL"); control != "" {
			if err := resetStandIn(ctx, control); err != nil {
				return err
			}
			fmt.Fprintln(stderr, "the local Plaid stand-in forgot its removals")
		}
	}
	set := sample.Tokens(time.Now().UTC())
	if err := sample.Seed(ctx, tokens, vault, set); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "seeded %d sample tokens into project %s\n", len(set), cfg.Project)
	return nil
}

// deleteTokens deletes every token document, each on the version it was
// read at (the store never deletes unconditionally), and returns how many.
func deleteTokens(ctx context.Context, store lifecycle.TokenStore) (int, error) {
	deleted := 0
	for after := ""; ; {
		page, next, err := store.Page(ctx, after, 200)
		if err != nil {
			return deleted, err
		}
		var writes []lifecycle.Write
		for _, t := range page {
			writes = append(writes, lifecycle.Write{ItemID: t.ItemID, Delete: true, IfVersion: t.Version})
		}
		for i, err := range store.Apply(ctx, writes) {
			if err != nil {
				return deleted, fmt.Errorf("deleting %s: %w", writes[i].ItemID, err)
			}
			deleted++
		}
		if next == "" {
			return deleted, nil
		}
		after = next
	}
}

// resetStandIn has the local Plaid stand-in register the sample set anew.
func resetStandIn(ctx context.Context, control string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(control, "/")+"/reset-sample", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("resetting the Plaid stand-in at %s: %w", control, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("resetting the Plaid stand-in at %s: HTTP %d", control, resp.StatusCode)
	}
	return nil
}

func mint(stdout io.Writer, getenv func(string) (string, bool), sub string, admin bool, ttl time.Duration) error {
	secret, _ := getenv("AUTH_JWT_SECRET")
	if secret == "" {
		return errors.New("AUTH_JWT_SECRET is not set (scripts/dev.sh's profile sets it: is the local system running?)")
	}
	if sub == "" {
		return errors.New("jwt: --sub is required")
	}
	now := time.Now()
	claims := jwt.MapClaims{"sub": sub, "type": "access_token", "exp": now.Add(ttl).Unix(), "iat": now.Unix()}
	if admin {
		claims["admin"] = true
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, s)
	return nil
}
