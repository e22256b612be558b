package functions

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// pubsubTopic creates the cleanup topic and an Eventarc-like subscription
// on it in the Pub/Sub emulator, for project.
func pubsubTopic(t *testing.T, project string) (client *pubsub.Client, topic, sub string) {
	t.Helper()
	emulator.PubSubHost(t)
	ctx := context.Background()
	client, err := pubsub.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	topic = "projects/" + project + "/topics/" + lifecycle.DefaultCleanupTopic
	sub = "projects/" + project + "/subscriptions/eventarc-daily-cleanup"
	if _, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name: sub, Topic: topic, AckDeadlineSeconds: 60}); err != nil {
		t.Fatal(err)
	}
	return client, topic, sub
}

// deliverPulled pulls what the subscription holds and delivers each message
// to DailyCleanup as Eventarc does (a messagePublished CloudEvent whose id
// is the message id), acknowledging it when the handler returns nil. It
// returns how many messages it delivered.
func deliverPulled(t *testing.T, s *Server, client *pubsub.Client, project, sub string) int {
	t.Helper()
	ctx := context.Background()
	// The emulator holds an empty pull open for a minute: wait a few
	// seconds, then take it as empty.
	pullCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := client.SubscriptionAdminClient.Pull(pullCtx, &pubsubpb.PullRequest{Subscription: sub, MaxMessages: 10})
	if pullCtx.Err() != nil {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, rm := range resp.ReceivedMessages {
		e := testenv.PubSubEvent(t, rm.Message.MessageId, lifecycle.DefaultCleanupTopic, rm.Message.Data)
		if err := s.DailyCleanup(ctx, e); err != nil {
			t.Fatalf("DailyCleanup of message %s: %v", rm.Message.MessageId, err)
		}
		if err := client.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{
			Subscription: sub, AckIds: []string{rm.AckId}}); err != nil {
			t.Fatal(err)
		}
	}
	return len(resp.ReceivedMessages)
}

// A scheduled run over its budget publishes its continuation to the real
// Pub/Sub emulator's topic; each message, pulled and delivered as Eventarc
// would, continues the run until it is done, with the totals of one
// uninterrupted run.
func TestDailyCleanupContinuesThroughPubSub(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.WithConfig(func(c *lifecycle.Config) {
		c.CleanupPageSize, c.RunTimeBudget = 100, time.Nanosecond
	}))
	const n = 350
	var tokens []sample.Token
	for i := range n {
		tok := testenv.ActiveToken(fmt.Sprintf("item-ps-%04d", i), "u", 3)
		if i%5 == 0 {
			tok = testenv.ActiveToken(tok.ItemID, "u", 200) // stale
		}
		tokens = append(tokens, tok)
	}
	env.Seed(t, tokens...)
	client, _, sub := pubsubTopic(t, env.Project)
	s := newTestServer(t, env, &PubSubContinuer{Project: env.Project, Topic: lifecycle.DefaultCleanupTopic})

	if err := s.DailyCleanup(context.Background(), testenv.PubSubEvent(t, "sched-1", lifecycle.DefaultCleanupTopic,
		[]byte(`{"days_threshold": 90}`))); err != nil {
		t.Fatal(err)
	}
	delivered := 0
	deadline := time.Now().Add(60 * time.Second)
	for {
		runs := env.CleanupRuns(t)
		if len(runs) == 1 && runs[0].Status.Finished() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run not finished after %d continuations: %+v", delivered, runs)
		}
		delivered += deliverPulled(t, s, client, env.Project, sub)
	}
	run := env.CleanupRuns(t)[0]
	want := lifecycle.Statistics{TotalChecked: n, StaleRemoved: n / 5, TotalCleaned: n / 5, Validated: n - n/5}
	if diff := cmp.Diff(want, run.Statistics); diff != "" {
		t.Errorf("run totals (-want +got):\n%s", diff)
	}
	if run.Status != lifecycle.RunSucceeded || run.Invocations != delivered+1 || delivered < 3 {
		t.Errorf("run %s after %d invocations, %d continuations delivered", run.Status, run.Invocations, delivered)
	}
	if extra := deliverPulled(t, s, client, env.Project, sub); extra != 0 {
		t.Errorf("%d messages left on the topic after the run finished", extra)
	}
}

// TokenCleanup with async=true answers 202 with the run id at once and
// hands the run to the cleanup topic; its status URL reports it (DESIGN
// §4). A synchronous run that reaches HTTP_RUN_TIME_BUDGET answers 202 the
// same way, with the totals so far.
func TestTokenCleanupHandsOver(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, query string
		budget      time.Duration
		wantMessage string
	}{
		{"async", "?async=true", time.Hour, "Token cleanup started"},
		{"over the HTTP budget", "", time.Nanosecond, "Token cleanup continues in the background"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := testenv.New(t, testenv.WithConfig(func(c *lifecycle.Config) {
				c.CleanupPageSize, c.HTTPRunTimeBudget = 5, tc.budget
			}))
			env.SeedSample(t)
			continuer := &testenv.Continuer{}
			s := newTestServer(t, env, continuer)
			admin := env.Bearer(t, sample.AdminUser)

			res := do(t, s.Routes(), http.MethodDelete, PathCleanup+tc.query, admin)
			if res.status != http.StatusAccepted || res.body["message"] != tc.wantMessage {
				t.Fatalf("status %d body %v, want 202 %q", res.status, res.body, tc.wantMessage)
			}
			runID, _ := res.body["run_id"].(string)
			if res.body["status_url"] != PathCleanupRuns+runID || runID == "" {
				t.Errorf("status_url = %v for run %q", res.body["status_url"], runID)
			}
			if got := continuer.Take(); len(got) != 1 || got[0] != runID {
				t.Fatalf("continuations queued = %v, want [%s]", got, runID)
			}

			// The run goes on in DailyCleanup invocations.
			for i := 0; ; i++ {
				status := do(t, s.Routes(), http.MethodGet, PathCleanupRuns+runID, admin)
				if status.status != http.StatusOK {
					t.Fatalf("GET run: %d %v", status.status, status.body)
				}
				if status.body["status"] == string(lifecycle.RunSucceeded) {
					var run lifecycle.RunRecord
					raw, _ := json.Marshal(status.body)
					if err := json.Unmarshal(raw, &run); err != nil {
						t.Fatal(err)
					}
					if diff := cmp.Diff(testenv.SampleStatistics, run.Statistics); diff != "" {
						t.Errorf("run statistics (-want +got):\n%s", diff)
					}
					break
				}
				if i > 10 {
					t.Fatalf("run never finished: %v", status.body)
				}
				if err := s.DailyCleanup(context.Background(), testenv.PubSubEvent(t, fmt.Sprintf("cont-%d", i),
					lifecycle.DefaultCleanupTopic, []byte(`{"continue_run_id": "`+runID+`"}`))); err != nil {
					t.Fatal(err)
				}
			}
			// Only admins see runs; an unknown run is 404.
			if r := do(t, s.Routes(), http.MethodGet, PathCleanupRuns+runID, env.Bearer(t, sample.Alice)); r.status != http.StatusForbidden {
				t.Errorf("user GET run: %d", r.status)
			}
			if r := do(t, s.Routes(), http.MethodGet, PathCleanupRuns+"no-such-run", admin); r.status != http.StatusNotFound {
				t.Errorf("unknown run: %d %v", r.status, r.body)
			}
			if r := do(t, s.TokenCleanupHandler(), http.MethodGet, "/runs/"+runID, admin); r.status != http.StatusOK {
				t.Errorf("deployed GET /runs/{id}: %d %v", r.status, r.body)
			}
		})
	}
}

// A revocation that went local (Plaid down) publishes its early removal to
// the real Pub/Sub emulator's cleanup topic; delivered to DailyCleanup as
// Eventarc would, it removes the Item at Plaid once Plaid is back.
func TestRevocationEarlyRemovalThroughPubSub(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	client, _, sub := pubsubTopic(t, env.Project)
	s := newTestServer(t, env, &PubSubContinuer{Project: env.Project, Topic: lifecycle.DefaultCleanupTopic})

	env.Plaid.FailAlways("/item/remove", 500, "API_ERROR", "INTERNAL_SERVER_ERROR")
	res := apiCall(t, s.Routes(), http.MethodDelete, "/api/v1/plaid/items/item-carol-citi", env.Bearer(t, sample.Carol), nil)
	if res.Status != http.StatusOK {
		t.Fatalf("revoke with Plaid down: %d %s", res.Status, res.Raw)
	}
	if doc := env.Doc(t, "item-carol-citi"); doc.Status != lifecycle.StatusRevoked || doc.PlaidRemoved {
		t.Fatalf("after the revocation: %s, plaid_removed %v", doc.Status, doc.PlaidRemoved)
	}
	env.Plaid.ClearFaults()
	if n := deliverPulled(t, s, client, env.Project, sub); n != 1 {
		t.Fatalf("delivered %d messages from the cleanup topic, want the one early removal", n)
	}
	if !env.Plaid.Removed("access-sandbox-item-carol-citi") {
		t.Error("the early removal did not remove the Item at Plaid")
	}
	if doc := env.Doc(t, "item-carol-citi"); !doc.PlaidRemoved {
		t.Error("the document does not record the removal")
	}
	if runs := env.CleanupRuns(t); len(runs) != 0 {
		t.Errorf("an early removal started %d cleanup runs", len(runs))
	}
}
