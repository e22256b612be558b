package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/golang-jwt/jwt/v5"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// floorHandler is an endpoint's floor (floorBenches), served alone.
type floorHandler interface {
	http.Handler
	Close() error
}

// floorServeCmd serves an endpoint's floor on PORT, configured from the
// environment as the endpoint's deployed function is, until stopped.
func floorServeCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("floor-serve", flag.ExitOnError)
	endpoint := fs.String("endpoint", "revoke", "the endpoint whose floor to serve (floorBenches)")
	fs.Parse(args)
	bench, ok := floorBenches[*endpoint]
	if !ok {
		return fmt.Errorf("no floor for endpoint %q", *endpoint)
	}
	cfg, err := lifecycle.LoadConfig(lifecycle.Needs{Store: true, Vault: true, Plaid: true, Auth: true})
	if err != nil {
		return err
	}
	h, err := bench.handler(ctx, cfg)
	if err != nil {
		return err
	}
	defer h.Close()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", cfg.Port))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// verifiedSubject is the sub of r's bearer token, an HS256 JWT signed with
// secret and not expired; ok is false (and 401 answered) otherwise.
func verifiedSubject(w http.ResponseWriter, r *http.Request, secret []byte) (sub string, ok bool) {
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), &claims,
		func(*jwt.Token) (any, error) { return secret, nil }, jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	if err != nil || claims.Subject == "" {
		http.Error(w, `{"detail":"invalid token"}`, http.StatusUnauthorized)
		return "", false
	}
	return claims.Subject, true
}

// floorDeps are what a floor works with, built as the deployed function
// builds them from its configuration: a Firestore client, the vault, and
// the plaid-go adapter paced locally at the rates it is given (floors run
// with them lifted: no quota).
type floorDeps struct {
	client *firestore.Client
	cipher lifecycle.TokenCipher
	plaid  lifecycle.PlaidAPI
	secret []byte
}

func newFloorDeps(ctx context.Context, cfg lifecycle.Config) (floorDeps, error) {
	client, err := lifecycle.NewFirestoreClient(ctx, cfg)
	if err != nil {
		return floorDeps{}, err
	}
	vault, err := lifecycle.NewVault(cfg.EncryptionKey, cfg.EncryptionKeyPrevious, cfg.EncryptionSalt)
	if err != nil {
		client.Close()
		return floorDeps{}, err
	}
	plaid, err := lifecycle.NewPlaidClient(lifecycle.PlaidClientConfig{PlaidSettings: cfg.PlaidSettings})
	if err != nil {
		client.Close()
		return floorDeps{}, err
	}
	return floorDeps{client: client, cipher: vault, plaid: plaid, secret: []byte(cfg.AuthJWTSecret)}, nil
}

func (d floorDeps) Close() error { return d.client.Close() }
