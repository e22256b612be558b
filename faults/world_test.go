package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// staleDays is every scenario's days_threshold.
const staleDays = 90

// vault is the tests' vault (testenv.EncryptionKey), derived once: PBKDF2
// with 600,000 iterations is slow under the race detector.
var vault = sync.OnceValues(func() (*lifecycle.Vault, error) {
	return lifecycle.NewVault(testenv.EncryptionKey, nil, lifecycle.DefaultEncryptionSalt)
})

// class is what a token is when it is written, and so what the rules must
// do with it (DESIGN §7).
type class int

const (
	classRecent         class = iota // active, used days ago, live at Plaid: kept
	classLegacyError                 // like classRecent with error_code LEGACY_ERROR: validation clears it
	classStale                       // active, unused for 200 days, live: removed at Plaid, then deleted
	classStaleUndated                // active, never used, updated 150 days ago: the same
	classGone                        // active, used lately, ITEM_NOT_FOUND at Plaid: marked expired
	classNeedsUser                   // active, item.error ITEM_LOGIN_REQUIRED: kept, error_code set
	classExpired                     // expired, live at Plaid: removed, then deleted
	classExpiredGone                 // expired, already gone at Plaid: deleted
	classRevoked                     // revoked, plaid_removed false, live: removed, then deleted
	classRevokedRemoved              // revoked, plaid_removed true, gone at Plaid: deleted
)

var classNames = []string{"recent", "legacy_error", "stale", "stale_undated", "gone", "needs_user",
	"expired", "expired_gone", "revoked", "revoked_removed"}

func (c class) String() string { return classNames[c] }

// fleetPattern is the class of token i%20 of a fleet: half recent, the rest
// every other case.
var fleetPattern = [20]class{
	classRecent, classRecent, classRecent, classRecent, classRecent, classRecent, classRecent, classRecent,
	classRecent, classLegacyError, classStale, classStaleUndated, classGone, classNeedsUser,
	classExpired, classExpired, classExpiredGone, classRevoked, classRevokedRemoved, classRecent,
}

// tokenFacts is what the test knows of one token it (or the other writer)
// wrote, to judge what the service did to it.
type tokenFacts struct {
	itemID, userID, plaintext string
	class                     class
	liveAtPlaid               bool // Plaid knew the Item when the token was written
	recent                    bool // used within the threshold when written
	userRevoked               bool // its user asked to revoke it
	touched                   bool // the other writer bumped last_used_at during a cleanup
	raceTouched               bool // ... in the window between the cleanup's re-read and its removal
	writerCreated             bool
	writerDeleted             bool // the other writer deleted its document
}

// world is one scenario: a Firestore project of its own, a fake Plaid, and
// what the test knows about every token in them.
type world struct {
	t        *testing.T
	name     string
	project  string
	emulator string // the emulator's address
	procHost string // FIRESTORE_EMULATOR_HOST of the processes: the emulator, or a proxy to it
	extraEnv []string
	client   *firestore.Client
	tokens   *lifecycle.FirestoreTokenStore
	fake     *plaidfake.Server
	vault    *lifecycle.Vault
	now      time.Time // the dataset's "now": real time, as the binaries use
	started  time.Time

	mu             sync.Mutex
	facts          map[string]*tokenFacts // by item id
	byAccess       map[string]string      // plaintext → item id
	removalsSeen   int                    // removals the OnRemoved check looked at
	removalsBroken []string               // removals made after the document was gone
	afterRemoval   []func(plaidfake.Removal)
	infraFaults    int
	procs          []*proc
}

// newWorld makes a scenario's world on the shared emulator, or on host
// when given (a scenario that stops its emulator has its own).
func newWorld(t *testing.T, name string, host string) *world {
	t.Helper()
	if host == "" {
		host = sharedHost(t)
	}
	v, err := vault()
	if err != nil {
		t.Fatalf("NewVault: %v", err)
	}
	w := &world{t: t, name: name, project: emulator.ProjectID(t), emulator: host, procHost: host,
		fake: plaidfake.New(t), vault: v, now: time.Now().UTC(), started: time.Now(),
		facts: map[string]*tokenFacts{}, byAccess: map[string]string{}}
	// The test's own client talks to the emulator directly, also when the
	// processes reach it through a proxy: it observes, it is not observed.
	w.client = newClient(t, host, w.project)
	w.tokens = lifecycle.NewFirestoreTokenStore(w.client)
	w.fake.OnRemoved(w.checkRemoval)
	summary.scenarios.Add(1)
	// Counted now: a scenario that dies before its checks has them unheld.
	summary.invariants.Add(invariantsPerScenario)
	t.Cleanup(w.stopProcs)
	t.Cleanup(func() {
		summary.plaidFaults.Add(int64(w.fake.FaultsInjected()))
		w.mu.Lock()
		summary.infraFaults.Add(int64(w.infraFaults))
		w.mu.Unlock()
	})
	return w
}

// clientMu serialises making Firestore clients: the client library reads
// FIRESTORE_EMULATOR_HOST from the environment when it is created.
var clientMu sync.Mutex

// sharedHost is the emulator every scenario shares (emulator.Main's), read
// while no client is being made for another one.
func sharedHost(t *testing.T) string {
	t.Helper()
	clientMu.Lock()
	defer clientMu.Unlock()
	return emulator.Host(t)
}

func newClient(t *testing.T, host, project string) *firestore.Client {
	t.Helper()
	clientMu.Lock()
	defer clientMu.Unlock()
	old, had := os.LookupEnv(emulator.FirestoreHostEnv)
	os.Setenv(emulator.FirestoreHostEnv, host)
	client, err := firestore.NewClient(context.Background(), project)
	if had {
		os.Setenv(emulator.FirestoreHostEnv, old)
	}
	if err != nil {
		t.Fatalf("firestore.NewClient: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// step logs a scenario's progress with the time since it began (shown by
// go test -v, and with a failure).
func (w *world) step(format string, args ...any) {
	w.t.Logf("[%5.1fs] %s", time.Since(w.started).Seconds(), fmt.Sprintf(format, args...))
}

// injected counts infrastructure faults the scenario caused.
func (w *world) injected(n int) {
	w.mu.Lock()
	w.infraFaults += n
	w.mu.Unlock()
}

// fleet returns n tokens named prefix-NNNN, classes by fleetPattern, five
// per user, relative to w.now.
func (w *world) fleet(prefix string, n int) []sample.Token {
	out := make([]sample.Token, 0, n)
	for i := range n {
		out = append(out, w.token(fmt.Sprintf("%s-%04d", prefix, i), fmt.Sprintf("%s-user-%02d", prefix, i/5), fleetPattern[i%20]))
	}
	return out
}

// token returns one token of class c.
func (w *world) token(itemID, userID string, c class) sample.Token {
	day := 24 * time.Hour
	ago := func(d int) time.Time { return w.now.Add(-time.Duration(d) * day) }
	tok := lifecycle.Token{
		ItemID: itemID, UserID: userID, InstitutionID: "ins_3", InstitutionName: "Chase Bank",
		Status: lifecycle.StatusActive, Environment: "sandbox",
		CreatedAt: ago(400), UpdatedAt: ago(300), LastUsedAt: ago(1 + len(itemID)%20),
		Metadata: lifecycle.Metadata{Name: "Chase Bank"},
	}
	state := sample.Healthy
	switch c {
	case classLegacyError:
		tok.ErrorCode = lifecycle.LegacyErrorCode
	case classStale:
		tok.LastUsedAt = ago(200)
	case classStaleUndated:
		tok.LastUsedAt, tok.UpdatedAt = time.Time{}, ago(150)
	case classGone:
		state = sample.Gone
	case classNeedsUser:
		tok.ErrorCode, state = "ITEM_LOGIN_REQUIRED", sample.NeedsUser
	case classExpired:
		tok.Status = lifecycle.StatusExpired
	case classExpiredGone:
		tok.Status, state = lifecycle.StatusExpired, sample.Gone
	case classRevoked:
		tok.Status = lifecycle.StatusRevoked
	case classRevokedRemoved:
		tok.Status, tok.PlaidRemoved, state = lifecycle.StatusRevoked, true, sample.Gone
	}
	return sample.Token{Token: tok, Plaintext: "access-sandbox-" + itemID, Plaid: state}
}

// know records what the test knows of tokens before they are written.
func (w *world) know(tokens []sample.Token, change func(*tokenFacts)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, st := range tokens {
		c := classOf(st)
		f := &tokenFacts{itemID: st.ItemID, userID: st.UserID, plaintext: st.Plaintext, class: c,
			liveAtPlaid: st.Plaid != sample.Gone,
			recent:      st.Status == lifecycle.StatusActive && w.now.Sub(st.LastActivity()) < staleDays*24*time.Hour}
		if change != nil {
			change(f)
		}
		w.facts[st.ItemID] = f
		w.byAccess[st.Plaintext] = st.ItemID
	}
}

func classOf(st sample.Token) class {
	switch {
	case st.Status == lifecycle.StatusRevoked && st.PlaidRemoved:
		return classRevokedRemoved
	case st.Status == lifecycle.StatusRevoked:
		return classRevoked
	case st.Status == lifecycle.StatusExpired && st.Plaid == sample.Gone:
		return classExpiredGone
	case st.Status == lifecycle.StatusExpired:
		return classExpired
	case st.Plaid == sample.Gone:
		return classGone
	case st.Plaid == sample.NeedsUser:
		return classNeedsUser
	case st.LastUsedAt.IsZero() && st.Status == lifecycle.StatusActive:
		return classStaleUndated
	case st.ErrorCode == lifecycle.LegacyErrorCode:
		return classLegacyError
	case time.Since(st.LastUsedAt) > staleDays*24*time.Hour:
		return classStale
	default:
		return classRecent
	}
}

// seed writes tokens (encrypted with the vault) and teaches the fake Plaid
// about them.
func (w *world) seed(tokens []sample.Token) {
	w.t.Helper()
	w.know(tokens, nil)
	sample.Register(w.fake, tokens)
	var g errgroup.Group
	g.SetLimit(8)
	for start := 0; start < len(tokens); start += 40 {
		chunk := tokens[start:min(start+40, len(tokens))]
		g.Go(func() error { return sample.Seed(context.Background(), w.tokens, w.vault, chunk) })
	}
	if err := g.Wait(); err != nil {
		w.t.Fatalf("seeding: %v", err)
	}
}

// fact returns what the test knows of itemID (nil: nothing).
func (w *world) fact(itemID string) *tokenFacts {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.facts[itemID]
}

// update changes what the test knows of itemID.
func (w *world) update(itemID string, change func(*tokenFacts)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if f := w.facts[itemID]; f != nil {
		change(f)
	}
}

// itemsOf returns the known item ids matching keep, sorted.
func (w *world) itemsOf(keep func(*tokenFacts) bool) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for id, f := range w.facts {
		if keep(f) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// checkRemoval is the fake Plaid's OnRemoved hook: it runs after an Item is
// removed and before the remover gets the answer. The token's document
// must still exist then, since the remover deletes it only after the
// answer: a read that finds it gone proves a deletion came before the
// removal (unless the other writer deleted it, which it says first).
func (w *world) checkRemoval(r plaidfake.Removal) {
	w.mu.Lock()
	itemID, known := w.byAccess[r.AccessToken]
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var problem string
	switch {
	case !known:
		problem = fmt.Sprintf("removal of an access token the test never wrote (%s)", r.ItemID)
	default:
		_, err := w.client.Collection(lifecycle.TokensCollection).Doc(itemID).Get(ctx)
		switch {
		case status.Code(err) == codes.NotFound:
			if f := w.fact(itemID); f == nil || !f.writerDeleted {
				problem = fmt.Sprintf("%s was removed at Plaid at %s after its document was deleted",
					itemID, r.Time.Format(time.RFC3339Nano))
			}
		case err != nil:
			problem = fmt.Sprintf("could not read %s when it was removed at Plaid: %v", itemID, err)
		}
	}
	w.mu.Lock()
	w.removalsSeen++
	if problem != "" {
		w.removalsBroken = append(w.removalsBroken, problem)
	}
	hooks := slices.Clone(w.afterRemoval)
	w.mu.Unlock()
	for _, h := range hooks {
		h(r)
	}
}

// onRemoval adds a hook run after checkRemoval, before the remover's answer.
func (w *world) onRemoval(h func(plaidfake.Removal)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.afterRemoval = append(w.afterRemoval, h)
}

// exists reports whether itemID's document exists.
func (w *world) exists(itemID string) bool {
	w.t.Helper()
	_, err := w.client.Collection(lifecycle.TokensCollection).Doc(itemID).Get(context.Background())
	if status.Code(err) == codes.NotFound {
		return false
	}
	if err != nil {
		w.t.Fatalf("reading %s: %v", itemID, err)
	}
	return true
}

// docState is a token document as the invariants read it.
type docState struct {
	status        lifecycle.Status
	errorCode     string
	plaidRemoved  bool
	accessToken   string
	lastUsed      time.Time
	lastValidated time.Time
	token         bool // has a status: a token, not a legacy document
}

// docs reads every document of plaid_tokens.
func (w *world) docs() map[string]docState {
	w.t.Helper()
	docs, err := w.readDocs()
	if err != nil {
		w.t.Fatal(err)
	}
	return docs
}

// readDocs is docs for any goroutine: it returns its error.
func (w *world) readDocs() (map[string]docState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	iter := w.client.Collection(lifecycle.TokensCollection).Documents(ctx)
	defer iter.Stop()
	out := map[string]docState{}
	for {
		snap, err := iter.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading plaid_tokens: %w", err)
		}
		data := snap.Data()
		str := func(k string) string { v, _ := data[k].(string); return v }
		d := docState{status: lifecycle.Status(str("status")), errorCode: str("error_code"), accessToken: str("access_token")}
		_, d.token = data["status"]
		d.plaidRemoved, _ = data["plaid_removed"].(bool)
		d.lastUsed, _ = data["last_used_at"].(time.Time)
		d.lastValidated, _ = data["last_validated_at"].(time.Time)
		out[snap.Ref.ID] = d
	}
}

// settledBefore reports whether a run deciding tokens one at a time in
// item id order has written everything it decided before itemID: each
// earlier token is validated (or marked), or deleted with its audit entry.
// The run's writers are then idle.
func (w *world) settledBefore(itemID string) (bool, error) {
	docs, err := w.readDocs()
	if err != nil {
		return false, err
	}
	snaps, err := w.client.Collection(lifecycle.AuditCollection).Documents(context.Background()).GetAll()
	if err != nil {
		return false, err
	}
	audited := map[string]bool{}
	for _, s := range snaps {
		if id, _ := s.Data()["item_id"].(string); id != "" {
			audited[id] = true
		}
	}
	for _, id := range w.itemsOf(func(f *tokenFacts) bool { return !f.writerCreated }) {
		if id >= itemID {
			break
		}
		d, present := docs[id]
		if (present && d.lastValidated.IsZero()) || (!present && !audited[id]) {
			return false, nil
		}
	}
	return true, nil
}

// runs reads every run record, oldest first.
func (w *world) runs() []*lifecycle.RunRecord {
	w.t.Helper()
	snaps, err := w.client.Collection(lifecycle.RunsCollection).Documents(context.Background()).GetAll()
	if err != nil {
		w.t.Fatalf("reading run records: %v", err)
	}
	var out []*lifecycle.RunRecord
	for _, s := range snaps {
		var r lifecycle.RunRecord
		if err := s.DataTo(&r); err != nil {
			w.t.Fatalf("decoding run %s: %v", s.Ref.ID, err)
		}
		if r.Kind == "cleanup" && !r.DryRun {
			out = append(out, &r)
		}
	}
	slices.SortFunc(out, func(a, b *lifecycle.RunRecord) int { return a.StartedAt.Compare(b.StartedAt) })
	return out
}

// run reads one run record.
func (w *world) run(id string) *lifecycle.RunRecord {
	w.t.Helper()
	for _, r := range w.runs() {
		if r.ID == id {
			return r
		}
	}
	w.t.Fatalf("no run record %s", id)
	return nil
}

// audits reads every audit entry.
func (w *world) audits() []lifecycle.AuditEntry {
	w.t.Helper()
	snaps, err := w.client.Collection(lifecycle.AuditCollection).Documents(context.Background()).GetAll()
	if err != nil {
		w.t.Fatalf("reading audit entries: %v", err)
	}
	out := make([]lifecycle.AuditEntry, 0, len(snaps))
	for _, s := range snaps {
		var a lifecycle.AuditEntry
		if err := s.DataTo(&a); err != nil {
			w.t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// lease reads the cleanup lease (nil when never taken).
func (w *world) lease() *lifecycle.Lease {
	w.t.Helper()
	snap, err := w.client.Collection(lifecycle.LocksCollection).Doc("cleanup").Get(context.Background())
	if status.Code(err) == codes.NotFound {
		return nil
	}
	if err != nil {
		w.t.Fatalf("reading the cleanup lease: %v", err)
	}
	var l lifecycle.Lease
	if err := snap.DataTo(&l); err != nil {
		w.t.Fatal(err)
	}
	return &l
}

// gate holds the fake Plaid's answers until it is opened: a run stays in
// flight, holding its lease, for as long as a scenario needs.
type gate struct {
	mu     sync.Mutex
	open   chan struct{}
	closed bool
	held   int // requests that arrived while it was shut
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

// hold is a plaidfake OnCall hook.
func (g *gate) hold(string, string) {
	g.mu.Lock()
	ch := g.open
	if !g.closed {
		g.held++
	}
	g.mu.Unlock()
	select {
	case <-ch:
	case <-time.After(3 * time.Minute): // never wedge the suite
	}
}

// heldCount is how many requests arrived while the gate was shut.
func (g *gate) heldCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held
}

// release opens the gate for good.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed = true
		close(g.open)
	}
}

// oneLine shortens process output for failure messages.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = s[:2000] + "…"
	}
	return s
}
