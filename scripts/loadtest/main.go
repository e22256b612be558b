// Command loadtest is the HTTP load test: a few
// hundred users acting at once while admins poll TokenAnalytics, against
// any scripts/serve (or deployed URLs), bounded in requests and in time.
// It prints requests per second, p50/p99 and the statuses of each kind of
// request, and fails (exit 1) when any request got a 5xx or no answer.
//
//	loadtest -url http://127.0.0.1:8080 -jwt-secret "$AUTH_JWT_SECRET"
//	loadtest -users 400 -admins 50 -duration 60s -max-requests 5000 -json
//	loadtest -url "$REVOKE_ITEM_URL" -analytics-url "$TOKEN_ANALYTICS_URL" ...
//	loadtest -mode exchange -plaid-url http://127.0.0.1:8788 -plaid-client-id ID -plaid-secret S ...
//
// With -analytics-url, analytics requests go there: each function deployed
// alone, as Cloud Functions serves them (each accepts its full API path).
//
// Two modes, each a user's request of the app (-mode):
//
//   - revoke (the default): each user revokes their own items one after
//     another (DELETE /api/v1/plaid/items/{item_id}). Users and items are
//     those of the benchmark dataset (internal/sample.BenchTokens, which
//     scripts/bench seeds): user bench-user-NNNNN owns bench-item-(3N),
//     (3N+1), (3N+2). Against other data, -items names a file of
//     "user_id item_id" lines.
//   - exchange: each user links new Items (POST /api/v1/plaid/items with
//     Link's public token and the accounts' masks), as the app does after
//     Link's onSuccess. The public tokens are minted before the timed part
//     at the Plaid sandbox (or the fake Plaid) named by -plaid-url, through
//     /sandbox/public_token/create, one Item per exchange, the
//     institutions of -institutions in turn; the users are new ones
//     (-user-prefix), so no exchange is a duplicate of another.
//
// Tokens are HS256 JWTs signed with -jwt-secret (the server's
// AUTH_JWT_SECRET); admins carry "admin": true and sub -admin-id. With
// -out, every request that succeeded (200 for a revocation, 201 for an
// exchange) is written there as a "user_id item_id" line, for a check of
// what the server stored.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/finwell/plaid-token-lifecycle/internal/sample"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// The modes: what each simulated user asks of the app.
const (
	modeRevoke   = "revoke"
	modeExchange = "exchange"
)

// sandboxBanks are the Plaid sandbox's test institutions, which the fake
// Plaid knows too.
const sandboxBanks = "ins_109508,ins_109509,ins_109510,ins_109511,ins_109512"

type options struct {
	mode                                     string
	url, analyticsURL, secret, adminID       string
	itemsFile, out                           string
	plaidURL, plaidClientID, plaidSecret     string
	institutions, userPrefix                 string
	users, admins, perUser, dataset, maxReqs int
	exchangesPerUser                         int
	duration, timeout, adminEvery            time.Duration
	json                                     bool
}

func run() error {
	var o options
	flag.StringVar(&o.mode, "mode", modeRevoke, "what each user does: revoke (their items) or exchange (link new Items)")
	flag.StringVar(&o.url, "url", "http://127.0.0.1:8080", "base URL of scripts/serve (or of a deployment serving the API paths)")
	flag.StringVar(&o.analyticsURL, "analytics-url", "", "base URL analytics requests go to (default: -url)")
	flag.StringVar(&o.secret, "jwt-secret", os.Getenv("AUTH_JWT_SECRET"), "the server's AUTH_JWT_SECRET, to sign users' tokens (default: $AUTH_JWT_SECRET)")
	flag.StringVar(&o.adminID, "admin-id", sample.AdminUser, "sub of the admins' tokens")
	flag.IntVar(&o.users, "users", 400, "concurrent users")
	flag.IntVar(&o.perUser, "revokes-per-user", 3, "revoke: items each user revokes, one after another")
	flag.IntVar(&o.exchangesPerUser, "exchanges-per-user", 1, "exchange: Items each user links, one after another")
	flag.IntVar(&o.admins, "admins", 50, "concurrent admins polling analytics until the users are done")
	flag.DurationVar(&o.adminEvery, "admin-interval", time.Second, "how long an admin waits after an answer before asking again (0: at once, a stress test)")
	flag.IntVar(&o.dataset, "dataset", 0, "revoke: size of the seeded benchmark dataset (0: just enough for the users)")
	flag.StringVar(&o.itemsFile, "items", "", `revoke: file of "user_id item_id" lines to revoke instead of the benchmark dataset's`)
	flag.StringVar(&o.plaidURL, "plaid-url", os.Getenv("PLAID_BASE_URL"), "exchange: the Plaid sandbox (or fake Plaid) that mints the public tokens (default: $PLAID_BASE_URL)")
	flag.StringVar(&o.plaidClientID, "plaid-client-id", os.Getenv("PLAID_CLIENT_ID"), "exchange: the server's Plaid client id (default: $PLAID_CLIENT_ID)")
	flag.StringVar(&o.plaidSecret, "plaid-secret", os.Getenv("PLAID_SECRET"), "exchange: the server's Plaid secret (default: $PLAID_SECRET)")
	flag.StringVar(&o.institutions, "institutions", sandboxBanks, "exchange: institutions of the new Items, comma-separated, taken in turn")
	flag.StringVar(&o.userPrefix, "user-prefix", "", "exchange: user ids are this and a number (default: loadtest-<time>-user-, new users every run)")
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "stop after this long, whatever is left (public tokens are minted before)")
	flag.IntVar(&o.maxReqs, "max-requests", 20000, "stop after this many requests in all")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Second, "per request")
	flag.StringVar(&o.out, "out", "", `write a "user_id item_id" line here for every request that succeeded (200 revoked, 201 exchanged)`)
	flag.BoolVar(&o.json, "json", false, "print one JSON line instead of the table")
	flag.Parse()
	if o.secret == "" {
		return errors.New("-jwt-secret (or AUTH_JWT_SECRET) is required")
	}
	for name, u := range map[string]string{"-url": o.url, "-analytics-url": o.analyticsURL, "-plaid-url": o.plaidURL} {
		if _, err := url.Parse(u); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	var users []user
	var err error
	switch o.mode {
	case modeRevoke:
		users, err = revokingUsers(o)
	case modeExchange:
		users, err = linkingUsers(context.Background(), o)
	default:
		return fmt.Errorf("-mode %q: want %s or %s", o.mode, modeRevoke, modeExchange)
	}
	if err != nil {
		return err
	}
	rep, err := load(context.Background(), o, users)
	if err != nil {
		return err
	}
	if o.json {
		if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
			return err
		}
	} else {
		rep.print(os.Stdout)
	}
	if rep.ServerErrors+rep.NoAnswer > 0 {
		return fmt.Errorf("%d answers were 5xx and %d requests got no answer", rep.ServerErrors, rep.NoAnswer)
	}
	return nil
}

// user is one simulated user and the requests they make, one after
// another.
type user struct {
	id    string
	calls []userCall
}

// userCall is one request of a user: the revocation of item, or the
// exchange of publicToken for a new Item whose one account has mask.
type userCall struct {
	item              string
	publicToken, mask string
}

// revokingUsers are the users of the revoke mode: the benchmark dataset's,
// or those of -items.
func revokingUsers(o options) ([]user, error) {
	byUser := map[string]*user{}
	var order []string
	add := func(uid, item string) {
		u := byUser[uid]
		if u == nil {
			u = &user{id: uid}
			byUser[uid] = u
			order = append(order, uid)
		}
		if len(u.calls) < o.perUser {
			u.calls = append(u.calls, userCall{item: item})
		}
	}
	if o.itemsFile != "" {
		f, err := os.Open(o.itemsFile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) == 2 {
				add(fields[0], fields[1])
			}
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
	} else {
		n := cmp.Or(o.dataset, 3*o.users)
		for _, t := range sample.BenchTokens(n, time.Now()) {
			add(t.UserID, t.ItemID)
		}
	}
	if len(order) < o.users {
		return nil, fmt.Errorf("only %d users in the data; -users %d", len(order), o.users)
	}
	out := make([]user, o.users)
	for i, id := range order[:o.users] {
		out[i] = *byUser[id]
	}
	return out, nil
}

// linkingUsers are the users of the exchange mode, new ones, each with
// -exchanges-per-user public tokens minted at -plaid-url.
func linkingUsers(ctx context.Context, o options) ([]user, error) {
	if o.plaidURL == "" || o.plaidClientID == "" || o.plaidSecret == "" {
		return nil, errors.New("-mode exchange needs -plaid-url, -plaid-client-id and -plaid-secret (the server's) to mint public tokens")
	}
	institutions := strings.FieldsFunc(o.institutions, func(r rune) bool { return r == ',' || r == ' ' })
	if len(institutions) == 0 {
		return nil, errors.New("-institutions is empty")
	}
	if o.exchangesPerUser < 1 {
		return nil, errors.New("-exchanges-per-user must be at least 1")
	}
	prefix := cmp.Or(o.userPrefix, "loadtest-"+strconv.FormatInt(time.Now().UnixNano(), 36)+"-user-")
	users := make([]user, o.users)
	n := 0
	for i := range users {
		users[i].id = fmt.Sprintf("%s%05d", prefix, i)
		for range o.exchangesPerUser {
			// Every mask is another: none of a user's Items is a
			// duplicate of another of theirs (same institution, shared
			// mask), whatever the institutions.
			users[i].calls = append(users[i].calls, userCall{mask: fmt.Sprintf("%04d", n%10000)})
			n++
		}
	}
	minter := &publicTokenMinter{client: &http.Client{Timeout: o.timeout}, url: strings.TrimRight(o.plaidURL, "/"),
		clientID: o.plaidClientID, secret: o.plaidSecret}
	start := time.Now()
	err := forEachCall(users, mintConcurrency, func(k int, c *userCall) error {
		var err error
		c.publicToken, err = minter.mint(ctx, institutions[k%len(institutions)])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("minting public tokens: %w", err)
	}
	fmt.Fprintf(os.Stderr, "loadtest: minted %d public tokens in %.1f s (not timed)\n", n, time.Since(start).Seconds())
	return users, nil
}

// mintConcurrency bounds the minting requests in flight: they are set-up,
// not the load.
const mintConcurrency = 16

// forEachCall runs f for every call of every user, numbered in order,
// at most workers at a time, and returns the first error.
func forEachCall(users []user, workers int, f func(k int, c *userCall) error) error {
	var calls []*userCall
	for i := range users {
		for j := range users[i].calls {
			calls = append(calls, &users[i].calls[j])
		}
	}
	var next atomic.Int64
	var failed atomic.Bool
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for !failed.Load() {
				k := int(next.Add(1) - 1)
				if k >= len(calls) {
					return
				}
				if errs[w] = f(k, calls[k]); errs[w] != nil {
					failed.Store(true)
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// publicTokenMinter mints public tokens as Plaid's sandbox does for a
// user who finished Link, through /sandbox/public_token/create.
type publicTokenMinter struct {
	client                *http.Client
	url, clientID, secret string
}

func (m *publicTokenMinter) mint(ctx context.Context, institutionID string) (string, error) {
	body, err := json.Marshal(map[string]any{"client_id": m.clientID, "secret": m.secret,
		"institution_id": institutionID, "initial_products": []string{"transactions"}})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.url+"/sandbox/public_token/create", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := m.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var answer struct {
		PublicToken  string `json:"public_token"`
		ErrorCode    string `json:"error_code"`
		ErrorMessage string `json:"error_message"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return "", fmt.Errorf("/sandbox/public_token/create: %s: %w", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || answer.PublicToken == "" {
		return "", fmt.Errorf("/sandbox/public_token/create at %s: %s %s %s", institutionID, resp.Status, answer.ErrorCode, answer.ErrorMessage)
	}
	return answer.PublicToken, nil
}

// Report is what the load test measured.
type Report struct {
	Mode          string // revoke or exchange
	Users, Admins int
	Seconds       float64
	// UserRequests are the users' requests: revocations or exchanges.
	UserRequests KindReport
	Analytics    KindReport
	ServerErrors int // 5xx answers, every kind
	NoAnswer     int // transport errors and timeouts
	Stopped      string
}

// KindReport is one kind of request's figures.
type KindReport struct {
	Requests  int
	PerSecond float64
	P50MS     float64
	P99MS     float64
	MaxMS     float64
	Statuses  map[string]int // "200", "404", "error"...
}

type sampleSet struct {
	mu       sync.Mutex
	lat      []time.Duration
	statuses map[string]int
	first    time.Time
	last     time.Time
}

func (s *sampleSet) add(start time.Time, status string) {
	d := time.Since(start)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.statuses == nil {
		s.statuses = map[string]int{}
	}
	s.lat = append(s.lat, d)
	s.statuses[status]++
	if s.first.IsZero() || start.Before(s.first) {
		s.first = start
	}
	if end := start.Add(d); end.After(s.last) {
		s.last = end
	}
}

func (s *sampleSet) report() KindReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := KindReport{Requests: len(s.lat), Statuses: s.statuses}
	if len(s.lat) == 0 {
		return r
	}
	lat := slices.Clone(s.lat)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		i := min(len(lat)-1, int(p*float64(len(lat))))
		return float64(lat[i].Microseconds()) / 1000
	}
	r.P50MS, r.P99MS, r.MaxMS = pct(0.50), pct(0.99), float64(lat[len(lat)-1].Microseconds())/1000
	if span := s.last.Sub(s.first).Seconds(); span > 0 {
		r.PerSecond = float64(len(lat)) / span
	}
	return r
}

// request is one HTTP request of the load: method, path and JSON body (nil
// for none), and the status that means it succeeded.
type request struct {
	method, url string
	body        []byte
	success     int
}

// httpRequest is the HTTP request of c.
func (o options) httpRequest(base string, c userCall) (request, error) {
	if o.mode == modeExchange {
		body, err := json.Marshal(map[string]any{"public_token": c.publicToken, "accounts": []map[string]string{{"mask": c.mask}}})
		return request{method: http.MethodPost, url: base + "/api/v1/plaid/items", body: body, success: http.StatusCreated}, err
	}
	return request{method: http.MethodDelete, url: base + "/api/v1/plaid/items/" + url.PathEscape(c.item), success: http.StatusOK}, nil
}

// successItem is the item a successful answer to c concerns: the one
// revoked, or the one the exchange created (its answer's item_id).
func (o options) successItem(c userCall, answer []byte) (string, error) {
	if o.mode != modeExchange {
		return c.item, nil
	}
	var created struct {
		ItemID string `json:"item_id"`
	}
	if err := json.Unmarshal(answer, &created); err != nil || created.ItemID == "" {
		return "", fmt.Errorf("an exchange answered 201 without an item_id: %q", answer)
	}
	return created.ItemID, nil
}

func load(ctx context.Context, o options, users []user) (*Report, error) {
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = o.users + o.admins
	client := &http.Client{Timeout: o.timeout, Transport: transport}
	base := strings.TrimRight(o.url, "/")
	analyticsBase := strings.TrimRight(cmp.Or(o.analyticsURL, o.url), "/")

	var budget atomic.Int64
	budget.Store(int64(o.maxReqs))
	var noAnswer, serverErrors atomic.Int64
	// do sends r and returns its status and body; ok is false when the
	// request was not sent or the run stopped before its answer.
	do := func(r request, bearer string, set *sampleSet) (status int, answer []byte, ok bool) {
		if budget.Add(-1) < 0 {
			return 0, nil, false
		}
		req, err := http.NewRequestWithContext(ctx, r.method, r.url, bytes.NewReader(r.body))
		if err != nil {
			return 0, nil, false
		}
		req.Header.Set("Authorization", "Bearer "+bearer)
		if r.body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err == nil {
			answer, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err != nil {
			if ctx.Err() != nil {
				return 0, nil, false // stopped by -duration: not the server's fault
			}
			noAnswer.Add(1)
			set.add(start, "error")
			return 0, nil, true
		}
		if resp.StatusCode >= 500 {
			serverErrors.Add(1)
		}
		set.add(start, fmt.Sprint(resp.StatusCode))
		return resp.StatusCode, answer, true
	}

	sign := func(claims jwt.MapClaims) (string, error) {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
		claims["type"] = "access_token"
		return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(o.secret))
	}
	adminToken, err := sign(jwt.MapClaims{"sub": o.adminID, "admin": true})
	if err != nil {
		return nil, err
	}
	userTokens := make([]string, len(users))
	requests := make([][]request, len(users))
	for i, u := range users {
		if userTokens[i], err = sign(jwt.MapClaims{"sub": u.id}); err != nil {
			return nil, err
		}
		for _, c := range u.calls {
			r, err := o.httpRequest(base, c)
			if err != nil {
				return nil, err
			}
			requests[i] = append(requests[i], r)
		}
	}
	analyticsRequest := request{method: http.MethodGet, url: analyticsBase + "/api/v1/plaid/tokens/analytics", success: http.StatusOK}

	var userSet, analytics sampleSet
	var succeededMu sync.Mutex
	var succeeded []string // "user_id item_id"
	var badAnswers []error
	start := time.Now()
	usersDone := make(chan struct{})
	var usersWG, adminsWG sync.WaitGroup
	ready := make(chan struct{}) // everyone starts at once
	for i, u := range users {
		usersWG.Go(func() {
			<-ready
			for j, r := range requests[i] {
				status, answer, ok := do(r, userTokens[i], &userSet)
				if !ok {
					return
				}
				if status != r.success {
					continue
				}
				item, err := o.successItem(u.calls[j], answer)
				succeededMu.Lock()
				if err != nil {
					badAnswers = append(badAnswers, err)
				} else {
					succeeded = append(succeeded, u.id+" "+item)
				}
				succeededMu.Unlock()
			}
		})
	}
	for range o.admins {
		adminsWG.Go(func() {
			<-ready
			for {
				select {
				case <-usersDone:
					return
				default:
				}
				if _, _, ok := do(analyticsRequest, adminToken, &analytics); !ok {
					return
				}
				select {
				case <-usersDone:
					return
				case <-ctx.Done():
					return
				case <-time.After(o.adminEvery):
				}
			}
		})
	}
	close(ready)
	usersWG.Wait()
	close(usersDone)
	adminsWG.Wait()
	if len(badAnswers) > 0 {
		return nil, errors.Join(badAnswers...)
	}

	rep := &Report{Mode: o.mode, Users: o.users, Admins: o.admins, Seconds: time.Since(start).Seconds(),
		UserRequests: userSet.report(), Analytics: analytics.report(),
		ServerErrors: int(serverErrors.Load()), NoAnswer: int(noAnswer.Load())}
	switch {
	case ctx.Err() != nil:
		rep.Stopped = fmt.Sprintf("after -duration %v", o.duration)
	case budget.Load() < 0:
		rep.Stopped = fmt.Sprintf("after -max-requests %d", o.maxReqs)
	}
	if o.out != "" {
		sort.Strings(succeeded)
		if err := os.WriteFile(o.out, []byte(strings.Join(succeeded, "\n")+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

func (r *Report) print(w io.Writer) {
	fmt.Fprintf(w, "%d users (%s), %d admins polling analytics, %.1f s", r.Users, r.Mode, r.Admins, r.Seconds)
	if r.Stopped != "" {
		fmt.Fprintf(w, " (stopped %s)", r.Stopped)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-10s %9s %8s %9s %9s %9s  %s\n", "request", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "statuses")
	for _, k := range []struct {
		name string
		r    KindReport
	}{{r.Mode, r.UserRequests}, {"analytics", r.Analytics}} {
		var st []string
		for s, n := range k.r.Statuses {
			st = append(st, fmt.Sprintf("%s×%d", s, n))
		}
		sort.Strings(st)
		fmt.Fprintf(w, "%-10s %9d %8.1f %9.0f %9.0f %9.0f  %s\n", k.name, k.r.Requests, k.r.PerSecond, k.r.P50MS, k.r.P99MS, k.r.MaxMS, strings.Join(st, " "))
	}
	fmt.Fprintf(w, "5xx: %d, no answer: %d\n", r.ServerErrors, r.NoAnswer)
}
