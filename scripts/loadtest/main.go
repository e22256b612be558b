// Command loadtest is the HTTP load test of issues 10 and 13: a few
// hundred users each revoking their own items through RevokeItem while
// admins poll TokenAnalytics, against any scripts/serve (or a deployed
// URL), bounded in requests and in time. It prints requests per second,
// p50/p99 and the statuses of each kind of request, and fails (exit 1)
// when any request got a 5xx or no answer.
//
//	loadtest -url http://127.0.0.1:8080 -jwt-secret "$AUTH_JWT_SECRET"
//	loadtest -users 400 -admins 50 -duration 60s -max-requests 5000 -json
//	loadtest -url "$REVOKE_ITEM_URL" -analytics-url "$TOKEN_ANALYTICS_URL" ...
//
// With -analytics-url, analytics requests go there: each function deployed
// alone, as Cloud Functions serves them (both accept their full API path).
//
// Users and their items are those of the benchmark dataset
// (internal/sample.BenchTokens, which scripts/bench seeds): user
// bench-user-NNNNN owns bench-item-(3N), (3N+1), (3N+2). Against other data,
// -items names a file of "user_id item_id" lines. Tokens are HS256 JWTs
// signed with -jwt-secret (the server's AUTH_JWT_SECRET); admins carry
// "admin": true and sub -admin-id.
package main

import (
	"bufio"
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

type options struct {
	url, analyticsURL, secret, adminID       string
	itemsFile, revokedOut                    string
	users, admins, perUser, dataset, maxReqs int
	duration, timeout, adminEvery            time.Duration
	json                                     bool
}

func run() error {
	var o options
	flag.StringVar(&o.url, "url", "http://127.0.0.1:8080", "base URL of scripts/serve (or of a deployment serving the API paths)")
	flag.StringVar(&o.analyticsURL, "analytics-url", "", "base URL analytics requests go to (default: -url)")
	flag.StringVar(&o.secret, "jwt-secret", os.Getenv("AUTH_JWT_SECRET"), "the server's AUTH_JWT_SECRET, to sign users' tokens (default: $AUTH_JWT_SECRET)")
	flag.StringVar(&o.adminID, "admin-id", sample.AdminUser, "sub of the admins' tokens")
	flag.IntVar(&o.users, "users", 400, "concurrent users, each revoking their own items")
	flag.IntVar(&o.perUser, "revokes-per-user", 3, "items each user revokes, one after another")
	flag.IntVar(&o.admins, "admins", 50, "concurrent admins polling analytics until the users are done")
	flag.DurationVar(&o.adminEvery, "admin-interval", time.Second, "how long an admin waits after an answer before asking again (0: at once, a stress test)")
	flag.IntVar(&o.dataset, "dataset", 0, "size of the seeded benchmark dataset (0: just enough for the users)")
	flag.StringVar(&o.itemsFile, "items", "", `file of "user_id item_id" lines to revoke instead of the benchmark dataset's`)
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "stop after this long, whatever is left")
	flag.IntVar(&o.maxReqs, "max-requests", 20000, "stop after this many requests in all")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Second, "per request")
	flag.StringVar(&o.revokedOut, "revoked-out", "", "write the item ids whose revocation answered 200 here, one a line")
	flag.BoolVar(&o.json, "json", false, "print one JSON line instead of the table")
	flag.Parse()
	if o.secret == "" {
		return errors.New("-jwt-secret (or AUTH_JWT_SECRET) is required")
	}
	for name, u := range map[string]string{"-url": o.url, "-analytics-url": o.analyticsURL} {
		if _, err := url.Parse(u); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	users, err := loadUsers(o)
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

// user is one user and the items they revoke.
type user struct {
	id    string
	items []string
}

func loadUsers(o options) ([]user, error) {
	byUser := map[string]*user{}
	var order []string
	add := func(uid, item string) {
		u := byUser[uid]
		if u == nil {
			u = &user{id: uid}
			byUser[uid] = u
			order = append(order, uid)
		}
		if len(u.items) < o.perUser {
			u.items = append(u.items, item)
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

// Report is what the load test measured.
type Report struct {
	Users, Admins int
	Seconds       float64
	Revoke        KindReport
	Analytics     KindReport
	ServerErrors  int // 5xx answers, every kind
	NoAnswer      int // transport errors and timeouts
	Stopped       string
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
	do := func(method, url, bearer string, set *sampleSet) (int, bool) {
		if budget.Add(-1) < 0 {
			return 0, false
		}
		req, err := http.NewRequestWithContext(ctx, method, url, nil)
		if err != nil {
			return 0, false
		}
		req.Header.Set("Authorization", "Bearer "+bearer)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return 0, false // stopped by -duration: not the server's fault
			}
			noAnswer.Add(1)
			set.add(start, "error")
			return 0, true
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			serverErrors.Add(1)
		}
		set.add(start, fmt.Sprint(resp.StatusCode))
		return resp.StatusCode, true
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
	for i, u := range users {
		if userTokens[i], err = sign(jwt.MapClaims{"sub": u.id}); err != nil {
			return nil, err
		}
	}

	var revokes, analytics sampleSet
	var revokedMu sync.Mutex
	var revoked []string
	start := time.Now()
	usersDone := make(chan struct{})
	var usersWG, adminsWG sync.WaitGroup
	ready := make(chan struct{}) // everyone starts at once
	for i, u := range users {
		usersWG.Go(func() {
			<-ready
			for _, item := range u.items {
				status, ok := do(http.MethodDelete, base+"/api/v1/plaid/items/"+url.PathEscape(item), userTokens[i], &revokes)
				if !ok {
					return
				}
				if status == http.StatusOK {
					revokedMu.Lock()
					revoked = append(revoked, item)
					revokedMu.Unlock()
				}
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
				if _, ok := do(http.MethodGet, analyticsBase+"/api/v1/plaid/tokens/analytics", adminToken, &analytics); !ok {
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

	rep := &Report{Users: o.users, Admins: o.admins, Seconds: time.Since(start).Seconds(),
		Revoke: revokes.report(), Analytics: analytics.report(),
		ServerErrors: int(serverErrors.Load()), NoAnswer: int(noAnswer.Load())}
	switch {
	case ctx.Err() != nil:
		rep.Stopped = fmt.Sprintf("after -duration %v", o.duration)
	case budget.Load() < 0:
		rep.Stopped = fmt.Sprintf("after -max-requests %d", o.maxReqs)
	}
	if o.revokedOut != "" {
		sort.Strings(revoked)
		if err := os.WriteFile(o.revokedOut, []byte(strings.Join(revoked, "\n")+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

func (r *Report) print(w io.Writer) {
	fmt.Fprintf(w, "%d users revoking, %d admins polling analytics, %.1f s", r.Users, r.Admins, r.Seconds)
	if r.Stopped != "" {
		fmt.Fprintf(w, " (stopped %s)", r.Stopped)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-10s %9s %8s %9s %9s %9s  %s\n", "request", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "statuses")
	for _, k := range []struct {
		name string
		r    KindReport
	}{{"revoke", r.Revoke}, {"analytics", r.Analytics}} {
		var st []string
		for s, n := range k.r.Statuses {
			st = append(st, fmt.Sprintf("%s×%d", s, n))
		}
		sort.Strings(st)
		fmt.Fprintf(w, "%-10s %9d %8.1f %9.0f %9.0f %9.0f  %s\n", k.name, k.r.Requests, k.r.PerSecond, k.r.P50MS, k.r.P99MS, k.r.MaxMS, strings.Join(st, " "))
	}
	fmt.Fprintf(w, "5xx: %d, no answer: %d\n", r.ServerErrors, r.NoAnswer)
}
