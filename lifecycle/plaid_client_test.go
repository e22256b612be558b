package lifecycle_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// plaidTestAttempts is MaxAttempts in these tests: a transient error is
// tried this many times, a permanent one once.
const plaidTestAttempts = 4

// newPlaidTestClient returns the real adapter pointed at fake, with fast
// retries and pacing generous enough not to matter unless mod says
// otherwise.
func newPlaidTestClient(t *testing.T, fake *plaidfake.Server, mod func(*lifecycle.PlaidClientConfig)) *lifecycle.PlaidClient {
	t.Helper()
	cfg := lifecycle.PlaidClientConfig{
		PlaidSettings: lifecycle.PlaidSettings{PlaidClientID: fake.ClientID, PlaidSecret: fake.Secret, PlaidEnv: "sandbox", PlaidBaseURL: fake.URL(), ItemGetRPM: 600000, ItemRemoveRPM: 600000},
		WebhookKeyRPM: 600000,
		MaxAttempts:   plaidTestAttempts,
		BaseBackoff:   time.Millisecond,
		MaxBackoff:    5 * time.Millisecond,
		MaxRetryTime:  10 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := lifecycle.NewPlaidClient(cfg)
	if err != nil {
		t.Fatalf("NewPlaidClient: %v", err)
	}
	return c
}

// plaidTestContext returns a context whose logger writes into the returned
// buffer, so tests can check what the adapter logs (and that no access
// token is in it).
func plaidTestContext(t *testing.T) (context.Context, *testenv.LogBuffer) {
	t.Helper()
	logs := &testenv.LogBuffer{}
	return lifecycle.WithLogger(context.Background(), slog.New(slog.NewJSONHandler(logs, nil))), logs
}

// plaidOutcome is what a test compares of an adapter error.
type plaidOutcome struct {
	Class      lifecycle.ErrorClass
	Type, Code string
	Status     int
	Calls      int
}

func outcomeOf(t *testing.T, err error, calls int) plaidOutcome {
	t.Helper()
	var pe *lifecycle.PlaidError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *lifecycle.PlaidError", err, err)
	}
	return plaidOutcome{Class: pe.Class, Type: pe.Type, Code: pe.Code, Status: pe.Status, Calls: calls}
}

// assertNoToken fails if the access token leaked into an error or the logs.
func assertNoToken(t *testing.T, token string, err error, logs *testenv.LogBuffer) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), token) {
		t.Errorf("error %q contains the access token", err)
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("logs contain the access token:\n%s", logs)
	}
}

func TestPlaidClientGetItem(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	fake.AddItem("access-sandbox-good", "item-good", "ins_109508")
	client := newPlaidTestClient(t, fake, nil)

	got, err := client.GetItem(context.Background(), "access-sandbox-good")
	if err != nil {
		t.Fatalf("GetItem: %v", err)
	}
	if diff := cmp.Diff(&lifecycle.Item{ItemID: "item-good", InstitutionID: "ins_109508"}, got); diff != "" {
		t.Errorf("item (-want +got):\n%s", diff)
	}
	calls := fake.Calls()
	if len(calls) != 1 || calls[0].PlaidVersion != "2020-09-14" || calls[0].AccessToken != "access-sandbox-good" {
		t.Errorf("calls = %+v, want one /item/get with Plaid-Version 2020-09-14", calls)
	}
}

// Every error code of DESIGN §7 answered as an HTTP error lands in its
// class; transient ones are retried up to MaxAttempts, the others not.
func TestPlaidClientClassifiesErrorAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code string
		want plaidOutcome
	}{
		{"ITEM_NOT_FOUND", plaidOutcome{lifecycle.ClassGone, "ITEM_ERROR", "ITEM_NOT_FOUND", 400, 1}},
		{"INVALID_ACCESS_TOKEN", plaidOutcome{lifecycle.ClassGone, "INVALID_INPUT", "INVALID_ACCESS_TOKEN", 400, 1}},
		{"USER_PERMISSION_REVOKED", plaidOutcome{lifecycle.ClassGone, "ITEM_ERROR", "USER_PERMISSION_REVOKED", 400, 1}},
		{"ITEM_LOGIN_REQUIRED", plaidOutcome{lifecycle.ClassNeedsUser, "ITEM_ERROR", "ITEM_LOGIN_REQUIRED", 400, 1}},
		{"PENDING_EXPIRATION", plaidOutcome{lifecycle.ClassNeedsUser, "ITEM_ERROR", "PENDING_EXPIRATION", 400, 1}},
		{"PENDING_DISCONNECT", plaidOutcome{lifecycle.ClassNeedsUser, "ITEM_ERROR", "PENDING_DISCONNECT", 400, 1}},
		{"RATE_LIMIT", plaidOutcome{lifecycle.ClassTransient, "RATE_LIMIT_EXCEEDED", "RATE_LIMIT", 429, plaidTestAttempts}},
		{"ITEM_GET_LIMIT", plaidOutcome{lifecycle.ClassTransient, "RATE_LIMIT_EXCEEDED", "ITEM_GET_LIMIT", 429, plaidTestAttempts}},
		{"INTERNAL_SERVER_ERROR", plaidOutcome{lifecycle.ClassTransient, "API_ERROR", "INTERNAL_SERVER_ERROR", 500, plaidTestAttempts}},
		{"PLANNED_MAINTENANCE", plaidOutcome{lifecycle.ClassTransient, "API_ERROR", "PLANNED_MAINTENANCE", 503, plaidTestAttempts}},
		{"INSTITUTION_DOWN", plaidOutcome{lifecycle.ClassTransient, "INSTITUTION_ERROR", "INSTITUTION_DOWN", 400, plaidTestAttempts}},
		{"INSTITUTION_NOT_RESPONDING", plaidOutcome{lifecycle.ClassTransient, "INSTITUTION_ERROR", "INSTITUTION_NOT_RESPONDING", 400, plaidTestAttempts}},
		{"INSTITUTION_NOT_AVAILABLE", plaidOutcome{lifecycle.ClassTransient, "INSTITUTION_ERROR", "INSTITUTION_NOT_AVAILABLE", 400, plaidTestAttempts}},
		{"INVALID_API_KEYS", plaidOutcome{lifecycle.ClassConfig, "INVALID_INPUT", "INVALID_API_KEYS", 400, 1}},
		{"UNAUTHORIZED_ENVIRONMENT", plaidOutcome{lifecycle.ClassConfig, "INVALID_INPUT", "UNAUTHORIZED_ENVIRONMENT", 400, 1}},
		{"INVALID_FIELD", plaidOutcome{lifecycle.ClassConfig, "INVALID_REQUEST", "INVALID_FIELD", 400, 1}},
		// An error the service does not know must never mark a token dead.
		{"SOME_FUTURE_ERROR", plaidOutcome{lifecycle.ClassConfig, "ITEM_ERROR", "SOME_FUTURE_ERROR", 400, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			t.Parallel()
			const token = "access-sandbox-classify-0001"
			fake := plaidfake.New(t)
			fake.AddItem(token, "item-1", "ins_1")
			fake.SetTokenError(token, tt.code)
			client := newPlaidTestClient(t, fake, nil)
			ctx, logs := plaidTestContext(t)

			item, err := client.GetItem(ctx, token)
			if item != nil {
				t.Errorf("GetItem returned an item with the error: %+v", item)
			}
			if diff := cmp.Diff(tt.want, outcomeOf(t, err, fake.CallCount("/item/get"))); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
			if pe := (*lifecycle.PlaidError)(nil); errors.As(err, &pe) && pe.RequestID == "" {
				t.Errorf("no request_id in %v", err)
			}
			assertNoToken(t, token, err, logs)
		})
	}
}

// A 200 whose item.error is set counts as that error code, with Status 0,
// and is not retried: it is the Item's state, not a failed call.
func TestPlaidClientClassifiesItemErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code string
		want plaidOutcome
	}{
		{"ITEM_NOT_FOUND", plaidOutcome{lifecycle.ClassGone, "ITEM_ERROR", "ITEM_NOT_FOUND", 0, 1}},
		{"USER_PERMISSION_REVOKED", plaidOutcome{lifecycle.ClassGone, "ITEM_ERROR", "USER_PERMISSION_REVOKED", 0, 1}},
		{"ITEM_LOGIN_REQUIRED", plaidOutcome{lifecycle.ClassNeedsUser, "ITEM_ERROR", "ITEM_LOGIN_REQUIRED", 0, 1}},
		{"PENDING_EXPIRATION", plaidOutcome{lifecycle.ClassNeedsUser, "ITEM_ERROR", "PENDING_EXPIRATION", 0, 1}},
		{"PENDING_DISCONNECT", plaidOutcome{lifecycle.ClassNeedsUser, "ITEM_ERROR", "PENDING_DISCONNECT", 0, 1}},
		{"INSTITUTION_DOWN", plaidOutcome{lifecycle.ClassTransient, "INSTITUTION_ERROR", "INSTITUTION_DOWN", 0, 1}},
		{"INSTITUTION_NOT_RESPONDING", plaidOutcome{lifecycle.ClassTransient, "INSTITUTION_ERROR", "INSTITUTION_NOT_RESPONDING", 0, 1}},
		{"ITEM_LOCKED", plaidOutcome{lifecycle.ClassNeedsUser, "ITEM_ERROR", "ITEM_LOCKED", 0, 1}},
		{"PRODUCT_NOT_READY", plaidOutcome{lifecycle.ClassConfig, "ITEM_ERROR", "PRODUCT_NOT_READY", 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			t.Parallel()
			const token = "access-sandbox-itemerror-0001"
			fake := plaidfake.New(t)
			fake.AddItem(token, "item-1", "ins_1")
			fake.SetItemError(token, tt.code)
			client := newPlaidTestClient(t, fake, nil)
			ctx, logs := plaidTestContext(t)

			_, err := client.GetItem(ctx, token)
			if diff := cmp.Diff(tt.want, outcomeOf(t, err, fake.CallCount("/item/get"))); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
			assertNoToken(t, token, err, logs)
		})
	}
}

func TestPlaidClientRetriesThenSucceeds(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	fake.AddItem("tok", "item-1", "ins_1")
	client := newPlaidTestClient(t, fake, nil)
	ctx, logs := plaidTestContext(t)

	fake.FailNext("/item/get", 1, 429, "RATE_LIMIT_EXCEEDED", "ITEM_GET_LIMIT")
	item, err := client.GetItem(ctx, "tok")
	if err != nil || item.ItemID != "item-1" {
		t.Fatalf("GetItem after one 429 = %+v, %v; want the item", item, err)
	}
	if n := fake.CallCount("/item/get"); n != 2 {
		t.Errorf("/item/get calls = %d, want 2 (the 429, then the success)", n)
	}
	if !strings.Contains(logs.String(), `"retrying Plaid call"`) || !strings.Contains(logs.String(), "ITEM_GET_LIMIT") {
		t.Errorf("no retry warning logged:\n%s", logs)
	}

	fake.FailNext("/item/remove", 2, 503, "API_ERROR", "PLANNED_MAINTENANCE")
	if err := client.RemoveItem(ctx, "tok"); err != nil {
		t.Fatalf("RemoveItem after two 503s: %v", err)
	}
	if n := fake.CallCount("/item/remove"); n != 3 || !fake.Removed("tok") {
		t.Errorf("/item/remove calls = %d, removed %v; want 3 calls and the Item removed", n, fake.Removed("tok"))
	}
}

// Outages that never end give up after MaxAttempts with the last transient
// error, whatever shape the failure has.
func TestPlaidClientGivesUpOnPersistentOutage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault func(*plaidfake.Server)
		want  plaidOutcome
	}{
		{
			name:  "500 INTERNAL_SERVER_ERROR",
			fault: func(f *plaidfake.Server) { f.FailAlways("/item/get", 500, "API_ERROR", "INTERNAL_SERVER_ERROR") },
			want:  plaidOutcome{lifecycle.ClassTransient, "API_ERROR", "INTERNAL_SERVER_ERROR", 500, plaidTestAttempts},
		},
		{
			name:  "502 page that is not JSON",
			fault: func(f *plaidfake.Server) { f.FailAlways("/item/get", 502, "", "") },
			want:  plaidOutcome{lifecycle.ClassTransient, "", "", 502, plaidTestAttempts},
		},
		{
			name:  "dropped connection",
			fault: func(f *plaidfake.Server) { f.FailAlways("/item/get", 0, "", "") },
			want:  plaidOutcome{lifecycle.ClassTransient, "", "", 0, plaidTestAttempts},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := plaidfake.New(t)
			fake.AddItem("tok", "item-1", "ins_1")
			tt.fault(fake)
			client := newPlaidTestClient(t, fake, nil)

			done := make(chan error, 1)
			go func() {
				_, err := client.GetItem(context.Background(), "tok")
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("GetItem did not return during a persistent outage")
			}
			if diff := cmp.Diff(tt.want, outcomeOf(t, err, fake.CallCount("/item/get"))); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
		})
	}
}

// A 4xx page that is not Plaid's JSON (a BaseURL that is not Plaid) is a
// configuration fault, tried once.
func TestPlaidClientUndecodable4xxIsConfiguration(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	fake.FailAlways("/item/get", 404, "", "")
	client := newPlaidTestClient(t, fake, nil)

	_, err := client.GetItem(context.Background(), "tok")
	want := plaidOutcome{Class: lifecycle.ClassConfig, Status: 404, Calls: 1}
	if diff := cmp.Diff(want, outcomeOf(t, err, fake.CallCount("/item/get"))); diff != "" {
		t.Errorf("outcome (-want +got):\n%s", diff)
	}
}

func TestPlaidClientRetryTimeBound(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	fake.FailAlways("/item/get", 503, "API_ERROR", "PLANNED_MAINTENANCE")
	client := newPlaidTestClient(t, fake, func(c *lifecycle.PlaidClientConfig) {
		// Unbounded, 1000 attempts 20-40ms apart would take over 20s.
		c.MaxAttempts = 1000
		c.BaseBackoff, c.MaxBackoff = 40*time.Millisecond, 40*time.Millisecond
		c.MaxRetryTime = 500 * time.Millisecond
	})

	start := time.Now()
	_, err := client.GetItem(context.Background(), "tok")
	elapsed := time.Since(start)
	got := outcomeOf(t, err, 0)
	if got.Class != lifecycle.ClassTransient {
		t.Errorf("class = %v, want transient", got.Class)
	}
	if n := fake.CallCount("/item/get"); n >= 1000 {
		t.Errorf("%d attempts: MaxRetryTime did not stop the retries", n)
	}
	if elapsed > 10*time.Second {
		t.Errorf("GetItem took %v with a 500ms MaxRetryTime", elapsed)
	}

	// A slow Plaid counts against the same bound.
	fake.ClearFaults()
	fake.AddItem("tok", "item-1", "ins_1")
	fake.SetLatency(time.Minute)
	_, err = client.GetItem(context.Background(), "tok")
	if got := outcomeOf(t, err, 0); got.Class != lifecycle.ClassTransient || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("slow Plaid: %v (class %v), want a transient deadline error", err, got.Class)
	}
}

func TestPlaidClientRemoveItem(t *testing.T) {
	t.Parallel()
	const token = "access-sandbox-remove-0001"
	tests := []struct {
		name        string
		setup       func(*plaidfake.Server)
		wantErr     *plaidOutcome
		wantRemoved bool
		wantCalls   int
	}{
		{
			name:        "removed",
			setup:       func(f *plaidfake.Server) { f.AddItem(token, "item-1", "ins_1") },
			wantRemoved: true, wantCalls: 1,
		},
		{
			name: "Item in an error state is removed",
			setup: func(f *plaidfake.Server) {
				f.AddItem(token, "item-1", "ins_1")
				f.SetItemError(token, "ITEM_LOGIN_REQUIRED")
			},
			wantRemoved: true, wantCalls: 1,
		},
		{
			name:      "ITEM_NOT_FOUND counts as removed",
			setup:     func(f *plaidfake.Server) { f.SetTokenError(token, "ITEM_NOT_FOUND") },
			wantCalls: 1,
		},
		{
			name:      "INVALID_ACCESS_TOKEN counts as removed",
			setup:     func(*plaidfake.Server) {}, // a token Plaid never issued
			wantCalls: 1,
		},
		{
			name: "answer lost, retry finds the Item gone",
			setup: func(f *plaidfake.Server) {
				f.AddItem(token, "item-1", "ins_1")
				f.FailNext("/item/remove", 1, 0, "", "") // connection dropped
				var once sync.Once
				f.OnCall(func(string, string) { once.Do(func() { f.SetTokenError(token, "ITEM_NOT_FOUND") }) })
			},
			wantCalls: 2,
		},
		{
			name: "outage",
			setup: func(f *plaidfake.Server) {
				f.AddItem(token, "item-1", "ins_1")
				f.FailAlways("/item/remove", 500, "API_ERROR", "INTERNAL_SERVER_ERROR")
			},
			wantErr:   &plaidOutcome{lifecycle.ClassTransient, "API_ERROR", "INTERNAL_SERVER_ERROR", 500, plaidTestAttempts},
			wantCalls: plaidTestAttempts,
		},
		{
			name:      "needs the user",
			setup:     func(f *plaidfake.Server) { f.SetTokenError(token, "ITEM_LOGIN_REQUIRED") },
			wantErr:   &plaidOutcome{lifecycle.ClassNeedsUser, "ITEM_ERROR", "ITEM_LOGIN_REQUIRED", 400, 1},
			wantCalls: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := plaidfake.New(t)
			tt.setup(fake)
			client := newPlaidTestClient(t, fake, nil)
			ctx, logs := plaidTestContext(t)

			err := client.RemoveItem(ctx, token)
			calls := fake.CallCount("/item/remove")
			switch {
			case tt.wantErr == nil && err != nil:
				t.Errorf("RemoveItem: %v, want nil", err)
			case tt.wantErr != nil:
				if diff := cmp.Diff(*tt.wantErr, outcomeOf(t, err, calls)); diff != "" {
					t.Errorf("outcome (-want +got):\n%s", diff)
				}
			}
			if calls != tt.wantCalls {
				t.Errorf("/item/remove calls = %d, want %d", calls, tt.wantCalls)
			}
			if fake.Removed(token) != tt.wantRemoved {
				t.Errorf("fake says removed = %v, want %v", fake.Removed(token), tt.wantRemoved)
			}
			assertNoToken(t, token, err, logs)
		})
	}
}

func TestPlaidClientStopsWhenContextEnds(t *testing.T) {
	t.Parallel()

	t.Run("slow call", func(t *testing.T) {
		t.Parallel()
		fake := plaidfake.New(t, plaidfake.WithLatency(time.Minute))
		fake.AddItem("tok", "item-1", "ins_1")
		client := newPlaidTestClient(t, fake, nil)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// Cancel once the request is at Plaid, so the call is cut mid-flight.
		fake.OnCall(func(string, string) { time.AfterFunc(50*time.Millisecond, cancel) })

		start := time.Now()
		_, err := client.GetItem(ctx, "tok")
		if got := outcomeOf(t, err, fake.CallCount("/item/get")); got.Class != lifecycle.ClassTransient || got.Calls != 1 {
			t.Errorf("outcome = %+v, want transient after 1 call", got)
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want it to wrap context.Canceled", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("GetItem took %v after its context ended", d)
		}
	})

	t.Run("cancelled while backing off", func(t *testing.T) {
		t.Parallel()
		fake := plaidfake.New(t)
		fake.FailAlways("/item/remove", 503, "API_ERROR", "PLANNED_MAINTENANCE")
		client := newPlaidTestClient(t, fake, func(c *lifecycle.PlaidClientConfig) {
			c.BaseBackoff, c.MaxBackoff, c.MaxRetryTime = time.Minute, time.Minute, time.Hour
		})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// Cancel once the first attempt is at Plaid; its 503 starts a
		// minute-long backoff.
		fake.OnCall(func(string, string) { time.AfterFunc(50*time.Millisecond, cancel) })

		err := client.RemoveItem(ctx, "tok")
		if got := outcomeOf(t, err, fake.CallCount("/item/remove")); got.Class != lifecycle.ClassTransient || got.Calls != 1 {
			t.Errorf("outcome = %+v, want transient after 1 call", got)
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want it to wrap context.Canceled", err)
		}
	})

	t.Run("deadline before the next retry", func(t *testing.T) {
		t.Parallel()
		fake := plaidfake.New(t)
		fake.FailAlways("/item/get", 503, "API_ERROR", "PLANNED_MAINTENANCE")
		client := newPlaidTestClient(t, fake, func(c *lifecycle.PlaidClientConfig) {
			c.BaseBackoff, c.MaxBackoff, c.MaxRetryTime = time.Minute, time.Minute, time.Hour
		})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()

		_, err := client.GetItem(ctx, "tok")
		want := plaidOutcome{lifecycle.ClassTransient, "API_ERROR", "PLANNED_MAINTENANCE", 503, 1}
		if diff := cmp.Diff(want, outcomeOf(t, err, fake.CallCount("/item/get"))); diff != "" {
			t.Errorf("outcome (-want +got):\n%s", diff)
		}
		if ctx.Err() != nil {
			t.Error("GetItem waited out its deadline instead of returning the last error")
		}
	})
}

func TestPlaidClientWrongCredentials(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	fake.AddItem("tok", "item-1", "ins_1")
	kid := fake.NewWebhookKey()
	client := newPlaidTestClient(t, fake, func(c *lifecycle.PlaidClientConfig) { c.PlaidSecret = "not-the-secret" })
	ctx, logs := plaidTestContext(t)
	want := plaidOutcome{lifecycle.ClassConfig, "INVALID_INPUT", "INVALID_API_KEYS", 400, 1}

	_, err := client.GetItem(ctx, "tok")
	if diff := cmp.Diff(want, outcomeOf(t, err, fake.CallCount("/item/get"))); diff != "" {
		t.Errorf("GetItem (-want +got):\n%s", diff)
	}
	err = client.RemoveItem(ctx, "tok")
	if diff := cmp.Diff(want, outcomeOf(t, err, fake.CallCount("/item/remove"))); diff != "" {
		t.Errorf("RemoveItem (-want +got):\n%s", diff)
	}
	if fake.Removed("tok") {
		t.Error("removed with wrong credentials")
	}
	_, err = client.WebhookVerificationKey(ctx, kid)
	if diff := cmp.Diff(want, outcomeOf(t, err, fake.CallCount("/webhook_verification_key/get"))); diff != "" {
		t.Errorf("WebhookVerificationKey (-want +got):\n%s", diff)
	}
	if strings.Contains(err.Error(), "not-the-secret") || strings.Contains(logs.String(), "not-the-secret") {
		t.Error("the secret leaked into an error or the logs")
	}
}

func TestPlaidClientWebhookVerificationKey(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	kid := fake.NewWebhookKey()
	client := newPlaidTestClient(t, fake, nil)
	ctx := context.Background()

	key, err := client.WebhookVerificationKey(ctx, kid)
	if err != nil {
		t.Fatalf("WebhookVerificationKey: %v", err)
	}
	if key.Alg != "ES256" || key.Crv != "P-256" || key.Kty != "EC" || key.Use != "sig" || key.KeyID != kid ||
		len(key.X) != 43 || len(key.Y) != 43 || key.CreatedAt == 0 || key.ExpiredAt != 0 {
		t.Errorf("key = %+v, want a valid ES256 P-256 JWK with unpadded 32-byte x, y", key)
	}

	fake.ExpireWebhookKey(kid)
	key, err = client.WebhookVerificationKey(ctx, kid)
	if err != nil || key.ExpiredAt == 0 {
		t.Errorf("expired key = %+v, %v; want ExpiredAt set", key, err)
	}

	_, err = client.WebhookVerificationKey(ctx, "unknown-kid")
	want := plaidOutcome{lifecycle.ClassConfig, "INVALID_INPUT", "INVALID_WEBHOOK_VERIFICATION_KEY_ID", 400, 3}
	if diff := cmp.Diff(want, outcomeOf(t, err, fake.CallCount("/webhook_verification_key/get"))); diff != "" {
		t.Errorf("unknown kid (-want +got):\n%s", diff)
	}
}

// TestPlaidClientPacesCalls fires concurrent calls for about three seconds
// and checks from the fake's arrival times that no window held more calls
// than ItemGetRPM allows. It asserts only the upper bound, never speed.
func TestPlaidClientPacesCalls(t *testing.T) {
	t.Parallel()
	const (
		rpm     = 600
		perSec  = rpm / 60.0
		burst   = rpm / 60 // the adapter's documented burst: one second's worth
		workers = 32
		// Arrival times are taken at the fake, after a loopback hop whose
		// delay varies (more under -race): allow that much of a window.
		arrivalJitter = 300 * time.Millisecond
	)
	fake := plaidfake.New(t)
	fake.AddItem("tok", "item-1", "ins_1")
	client := newPlaidTestClient(t, fake, func(c *lifecycle.PlaidClientConfig) { c.ItemGetRPM = rpm })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	var mu sync.Mutex
	var unexpected []error
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, err := client.GetItem(ctx, "tok")
				if err != nil && !errors.Is(err, context.DeadlineExceeded) {
					mu.Lock()
					unexpected = append(unexpected, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if len(unexpected) > 0 {
		t.Fatalf("calls failed other than by the test's deadline: %v", unexpected)
	}

	var times []time.Time
	for _, c := range fake.Calls() {
		times = append(times, c.Time)
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	if len(times) <= burst {
		t.Fatalf("only %d calls in 3s: the limiter let nothing through after the burst", len(times))
	}
	for i := range times {
		for j := i; j < len(times); j++ {
			window := times[j].Sub(times[i])
			limit := perSec*(window+arrivalJitter).Seconds() + burst
			if n := j - i + 1; float64(n) > limit {
				t.Fatalf("%d calls within %v (from call %d), more than %.1f/s × window + burst %d allows", n, window, i, perSec, burst)
			}
		}
	}
	t.Logf("%d calls in %v", len(times), times[len(times)-1].Sub(times[0]))
}

// recordingTransport answers every request with a canned /item/get body and
// remembers the request, to see what the adapter sends without a network.
type recordingTransport struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.mu.Lock()
	rt.reqs = append(rt.reqs, r)
	rt.mu.Unlock()
	body := `{"item":{"item_id":"item-1","institution_id":"ins_1","webhook":"","error":null,"available_products":[],"billed_products":[],"update_type":"background","consent_expiration_time":null},"request_id":"r1"}`
	return &http.Response{
		StatusCode: 200, Status: "200 OK", Request: r,
		Header: http.Header{"Content-Type": []string{"application/json"}},
		Body:   io.NopCloser(strings.NewReader(body)),
	}, nil
}

func TestNewPlaidClient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cfg      lifecycle.PlaidClientConfig
		wantErr  string // substring; empty means success
		wantHost string
	}{
		{name: "sandbox", cfg: lifecycle.PlaidClientConfig{PlaidSettings: lifecycle.PlaidSettings{PlaidClientID: "id", PlaidSecret: "s", PlaidEnv: "sandbox"}}, wantHost: "sandbox.plaid.com"},
		{name: "no env", cfg: lifecycle.PlaidClientConfig{PlaidSettings: lifecycle.PlaidSettings{PlaidClientID: "id", PlaidSecret: "s"}}, wantErr: "PlaidEnv is required"},
		{name: "production", cfg: lifecycle.PlaidClientConfig{PlaidSettings: lifecycle.PlaidSettings{PlaidClientID: "id", PlaidSecret: "s", PlaidEnv: "production"}}, wantHost: "production.plaid.com"},
		{name: "base URL override", cfg: lifecycle.PlaidClientConfig{PlaidSettings: lifecycle.PlaidSettings{PlaidClientID: "id", PlaidSecret: "s", PlaidEnv: "production", PlaidBaseURL: "http://127.0.0.1:9/"}}, wantHost: "127.0.0.1:9"},
		{name: "development is retired", cfg: lifecycle.PlaidClientConfig{PlaidSettings: lifecycle.PlaidSettings{PlaidClientID: "id", PlaidSecret: "s", PlaidEnv: "development"}}, wantErr: "retired"},
		{name: "unknown env", cfg: lifecycle.PlaidClientConfig{PlaidSettings: lifecycle.PlaidSettings{PlaidClientID: "id", PlaidSecret: "s", PlaidEnv: "staging"}}, wantErr: "sandbox or production"},
		{name: "missing credentials", cfg: lifecycle.PlaidClientConfig{}, wantErr: "PlaidClientID is required"},
		{name: "bad base URL", cfg: lifecycle.PlaidClientConfig{PlaidSettings: lifecycle.PlaidSettings{PlaidClientID: "id", PlaidSecret: "s", PlaidEnv: "sandbox", PlaidBaseURL: "plaid.local"}}, wantErr: "PlaidBaseURL"},
		{name: "negative rpm", cfg: lifecycle.PlaidClientConfig{PlaidSettings: lifecycle.PlaidSettings{PlaidClientID: "id", PlaidSecret: "s", PlaidEnv: "sandbox", ItemGetRPM: -1}}, wantErr: "ItemGetRPM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rt := &recordingTransport{}
			tt.cfg.HTTPClient = &http.Client{Transport: rt}
			client, err := lifecycle.NewPlaidClient(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewPlaidClient: %v", err)
			}
			if _, err := client.GetItem(context.Background(), "access-"+tt.cfg.PlaidEnv+"-x"); err != nil {
				t.Fatalf("GetItem: %v", err)
			}
			r := rt.reqs[0]
			got := []string{r.URL.Host, r.URL.Path, r.Header.Get("PLAID-CLIENT-ID"), r.Header.Get("PLAID-SECRET"), r.Header.Get("Plaid-Version")}
			want := []string{tt.wantHost, "/item/get", "id", "s", "2020-09-14"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("request host, path, headers (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("from Config", func(t *testing.T) {
		t.Parallel()
		cfg := lifecycle.Config{PlaidSettings: lifecycle.PlaidSettings{PlaidClientID: "id", PlaidSecret: "s", PlaidEnv: "production", ItemGetRPM: 5000, ItemRemoveRPM: 2000}}
		if _, err := lifecycle.NewPlaidClient(lifecycle.PlaidClientConfig{PlaidSettings: cfg.PlaidSettings}); err != nil {
			t.Errorf("NewPlaidClient: %v", err)
		}
		cfg.PlaidSecret = ""
		if _, err := lifecycle.NewPlaidClient(lifecycle.PlaidClientConfig{PlaidSettings: cfg.PlaidSettings}); err == nil {
			t.Error("NewPlaidClient without a secret: no error")
		}
	})
}

func TestClassifyPlaidError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		errType, code string
		status        int
		noAnswer      bool
		want          lifecycle.ErrorClass
	}{
		{"ITEM_ERROR", "ITEM_NOT_FOUND", 400, false, lifecycle.ClassGone},
		{"INVALID_INPUT", "INVALID_ACCESS_TOKEN", 400, false, lifecycle.ClassGone},
		{"ITEM_ERROR", "USER_PERMISSION_REVOKED", 0, false, lifecycle.ClassGone},
		{"ITEM_ERROR", "ITEM_LOGIN_REQUIRED", 400, false, lifecycle.ClassNeedsUser},
		{"ITEM_ERROR", "PENDING_EXPIRATION", 0, false, lifecycle.ClassNeedsUser},
		{"ITEM_ERROR", "PENDING_DISCONNECT", 0, false, lifecycle.ClassNeedsUser},
		{"ITEM_ERROR", "ITEM_LOCKED", 400, false, lifecycle.ClassNeedsUser},
		{"ITEM_ERROR", "INVALID_CREDENTIALS", 400, false, lifecycle.ClassNeedsUser},
		{"RATE_LIMIT_EXCEEDED", "ITEM_GET_LIMIT", 429, false, lifecycle.ClassTransient},
		{"RATE_LIMIT_EXCEEDED", "ANYTHING_NEW", 429, false, lifecycle.ClassTransient},
		{"API_ERROR", "INTERNAL_SERVER_ERROR", 500, false, lifecycle.ClassTransient},
		{"API_ERROR", "PLANNED_MAINTENANCE", 503, false, lifecycle.ClassTransient},
		{"INSTITUTION_ERROR", "INSTITUTION_DOWN", 400, false, lifecycle.ClassTransient},
		{"INSTITUTION_ERROR", "INSTITUTION_NOT_RESPONDING", 400, false, lifecycle.ClassTransient},
		{"", "INSTITUTION_SOMETHING", 400, false, lifecycle.ClassTransient},
		{"", "", 0, true, lifecycle.ClassTransient},    // connection error, timeout
		{"", "", 502, false, lifecycle.ClassTransient}, // undecodable 5xx
		{"", "", 429, false, lifecycle.ClassTransient},
		{"", "", 408, false, lifecycle.ClassTransient},
		{"INVALID_INPUT", "INVALID_API_KEYS", 400, false, lifecycle.ClassConfig},
		{"INVALID_REQUEST", "MISSING_FIELDS", 400, false, lifecycle.ClassConfig},
		{"INVALID_INPUT", "UNAUTHORIZED_ENVIRONMENT", 400, false, lifecycle.ClassConfig},
		{"ITEM_ERROR", "SOME_NEW_ITEM_CODE", 400, false, lifecycle.ClassConfig}, // unknown: never the token's death
		{"", "", 404, false, lifecycle.ClassConfig},                             // undecodable 4xx: not Plaid
		{"", "", 200, false, lifecycle.ClassConfig},                             // undecodable 200
	}
	for _, tt := range tests {
		if got := lifecycle.ClassifyPlaidError(tt.errType, tt.code, tt.status, tt.noAnswer); got != tt.want {
			t.Errorf("ClassifyPlaidError(%q, %q, %d, %v) = %v, want %v", tt.errType, tt.code, tt.status, tt.noAnswer, got, tt.want)
		}
	}
}

// DESIGN §7 rule 0 in the adapter: a token of another Plaid environment is
// never sent (a sandbox Plaid would answer INVALID_ACCESS_TOKEN, which
// reads as gone), and INVALID_ACCESS_TOKEN for a token that is not provably
// of this environment does not count as removed.
func TestPlaidClientOtherEnvironment(t *testing.T) {
	t.Parallel()
	fake := plaidfake.New(t)
	client := newPlaidTestClient(t, fake, nil) // sandbox
	ctx := context.Background()

	const production = "access-production-0f1e2d3c"
	_, getErr := client.GetItem(ctx, production)
	removeErr := client.RemoveItem(ctx, production)
	for name, err := range map[string]error{"GetItem": getErr, "RemoveItem": removeErr} {
		var pe *lifecycle.PlaidError
		if !errors.As(err, &pe) || pe.Class != lifecycle.ClassConfig || pe.Code != lifecycle.CodeWrongEnvironment {
			t.Errorf("%s of a production token on sandbox: %v, want a configuration error %s", name, err, lifecycle.CodeWrongEnvironment)
		}
	}
	if calls := fake.Calls(); len(calls) != 0 {
		t.Errorf("Plaid received %d calls for a token of another environment, want none: %+v", len(calls), calls)
	}

	// No environment in the token: Plaid's INVALID_ACCESS_TOKEN proves
	// nothing about the Item, so the removal did not happen.
	err := client.RemoveItem(ctx, "not-a-plaid-token")
	var pe *lifecycle.PlaidError
	if !errors.As(err, &pe) || pe.Code != "INVALID_ACCESS_TOKEN" || pe.Class != lifecycle.ClassConfig {
		t.Errorf("removal of a token of no environment answered INVALID_ACCESS_TOKEN: %v, want a configuration error, not success", err)
	}
	// Of this environment, it is gone: the removal succeeded.
	if err := client.RemoveItem(ctx, "access-sandbox-never-issued"); err != nil {
		t.Errorf("removal of a sandbox token Plaid does not know: %v, want success (gone)", err)
	}
}

func TestTokenEnvironment(t *testing.T) {
	t.Parallel()
	for token, want := range map[string]string{
		"access-sandbox-8ab976e6-64bc-4b38-98f7-731e7a349970": "sandbox",
		"access-production-8ab976e6":                          "production",
		"access-development-8ab976e6":                         "development",
		"public-sandbox-b0e2c4ee-a763-4df5-bfe9-46a46bce993d": "sandbox",
		"access-staging-x":                                    "",
		"access-sandbox":                                      "",
		"sandbox-x":                                           "",
		"":                                                    "",
	} {
		if got := lifecycle.TokenEnvironment(token); got != want {
			t.Errorf("TokenEnvironment(%q) = %q, want %q", token, got, want)
		}
	}
}
