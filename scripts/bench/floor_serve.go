package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

// revokeFloor is RevokeItem's floor: it verifies the HS256 JWT, reads the
// document, checks the owner, decrypts, calls /item/remove, then writes
// one batch that marks the token revoked and creates its audit entry. No
// quota (its Plaid client paces at the rate it is given), no priority, no
// bounded wait for Plaid, no retry of a write, no log: the work alone.
type revokeFloor struct {
	client *firestore.Client
	cipher lifecycle.TokenCipher
	plaid  lifecycle.PlaidAPI
	secret []byte
}

func newRevokeFloor(ctx context.Context, cfg lifecycle.Config) (floorHandler, error) {
	client, err := lifecycle.NewFirestoreClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	vault, err := lifecycle.NewVault(cfg.EncryptionKey, cfg.EncryptionKeyPrevious, cfg.EncryptionSalt)
	if err != nil {
		client.Close()
		return nil, err
	}
	plaid, err := lifecycle.NewPlaidClient(lifecycle.PlaidClientConfig{PlaidSettings: cfg.PlaidSettings})
	if err != nil {
		client.Close()
		return nil, err
	}
	return &revokeFloor{client: client, cipher: vault, plaid: plaid, secret: []byte(cfg.AuthJWTSecret)}, nil
}

func (f *revokeFloor) Close() error { return f.client.Close() }

func (f *revokeFloor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	itemID, ok := strings.CutPrefix(r.URL.Path, "/api/v1/plaid/items/")
	if r.Method != http.MethodDelete || !ok || itemID == "" {
		http.NotFound(w, r)
		return
	}
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), &claims,
		func(*jwt.Token) (any, error) { return f.secret, nil }, jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	if err != nil || claims.Subject == "" {
		http.Error(w, `{"detail":"invalid token"}`, http.StatusUnauthorized)
		return
	}
	ref := f.client.Collection(lifecycle.TokensCollection).Doc(itemID)
	snap, err := ref.Get(ctx)
	if status.Code(err) == codes.NotFound {
		http.NotFound(w, r)
		return
	}
	var tok lifecycle.Token
	if err == nil {
		err = snap.DataTo(&tok)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if tok.UserID != claims.Subject {
		http.NotFound(w, r)
		return
	}
	access, err := f.cipher.Decrypt(itemID, tok.AccessToken)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	removed := f.plaid.RemoveItem(ctx, access) == nil
	now := time.Now()
	//lint:ignore SA1019 one atomic commit without reads, as the service's audited deletes.
	batch := f.client.Batch()
	batch.Update(ref, []firestore.Update{
		{Path: "status", Value: string(lifecycle.StatusRevoked)},
		{Path: "plaid_removed", Value: removed},
		{Path: "updated_at", Value: now},
	})
	batch.Create(f.client.Collection(lifecycle.AuditCollection).NewDoc(), lifecycle.AuditEntry{ItemID: itemID, UserID: tok.UserID,
		Reason: lifecycle.ReasonUserRevoked, Actor: claims.Subject, At: now, PlaidRemoved: removed})
	if _, err := batch.Commit(ctx); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"message": "Item revoked successfully", "item_id": itemID})
}
