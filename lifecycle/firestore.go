package lifecycle

import (
	"context"
	"errors"
	"fmt"

	"cloud.google.com/go/firestore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FirestoreStores are the Firestore adapters of the store interfaces, over
// one client.
type FirestoreStores struct {
	Tokens      *FirestoreTokenStore
	Runs        *FirestoreRunStore
	Legacy      *FirestoreLegacyStore
	Stats       *FirestoreStatsStore
	WebhookKeys *FirestoreWebhookKeyStore
}

// NewFirestoreStores returns every store over client.
func NewFirestoreStores(client *firestore.Client) FirestoreStores {
	return FirestoreStores{
		Tokens:      NewFirestoreTokenStore(client),
		Runs:        NewFirestoreRunStore(client),
		Legacy:      &FirestoreLegacyStore{client: client},
		Stats:       NewFirestoreStatsStore(client),
		WebhookKeys: NewFirestoreWebhookKeyStore(client),
	}
}

// NewFirestoreClient opens a Firestore client for cfg's project and
// database. The client library honours FIRESTORE_EMULATOR_HOST.
func NewFirestoreClient(ctx context.Context, cfg Config) (*firestore.Client, error) {
	if cfg.Project == "" {
		return nil, errors.New("GOOGLE_CLOUD_PROJECT is required: the Firestore project id")
	}
	db := cfg.FirestoreDatabase
	if db == "" {
		db = DefaultFirestoreDatabase
	}
	client, err := firestore.NewClientWithDatabase(ctx, cfg.Project, db)
	if err != nil {
		return nil, fmt.Errorf("opening Firestore %s/%s: %w", cfg.Project, db, err)
	}
	return client, nil
}

// NewFirestoreService builds the production Service: NewFirestoreDeps's
// dependencies, as they are.
func NewFirestoreService(cfg Config, client *firestore.Client, continuer Continuer) (*Service, error) {
	deps, err := NewFirestoreDeps(cfg, client, continuer)
	if err != nil {
		return nil, err
	}
	return NewService(cfg, deps)
}

// NewFirestoreDeps returns the production dependencies: the Firestore
// stores on client, the plaid-go adapter and the vault from cfg. A function
// that is not given the Plaid or vault secrets (Terraform passes each only
// the secrets it needs) gets a stand-in that refuses to act, naming the
// missing variable, instead of failing to start. A program that measures
// the service (scripts/bench) wraps some of them before NewService.
func NewFirestoreDeps(cfg Config, client *firestore.Client, continuer Continuer) (Deps, error) {
	var plaid PlaidAPI = unconfiguredPlaid{}
	if cfg.PlaidClientID != "" && cfg.PlaidSecret != "" {
		// Every instance paces its Plaid calls on one shared quota.
		pacer := NewSharedPacer(NewFirestoreQuotaStore(client), cfg.PlaidSettings)
		p, err := NewPlaidClient(PlaidClientConfig{PlaidSettings: cfg.PlaidSettings, Pacer: pacer})
		if err != nil {
			return Deps{}, err
		}
		plaid = p
	}
	var cipher TokenCipher = unconfiguredCipher{}
	if cfg.EncryptionKey != "" {
		vault, err := NewVault(cfg.EncryptionKey, cfg.EncryptionKeyPrevious, cfg.EncryptionSalt)
		if err != nil {
			return Deps{}, err
		}
		cipher = vault
	}
	stores := NewFirestoreStores(client)
	return Deps{
		Tokens: stores.Tokens, Runs: stores.Runs, Legacy: stores.Legacy, Stats: stores.Stats,
		Plaid: plaid, Cipher: cipher, Continuer: continuer,
	}, nil
}

// storeError maps a Firestore error onto the service's error codes.
func storeError(err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	switch status.Code(err) {
	case codes.NotFound:
		return errors.Join(ErrNotFound, err)
	case codes.FailedPrecondition, codes.AlreadyExists, codes.Aborted:
		return errors.Join(ErrChanged, err)
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return WrapError(CodeUnavailable, err, "Firestore is unavailable")
	case codes.Canceled:
		return err
	}
	return err
}

// queryError maps a failed query. FailedPrecondition here means a missing
// index, not a changed document (what storeError would make of it): an
// operator's fault that a retry does not fix.
func queryError(what string, err error) error {
	if status.Code(err) == codes.FailedPrecondition {
		return WrapError(CodeInternal, err, what+": Firestore refused the query (missing index?)")
	}
	return fmt.Errorf("%s: %w", what, storeError(err))
}

func isNotFound(err error) bool { return status.Code(err) == codes.NotFound }
