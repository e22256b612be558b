// Command fakeplaid is the local Plaid sandbox stand-in: the fake Plaid
// server of the tests (Plaid's paths, JSON and error objects), listening on
// a fixed address and answering for the sample token set (scripts/dev.sh)
// or the benchmark's dataset (scripts/bench.sh). It is never used when real
// Plaid credentials are configured.
//
//	go run ./scripts/fakeplaid -addr 127.0.0.1:8089 -sample
//	go run ./scripts/fakeplaid -sample -fault-rate 0.2 -fault-seed 1 -fault-kinds rate_limit,server_error
//	go run ./scripts/fakeplaid -bench 10000 -latency 20ms -client-rpm 600
//
// -client-rpm enforces one per-client limit on /item/get and on
// /item/remove (each counted on its own over a sliding 60 s, whoever
// calls), answering 429 RATE_LIMIT_EXCEEDED past it, as Plaid does; on exit
// the stand-in prints how many calls each endpoint answered and refused.
//
// -sign-addr serves the local-development controls, what Plaid and the
// user in the browser would do (scripts/dev-walkthrough.sh uses them):
//
//	POST /sign                          a Plaid-Verification JWT for the body, as a webhook of Plaid's
//	POST /items/{item_id}/reset_login   the bank asks the user to log in again (ITEM_LOGIN_REQUIRED)
//	POST /link/complete                 the user finishes Link: {"link_token": "...", "institution_id": "..."}
//	                                    repairs the Item in update mode, else answers Link's public token
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/finwell/plaid-token-lifecycle/internal/plaidfake"
	"github.com/finwell/plaid-token-lifecycle/internal/sample"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8089", "listen address (loopback only)")
	clientID := flag.String("client-id", "local-client-id", "the PLAID_CLIENT_ID it accepts")
	secret := flag.String("secret", "local-secret", "the PLAID_SECRET it accepts")
	latency := flag.Duration("latency", 0, "added to every answer (the benchmark uses 20ms)")
	withSample := flag.Bool("sample", false, "answer for the sample token set")
	bench := flag.Int("bench", 0, "answer for the benchmark dataset of this many tokens")
	signAddr := flag.String("sign-addr", "", "if set, serve the local-development controls here: POST /sign (signs the body as a Plaid webhook), "+
		"POST /items/{item_id}/reset_login, POST /link/complete, POST /reset-sample (answers for the sample set anew)")
	faultRate := flag.Float64("fault-rate", 0, "fail this fraction (0 to 1) of requests with random faults, to try the service under Plaid's failures")
	faultSeed := flag.Int64("fault-seed", 1, "the seed deciding which requests fail (the same seed fails the same attempts)")
	faultKinds := flag.String("fault-kinds", "", "comma-separated fault kinds: rate_limit, server_error, timeout, reset, lost_answer (default: all)")
	clientRPM := flag.Int("client-rpm", 0, "if set, a per-client limit of this many calls a minute on /item/get and on /item/remove (429 past it)")
	flag.Parse()
	if *faultRate < 0 || *faultRate > 1 {
		fmt.Fprintln(os.Stderr, "fakeplaid: -fault-rate must be from 0 to 1")
		os.Exit(2)
	}
	var kinds []plaidfake.FaultKind
	for _, name := range strings.Split(*faultKinds, ",") {
		if strings.TrimSpace(name) == "" {
			continue
		}
		k, err := plaidfake.ParseFaultKind(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fakeplaid:", err)
			os.Exit(2)
		}
		kinds = append(kinds, k)
	}

	srv, err := plaidfake.Listen(*addr, *clientID, *secret, plaidfake.WithLatency(*latency))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeplaid:", err)
		os.Exit(1)
	}
	defer srv.Close()
	if *clientRPM > 0 {
		srv.SetClientRateLimit(plaidfake.PathItemGet, *clientRPM)
		srv.SetClientRateLimit(plaidfake.PathItemRemove, *clientRPM)
		fmt.Fprintf(os.Stderr, "fakeplaid: per-client limit of %d calls a minute on %s and on %s\n", *clientRPM, plaidfake.PathItemGet, plaidfake.PathItemRemove)
	}
	if *faultRate > 0 {
		srv.SetRandomFaults(*faultRate, *faultSeed, kinds...)
		fmt.Fprintf(os.Stderr, "fakeplaid: failing %.0f%% of requests at random (seed %d)\n", *faultRate*100, *faultSeed)
	}
	now := time.Now().UTC()
	if *withSample {
		sample.Register(srv, sample.Tokens(now))
	}
	if *bench > 0 {
		sample.Register(srv, sample.BenchTokens(*bench, now))
	}
	fmt.Fprintf(os.Stderr, "fakeplaid: local Plaid stand-in (NOT Plaid) on %s\n", srv.URL())
	if *signAddr != "" {
		if err := serveControls(*signAddr, srv); err != nil {
			fmt.Fprintln(os.Stderr, "fakeplaid:", err)
			os.Exit(1)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	if *clientRPM > 0 {
		for _, p := range []string{plaidfake.PathItemGet, plaidfake.PathItemRemove} {
			refused := srv.RateLimited(p)
			fmt.Fprintf(os.Stderr, "fakeplaid: %s: %d calls, %d refused by the per-client limit\n", p, srv.CallCount(p), refused)
		}
	}
}

// serveControls serves what Plaid and the user would do, for local
// development: POST /sign answers a Plaid-Verification JWT for the request
// body, signed by a webhook key this stand-in serves from
// /webhook_verification_key/get (what Plaid does when it sends a webhook);
// POST /items/{item_id}/reset_login breaks the Item's login at the bank;
// POST /link/complete finishes Link for a link token.
func serveControls(addr string, srv *plaidfake.Server) error {
	kid := srv.NewWebhookKey()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /sign", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		jwt, err := srv.SignWebhook(kid, body, time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, jwt)
	})
	mux.HandleFunc("POST /items/{item_id}/reset_login", func(w http.ResponseWriter, r *http.Request) {
		if err := srv.ResetLoginOfItem(r.PathValue("item_id")); err != nil {
			answer(w, http.StatusNotFound, map[string]any{"error": err.Error()})
			return
		}
		answer(w, http.StatusOK, map[string]any{"reset_login": true})
	})
	mux.HandleFunc("POST /link/complete", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			LinkToken     string `json:"link_token"`
			InstitutionID string `json:"institution_id"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			answer(w, http.StatusBadRequest, map[string]any{"error": "the body must be {\"link_token\": \"...\"}"})
			return
		}
		public, err := srv.CompleteLink(req.LinkToken, req.InstitutionID)
		switch {
		case err != nil:
			answer(w, http.StatusBadRequest, map[string]any{"error": err.Error()})
		case public == "":
			answer(w, http.StatusOK, map[string]any{"repaired": true})
		default:
			answer(w, http.StatusOK, map[string]any{"public_token": public})
		}
	})
	// POST /reset-sample: answer for the sample set as at the start, its
	// removed Items back (devkit seed --reset re-seeds the set).
	mux.HandleFunc("POST /reset-sample", func(w http.ResponseWriter, r *http.Request) {
		sample.Register(srv, sample.Tokens(time.Now().UTC()))
		w.WriteHeader(http.StatusNoContent)
	})
	go http.Serve(ln, mux)
	fmt.Fprintf(os.Stderr, "fakeplaid: local controls (webhook signer, reset_login, Link) on http://%s\n", ln.Addr())
	return nil
}

func answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
