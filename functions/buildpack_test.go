package functions

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/buildpack"
	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/internal/wait"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

var buildpackBinary = sync.OnceValues(func() (string, error) {
	root, err := buildpack.ModuleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "buildpack-bin-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "function")
	return out, buildpack.Build(context.Background(), root, out)
})

// deployedProcess runs the buildpack-built binary as one deployed function:
// FUNCTION_TARGET=target, serving at "/", configured by env only.
type deployedProcess struct {
	base string
	logs *testenv.LogBuffer
}

func startDeployed(t *testing.T, target string, env []string) *deployedProcess {
	t.Helper()
	bin, err := buildpackBinary()
	if err != nil {
		t.Fatal(err)
	}
	port := wait.Port(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), append(env, "FUNCTION_TARGET="+target, "PORT="+port, "LOCAL_ONLY=true")...)
	p := &deployedProcess{base: "http://127.0.0.1:" + port, logs: &testenv.LogBuffer{}}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", target, p.logs.String())
		}
	})
	if !wait.Poll(30*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}) {
		t.Fatalf("%s did not listen within 30 s:\n%s", target, p.logs.String())
	}
	return p
}

func (p *deployedProcess) do(t *testing.T, method, path, authorization string, header http.Header, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, p.base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// Every deployed function, built and run the way Google's Go buildpack runs
// it (a generated main, FUNCTION_TARGET, served at "/"), answers its
// requests at its root, refuses hostile item ids with the 404 of any other
// item through the Functions Framework's own mux, and writes nothing but
// Cloud Logging JSON lines, the framework's own error lines included.
func TestDeployedFunctionsAsTheBuildpackRunsThem(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	psHost := emulator.PubSubHost(t)
	config := []string{
		"GOOGLE_CLOUD_PROJECT=" + env.Project,
		"TOKEN_ENCRYPTION_KEY=" + testenv.EncryptionKey,
		"PLAID_CLIENT_ID=" + env.Plaid.ClientID, "PLAID_SECRET=" + env.Plaid.Secret, "PLAID_ENV=sandbox", "PLAID_BASE_URL=" + env.Plaid.URL(),
		"AUTH_JWT_SECRET=" + env.Config.AuthJWTSecret, "ADMIN_USER_IDS=" + sample.AdminUser,
		"PUBSUB_EMULATOR_HOST=" + psHost,
	}
	admin, alice := env.Bearer(t, sample.AdminUser), env.Bearer(t, sample.Alice)
	ceHeader := func(id string) http.Header {
		return http.Header{"Content-Type": {"application/json"}, "Ce-Specversion": {"1.0"}, "Ce-Id": {id},
			"Ce-Type": {PubSubEventType}, "Ce-Source": {"//pubsub.googleapis.com/projects/p/topics/t"}}
	}
	pubsubBody := func(msg string) []byte {
		b, _ := json.Marshal(map[string]any{"message": map[string]any{"data": []byte(msg), "messageId": "1"}, "subscription": "s"})
		return b
	}
	webhook := []byte(`{"webhook_type":"ITEM","webhook_code":"PENDING_EXPIRATION","item_id":"item-bob-chase","environment":"sandbox"}`)
	kid := env.Plaid.NewWebhookKey()
	// A token another writer created, as Eventarc delivers its
	// document.v1.written event (binary mode, application/protobuf), in a
	// project of its own: the other functions' writes reach no TokenStats
	// here, and WeeklyAnalytics' repair would account for them.
	statsProject := emulator.ProjectID(t)
	statsClient := emulator.NewClientFor(t, statsProject)
	fields := testenv.TokenData(testenv.ActiveToken("item-new", "user-new", 1).Token)
	res, err := statsClient.Collection(lifecycle.TokensCollection).Doc("item-new").Create(t.Context(), fields)
	if err != nil {
		t.Fatal(err)
	}
	created := res.UpdateTime
	newDoc := &testenv.FirestoreDoc{Path: "plaid_tokens/item-new", CreateTime: created, UpdateTime: created, Fields: fields}
	written, err := testenv.FirestoreEventData(statsProject, nil, newDoc, []string{})
	if err != nil {
		t.Fatal(err)
	}
	writtenHeader := http.Header{"Content-Type": {"application/protobuf"}, "Ce-Specversion": {"1.0"}, "Ce-Id": {"written-1"},
		"Ce-Type": {"google.cloud.firestore.document.v1.written"}, "Ce-Time": {created.Format(time.RFC3339Nano)},
		"Ce-Source":  {"//firestore.googleapis.com/projects/" + statsProject + "/databases/(default)"},
		"Ce-Subject": {"documents/plaid_tokens/item-new"}}
	// The Link flow's functions get a project and a Plaid of their own: the
	// Items they add and verify would change what the other cases count.
	linkEnv := testenv.New(t)
	linkEnv.SeedSample(t)
	linkConfig := []string{"GOOGLE_CLOUD_PROJECT=" + linkEnv.Project, "PLAID_BASE_URL=" + linkEnv.Plaid.URL()}
	public, err := linkEnv.Plaid.SandboxPublicToken("ins_109508")
	if err != nil {
		t.Fatal(err)
	}
	exchange := []byte(`{"public_token":"` + public + `","accounts":[{"id":"a1","name":"Plaid Checking","mask":"0000","type":"depository","subtype":"checking","verification_status":null}]}`)
	type request struct {
		method, path, auth string
		header             http.Header
		body               []byte
		status             int
		contains           string
		// signed: the body goes as a Plaid webhook, signed when sent (a
		// signature is good for 5 minutes, and starting every target
		// on a loaded machine can take longer).
		signed bool
	}
	cases := map[string][]request{
		"TokenCleanup": {
			{method: "DELETE", path: "/?dry_run=true", auth: admin, status: 200, contains: `"total_checked":15`},
			{method: "DELETE", path: "/api/v1/plaid/tokens/cleanup?dry_run=true", auth: admin, status: 200},
			{method: "DELETE", path: "/", auth: alice, status: 403},
			{method: "GET", path: "/runs/no-such-run", auth: admin, status: 404},
		},
		"TokenAnalytics": {
			{method: "GET", path: "/", auth: admin, status: 200, contains: `"total_tokens":15`},
			{method: "GET", path: "/", status: 401},
		},
		"RevokeItem": {
			{method: "DELETE", path: "/item-alice-chase", auth: alice, status: 200, contains: "Item revoked successfully"},
			{method: "DELETE", path: "/item-bob-chase", auth: alice, status: 404, contains: `"detail":"item not found"`},
			{method: "DELETE", path: "/%2e%2e", auth: alice, status: 404, contains: `"detail":"item not found"`},
			{method: "DELETE", path: "/__x__", auth: alice, status: 404, contains: `"detail":"item not found"`},
			{method: "DELETE", path: "/%FF", auth: alice, status: 404, contains: `"detail":"item not found"`},
		},
		"RevokeAllTokens": {
			{method: "DELETE", path: "/", auth: env.Bearer(t, sample.Carol), status: 200, contains: `"revoked_count"`},
		},
		"PlaidWebhook": {
			{method: "POST", path: "/", signed: true, body: webhook, status: 200},
			{method: "POST", path: "/", body: webhook, status: 401},
		},
		"DailyCleanup": {
			{method: "POST", path: "/", header: ceHeader("daily-1"), body: pubsubBody(`{"days_threshold":90,"dry_run":true}`), status: 200},
		},
		// Over its budget the run checkpoints and publishes to a topic that
		// does not exist: the function asks Pub/Sub to retry (500), and the
		// framework's "Function error" line must come out as JSON too.
		"DailyCleanup/handover-fails": {
			{method: "POST", path: "/", header: ceHeader("daily-2"), body: pubsubBody(`{"days_threshold":90,"dry_run":true}`), status: 500},
		},
		"WeeklyAnalytics": {
			{method: "POST", path: "/", header: ceHeader("weekly-1"), body: pubsubBody(`{}`), status: 200},
		},
		"TokenStats": {
			{method: "POST", path: "/", header: writtenHeader, body: written, status: 200},
			{method: "POST", path: "/", header: writtenHeader, body: written, status: 200}, // redelivered
		},
		"CreateLinkToken": {
			{method: "POST", path: "/", auth: alice, body: []byte(`{}`), status: 200, contains: `"mode":"create"`},
			{method: "POST", path: "/api/v1/plaid/link/token", auth: alice, body: []byte(`{"item_id":"item-alice-boa"}`), status: 200, contains: `"mode":"update"`},
			{method: "POST", path: "/", auth: alice, body: []byte(`{"item_id":"item-bob-chase"}`), status: 404, contains: `"detail":"item not found"`},
		},
		"ExchangePublicToken": {
			{method: "POST", path: "/", auth: alice, body: exchange, status: 201, contains: `"institution_name":"First Platypus Bank"`},
			{method: "POST", path: "/api/v1/plaid/items", auth: alice, body: exchange, status: 400, contains: `"code":"invalid_argument"`},
			{method: "GET", path: "/", auth: alice, status: 405},
		},
		"ListItems": {
			{method: "GET", path: "/", auth: alice, status: 200, contains: `"item_id":"item-alice-boa"`},
			{method: "GET", path: "/api/v1/plaid/items", auth: env.Bearer(t, sample.Bob), status: 200, contains: `"item_id":"item-bob-wells"`},
		},
		"VerifyItem": {
			{method: "POST", path: "/item-alice-boa/verify", auth: alice, status: 200, contains: `"needs_repair":false`},
			{method: "POST", path: "/api/v1/plaid/items/item-alice-boa/verify", auth: alice, status: 200, contains: `"item_id":"item-alice-boa"`},
			{method: "POST", path: "/item-bob-chase/verify", auth: alice, status: 404, contains: `"detail":"item not found"`},
		},
	}
	extra := map[string][]string{
		"DailyCleanup/handover-fails": {"RUN_TIME_BUDGET=1ns", "CLEANUP_PAGE_SIZE=5", "CLEANUP_TOPIC=no-such-topic"},
		"TokenStats":                  {"GOOGLE_CLOUD_PROJECT=" + statsProject}, // the last value of a variable wins
		"CreateLinkToken":             linkConfig,
		"ExchangePublicToken":         linkConfig,
		"ListItems":                   linkConfig,
		"VerifyItem":                  linkConfig,
	}
	for target := range TargetNeeds {
		if _, ok := cases[target]; !ok {
			t.Errorf("no deployed test for target %s", target)
		}
	}
	for name, requests := range cases {
		target, _, _ := strings.Cut(name, "/")
		t.Run(name, func(t *testing.T) {
			p := startDeployed(t, target, append(config, extra[name]...))
			for _, r := range requests {
				if r.signed {
					sig, err := env.Plaid.SignWebhook(kid, r.body, time.Now())
					if err != nil {
						t.Fatal(err)
					}
					r.header = http.Header{"Plaid-Verification": {sig}}
				}
				status, body := p.do(t, r.method, r.path, r.auth, r.header, r.body)
				if status != r.status || !strings.Contains(body, r.contains) {
					t.Errorf("%s %s: %d %s, want %d containing %q", r.method, r.path, status, body, r.status, r.contains)
				}
			}
			if name == "DailyCleanup/handover-fails" {
				// The framework's "Function error" line passes through the
				// stderr forwarder, asynchronously.
				wait.Until(t, "the framework to log the function error", 10*time.Second, func() bool { return strings.Contains(p.logs.String(), "Function error") })
			}
			// Every line the process wrote is one JSON object with a
			// severity and a message (DESIGN §11).
			for _, line := range strings.Split(strings.TrimSpace(p.logs.String()), "\n") {
				if line == "" {
					continue
				}
				var entry map[string]any
				if err := json.Unmarshal([]byte(line), &entry); err != nil || entry["severity"] == nil || entry["message"] == nil {
					t.Errorf("%s wrote a line that is not a Cloud Logging JSON entry: %q", target, line)
				}
			}
		})
	}
	// TokenStats counted the created token once, however often delivered.
	stats, err := lifecycle.NewFirestoreStatsStore(statsClient).ReadStats(t.Context(), lifecycle.StatsRead{})
	if err != nil {
		t.Fatal(err)
	}
	if got := stats.Counters["tokens"]["total"]; got != 1 {
		t.Errorf("TokenStats counted %d tokens after one creation delivered twice, want 1", got)
	}
	// The exchange stored the Item Plaid created, for Alice; no answer
	// carried its token.
	if ex := linkEnv.Plaid.Exchanges(); len(ex) != 1 {
		t.Errorf("%d exchanges at Plaid, want 1", len(ex))
	} else if doc := linkEnv.Doc(t, ex[0].ItemID); doc == nil || doc.UserID != sample.Alice {
		t.Errorf("exchanged Item %s stored as %+v", ex[0].ItemID, doc)
	}
	// The revocation reached Firestore and Plaid.
	if doc := env.Doc(t, "item-alice-chase"); doc == nil || doc.Status != lifecycle.StatusRevoked {
		t.Errorf("item-alice-chase = %+v, want revoked", doc)
	}
	if diff := cmp.Diff(true, env.Plaid.Removed("access-sandbox-item-alice-chase")); diff != "" {
		t.Errorf("removed at Plaid (-want +got):\n%s", diff)
	}
}
