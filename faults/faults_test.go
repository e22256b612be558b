package faults

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/finwell/plaid-token-lifecycle/functions"
	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/wait"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// TestFaultInjection runs every scenario, in parallel, each in a Firestore
// project of its own with a fake Plaid of its own. Each ends with the
// invariants (invariants_test.go); TestMain prints the summary line.
func TestFaultInjection(t *testing.T) {
	for _, sc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"plaid_faults", plaidFaults},
		{"firestore_outage", firestoreOutage},
		{"redelivered_event", redeliveredEvent},
		{"two_cleanups_at_once", twoCleanupsAtOnce},
		{"another_writer", anotherWriter},
		{"kill_9", kill9},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			sc.run(t)
		})
	}
}

// Scenario 1. Plaid fails at random (429, 500, timeouts, resets, lost
// answers) while a CLI cleanup runs and users revoke items through
// scripts/serve; then a rerun with Plaid healthy finishes the work.
func plaidFaults(t *testing.T) {
	w := newWorld(t, "plaid_faults", "")
	w.seed(w.fleet("pf", 300))
	_, base := w.serve()

	// Four users revoke their items in use one by one, two revoke all.
	var revokeItems []string
	for u := range 4 {
		user := fmt.Sprintf("pf-user-%02d", u)
		revokeItems = append(revokeItems, w.itemsOf(func(f *tokenFacts) bool {
			return f.userID == user && (f.class == classRecent || f.class == classLegacyError)
		})...)
	}
	revokeAllUsers := []string{"pf-user-04", "pf-user-05"}
	for _, id := range revokeItems {
		w.update(id, func(f *tokenFacts) { f.userRevoked = true })
	}
	for _, u := range revokeAllUsers {
		for _, id := range w.itemsOf(func(f *tokenFacts) bool { return f.userID == u }) {
			w.update(id, func(f *tokenFacts) { f.userRevoked = true })
		}
	}

	// Some Items fail every call, whatever the retries: the rules must
	// change nothing for them (a transient or an institution's fault is
	// never the token's), and a user's revocation revokes locally at once.
	persistent := map[string]string{}
	errorCodes := []string{"INTERNAL_SERVER_ERROR", "ITEM_GET_LIMIT", "INSTITUTION_DOWN", "PLANNED_MAINTENANCE"}
	pick := func(n int, keep func(*tokenFacts) bool) {
		for _, id := range w.itemsOf(keep) {
			if n == 0 {
				return
			}
			if _, taken := persistent[id]; !taken {
				persistent[id] = errorCodes[len(persistent)%len(errorCodes)]
				n--
			}
		}
	}
	pick(8, func(f *tokenFacts) bool { return f.class == classRecent && !f.userRevoked })
	pick(2, func(f *tokenFacts) bool { return f.class == classStale })
	pick(2, func(f *tokenFacts) bool { return f.class == classExpired && !f.userRevoked })
	pick(2, func(f *tokenFacts) bool { return slices.Contains(revokeItems, f.itemID) })
	for id, code := range persistent {
		w.fake.SetTokenError(w.fact(id).plaintext, code)
	}
	// And 15% of all requests fail at random, every kind; the seed fixes
	// which attempts.
	w.fake.SetRandomFaults(0.15, 20261130)
	cleanup := w.cli("cleanup-under-faults", "cleanup", "--days", fmt.Sprint(staleDays), "--json")
	wait.Until(t, "the cleanup's first Plaid call", time.Minute, func() bool { return len(w.fake.Calls()) > 0 })

	type revocation struct {
		user, itemID string // itemID "" for revoke-all
		answer       httpAnswer
	}
	var mu sync.Mutex
	var revocations []revocation
	var g errgroup.Group
	revoke := func(user, itemID, url string) {
		authorization := bearer(t, user)
		g.Go(func() error {
			a := call(context.Background(), http.MethodDelete, url, authorization)
			mu.Lock()
			revocations = append(revocations, revocation{user, itemID, a})
			mu.Unlock()
			return nil
		})
	}
	for _, id := range revokeItems {
		revoke(w.fact(id).userID, id, base+functions.PathItemPrefix+id)
	}
	for _, u := range revokeAllUsers {
		revoke(u, "", base+functions.PathRevokeAll)
	}
	_ = g.Wait()
	cleanup.wait(t, 3*time.Minute)
	report := cleanup.report(t)
	if w.fake.FaultsInjected() == 0 {
		t.Fatal("the fake Plaid injected no fault: this scenario would prove nothing")
	}
	t.Logf("Plaid faults injected during the run and revocations: %v", w.fake.InjectedFaults())

	docs := w.docs()
	for _, r := range revocations {
		switch {
		case r.answer.err != nil:
			t.Errorf("revocation by %s of %q: %v", r.user, r.itemID, r.answer.err)
		case r.itemID == "":
			if r.answer.status != http.StatusOK || !strings.HasPrefix(fmt.Sprint(r.answer.body["message"]), "Revoked ") {
				t.Errorf("revoke-all by %s: HTTP %d %v, want 200 (Plaid faults never fail a revocation)", r.user, r.answer.status, r.answer.body)
			}
		case r.answer.status == http.StatusOK:
			if d, ok := docs[r.itemID]; ok && d.status != lifecycle.StatusRevoked {
				t.Errorf("%s answered revoked but its document is %s", r.itemID, d.status)
			}
		case r.answer.status == http.StatusNotFound:
			if _, ok := docs[r.itemID]; ok {
				t.Errorf("revoking %s answered 404 but the document exists", r.itemID)
			}
		default:
			t.Errorf("revoking %s: HTTP %d %v, want 200 (Plaid faults never fail a revocation)", r.itemID, r.answer.status, r.answer.body)
		}
	}
	if run := w.run(report.RunID); run.Statistics != report.Statistics {
		t.Errorf("the CLI reported %+v, its run record says %+v", report.Statistics, run.Statistics)
	}

	// What failed at every attempt is kept as it was, for the next run.
	for id := range persistent {
		f := w.fact(id)
		d, present := docs[id]
		want := lifecycle.StatusActive
		switch {
		case f.userRevoked:
			want = lifecycle.StatusRevoked
		case f.class == classExpired:
			want = lifecycle.StatusExpired
		}
		if !present || d.status != want || d.plaidRemoved {
			t.Errorf("%s (%s) failed at Plaid on every attempt (%s): document present %v, %s, plaid_removed %v; want %s, not removed",
				id, f.class, persistent[id], present, d.status, d.plaidRemoved, want)
		}
	}
	if report.Statistics.Errors < len(persistent) {
		t.Errorf("the run counted %d errors; %d tokens failed at Plaid on every attempt", report.Statistics.Errors, len(persistent))
	}
	persistentCalls := 0
	for _, c := range w.fake.Calls() {
		if _, ok := persistent[strings.TrimPrefix(c.AccessToken, "access-sandbox-")]; ok {
			persistentCalls++
		}
	}
	w.injected(persistentCalls)
	for id := range persistent {
		w.fake.SetTokenError(w.fact(id).plaintext, "")
	}

	// Plaid healthy again: the rerun finishes what the faults left.
	w.fake.SetRandomFaults(0, 0)
	before := w.docs()
	rerun := w.cleanup("cleanup-rerun", 2*time.Minute).report(t)
	w.checkWorkFinished(before)
	w.checkInvariants(invariantOptions{final: &finalRun{id: rerun.RunID, before: before}})
}

// Scenario 2. Firestore goes away in the middle of a CLI cleanup and comes
// back (see outage_test.go for how); the cleanup either rides it out or
// fails cleanly, and a rerun (after the short lease lapses, if the first
// one still holds it) completes.
func firestoreOutage(t *testing.T) {
	e := startDedicatedEmulator(t)
	proxy := newProxy(t, e.host)
	w := newWorld(t, "firestore_outage", e.host)
	w.procHost = proxy.addr
	w.seed(w.fleet("fo", 200))
	// One token at a time, so that the test knows what the run has decided
	// (muteAtRemoval).
	w.fake.SetLatency(10 * time.Millisecond)
	w.extraEnv = []string{"CLEANUP_CONCURRENCY=1", "CLEANUP_PAGE_SIZE=40"}

	// Firestore dies as the run deletes the document of its fifth removal
	// at Plaid: answers stop coming back first (that delete reaches
	// Firestore and commits, unacknowledged), then every connection is cut.
	lost := w.muteAtRemoval(proxy, 5)
	first := w.cli("cleanup-through-outage", "cleanup", "--days", fmt.Sprint(staleDays), "--json")
	var lostDelete string
	select {
	case lostDelete = <-lost:
	case <-first.done:
		t.Fatalf("the cleanup ended (exit %d) before the outage began", first.code)
	case <-time.After(90 * time.Second):
		t.Fatal("the cleanup removed no 5 Items at Plaid within 90 s")
	}
	if lostDelete == "" {
		t.FailNow()
	}
	wait.Until(t, "the delete of "+lostDelete+" to commit with its answer lost", time.Minute, func() bool { return !w.exists(lostDelete) })
	lease := w.lease()
	if lease == nil || lease.Holder == "" {
		t.Fatalf("no run holds the cleanup lease in the middle of the cleanup: %+v", lease)
	}
	proxy.down()
	if err := e.freeze(); err != nil {
		t.Fatalf("freezing the emulator: %v", err)
	}
	w.injected(1)
	// Firestore stays away until the run's lease has lapsed: the run comes
	// back to a lease any other run could have taken.
	wait.Until(t, "the cleanup's lease to lapse while Firestore is away", time.Minute, func() bool {
		return time.Now().After(lease.ExpiresAt.Add(time.Second))
	})
	if err := e.thaw(); err != nil {
		t.Fatalf("thawing the emulator: %v", err)
	}
	if err := proxy.up(); err != nil {
		t.Fatal(err)
	}
	code := first.wait(t, 3*time.Minute)
	t.Logf("the cleanup caught in the outage exited %d; the proxy cut %d connections", code, proxy.cut)
	if code != 0 {
		last := lastLine(first.stderr.String())
		if !strings.HasPrefix(last, "manage-tokens: ") {
			t.Errorf("the cleanup caught in the outage exited %d without saying why on its last line: %q", code, last)
		}
	}

	// The rerun completes, once no live lease is in its way.
	w.fake.SetLatency(0)
	var before map[string]docState
	var rerun lifecycle.CleanupReport
	for attempt := 1; ; attempt++ {
		before = w.docs()
		p := w.cleanup(fmt.Sprintf("cleanup-rerun-%d", attempt), 2*time.Minute)
		if p.code == 0 || p.code == 3 { // finished (3: leaving work for the next run)
			rerun = p.report(t)
			break
		}
		if attempt == 3 || !strings.Contains(p.stderr.String(), "a cleanup is already running") {
			t.Fatalf("rerun %d exited %d:\n%s", attempt, p.code, tail(p.stderr.String(), 3000))
		}
		waitLeaseLapsed(t, w)
	}
	w.checkWorkFinished(before)
	w.checkInvariants(invariantOptions{final: &finalRun{id: rerun.RunID, before: before}})
}

// muteAtRemoval mutes proxy when Plaid removes the nth Item of a run that
// decides one token at a time, once the run has written everything it
// decided before (so that its writers are free), and before the run hears
// of the removal: the delete of that Item's document then reaches
// Firestore and commits, and its answer is lost. It sends the Item's id,
// or "" when the run did not settle in time.
func (w *world) muteAtRemoval(proxy *tcpProxy, n int64) <-chan string {
	var removals atomic.Int64
	lost := make(chan string, 1)
	w.onRemoval(func(r plaidfake.Removal) {
		if removals.Add(1) != n {
			return
		}
		// The run's Plaid call waits meanwhile: keep it under its timeout.
		var err error
		settled := wait.Poll(20*time.Second, func() bool {
			var ok bool
			ok, err = w.settledBefore(r.ItemID)
			return ok || err != nil
		})
		if !settled || err != nil {
			w.t.Errorf("the run had not written what it decided before %s within 20 s (%v)", r.ItemID, err)
			lost <- ""
			return
		}
		proxy.mute()
		lost <- r.ItemID
	})
	return lost
}

// waitLeaseLapsed waits until the cleanup lease is free or lapsed.
func waitLeaseLapsed(t *testing.T, w *world) {
	t.Helper()
	wait.Until(t, "the cleanup lease to lapse", leaseTTL+30*time.Second, func() bool {
		l := w.lease()
		return l == nil || l.Holder == "" || time.Now().After(l.ExpiresAt)
	})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// Scenario 3. One DailyCleanup CloudEvent is delivered three times to
// scripts/serve (same ce-id), the second while the first still runs: one
// run, each token checked once.
func redeliveredEvent(t *testing.T) {
	w := newWorld(t, "redelivered_event", "")
	w.seed(w.fleet("rd", 180))
	before := w.docs()
	// Every segment checkpoints after one page and continues through
	// serve's own /events/DailyCleanup. The lease outlives any stall of a
	// loaded machine: the second delivery must find the first one's
	// segment alive (a lapsed one would rightly be resumed).
	_, base := w.serve("RUN_TIME_BUDGET=1ns", "CLEANUP_PAGE_SIZE=60", "CLEANUP_LEASE_TTL=1m")
	g := newGate()
	w.fake.OnCall(g.hold)
	t.Cleanup(g.release)

	const eventID = "daily-cleanup-2026-11-30"
	deliver := func() (int, error) {
		req, err := functions.NewPubSubEventRequest(context.Background(), base+"/events/DailyCleanup", eventID,
			[]byte(fmt.Sprintf(`{"days_threshold": %d}`, staleDays)))
		if err != nil {
			return 0, err
		}
		resp, err := (&http.Client{Timeout: 3 * time.Minute}).Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	type delivery struct {
		status int
		err    error
	}
	first := make(chan delivery, 1)
	go func() { s, err := deliver(); first <- delivery{s, err} }()
	wait.Until(t, "the first delivery's run to call Plaid", time.Minute, func() bool { return g.heldCount() > 0 })

	// Pub/Sub redelivers while the first delivery is still running: its
	// segment holds the lease, so the answer asks for a later retry.
	second, err := deliver()
	if err != nil {
		t.Fatalf("second delivery: %v", err)
	}
	if second < 500 {
		t.Errorf("second delivery while the first runs: HTTP %d, want a 5xx asking Pub/Sub to retry later", second)
	}
	g.release()
	select {
	case d := <-first:
		if d.err != nil || d.status >= 300 {
			t.Fatalf("first delivery: HTTP %d, %v", d.status, d.err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the first delivery did not answer within 2 minutes")
	}
	third, err := deliver()
	if err != nil || third >= 300 {
		t.Errorf("third delivery: HTTP %d, %v; want 2xx (the run is in hand)", third, err)
	}
	w.injected(2)

	var run *lifecycle.RunRecord
	wait.Until(t, "the run to finish through its continuations", 2*time.Minute, func() bool {
		runs := w.runs()
		if len(runs) != 1 {
			return len(runs) > 1 // fail below
		}
		run = runs[0]
		return run.Status.Finished()
	})
	if runs := w.runs(); len(runs) != 1 {
		t.Fatalf("%d cleanup runs for one event, want 1", len(runs))
	}
	if n := strings.Count(strings.Join(run.EventIDs, ","), eventID); n != 1 {
		t.Errorf("run %s lists event %s %d times (%v)", run.ID, eventID, n, run.EventIDs)
	}
	events, err := w.client.Collection(lifecycle.EventsCollection).Where("event_id", "==", eventID).Documents(context.Background()).GetAll()
	if err != nil || len(events) != 1 {
		t.Errorf("event records of %s: %d (%v), want 1", eventID, len(events), err)
	}
	// Each token checked once: one /item/get per active token, at most one
	// /item/remove per token.
	gets, removes := map[string]int{}, map[string]int{}
	for _, c := range w.fake.Calls() {
		switch c.Path {
		case plaidfake.PathItemGet:
			gets[c.AccessToken]++
		case plaidfake.PathItemRemove:
			removes[c.AccessToken]++
		}
	}
	for id, d := range before {
		f := w.fact(id)
		if d.status == lifecycle.StatusActive && gets[f.plaintext] != 1 && f.class != classStale && f.class != classStaleUndated {
			t.Errorf("%s (%s) was validated %d times, want once", id, f.class, gets[f.plaintext])
		}
		if removes[f.plaintext] > 1 {
			t.Errorf("%s (%s) was removed at Plaid %d times, want at most once", id, f.class, removes[f.plaintext])
		}
	}
	t.Logf("run %s: %d invocations, %d tokens checked", run.ID, run.Invocations, run.Statistics.TotalChecked)
	w.checkWorkFinished(before)
	w.checkInvariants(invariantOptions{final: &finalRun{id: run.ID, before: before}})
}

// Scenario 4. Two CLI cleanups start at once: one runs, the other is
// refused with exit status 1 and a message naming the run holding the
// lease.
func twoCleanupsAtOnce(t *testing.T) {
	w := newWorld(t, "two_cleanups_at_once", "")
	w.seed(w.fleet("tc", 150))
	// Whichever starts second must meet the first's lease live, however
	// slowly it starts on a loaded machine.
	w.extraEnv = []string{"CLEANUP_LEASE_TTL=1m"}
	before := w.docs()
	// Plaid holds its answers, so the run that wins stays in flight with
	// its lease until the other has been refused.
	g := newGate()
	w.fake.OnCall(g.hold)
	t.Cleanup(g.release)
	args := []string{"cleanup", "--days", fmt.Sprint(staleDays), "--json"}
	a, b := w.cli("cleanup-a", args...), w.cli("cleanup-b", args...)
	w.injected(1)
	wait.Until(t, "one of two concurrent cleanups to be refused", 90*time.Second, func() bool { return a.exited() || b.exited() })
	refused, running := a, b
	if b.exited() {
		refused, running = b, a
	}
	if running.exited() {
		t.Fatalf("both cleanups ended: %s exit %d, %s exit %d", a.name, a.code, b.name, b.code)
	}
	runs := w.runs()
	if len(runs) != 1 {
		t.Fatalf("%d run records while one cleanup runs, want 1", len(runs))
	}
	holder := runs[0].ID
	msg := lastLine(refused.stderr.String())
	if refused.code != 1 {
		t.Errorf("%s exited %d, want 1", refused.name, refused.code)
	}
	for _, want := range []string{"manage-tokens: ", "a cleanup is already running", "run " + holder, "started by " + operatorActor, "--take-over " + holder} {
		if !strings.Contains(msg, want) {
			t.Errorf("%s's refusal %q does not say %q", refused.name, msg, want)
		}
	}
	if l := w.lease(); l == nil || l.Holder != holder {
		t.Errorf("the lease is %+v, want held by %s", l, holder)
	}
	g.release()
	running.wait(t, 2*time.Minute)
	report := running.report(t)
	if report.RunID != holder {
		t.Errorf("the cleanup that ran reports run %s, the lease named %s", report.RunID, holder)
	}
	if runs := w.runs(); len(runs) != 1 {
		t.Errorf("%d run records, want 1", len(runs))
	}
	w.checkWorkFinished(before)
	w.checkInvariants(invariantOptions{final: &finalRun{id: report.RunID, before: before}})
}

// Scenario 5. The app's backend writes plaid_tokens directly while a
// cleanup runs: it marks stale tokens used (some just as the cleanup is
// removing them), adds tokens and deletes some. Then a rerun.
func anotherWriter(t *testing.T) {
	w := newWorld(t, "another_writer", "")
	tokens := w.fleet("ow", 300)
	w.seed(tokens)
	// One token at a time, in item id order: the test knows which tokens
	// the cleanup has read but not decided yet.
	w.fake.SetLatency(5 * time.Millisecond)
	w.extraEnv = []string{"CLEANUP_CONCURRENCY=1", "CLEANUP_PAGE_SIZE=50"}
	col := w.client.Collection(lifecycle.TokensCollection)
	ctx := context.Background()

	stale := w.itemsOf(func(f *tokenFacts) bool { return f.class == classStale || f.class == classStaleUndated })
	raceTargets := map[string]bool{stale[0]: true, stale[1]: true, stale[2]: true}
	// Stale tokens the app uses after the cleanup read their page and
	// before it decides them: touched while the cleanup validates the token
	// just before each (same page). The cleanup must see the use (its
	// re-read before /item/remove) and keep them live.
	usedBeforeDecision := map[string]string{ // validated token → the stale token after it
		"access-sandbox-ow-0069": "ow-0070", "access-sandbox-ow-0129": "ow-0130",
		"access-sandbox-ow-0189": "ow-0190", "access-sandbox-ow-0229": "ow-0230",
	}
	usedBefore := map[string]bool{}
	for _, id := range usedBeforeDecision {
		usedBefore[id] = true
	}
	var lateStale []string // touched before the cleanup reaches them, or while it does
	for _, id := range stale[len(stale)/2:] {
		if !usedBefore[id] {
			lateStale = append(lateStale, id)
		}
	}
	var toDelete []string
	for _, id := range w.itemsOf(func(f *tokenFacts) bool { return f.class == classRecent || f.class == classExpired }) {
		if id > "ow-0150" && len(toDelete) < 12 {
			toDelete = append(toDelete, id)
		}
	}
	var added []sample.Token
	for i := range 30 {
		c := classRecent
		if i%4 == 3 {
			c = classExpired
		}
		added = append(added, w.token(fmt.Sprintf("ow-%04d-app", 5+i*10), fmt.Sprintf("ow-user-app-%02d", i%6), c))
	}

	// touch is the app using a token: it bumps last_used_at (and
	// updated_at), and fails on a deleted document.
	var writes atomic.Int64
	touch := func(id string) bool {
		now := time.Now().UTC()
		_, err := col.Doc(id).Update(ctx, []firestore.Update{{Path: "last_used_at", Value: now}, {Path: "updated_at", Value: now}})
		writes.Add(1)
		if err != nil {
			if status.Code(err) != codes.NotFound {
				t.Errorf("touching %s: %v", id, err)
			}
			return false
		}
		w.update(id, func(f *tokenFacts) { f.touched = true })
		return true
	}
	// A stale token the cleanup is removing at Plaid at this very moment
	// (after its re-read) is used by the app: the cleanup's delete must
	// then be refused, and the document must say the Item is gone.
	var raceTouched sync.Map
	w.onRemoval(func(r plaidfake.Removal) {
		id := strings.TrimPrefix(r.AccessToken, "access-sandbox-")
		if raceTargets[id] {
			if _, done := raceTouched.LoadOrStore(id, true); !done && touch(id) {
				w.update(id, func(f *tokenFacts) { f.raceTouched = true })
			}
		}
	})

	started := make(chan struct{})
	var once sync.Once
	var usedOnce sync.Map
	w.fake.OnCall(func(path, accessToken string) {
		once.Do(func() { close(started) })
		if id, ok := usedBeforeDecision[accessToken]; ok && path == plaidfake.PathItemGet {
			if _, done := usedOnce.LoadOrStore(id, true); !done && touch(id) {
				// Used before the cleanup decided it: in use, not stale.
				w.update(id, func(f *tokenFacts) { f.touched, f.recent = false, true })
			}
		}
	})
	cleanup := w.cli("cleanup-with-writer", "cleanup", "--days", fmt.Sprint(staleDays), "--json")
	select {
	case <-started:
	case <-time.After(90 * time.Second):
		t.Fatal("the cleanup made no Plaid call within 90 s")
	}
	// The other writer, while the cleanup runs.
	var wg errgroup.Group
	wg.Go(func() error {
		for _, id := range lateStale {
			touch(id)
		}
		return nil
	})
	wg.Go(func() error {
		for _, st := range added {
			w.know([]sample.Token{st}, func(f *tokenFacts) { f.writerCreated = true })
			sample.Register(w.fake, []sample.Token{st})
			enc, err := w.vault.Encrypt(st.ItemID, st.Plaintext)
			if err != nil {
				return err
			}
			// The backend's own document: the fields of DESIGN §5 and an
			// extra the service does not know.
			doc := map[string]any{
				"user_id": st.UserID, "access_token": enc, "item_id": st.ItemID,
				"institution_id": st.InstitutionID, "institution_name": st.InstitutionName,
				"status": string(st.Status), "environment": st.Environment,
				"created_at": st.CreatedAt, "updated_at": st.UpdatedAt, "last_used_at": st.LastUsedAt,
				"metadata":     map[string]any{"name": st.InstitutionName, "url": "", "primary_color": "", "logo": ""},
				"transactions": map[string]any{"cursor": "app-cursor-1"},
			}
			if _, err := col.Doc(st.ItemID).Create(ctx, doc); err != nil {
				return fmt.Errorf("creating %s: %w", st.ItemID, err)
			}
			writes.Add(1)
		}
		return nil
	})
	wg.Go(func() error {
		for _, id := range toDelete {
			w.update(id, func(f *tokenFacts) { f.writerDeleted = true }) // said before it happens
			_, err := col.Doc(id).Delete(ctx, firestore.Exists)
			writes.Add(1)
			switch {
			case status.Code(err) == codes.NotFound: // the cleanup deleted it first
				w.update(id, func(f *tokenFacts) { f.writerDeleted = false })
			case err != nil:
				return fmt.Errorf("deleting %s: %w", id, err)
			}
		}
		return nil
	})
	if err := wg.Wait(); err != nil {
		t.Fatalf("the other writer: %v", err)
	}
	cleanup.wait(t, 3*time.Minute)
	report := cleanup.report(t)
	w.injected(int(writes.Load()))

	// What the app did must stand.
	docs := w.docs()
	raced := w.itemsOf(func(f *tokenFacts) bool { return f.raceTouched })
	if len(raced) != len(raceTargets) {
		t.Errorf("the app used %d of %d stale tokens during their removal (%v): the race was not exercised", len(raced), len(raceTargets), raced)
	}
	for _, id := range raced {
		d, ok := docs[id]
		switch {
		case !ok:
			t.Errorf("%s was deleted although the app used it during the run", id)
		case d.status != lifecycle.StatusRevoked || !d.plaidRemoved || d.errorCode != "ITEM_NOT_FOUND":
			t.Errorf("%s, used by the app as its Item was removed: status %s, plaid_removed %v, error_code %q; want revoked, true, ITEM_NOT_FOUND",
				id, d.status, d.plaidRemoved, d.errorCode)
		}
	}
	for id := range usedBefore {
		d, ok := docs[id]
		if f := w.fact(id); !ok || d.status != lifecycle.StatusActive || w.fake.Removed(f.plaintext) || !f.recent {
			t.Errorf("%s, used after the cleanup read it and before it decided it: present %v, %s, removed at Plaid %v (used %v); want kept live",
				id, ok, d.status, w.fake.Removed(f.plaintext), f.recent)
		}
	}
	for _, id := range w.itemsOf(func(f *tokenFacts) bool { return f.touched && !f.raceTouched }) {
		if _, ok := docs[id]; !ok {
			t.Errorf("%s was deleted although the app used it during the run", id)
		}
	}
	// (A token used before the decision may also have been used before
	// its page was read, when the app's new documents moved a page
	// boundary: then it is validated, not skipped.)
	if report.Statistics.SkippedChanged < len(raced) {
		t.Errorf("skipped_changed %d, want at least the %d tokens used as they were removed", report.Statistics.SkippedChanged, len(raced))
	}

	w.fake.SetLatency(0)
	before := w.docs()
	rerun := w.cleanup("cleanup-rerun", 2*time.Minute).report(t)
	w.checkWorkFinished(before)
	w.checkInvariants(invariantOptions{final: &finalRun{id: rerun.RunID, before: before}})
}

// Scenario 6. `kill -9` of a CLI cleanup in the middle of its run (just
// as Plaid removes an Item for it); a rerun is refused while the dead
// run's lease holds, naming it and --take-over; --take-over is refused
// too while the run's last renewal is recent, and --take-over --force then
// completes. Then a second run is killed, and once its lease lapses a
// plain rerun completes.
func kill9(t *testing.T) {
	w := newWorld(t, "kill_9", "")
	proxy := newProxy(t, w.emulator)
	w.procHost = proxy.addr
	w.seed(w.fleet("k9", 200))
	// One token at a time, so that the test knows what the run has decided
	// (muteAtRemoval).
	w.fake.SetLatency(10 * time.Millisecond)
	w.extraEnv = []string{"CLEANUP_CONCURRENCY=1", "CLEANUP_PAGE_SIZE=40"}
	// The first run to die holds a lease long enough that the rerun meets
	// it live however slowly it starts on a loaded machine; take-over ends
	// it. The second has the suite's short lease, which the test waits out.
	longLease := []string{"CLEANUP_LEASE_TTL=2m"}
	args := []string{"cleanup", "--days", fmt.Sprint(staleDays), "--json"}

	// Killed in the middle of a write: after Plaid removed its tenth Item,
	// Firestore's answers stop reaching the run (requests still do), its
	// delete of that Item's document commits, and then it dies.
	lost := w.muteAtRemoval(proxy, 10)
	first := w.cliWith("cleanup-killed", longLease, args...)
	var lostDelete string
	select {
	case lostDelete = <-lost:
	case <-first.done:
		t.Fatalf("the cleanup to kill ended (exit %d) before its tenth removal", first.code)
	case <-time.After(90 * time.Second):
		t.Fatal("the cleanup to kill removed no 10 Items at Plaid within 90 s")
	}
	if lostDelete == "" {
		t.FailNow()
	}
	wait.Until(t, "the delete of "+lostDelete+" to commit", time.Minute, func() bool { return !w.exists(lostDelete) })
	first.kill9()
	proxy.down() // its connections die with it; the runs after it are heard again
	if err := proxy.up(); err != nil {
		t.Fatal(err)
	}
	if first.code != -1 {
		t.Fatalf("the cleanup to kill exited %d by itself", first.code)
	}
	w.injected(1)
	runs := w.runs()
	if len(runs) != 1 || runs[0].Status != lifecycle.RunRunning {
		t.Fatalf("after kill -9: runs %v, want one left running", runs)
	}
	dead := runs[0].ID

	refused := w.cleanup("cleanup-refused", 2*time.Minute)
	msg := lastLine(refused.stderr.String())
	if refused.code != 1 {
		t.Errorf("rerun while the dead run's lease holds exited %d, want 1", refused.code)
	}
	for _, want := range []string{"a cleanup is already running", "run " + dead, "holds the lease until", "--take-over " + dead} {
		if !strings.Contains(msg, want) {
			t.Errorf("the refusal %q does not say %q", msg, want)
		}
	}
	// It renewed its lease moments before it died, so it looks alive: a
	// plain take-over is refused, naming --force; the operator, who knows
	// the process is gone, forces it.
	alive := w.cleanup("cleanup-take-over-refused", 2*time.Minute, "--take-over", dead)
	if msg := lastLine(alive.stderr.String()); alive.code != 1 || !strings.Contains(msg, "--force") {
		t.Errorf("take-over of a run that renewed its lease moments ago: exit %d, %q; want 1, naming --force", alive.code, msg)
	}
	takeOver := w.cleanup("cleanup-take-over", 2*time.Minute, "--take-over", dead, "--force").report(t)
	if r := w.run(dead); r.Status != lifecycle.RunAbandoned || r.SupersededBy != takeOver.RunID {
		t.Errorf("taken-over run %s: status %s, superseded by %q; want abandoned, by %s", dead, r.Status, r.SupersededBy, takeOver.RunID)
	}

	// A second run, killed while validating; its lease lapses; a plain
	// rerun resumes nothing of it and completes.
	var victim atomic.Pointer[proc]
	var gets atomic.Int64
	w.fake.OnCall(func(path, _ string) {
		if path == plaidfake.PathItemGet && gets.Add(1) == 25 {
			if p := victim.Load(); p != nil {
				p.kill9()
			}
		}
	})
	victim.Store(w.cli("cleanup-killed-again", args...))
	second := victim.Load()
	wait.Until(t, "the second cleanup to be killed mid-run", 2*time.Minute, second.exited)
	if second.code != -1 {
		t.Fatalf("the second cleanup to kill exited %d by itself", second.code)
	}
	victim.Store(nil)
	w.injected(1)
	w.fake.OnCall(nil)
	var secondRun string
	for _, r := range w.runs() {
		if r.Status == lifecycle.RunRunning {
			secondRun = r.ID
		}
	}
	if secondRun == "" {
		t.Fatal("no run left running by the second kill")
	}
	waitLeaseLapsed(t, w)
	before := w.docs()
	final := w.cleanup("cleanup-after-lapse", 2*time.Minute).report(t)
	if r := w.run(secondRun); r.Status != lifecycle.RunAbandoned || r.SupersededBy != final.RunID {
		t.Errorf("lapsed run %s: status %s, superseded by %q; want abandoned, by %s", secondRun, r.Status, r.SupersededBy, final.RunID)
	}
	w.checkWorkFinished(before)
	w.checkInvariants(invariantOptions{final: &finalRun{id: final.RunID, before: before}})
}
