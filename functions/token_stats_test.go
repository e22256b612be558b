package functions

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/go-cmp/cmp"

	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// docWriter writes plaid_tokens documents directly (another writer) and
// builds, for each write, the protobuf event Eventarc would deliver.
type docWriter struct {
	t       *testing.T
	env     *testenv.Env
	current map[string]*testenv.FirestoreDoc
	n       int
}

func newDocWriter(t *testing.T, env *testenv.Env) *docWriter {
	return &docWriter{t: t, env: env, current: map[string]*testenv.FirestoreDoc{}}
}

// write sets (data != nil) or deletes document id of collection and
// returns its event.
func (w *docWriter) write(collection, id string, data map[string]any) event.Event {
	t := w.t
	t.Helper()
	ctx := context.Background()
	path := collection + "/" + id
	ref := w.env.Client.Collection(collection).Doc(id)
	old := w.current[path]
	var neu *testenv.FirestoreDoc
	at := time.Now().UTC()
	if data != nil {
		res, err := ref.Set(ctx, data)
		if err != nil {
			t.Fatal(err)
		}
		created := res.UpdateTime
		if old != nil {
			created = old.CreateTime
		}
		neu = &testenv.FirestoreDoc{Path: path, Fields: data, CreateTime: created, UpdateTime: res.UpdateTime}
		at = res.UpdateTime
	} else {
		if _, err := ref.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		at = time.Now().UTC()
	}
	w.current[path] = neu
	raw, err := testenv.FirestoreEventData(w.env.Project, old, neu, []string{})
	if err != nil {
		t.Fatal(err)
	}
	w.n++
	e, err := testenv.FirestoreEvent(time.Now().Format("150405.000000")+"-"+id, w.env.Project, path, at.Truncate(time.Second), raw)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TokenStats counts writes from Eventarc's protobuf events exactly once,
// whatever order and however many times they come, ignores documents
// outside plaid_tokens/{item_id}, and drops what it cannot decode without
// asking for a retry.
func TestTokenStatsEvents(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	env := f.env
	w := newDocWriter(t, env)
	tok := func(item, user string, status lifecycle.Status, usedDaysAgo int) map[string]any {
		st := testenv.ActiveToken(item, user, usedDaysAgo).Token
		st.Status = status
		return testenv.TokenData(st)
	}
	var events []event.Event
	events = append(events,
		w.write("plaid_tokens", "item-a", tok("item-a", "user-1", lifecycle.StatusActive, 1)),
		w.write("plaid_tokens", "item-b", tok("item-b", "user-1", lifecycle.StatusActive, 40)),
		w.write("plaid_tokens", "item-c", tok("item-c", "user-2", lifecycle.StatusActive, 100)),
		w.write("plaid_tokens", "item-b", tok("item-b", "user-1", lifecycle.StatusExpired, 40)),
		w.write("plaid_tokens", "item-a", nil),
		w.write("plaid_tokens", "user-legacy", map[string]any{"items": map[string]any{"x": map[string]any{"status": "active"}}}),
		// Not plaid_tokens/{item_id}: ignored.
		w.write("other", "item-z", tok("item-z", "user-9", lifecycle.StatusActive, 1)),
	)
	sub := env.Client.Collection("plaid_tokens").Doc("item-c").Collection("history").Doc("h1")
	if _, err := sub.Set(context.Background(), map[string]any{"status": "active"}); err != nil {
		t.Fatal(err)
	}
	subData, err := testenv.FirestoreEventData(env.Project, nil, &testenv.FirestoreDoc{Path: "plaid_tokens/item-c/history/h1",
		Fields: map[string]any{"status": "active"}, UpdateTime: time.Now()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	subEvent, err := testenv.FirestoreEvent("sub-1", env.Project, "plaid_tokens/item-c/history/h1", time.Now(), subData)
	if err != nil {
		t.Fatal(err)
	}
	events = append(events, subEvent)

	// Delivered in reverse, each twice.
	for i := len(events) - 1; i >= 0; i-- {
		for range 2 {
			if err := f.server.TokenStats(context.Background(), events[i]); err != nil {
				t.Fatalf("TokenStats(%s): %v", events[i].Subject(), err)
			}
		}
	}
	// Garbage: dropped, no retry.
	bad, _ := testenv.FirestoreEvent("bad-1", env.Project, "plaid_tokens/x", time.Now(), []byte{0xff, 0xff, 0xff})
	if err := f.server.TokenStats(context.Background(), bad); err != nil {
		t.Errorf("TokenStats(malformed) = %v, want nil: a retry cannot help", err)
	}
	if n := len(f.logs.Entries(t, "malformed TokenStats event; dropped")); n != 1 {
		t.Errorf("%d malformed events logged, want 1", n)
	}

	res, err := env.Service.ExactAnalytics(context.Background(), lifecycle.ExactOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Drift) != 0 || res.UsersDrifted != 0 {
		t.Errorf("drift %v, %d users; want none", res.Drift, res.UsersDrifted)
	}
	want := lifecycle.Counters{
		"tokens":       {"total": 2, "unique_users": 2},
		"status":       {"active": 1, "expired": 1},
		"institutions": {"Chase Bank": 2},
		"environments": {"sandbox": 2},
		"activity":     {testenv.Now.AddDate(0, 0, -100).Format(time.DateOnly): 1},
	}
	r, err := env.Stats.ReadStats(context.Background(), lifecycle.StatsRead{})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"created", "used", "removed"} {
		delete(r.Counters, g)
	}
	if diff := cmp.Diff(want, r.Counters); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
	// The trend of what was applied is logged for the dashboard: 3
	// created, 1 removed.
	var created, removed float64
	for _, e := range f.logs.Entries(t, "token activity") {
		created += e["created"].(float64)
		removed += e["removed"].(float64)
	}
	if created != 3 || removed != 1 {
		t.Errorf("token activity logged %v created, %v removed; want 3 and 1", created, removed)
	}
}

// The Firestore emulator's own trigger deliveries: binary CloudEvents whose
// body is the base64 text of the protobuf data. EmulatorTriggerHandler
// decodes them as TokenStats does; loopback callers only.
func TestEmulatorTriggerHandler(t *testing.T) {
	t.Parallel()
	f := newAPIFixture(t)
	var mu sync.Mutex
	var got []lifecycle.TokenChange
	h := f.server.EmulatorTriggerHandler(func(_ context.Context, c lifecycle.TokenChange) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, c)
		return nil
	})
	updated := time.Date(2026, 11, 30, 2, 54, 11, 123456000, time.UTC)
	doc := &testenv.FirestoreDoc{Path: "plaid_tokens/item-1", UpdateTime: updated, CreateTime: updated,
		Fields: testenv.TokenData(testenv.ActiveToken("item-1", "user-1", 3).Token)}
	data, err := testenv.FirestoreEventData(f.env.Project, nil, doc, []string{})
	if err != nil {
		t.Fatal(err)
	}
	deliver := func(remote string, body []byte, path string) int {
		r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		r.RemoteAddr, r.Host = remote, "127.0.0.1:8080" // as the emulator connects to serve
		for k, v := range map[string]string{
			"Content-Type": "application/protobuf", "Ce-Specversion": "1.0", "Ce-Id": "e9d9a3bb",
			"Ce-Type": FirestoreWrittenEventType, "Ce-Source": "//firestore.googleapis.com/projects/projects/p/databases/(default)",
			"Ce-Subject": "documents/" + doc.Path, "Ce-Time": "2026-11-30T02:54:11Z", "Ce-Datacontenttype": "application/protobuf",
		} {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 300 {
			t.Logf("%s: HTTP %d %s", remote, w.Code, w.Body.String())
		}
		return w.Code
	}
	path := PathEmulatorTriggers + f.env.Project + "/triggers/us-central1-TokenStats"
	if code := deliver("127.0.0.1:4000", []byte(base64.StdEncoding.EncodeToString(data)), path); code != http.StatusNoContent {
		t.Fatalf("emulator delivery: HTTP %d, want 204", code)
	}
	// Raw protobuf (as Eventarc sends it) is taken too.
	if code := deliver("127.0.0.1:4000", data, path); code != http.StatusNoContent {
		t.Fatalf("raw protobuf delivery: HTTP %d, want 204", code)
	}
	if code := deliver("10.0.0.9:4000", data, path); code != http.StatusForbidden {
		t.Errorf("delivery from a remote address: HTTP %d, want 403", code)
	}
	if code := deliver("127.0.0.1:4000", []byte("bm90IHByb3RvYnVm"), path); code != http.StatusBadRequest {
		t.Errorf("malformed delivery: HTTP %d, want 400", code)
	}
	// Another project's event (the emulator delivers all to one address).
	if code := deliver("127.0.0.1:4000", data, PathEmulatorTriggers+"another-project/triggers/us-central1-TokenStats"); code != http.StatusNoContent {
		t.Errorf("another project's delivery: HTTP %d, want 204", code)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("%d changes counted, want 2", len(got))
	}
	for _, c := range got {
		if c.EventID != "e9d9a3bb" || !c.At.Equal(updated) || c.Old != nil || c.New == nil || c.New.ItemID != "item-1" || c.New.UserID != "user-1" {
			t.Errorf("change %+v, want the creation of item-1 at its update time under the delivery's id", c)
		}
	}
}
