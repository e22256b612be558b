package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// TokenCipher encrypts and decrypts access tokens bound to their item id
// (DESIGN §6). *Vault implements it.
type TokenCipher interface {
	Encrypt(itemID, plaintext string) (string, error)
	Decrypt(itemID, stored string) (string, error)
	// NeedsReencrypt reports whether stored is not under the current key
	// (or not encrypted at all).
	NeedsReencrypt(stored string) bool
	// CurrentKeyID is the id of the key new ciphertexts carry.
	CurrentKeyID() string
}

// Deps are a Service's dependencies.
type Deps struct {
	Tokens    TokenStore  // required
	Runs      RunStore    // required
	Legacy    LegacyStore // for the legacy migration (and revoke-all of a user who has a legacy document)
	Stats     StatsStore  // the analytics counters; nil: analytics count every token
	Plaid     PlaidAPI    // required
	Cipher    TokenCipher // required
	Clock     Clock       // nil: the system clock
	Continuer Continuer   // nil: checkpointed runs are not handed over
}

// Service is the lifecycle's operations over their dependencies. The HTTP
// functions, the CloudEvent functions, the CLI and the local server all
// build one and call the same methods.
type Service struct {
	tokens    TokenStore
	runs      RunStore
	legacy    LegacyStore
	stats     StatsStore
	plaid     PlaidAPI
	cipher    TokenCipher
	clock     Clock
	continuer Continuer
	config    Config
}

// NewService checks that every required dependency is present.
func NewService(cfg Config, d Deps) (*Service, error) {
	var errs []error
	if d.Tokens == nil {
		errs = append(errs, errors.New("no token store"))
	}
	if d.Runs == nil {
		errs = append(errs, errors.New("no run store"))
	}
	if d.Plaid == nil {
		errs = append(errs, errors.New("no Plaid client"))
	}
	if d.Cipher == nil {
		errs = append(errs, errors.New("no token cipher"))
	}
	if d.Clock == nil {
		d.Clock = SystemClock{}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("building lifecycle service: %w", err)
	}
	return &Service{tokens: d.Tokens, runs: d.Runs, legacy: d.Legacy, stats: d.Stats, plaid: d.Plaid, cipher: d.Cipher,
		clock: d.Clock, continuer: d.Continuer, config: cfg}, nil
}

// Now is the service's time: its clock's.
func (s *Service) Now() time.Time { return s.clock.Now() }

// WebhookVerifier returns a verifier of Plaid's webhooks that fetches keys
// through the service's Plaid client, shares them through keys (nil: memory
// only) and tells time by the service's clock.
func (s *Service) WebhookVerifier(keys WebhookKeyStore) *WebhookVerifier {
	return NewWebhookVerifier(s.plaid, keys, s.clock)
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
func (p unconfiguredPlaid) CreateLinkToken(context.Context, LinkTokenRequest) (*LinkToken, error) {
	return nil, p.err()
}
func (p unconfiguredPlaid) ExchangePublicToken(context.Context, string) (*ExchangedItem, error) {
	return nil, p.err()
}
func (p unconfiguredPlaid) GetInstitution(context.Context, string, []string) (*Institution, error) {
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
func (unconfiguredCipher) NeedsReencrypt(string) bool               { return false }
func (unconfiguredCipher) CurrentKeyID() string                     { return "" }
