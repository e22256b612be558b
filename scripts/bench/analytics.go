package main

// Analytics from the counters TokenStats keeps.
//
//	bench analytics -serve BIN [-n 100000] [-direct 20000]
//
// It starts a Firestore emulator of its own through the SDK's launcher,
// with --functions_emulator pointing at scripts/serve -token-stats=trigger,
// and registers TokenStats' trigger: every write to plaid_tokens becomes an
// Eventarc-shaped event delivered to serve, which counts it with the
// deployed TokenStats code. Then, in one run:
//
//  1. catch-up: this process, another writer than serve, writes n tokens
//     (the benchmark dataset, 32 writes at a time as an app backend would)
//     and reads the counters every 200 ms until they equal, on every key,
//     what the written documents count for: the time until they agree,
//     against the time the writes took. The emulator delivers its events
//     one at a time, so this measures its delivery as much as our code;
//     then the same again in another project, each write's event delivered
//     by this process as the write commits, 32 at a time, as Eventarc
//     delivers from many instances, to a second serve;
//  2. TokenStats's own throughput: -direct events fed straight to the
//     TokenStats handler by 32 goroutines at once (Eventarc calls many
//     instances at once, one event each), and the same changes through
//     serve's batching applier; then a recount with repair of them finds
//     no drift;
//  3. analytics at n tokens: the endpoint (through serve, an admin JWT) and
//     the service, against reading every document of plaid_tokens; the
//     documents each analytics call reads, counted on the wire (gRPC), at n
//     and at -direct tokens; and an exact recount, which must find the
//     counters exact on every key.
//
// Each result is one JSON line of section "analytics"; analyticsReport
// prints them for `bench report`.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"sync/atomic"
	"syscall"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/finwell/plaid-token-lifecycle/functions"
	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
	"github.com/finwell/plaid-token-lifecycle/internal/testenv"
	"github.com/finwell/plaid-token-lifecycle/internal/wait"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

func init() {
	commands["analytics"] = analyticsCmd
	reporters = append(reporters, analyticsReport)
}

func analyticsCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("analytics", flag.ExitOnError)
	serveBin := fs.String("serve", "", "the built scripts/serve")
	n := fs.Int("n", 100000, "tokens another process writes")
	direct := fs.Int("direct", 20000, "events fed to TokenStats directly")
	writers := fs.Int("writers", 32, "the writing process's writes at a time")
	feeders := fs.Int("feeders", 32, "TokenStats calls at a time in the direct measurement (Eventarc instances)")
	logDir := fs.String("logs", os.TempDir(), "where the emulator's and serve's logs go")
	fs.Parse(args)
	if *serveBin == "" {
		return errors.New("-serve is required (the built scripts/serve)")
	}
	cfg, err := lifecycle.LoadConfig(lifecycle.Needs{Store: true})
	if err != nil {
		return err
	}

	servePort, err := wait.FreePort()
	if err != nil {
		return err
	}
	emuHost, stopEmu, err := emulator.StartTriggering("127.0.0.1:"+servePort, filepath.Join(*logDir, "analytics-emulator.log"))
	if err != nil {
		return err
	}
	defer stopEmu()
	// Every client of this process talks to that emulator.
	os.Setenv("FIRESTORE_EMULATOR_HOST", emuHost)
	if err := warmUp(ctx, cfg.Project+"-warmup"); err != nil {
		return err
	}
	if err := emulator.RegisterTokenStatsTrigger(emuHost, cfg.Project); err != nil {
		return err
	}
	secret := "bench-jwt-secret-" + fmt.Sprint(time.Now().UnixNano())
	base, stopServe, err := startTriggerServe(*serveBin, servePort, emuHost, secret, filepath.Join(*logDir, "analytics-serve.log"))
	if err != nil {
		return err
	}
	defer stopServe()

	reads := &readCounter{}
	prod, err := countedProduction(ctx, cfg, reads)
	if err != nil {
		return err
	}
	defer prod.Close()
	client := prod.client
	svc, err := prod.service()
	if err != nil {
		return err
	}
	if err := waitInitialized(ctx, prod.deps.Stats, 2*time.Minute); err != nil {
		return fmt.Errorf("serve did not bring the counters up to date: %w", err)
	}

	// 1. Catch-up.
	tokens := sample.BenchTokens(*n, time.Now().UTC())
	want := lifecycle.NewRecount()
	for _, t := range tokens {
		sum, _ := lifecycle.TokenSummaryFromDocument(t.ItemID, benchDocument(t))
		want.Add(sum)
	}
	expected := exactPart(want.Finish())
	progressf("analytics: writing %d tokens (%d at a time) while serve counts the emulator's deliveries", *n, *writers)
	catchup, err := catchUp(ctx, client, prod.deps.Stats, tokens, expected, *writers, nil)
	if err != nil {
		return err
	}
	if err := emit(catchup); err != nil {
		return err
	}

	// 1b. The same, the events delivered as writes commit, many at a time
	// (Eventarc's way), by a pool of this process's goroutines, to a
	// second serve on a project without the emulator's trigger.
	progressf("analytics: writing %d tokens again, each write's event delivered to serve at once, %d at a time", *n, *writers)
	ccfg := cfg
	ccfg.Project = cfg.Project + "-concurrent"
	concPort, err := wait.FreePort()
	if err != nil {
		return err
	}
	concBase, stopConc, err := startTriggerServe(*serveBin, concPort, emuHost, secret, filepath.Join(*logDir, "analytics-serve-concurrent.log"),
		"GOOGLE_CLOUD_PROJECT="+ccfg.Project)
	if err != nil {
		return err
	}
	defer stopConc()
	cprod, err := countedProduction(ctx, ccfg, reads)
	if err != nil {
		return err
	}
	defer cprod.Close()
	if err := waitInitialized(ctx, cprod.deps.Stats, 2*time.Minute); err != nil {
		return fmt.Errorf("the second serve did not bring the counters up to date: %w", err)
	}
	concurrent, err := catchUp(ctx, cprod.client, cprod.deps.Stats, tokens, expected, *writers, triggerDeliverer(concBase, ccfg.Project, *writers))
	if err != nil {
		return err
	}
	if err := emit(concurrent); err != nil {
		return err
	}

	// 2. TokenStats's own throughput, in projects of their own (no trigger
	// registered: nothing delivers their writes).
	progressf("analytics: %d events fed to TokenStats directly, %d at a time", *direct, *feeders)
	directRes, err := directThroughput(ctx, cfg, *direct, *feeders, reads)
	if err != nil {
		return err
	}
	for _, r := range directRes {
		if err := emit(r); err != nil {
			return err
		}
	}

	// 3. Analytics at n tokens.
	progressf("analytics: reading the counters against reading every document, at %d tokens", *n)
	read, err := analyticsReads(ctx, client, svc, base, secret, reads, *n)
	if err != nil {
		return err
	}
	return emit(read)
}

// benchDocument is a benchmark token as the app's backend writes it (the
// access token is opaque here: nothing decrypts it).
func benchDocument(t sample.Token) map[string]any {
	doc := t.Token
	doc.AccessToken = "v1:bench:" + t.ItemID
	return testenv.TokenData(doc)
}

// exactPart is the part of counters a recount rebuilds (the trend aside).
func exactPart(c lifecycle.Counters) lifecycle.Counters {
	out := lifecycle.Counters{}
	for _, g := range []string{lifecycle.CounterTokens, lifecycle.CounterStatus, lifecycle.CounterInstitutions,
		lifecycle.CounterEnvironments, lifecycle.CounterActivity} {
		for k, v := range c[g] {
			out.Add(g, k, v)
		}
	}
	return out.Compact()
}

// startTriggerServe runs scripts/serve taking the emulator's deliveries,
// with env added to its environment.
func startTriggerServe(bin, port, emuHost, secret, logPath string, env ...string) (string, func(), error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "-token-stats=trigger")
	cmd.Env = append(os.Environ(), "FIRESTORE_EMULATOR_HOST="+emuHost, "HOST=127.0.0.1", "PORT="+port,
		"AUTH_JWT_SECRET="+secret, "ADMIN_USER_IDS="+sample.AdminUser, "LOG_LEVEL=WARN")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return "", nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logFile.Close()
	}
	base := "http://127.0.0.1:" + port
	if err := waitAnswering(base+"/healthz", 30*time.Second); err != nil {
		stop()
		return "", nil, fmt.Errorf("scripts/serve: %w (its log: %s)", err, logPath)
	}
	return base, stop, nil
}

// warmUp writes and reads a few thousand documents in a throwaway project,
// so that no measurement pays for the emulator's JIT.
func warmUp(ctx context.Context, project string) error {
	client, err := firestore.NewClient(ctx, project)
	if err != nil {
		return err
	}
	defer client.Close()
	bw := client.BulkWriter(ctx)
	for _, t := range sample.BenchTokens(3000, time.Now().UTC()) {
		if _, err := bw.Set(client.Collection(lifecycle.TokensCollection).Doc(t.ItemID), benchDocument(t)); err != nil {
			return err
		}
	}
	bw.End()
	_, err = client.Collection(lifecycle.TokensCollection).Documents(ctx).GetAll()
	return err
}

// readCounter counts the documents Firestore returns to a client: query
// results and found documents of batch gets, as they arrive on the wire.
type readCounter struct{ n atomic.Int64 }

func (c *readCounter) interceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
	streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return s, err
	}
	return countingStream{ClientStream: s, n: &c.n}, nil
}

type countingStream struct {
	grpc.ClientStream
	n *atomic.Int64
}

func (s countingStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil {
		switch r := m.(type) {
		case *firestorepb.RunQueryResponse:
			if r.GetDocument() != nil {
				s.n.Add(1)
			}
		case *firestorepb.BatchGetDocumentsResponse:
			if r.GetFound() != nil {
				s.n.Add(1)
			}
		}
	}
	return err
}

// countedProduction is production over a client whose document reads are
// counted. On the emulator the client library dials its own connection and
// drops dial options, so the connection is dialed here, as it dials it,
// with the counter.
func countedProduction(ctx context.Context, cfg lifecycle.Config, reads *readCounter) (*production, error) {
	host := os.Getenv("FIRESTORE_EMULATOR_HOST")
	if host == "" {
		return nil, errors.New("FIRESTORE_EMULATOR_HOST is not set: the benchmark runs on the emulator only")
	}
	conn, err := grpc.NewClient(host, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(emulatorOwner{}), grpc.WithChainStreamInterceptor(reads.interceptor),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)))
	if err != nil {
		return nil, err
	}
	client, err := firestore.NewClientWithDatabase(ctx, cfg.Project, cfg.FirestoreDatabase, option.WithGRPCConn(conn))
	if err != nil {
		conn.Close()
		return nil, err
	}
	return newProduction(cfg, client)
}

// emulatorOwner is the credential the client library gives the emulator:
// its administrator.
type emulatorOwner struct{}

func (emulatorOwner) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer owner"}, nil
}

func (emulatorOwner) RequireTransportSecurity() bool { return false }

// waitInitialized waits for serve's recount with repair on start.
func waitInitialized(ctx context.Context, stats lifecycle.StatsStore, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		r, err := stats.ReadStats(ctx, lifecycle.StatsRead{})
		if err != nil {
			return err
		}
		if !r.State.InitializedAt.IsZero() {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("not initialized within %v", within)
}

// catchUp writes tokens, writers at a time, and reads the counters every
// 200 ms until they equal expected.
func catchUp(ctx context.Context, client *firestore.Client, stats lifecycle.StatsStore, tokens []sample.Token,
	expected lifecycle.Counters, writers int, deliver deliverFunc) (Result, error) {
	start := time.Now()
	agreed := make(chan time.Duration, 1)
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	var lastDiff atomic.Value
	go func() {
		for pollCtx.Err() == nil {
			r, err := stats.ReadStats(pollCtx, lifecycle.StatsRead{})
			if err == nil {
				diff := cmp.Diff(expected, exactPart(r.Counters))
				if diff == "" {
					agreed <- time.Since(start)
					return
				}
				lastDiff.Store(fmt.Sprintf("total %d of %d", r.Counters.Get(lifecycle.CounterTokens, lifecycle.CounterTotal),
					expected.Get(lifecycle.CounterTokens, lifecycle.CounterTotal)))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()

	// With deliver, each write's event goes to TokenStats from a pool of
	// deliverers, as Eventarc would deliver them from many instances.
	type written struct {
		token   sample.Token
		updated time.Time
	}
	var deliveries errgroup.Group
	queue := make(chan written, len(tokens))
	if deliver != nil {
		for range writers {
			deliveries.Go(func() error {
				for w := range queue {
					if err := deliver(ctx, w.token, w.updated); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}
	var g errgroup.Group
	g.SetLimit(writers)
	col := client.Collection(lifecycle.TokensCollection)
	for _, t := range tokens {
		g.Go(func() error {
			res, err := col.Doc(t.ItemID).Create(ctx, benchDocument(t))
			if err == nil && deliver != nil {
				queue <- written{t, res.UpdateTime}
			}
			return err
		})
	}
	err := g.Wait()
	close(queue)
	if err != nil {
		return nil, fmt.Errorf("writing the tokens: %w", err)
	}
	writes := time.Since(start)
	if err := deliveries.Wait(); err != nil {
		return nil, fmt.Errorf("delivering the events: %w", err)
	}
	progressf("analytics: %d tokens written in %.1f s; waiting for the counters to agree", len(tokens), writes.Seconds())

	limit := max(20*writes, 10*time.Minute)
	var agree time.Duration
	select {
	case agree = <-agreed:
	case <-time.After(limit - writes):
		d, _ := lastDiff.Load().(string)
		return nil, fmt.Errorf("the counters did not agree within %v of the first write (%s)", limit, d)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	mode := "emulator"
	if deliver != nil {
		mode = "concurrent"
	}
	return Result{"section": "analytics", "kind": "catchup", "mode": mode, "n": len(tokens), "writers": writers,
		"write_s": writes.Seconds(), "agree_s": agree.Seconds(), "ratio": agree.Seconds() / writes.Seconds(),
		"write_per_s": float64(len(tokens)) / writes.Seconds(), "delivered_per_s": float64(len(tokens)) / agree.Seconds()}, nil
}

// deliverFunc delivers the event of a token's creation to TokenStats.
type deliverFunc func(ctx context.Context, t sample.Token, updated time.Time) error

// triggerDeliverer posts creation events to a scripts/serve taking
// emulator deliveries for project, as binary CloudEvents of raw protobuf
// (Eventarc's form; serve takes it as well as the emulator's base64).
func triggerDeliverer(base, project string, conns int) deliverFunc {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns}, Timeout: time.Minute}
	url := base + functions.PathEmulatorTriggers + project + "/triggers/us-central1-TokenStats"
	return func(ctx context.Context, t sample.Token, updated time.Time) error {
		path := lifecycle.TokensCollection + "/" + t.ItemID
		data, err := testenv.FirestoreEventData(project, nil, &testenv.FirestoreDoc{Path: path, Fields: benchDocument(t),
			CreateTime: updated, UpdateTime: updated}, []string{})
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
		if err != nil {
			return err
		}
		for k, v := range map[string]string{"Content-Type": "application/protobuf", "Ce-Specversion": "1.0",
			"Ce-Id": "write-" + t.ItemID, "Ce-Type": functions.FirestoreWrittenEventType,
			"Ce-Source":  "//firestore.googleapis.com/projects/" + project + "/databases/(default)",
			"Ce-Subject": "documents/" + path, "Ce-Time": updated.Format(time.RFC3339Nano)} {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			return fmt.Errorf("delivering %s: HTTP %d", t.ItemID, resp.StatusCode)
		}
		return nil
	}
}

// directThroughput measures TokenStats's own throughput on events of m
// tokens, fed straight to the handler, feeders at a time, and the same
// changes through serve's batching path; each in a project of its own
// holding those tokens, which a recount with repair then checks.
func directThroughput(ctx context.Context, cfg lifecycle.Config, m, feeders int, reads *readCounter) ([]Result, error) {
	tokens := sample.BenchTokens(m, time.Now().UTC())
	var out []Result
	for _, mode := range []string{"handler", "batched"} {
		pcfg := cfg
		pcfg.Project = fmt.Sprintf("%s-%s", cfg.Project, mode)
		prod, err := countedProduction(ctx, pcfg, reads)
		if err != nil {
			return nil, err
		}
		defer prod.Close()
		client := prod.client
		svc, err := prod.service()
		if err != nil {
			return nil, err
		}
		// The documents the events report, written without a trigger.
		bw := client.BulkWriter(ctx)
		updated := make([]time.Time, len(tokens))
		jobs := make([]*firestore.BulkWriterJob, len(tokens))
		for i, t := range tokens {
			if jobs[i], err = bw.Create(client.Collection(lifecycle.TokensCollection).Doc(t.ItemID), benchDocument(t)); err != nil {
				return nil, err
			}
		}
		bw.End()
		for i, j := range jobs {
			res, err := j.Results()
			if err != nil {
				return nil, err
			}
			updated[i] = res.UpdateTime
		}
		server, err := functions.New(ctx, pcfg, functions.Deps{Service: svc,
			Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})
		if err != nil {
			return nil, err
		}

		start := time.Now()
		var events int
		switch mode {
		case "handler":
			evs := make([]event.Event, len(tokens))
			for i, t := range tokens {
				data, err := testenv.FirestoreEventData(pcfg.Project, nil, &testenv.FirestoreDoc{
					Path: lifecycle.TokensCollection + "/" + t.ItemID, Fields: benchDocument(t),
					CreateTime: updated[i], UpdateTime: updated[i]}, []string{})
				if err != nil {
					return nil, err
				}
				if evs[i], err = testenv.FirestoreEvent(fmt.Sprintf("direct-%d", i), pcfg.Project,
					lifecycle.TokensCollection+"/"+t.ItemID, updated[i], data); err != nil {
					return nil, err
				}
			}
			// Eventarc delivers from many instances in no particular
			// order: not the writes' order, in which the dataset's three
			// tokens of a user come one after another (their transactions
			// conflict on the user's count, which the emulator resolves in
			// seconds, Firestore in milliseconds).
			rand.New(rand.NewPCG(1, 2)).Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
			start = time.Now()
			var g errgroup.Group
			g.SetLimit(feeders)
			for _, e := range evs {
				g.Go(func() error { return server.TokenStats(ctx, e) })
			}
			if err := g.Wait(); err != nil {
				return nil, err
			}
			events = len(evs)
		case "batched":
			changes := make([]lifecycle.TokenChange, len(tokens))
			for i, t := range tokens {
				sum, _ := lifecycle.TokenSummaryFromDocument(t.ItemID, benchDocument(t))
				changes[i] = lifecycle.TokenChange{EventID: fmt.Sprintf("direct-%d", i), At: updated[i], New: sum}
			}
			// As serve's applier: 4 workers, each taking a quarter of the
			// users, in transactions of 100 changes.
			parts := make([][]lifecycle.TokenChange, 4)
			for _, c := range changes {
				h := fnv.New32a()
				h.Write([]byte(c.New.UserID))
				parts[h.Sum32()%4] = append(parts[h.Sum32()%4], c)
			}
			start = time.Now()
			var g errgroup.Group
			for _, part := range parts {
				g.Go(func() error {
					for b := 0; b < len(part); b += lifecycle.MaxTokenChangesPerCall {
						if _, err := server.CountTokenChanges(ctx, part[b:min(b+lifecycle.MaxTokenChangesPerCall, len(part))]); err != nil {
							return err
						}
					}
					return nil
				})
			}
			if err := g.Wait(); err != nil {
				return nil, err
			}
			events = len(changes)
		}
		secs := time.Since(start).Seconds()

		// A recount with repair: no drift, and it initializes the counters
		// (so that analytics read them below).
		res, err := svc.ExactAnalytics(ctx, lifecycle.ExactOptions{Repair: true, Trigger: "bench"})
		if err != nil {
			return nil, err
		}
		before := reads.n.Load()
		if _, err := svc.Analytics(ctx); err != nil {
			return nil, err
		}
		docs := reads.n.Load() - before
		out = append(out, Result{"section": "analytics", "kind": "direct", "mode": mode, "events": events,
			"concurrency": map[string]int{"handler": feeders, "batched": 4}[mode], "seconds": secs, "per_s": float64(events) / secs,
			"drift_keys": res.Drift.Keys(), "users_drifted": res.UsersDrifted, "docs_per_call": docs, "tokens": m})
	}
	return out, nil
}

// analyticsReads times analytics (the endpoint through serve, and the
// service) against reading every document, counts the documents a call
// reads, and checks the counters against an exact recount.
func analyticsReads(ctx context.Context, client *firestore.Client, svc *lifecycle.Service, base, secret string, reads *readCounter, n int) (Result, error) {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sample.AdminUser,
		"exp": time.Now().Add(time.Hour).Unix(), "type": "access_token"}).SignedString([]byte(secret))
	if err != nil {
		return nil, err
	}
	endpoint := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+functions.PathAnalytics, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("analytics endpoint: HTTP %d", resp.StatusCode)
		}
		return nil
	}
	var docs int64
	service := func() error {
		before := reads.n.Load()
		a, err := svc.Analytics(ctx)
		if err != nil {
			return err
		}
		if a.Source != lifecycle.SourceCounters {
			return fmt.Errorf("analytics from %s, not the counters", a.Source)
		}
		docs = reads.n.Load() - before
		return nil
	}
	var scanned int
	scan := func() error {
		scanned = 0
		iter := client.Collection(lifecycle.TokensCollection).Documents(ctx)
		defer iter.Stop()
		for {
			_, err := iter.Next()
			if errors.Is(err, iterator.Done) {
				return nil
			}
			if err != nil {
				return err
			}
			scanned++
		}
	}
	endpointMS, err := medianMS(7, endpoint)
	if err != nil {
		return nil, err
	}
	serviceMS, err := medianMS(7, service)
	if err != nil {
		return nil, err
	}
	scanMS, err := medianMS(3, scan)
	if err != nil {
		return nil, err
	}

	// Exact for every key: the counters' analytics equal a recount's.
	counted, err := svc.Analytics(ctx)
	if err != nil {
		return nil, err
	}
	res, err := svc.ExactAnalytics(ctx, lifecycle.ExactOptions{Trigger: "bench"})
	if err != nil {
		return nil, err
	}
	keysOnly := func(a *lifecycle.Analytics) lifecycle.Analytics {
		c := *a
		c.AsOf, c.Source, c.Trend = time.Time{}, "", nil
		return c
	}
	mismatch := cmp.Diff(keysOnly(res.Analytics), keysOnly(counted))
	return Result{"section": "analytics", "kind": "read", "n": n, "scanned": scanned,
		"endpoint_ms": endpointMS, "service_ms": serviceMS, "scan_ms": scanMS, "docs_per_call": docs,
		"exact": mismatch == "" && len(res.Drift) == 0 && res.UsersDrifted == 0, "mismatch": mismatch,
		"drift_keys": res.Drift.Keys(), "users_drifted": res.UsersDrifted, "total_tokens": counted.TotalTokens}, nil
}

// medianMS runs f runs times and returns the median duration in ms.
func medianMS(runs int, f func() error) (float64, error) {
	var d []float64
	for range runs {
		start := time.Now()
		if err := f(); err != nil {
			return 0, err
		}
		d = append(d, float64(time.Since(start).Microseconds())/1000)
	}
	sort.Float64s(d)
	return d[len(d)/2], nil
}

// analyticsReport prints the analytics section and its final-table rows.
func analyticsReport(w io.Writer, rs results) []row {
	var out []row
	reads := rs.find("analytics", "kind", "read")
	var catchups, directs []Result
	for _, r := range rs.section("analytics") {
		switch r["kind"] {
		case "direct":
			directs = append(directs, r)
		case "catchup":
			catchups = append(catchups, r)
		}
	}
	if len(catchups) == 0 && reads == nil && len(directs) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "== Analytics from TokenStats' counters (BenchTokens dataset, Firestore emulator delivering its trigger's events to scripts/serve)")
	for _, c := range catchups {
		how := map[string]string{
			"emulator":   "events delivered by the emulator's trigger, one at a time",
			"concurrent": fmt.Sprintf("each write's event posted to serve as it commits, %.0f at a time (as Eventarc delivers), decoded by TokenStats' code and applied by serve's batches", c.num("writers")),
		}[fmt.Sprint(c["mode"])]
		fmt.Fprintf(w, "another process wrote %s tokens (%.0f at a time) in %.1f s (%.0f/s), %s: the counters agreed on every key %.1f s after the first write (%.0f events/s): %.2fx the writes\n",
			thousands(c.num("n")), c.num("writers"), c.num("write_s"), c.num("write_per_s"), how, c.num("agree_s"), c.num("delivered_per_s"), c.num("ratio"))
		out = append(out, row{fmt.Sprintf("counters agree after %s writes (%s)", thousands(c.num("n")), c["mode"]),
			fmt.Sprintf("%.2fx (%.0f s vs %.0f s)", c.num("ratio"), c.num("agree_s"), c.num("write_s")), "<= 1.5x", verdict(c.num("ratio") <= 1.5)})
	}
	for _, d := range directs {
		what := map[string]string{"handler": "TokenStats handler, one event per call", "batched": "serve's applier, 100 per transaction"}[fmt.Sprint(d["mode"])]
		fmt.Fprintf(w, "%s, %.0f at a time: %s events in %.1f s, %.0f events/s; then a recount with repair: %.0f drifted keys, %.0f users\n",
			what, d.num("concurrency"), thousands(d.num("events")), d.num("seconds"), d.num("per_s"), d.num("drift_keys"), d.num("users_drifted"))
		out = append(out, row{fmt.Sprintf("TokenStats throughput (%s)", d["mode"]), fmt.Sprintf("%.0f events/s, drift %.0f", d.num("per_s"), d.num("drift_keys")), "", nil})
	}
	if r := reads; r != nil {
		fmt.Fprintf(w, "at %s tokens: analytics endpoint %.1f ms, service %.1f ms (%.0f documents read); reading every document %.0f ms (%s documents)\n",
			thousands(r.num("n")), r.num("endpoint_ms"), r.num("service_ms"), r.num("docs_per_call"), r.num("scan_ms"), thousands(r.num("scanned")))
		if r["exact"] != true {
			fmt.Fprintf(w, "NOT EXACT: drift %.0f keys, %.0f users; recount vs counters:\n%v\n", r.num("drift_keys"), r.num("users_drifted"), r["mismatch"])
		}
		ratio := r.num("scan_ms") / r.num("endpoint_ms")
		out = append(out, row{fmt.Sprintf("analytics endpoint vs reading every doc, %s tokens", thousands(r.num("n"))),
			fmt.Sprintf("%.0fx (%.1f ms vs %.0f ms)", ratio, r.num("endpoint_ms"), r.num("scan_ms")), ">= 20x", verdict(ratio >= 20)})
		out = append(out, row{"analytics exact for every key (recount, no drift)", fmt.Sprint(r["exact"]), "true", verdict(r["exact"] == true)})
		docs := []string{fmt.Sprintf("%.0f at %s", r.num("docs_per_call"), thousands(r.num("n")))}
		same := true
		for _, d := range directs {
			docs = append(docs, fmt.Sprintf("%.0f at %s", d.num("docs_per_call"), thousands(d.num("tokens"))))
			same = same && d.num("docs_per_call") == r.num("docs_per_call")
		}
		slices.Reverse(docs)
		out = append(out, row{"documents read per analytics call", fmt.Sprint(docs), "independent of n", verdict(same)})
	}
	return out
}
