package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sync/errgroup"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/internal/wait"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

var serveBinary = struct {
	once sync.Once
	path string
	err  error
	out  []byte
}{}

// buildServe builds scripts/serve once per test binary.
func buildServe(t *testing.T) string {
	t.Helper()
	serveBinary.once.Do(func() {
		dir, err := os.MkdirTemp("", "serve-test-")
		if err != nil {
			serveBinary.err = err
			return
		}
		serveBinary.path = filepath.Join(dir, "serve")
		serveBinary.out, serveBinary.err = exec.Command("go", "build", "-o", serveBinary.path, ".").CombinedOutput()
	})
	if serveBinary.err != nil {
		t.Fatalf("go build: %v\n%s", serveBinary.err, serveBinary.out)
	}
	return serveBinary.path
}

// startServe runs the serve binary on port for env's project, configured
// from the environment only (plus extra variables and args), until the
// test ends; it returns its base URL once healthy.
func startServe(t *testing.T, env *testenv.Env, port string, extra []string, args ...string) (string, *testenv.LogBuffer) {
	t.Helper()
	bin := buildServe(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	cmd.Env = append(append(os.Environ(),
		"PORT="+port,
		"GOOGLE_CLOUD_PROJECT="+env.Project,
		"TOKEN_ENCRYPTION_KEY="+testenv.EncryptionKey,
		"PLAID_CLIENT_ID="+env.Plaid.ClientID,
		"PLAID_SECRET="+env.Plaid.Secret,
		"PLAID_ENV=sandbox",
		"PLAID_BASE_URL="+env.Plaid.URL(),
		"AUTH_JWT_SECRET="+env.Config.AuthJWTSecret,
		"ADMIN_USER_IDS="+sample.AdminUser,
	), extra...)
	logs := &testenv.LogBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("serve output:\n%s", logs.String())
		}
	})
	base := "http://127.0.0.1:" + port
	waitHealthy(t, base)
	return base, logs
}

// analyticsOf returns GET analytics[?exact=true] and its analytics object.
func analyticsOf(t *testing.T, base, admin, query string) (map[string]any, map[string]any) {
	t.Helper()
	res := call(t, http.MethodGet, base+"/api/v1/plaid/tokens/analytics"+query, admin, nil)
	if res.status != http.StatusOK {
		t.Fatalf("analytics%s: HTTP %d %v", query, res.status, res.body)
	}
	return res.body, res.body["analytics"].(map[string]any)
}

// counts drops the keys of an analytics object that differ between the
// counters and a recount (as_of, source, trend).
func counts(a map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		switch k {
		case "as_of", "source", "trend":
		default:
			out[k] = v
		}
	}
	return out
}

// waitCounters waits until analytics come from the counters (serve's
// recount with repair on start is done).
func waitCounters(t *testing.T, base, admin string) {
	t.Helper()
	wait.Until(t, "serve to bring the counters up to date", 90*time.Second, func() bool {
		_, a := analyticsOf(t, base, admin, "")
		return a["source"] == lifecycle.SourceCounters
	})
}

// waitExact waits until the counters equal an exact recount on every key
// (?exact=true finds no drift and the counters' answer is the recount's),
// and returns the analytics.
func waitExact(t *testing.T, base, admin string, within time.Duration) map[string]any {
	t.Helper()
	var last string
	var fromCounters map[string]any
	agreed := wait.Poll(within, func() bool {
		body, exact := analyticsOf(t, base, admin, "?exact=true")
		report := body["exact"].(map[string]any)
		_, fromCounters = analyticsOf(t, base, admin, "")
		drift := report["drift"].(map[string]any)
		diff := cmp.Diff(counts(exact), counts(fromCounters))
		last = fmt.Sprintf("drift %v, users drifted %v, recount vs counters (-recount +counters):\n%s", drift, report["users_drifted"], diff)
		return len(drift) == 0 && report["users_drifted"] == 0.0 && diff == ""
	})
	if !agreed {
		t.Fatalf("the counters did not agree with an exact recount within %s; last: %s", within, last)
	}
	return fromCounters
}

// writeAsAnotherProcess writes tokens directly to Firestore, as the app's
// backend does, from several goroutines: creates, uses, status changes and
// deletes. It returns how many tokens it created.
func writeAsAnotherProcess(t *testing.T, w *testenv.TokenWriter, existing []string, workers, each int) int {
	t.Helper()
	var created sync.Map
	var g errgroup.Group
	for worker := range workers {
		g.Go(func() error {
			rng := rand.New(rand.NewPCG(uint64(worker), 3))
			mine := []string{}
			for i, id := range existing {
				if i%workers == worker {
					mine = append(mine, id)
				}
			}
			for i := range each {
				switch op := rng.IntN(5); {
				case op <= 1 || len(mine) == 0:
					id := fmt.Sprintf("item-other-%d-%03d", worker, i)
					tok := testenv.ActiveToken(id, fmt.Sprintf("user-other-%d", i%7), rng.IntN(100))
					tok.InstitutionName = []string{"Chase Bank", "Citi", "Ally"}[rng.IntN(3)]
					w.Set(t, id, testenv.TokenData(tok.Token))
					created.Store(id, true)
					mine = append(mine, id)
				case op == 2:
					w.Update(t, mine[rng.IntN(len(mine))], map[string]any{"last_used_at": time.Now().UTC()})
				case op == 3:
					w.Update(t, mine[rng.IntN(len(mine))], map[string]any{"status": "expired", "error_code": "ITEM_NOT_FOUND"})
				default:
					k := rng.IntN(len(mine))
					w.Delete(t, mine[k])
					mine = append(mine[:k], mine[k+1:]...)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	n := 0
	created.Range(func(any, any) bool { n++; return true })
	return n
}

func sampleIDs() []string {
	var ids []string
	for _, tok := range sample.Tokens(testenv.Now) {
		ids = append(ids, tok.ItemID)
	}
	return ids
}

// The serve binary keeps the analytics counters exact while another
// process writes tokens directly: its listener feeds them, after it first
// brought them up to date with what was stored before it started.
func TestServeKeepsAnalyticsExactUnderOtherWriters(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	env.SeedSample(t)
	base, _ := startServe(t, env, wait.Port(t), nil)
	admin := env.Bearer(t, sample.AdminUser)
	waitCounters(t, base, admin)
	_, a := analyticsOf(t, base, admin, "")
	if a["total_tokens"] != 15.0 || a["unique_users"] != 5.0 {
		t.Errorf("after serve's start: total %v, users %v; want the sample's 15 and 5", a["total_tokens"], a["unique_users"])
	}

	w := testenv.NewTokenWriter(env.Client)
	created := writeAsAnotherProcess(t, w, sampleIDs(), 4, 40)
	got := waitExact(t, base, admin, 60*time.Second)
	// The trend counts the creations of today.
	trend := got["trend"].([]any)
	today := trend[len(trend)-1].(map[string]any)
	if today["created"].(float64) < float64(created) {
		t.Errorf("today's trend %v, want at least the %d tokens created", today, created)
	}
}

// With -token-stats=trigger serve takes the Firestore emulator's own
// trigger deliveries (Eventarc's protobuf events, base64 in the body) and
// keeps the counters exact from them; writes made before it started are
// brought in by its recount with repair on start. Not parallel: it points
// this process's FIRESTORE_EMULATOR_HOST at an emulator of its own.
func TestServeCountsEmulatorTriggerDeliveries(t *testing.T) {
	env := testenv.New(t)
	port := wait.Port(t)
	trig := emulator.Triggering(t, "127.0.0.1:"+port)
	if err := emulator.RegisterTokenStatsTrigger(trig, env.Project); err != nil {
		t.Fatal(err)
	}
	t.Setenv(emulator.FirestoreHostEnv, trig) // this test's clients and serve use that emulator
	client := emulator.NewClientFor(t, env.Project)
	w := testenv.NewTokenWriter(client)
	// Before serve runs: these deliveries find nobody (the emulator does
	// not retry them).
	for _, tok := range sample.Tokens(testenv.Now) {
		w.Set(t, tok.ItemID, testenv.TokenData(tok.Token))
	}

	base, logs := startServe(t, env, port, []string{emulator.FirestoreHostEnv + "=" + trig}, "-token-stats=trigger")
	admin := env.Bearer(t, sample.AdminUser)
	waitCounters(t, base, admin)
	writeAsAnotherProcess(t, w, sampleIDs(), 3, 30)
	waitExact(t, base, admin, 60*time.Second)
	if n := len(logs.Entries(t, "token activity")); n == 0 {
		t.Error("no token activity logged from the trigger deliveries")
	}
}
