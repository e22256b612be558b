// Command devkit does the local-only chores of scripts/dev.sh:
//
//	devkit seed            stores the sample token set (internal/sample) in
//	                       $GOOGLE_CLOUD_PROJECT, encrypted with TOKEN_ENCRYPTION_KEY
//	devkit jwt -sub ID     prints an HS256 access token signed with AUTH_JWT_SECRET,
//	                       as the old service issued them (sub, exp, type)
//
// It refuses to seed anything but the Firestore emulator.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "devkit:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: devkit seed | jwt -sub ID [-admin] [-ttl 24h]")
	}
	switch args[0] {
	case "seed":
		return seed(context.Background())
	case "jwt":
		fs := flag.NewFlagSet("jwt", flag.ContinueOnError)
		sub := fs.String("sub", "", "user id (the sub claim)")
		admin := fs.Bool("admin", false, "add the admin: true claim")
		ttl := fs.Duration("ttl", 24*time.Hour, "lifetime")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return mint(*sub, *admin, *ttl)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func seed(ctx context.Context) error {
	if os.Getenv("FIRESTORE_EMULATOR_HOST") == "" {
		return errors.New("FIRESTORE_EMULATOR_HOST is not set: devkit only seeds the local emulator")
	}
	cfg, err := lifecycle.LoadConfig(lifecycle.Needs{Store: true, Vault: true})
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
	tokens := sample.Tokens(time.Now().UTC())
	if err := sample.Seed(ctx, lifecycle.NewFirestoreTokenStore(client), vault, tokens); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "seeded %d sample tokens into project %s\n", len(tokens), cfg.Project)
	return nil
}

func mint(sub string, admin bool, ttl time.Duration) error {
	secret := os.Getenv("AUTH_JWT_SECRET")
	if secret == "" {
		return errors.New("AUTH_JWT_SECRET is not set")
	}
	if sub == "" {
		return errors.New("-sub is required")
	}
	claims := jwt.MapClaims{"sub": sub, "type": "access_token", "exp": time.Now().Add(ttl).Unix(), "iat": time.Now().Unix()}
	if admin {
		claims["admin"] = true
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		return err
	}
	fmt.Println(s)
	return nil
}
