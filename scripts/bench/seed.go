package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// production is what the deployed functions and the CLI are built from:
// the configuration, and lifecycle.NewFirestoreDeps over one Firestore
// client (the Firestore stores, the vault, the plaid-go adapter paced by
// the SharedPacer over Firestore). A measurement wraps the dependencies it
// times, or changes the configuration, before service() builds the
// service: it never reaches into a Service.
type production struct {
	cfg    lifecycle.Config
	client *firestore.Client
	deps   lifecycle.Deps
}

// openProduction loads the configuration from the environment (needs says
// what it must hold) and opens production over it. Close it when done.
func openProduction(ctx context.Context, needs lifecycle.Needs) (*production, error) {
	cfg, err := lifecycle.LoadConfig(needs)
	if err != nil {
		return nil, err
	}
	client, err := lifecycle.NewFirestoreClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return newProduction(cfg, client)
}

// newProduction is production over client, which it closes on Close.
func newProduction(cfg lifecycle.Config, client *firestore.Client) (*production, error) {
	deps, err := lifecycle.NewFirestoreDeps(cfg, client, nil)
	if err != nil {
		client.Close()
		return nil, err
	}
	return &production{cfg: cfg, client: client, deps: deps}, nil
}

func (p *production) service() (*lifecycle.Service, error) {
	return lifecycle.NewService(p.cfg, p.deps)
}

func (p *production) Close() error { return p.client.Close() }

// seedCmd seeds sample.BenchTokens(n) through the service's own store and
// vault (encrypted as the service writes them).
func seedCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("seed", flag.ExitOnError)
	n := fs.Int("n", 10000, "tokens in the dataset")
	fs.Parse(args)
	start := time.Now()
	if err := seed(ctx, *n); err != nil {
		return err
	}
	progressf("seeded %d tokens in %.1f s", *n, time.Since(start).Seconds())
	return nil
}

func seed(ctx context.Context, n int) error {
	prod, err := openProduction(ctx, lifecycle.Needs{Store: true, Vault: true})
	if err != nil {
		return err
	}
	defer prod.Close()
	return seedTokens(ctx, prod.client, prod.deps.Cipher, sample.BenchTokens(n, time.Now().UTC()))
}

// seedTokens writes tokens through one BulkWriter: sample.Seed's one Create
// per token takes the emulator minutes at 100,000 tokens. Each document is
// the lifecycle.Token as its firestore tags encode it, the access token
// encrypted by the service's vault. (Unset timestamps are then stored as
// year 1 rather than null; the service reads both as unset.)
func seedTokens(ctx context.Context, client *firestore.Client, cipher lifecycle.TokenCipher, tokens []sample.Token) error {
	bw := client.BulkWriter(ctx)
	col := client.Collection(lifecycle.TokensCollection)
	jobs := make([]*firestore.BulkWriterJob, 0, len(tokens))
	for _, t := range tokens {
		doc := t.Token
		enc, err := cipher.Encrypt(doc.ItemID, t.Plaintext)
		if err != nil {
			return fmt.Errorf("encrypting sample token %s: %w", doc.ItemID, err)
		}
		doc.AccessToken = enc
		j, err := bw.Create(col.Doc(doc.ItemID), &doc)
		if err != nil {
			return fmt.Errorf("seeding %s: %w", doc.ItemID, err)
		}
		jobs = append(jobs, j)
	}
	bw.End()
	for i, j := range jobs {
		if _, err := j.Results(); err != nil && status.Code(err) != codes.AlreadyExists {
			return fmt.Errorf("seeding %s: %w", tokens[i].ItemID, err)
		}
	}
	return nil
}

// clearEmulator deletes every document of project in the emulator, so that
// the next measurement starts on an emulator holding only its own data.
func clearEmulator(project string) error {
	host := os.Getenv("FIRESTORE_EMULATOR_HOST")
	if host == "" {
		return fmt.Errorf("FIRESTORE_EMULATOR_HOST is not set: the benchmark runs on the emulator only")
	}
	u := "http://" + host + "/emulator/v1/projects/" + url.PathEscape(project) + "/databases/(default)/documents"
	req, err := http.NewRequest(http.MethodDelete, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("clearing emulator project %s: %s", project, resp.Status)
	}
	return nil
}
