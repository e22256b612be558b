package lifecycle

import (
	"context"
	"errors"
	"fmt"

	"cloud.google.com/go/firestore"
)

// TokenCipher encrypts and decrypts access tokens bound to their item id.
// *Vault implements it.
type TokenCipher interface {
	Encrypt(itemID, plaintext string) (string, error)
	Decrypt(itemID, stored string) (string, error)
}

// Service is the lifecycle's operations over their dependencies. The HTTP
// functions, the CloudEvent functions, the CLI and the local server all
// build one with NewService and call the same methods.
type Service struct {
	Store   TokenStore
	Records *Records
	Plaid   PlaidAPI
	Cipher  TokenCipher
	Clock   Clock
	Config  Config

	// CleanupPageSize and CleanupWorkers tune cleanup: documents read per
	// page (memory) and tokens in flight at once (concurrent Plaid calls).
	// Zero means the defaults; 1 and 1 give the one-document-at-a-time
	// baseline the benchmark compares against. NewService takes them from
	// CLEANUP_PAGE_SIZE and CLEANUP_CONCURRENCY.
	CleanupPageSize, CleanupWorkers int
}

// NewService checks that every dependency is present.
func NewService(cfg Config, store TokenStore, records *Records, plaid PlaidAPI, cipher TokenCipher, clock Clock) (*Service, error) {
	var errs []error
	if store == nil {
		errs = append(errs, errors.New("no token store"))
	}
	if records == nil {
		errs = append(errs, errors.New("no records store"))
	}
	if plaid == nil {
		errs = append(errs, errors.New("no Plaid client"))
	}
	if cipher == nil {
		errs = append(errs, errors.New("no token cipher"))
	}
	if clock == nil {
		clock = SystemClock{}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("building lifecycle service: %w", err)
	}
	return &Service{Store: store, Records: records, Plaid: plaid, Cipher: cipher, Clock: clock, Config: cfg,
		CleanupPageSize: cfg.CleanupPageSize, CleanupWorkers: cfg.CleanupConcurrency}, nil
}

// NewFirestoreService builds the production Service: Firestore store and
// records on client, the plaid-go adapter and the vault from cfg. A function
// that is not given the Plaid or vault secrets (Terraform passes each only
// the secrets it needs) gets a stand-in that refuses to act, naming the
// missing variable, instead of failing to start.
func NewFirestoreService(ctx context.Context, cfg Config, client *firestore.Client) (*Service, error) {
	var plaid PlaidAPI = unconfiguredPlaid{}
	if cfg.PlaidClientID != "" && cfg.PlaidSecret != "" {
		p, err := NewPlaidClientFromConfig(cfg)
		if err != nil {
			return nil, err
		}
		plaid = p
	}
	var cipher TokenCipher = unconfiguredCipher{}
	if cfg.EncryptionKey != "" {
		vault, err := NewVault(cfg.EncryptionKey, cfg.EncryptionKeyPrevious, cfg.EncryptionSalt)
		if err != nil {
			return nil, err
		}
		cipher = vault
	}
	return NewService(cfg, NewFirestoreStore(client), NewRecords(client), plaid, cipher, SystemClock{})
}

// unconfiguredPlaid stands in for Plaid in a program configured without
// Plaid credentials.
type unconfiguredPlaid struct{}

func (unconfiguredPlaid) err() error {
	return &PlaidError{Class: ClassConfig, Code: "NOT_CONFIGURED",
		Err: errors.New("PLAID_CLIENT_ID and PLAID_SECRET are not set for this program")}
}

func (p unconfiguredPlaid) GetItem(context.Context, string) (*Item, error) { return nil, p.err() }
func (p unconfiguredPlaid) RemoveItem(context.Context, string) error       { return p.err() }
func (p unconfiguredPlaid) WebhookVerificationKey(context.Context, string) (*WebhookKey, error) {
	return nil, p.err()
}

// unconfiguredCipher stands in for the vault in a program configured
// without TOKEN_ENCRYPTION_KEY.
type unconfiguredCipher struct{}

func (unconfiguredCipher) err() error {
	return Errorf(CodeUnavailable, "TOKEN_ENCRYPTION_KEY is not set for this program")
}

func (c unconfiguredCipher) Encrypt(string, string) (string, error) { return "", c.err() }
func (c unconfiguredCipher) Decrypt(string, string) (string, error) { return "", c.err() }
