package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// machineCmd describes the machine a run measured on: what makes figures
// from two runs comparable or not.
func machineCmd(ctx context.Context, args []string) error {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	memKiB := procMeminfoKiB("MemTotal:")
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return emit(Result{"section": "machine", "cores": runtime.NumCPU(), "cpu": model,
		"mem_gib": float64(memKiB) / (1 << 20), "go": runtime.Version(),
		"date": time.Now().UTC().Format("Mon 2 Jan 2006 15:04:05 UTC"), "load": load})
}

func procMeminfoKiB(field string) int {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			var kib int
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kib)
			return kib
		}
	}
	return 0
}

// results are the lines of a run's results file.
type results []Result

func (rs results) section(name string) []Result {
	var out []Result
	for _, r := range rs {
		if r["section"] == name {
			out = append(out, r)
		}
	}
	return out
}

// find returns the first result of section whose key equals value.
func (rs results) find(section, key string, value any) Result {
	for _, r := range rs.section(section) {
		if fmt.Sprint(r[key]) == fmt.Sprint(value) {
			return r
		}
	}
	return nil
}

func (r Result) num(key string) float64 {
	v, _ := r[key].(float64)
	return v
}

// row is one figure of the final table.
type row struct {
	figure, measured, target string
	met                      *bool // nil: no target
}

func verdict(ok bool) *bool { return &ok }

// A reporter prints a section's details to w and returns its figures for
// the final table. scripts/bench/analytics.go adds its own by
// appending to reporters in an init function.
type reporter func(w io.Writer, rs results) []row

var reporters = []reporter{cleanupReport, pacingReport, quotaReport, coldStartReport, deployedReport, loadReport}

// reportCmd prints the report of a run from its results file: the machine,
// each section's details, and the final table.
func reportCmd(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: bench report RESULTS.jsonl")
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	var rs results
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r Result
		if err := json.Unmarshal(sc.Bytes(), &r); err == nil {
			rs = append(rs, r)
		}
	}
	w := os.Stdout
	machines := rs.section("machine")
	if len(machines) > 0 {
		m, last := machines[0], machines[len(machines)-1]
		fmt.Fprintf(w, "Machine: %v cores, %v, %.0f GiB, %v\n", m["cores"], m["cpu"], m.num("mem_gib"), m["go"])
		fmt.Fprintf(w, "Run: %v; load average (1, 5, 15 min) %v at the start, %v at the end\n", m["date"], m["load"], last["load"])
	}
	var rows []row
	for _, rep := range reporters {
		rows = append(rows, rep(w, rs)...)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "== Final table (ratios measured in this run)")
	fmt.Fprintf(w, "%-52s %-30s %-16s %s\n", "figure", "measured", "target", "")
	for _, r := range rows {
		v := ""
		if r.met != nil {
			v = "met"
			if !*r.met {
				v = "NOT MET"
			}
		}
		fmt.Fprintf(w, "%-52s %-30s %-16s %s\n", r.figure, r.measured, r.target, v)
	}
	return nil
}

func cleanupReport(w io.Writer, rs results) []row {
	runs := rs.section("cleanup")
	if len(runs) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "== Cleanup (BenchTokens dataset, Plaid stand-in answering in 20 ms, pacing lifted, Firestore emulator)")
	fmt.Fprintf(w, "%-11s %8s %8s %8s %9s %8s %10s %11s\n", "mode", "tokens", "checked", "seconds", "tokens/s", "RSS MiB", "our CPU s", "emulator s")
	for _, r := range runs {
		fmt.Fprintf(w, "%-11s %8.0f %8.0f %8.1f %9.1f %8.1f %10.1f %11.1f\n", r["label"], r.num("n"), r.num("checked"), r.num("seconds"),
			rate(r), r.num("peak_rss_kib")/1024, r.num("cpu_s"), r.num("emulator_cpu_s"))
		if r["partial"] == true {
			fmt.Fprintf(w, "%-11s stopped by its budget after %.0f of %.0f tokens: all %.0f would take %.0f s at this rate\n",
				"", r.num("checked"), r.num("n"), r.num("n"), r.num("n")/rate(r))
		}
	}
	// Where the time went: stages of the largest cleanup and its floor.
	var sizes []float64
	for _, r := range runs {
		if r["mode"] == "cleanup" {
			sizes = append(sizes, r.num("n"))
		}
	}
	var out []row
	for _, n := range sizes {
		c, f := best(rs, "cleanup", n), best(rs, "floor", n)
		if c == nil || f == nil {
			continue
		}
		ratio := c.num("seconds") / f.num("seconds")
		out = append(out, row{fmt.Sprintf("cleanup vs floor at %s tokens", thousands(n)),
			fmt.Sprintf("%.2fx (%.1f s vs %.1f s)", ratio, c.num("seconds"), f.num("seconds")), "<= 1.2x", verdict(ratio <= 1.2)})
	}
	for _, s := range rs.section("cleanup") {
		if s["mode"] != "sequential" {
			continue
		}
		c := best(rs, "cleanup", s.num("n"))
		if c == nil {
			continue
		}
		speedup := rate(c) / rate(s)
		old := fmt.Sprintf("%.1f s", s.num("seconds"))
		if s["partial"] == true {
			old = fmt.Sprintf("%.0f s at its rate", s.num("n")/rate(s))
		}
		out = append(out, row{fmt.Sprintf("cleanup vs old algorithm at %s tokens", thousands(s.num("n"))),
			fmt.Sprintf("%.0fx (%.1f s vs %s)", speedup, c.num("seconds"), old), ">= 30x", verdict(speedup >= 30)})
	}
	if len(sizes) >= 2 {
		small, large := best(rs, "cleanup", sizes[0]), best(rs, "cleanup", sizes[len(sizes)-1])
		ratio := large.num("peak_rss_kib") / small.num("peak_rss_kib")
		out = append(out, row{fmt.Sprintf("peak RSS at %s vs %s tokens", thousands(large.num("n")), thousands(small.num("n"))),
			fmt.Sprintf("%.2fx (%.0f vs %.0f MiB)", ratio, large.num("peak_rss_kib")/1024, small.num("peak_rss_kib")/1024), "<= 1.2x", verdict(ratio <= 1.2)})
	}
	for _, n := range sizes {
		c, f := best(rs, "cleanup", n), best(rs, "floor", n)
		if c == nil || f == nil {
			continue
		}
		fmt.Fprintf(w, "\nwhere the time went at %s tokens (seconds summed over calls in flight; wall %.1f s cleanup, %.1f s floor):\n",
			thousands(n), c.num("seconds"), f.num("seconds"))
		printStages(w, c, f)
	}
	for _, s := range runs {
		if s["mode"] != "sequential" {
			continue
		}
		pageS, pages := stageSum(s, "page")
		if pages > 0 {
			fmt.Fprintf(w, "\nthe old algorithm at %s tokens: %.0f ms a token, of which %.0f ms reading its one-document page (%.0f queries)\n",
				thousands(s.num("n")), 1000/rate(s), pageS*1000/pages, pages)
		}
	}
	if ps := rs.section("paging"); len(ps) > 0 {
		fmt.Fprintln(w, "\nwhat one query costs the emulator (its first pages read by cursor, nothing else running):")
		for _, p := range ps {
			fmt.Fprintf(w, "  %v documents at a time from a collection of %s: %.0f ms a query (%.0f queries)\n",
				p["page_size"], thousands(p.num("n")), p.num("seconds")*1000/p.num("pages"), p.num("pages"))
		}
	}
	return out
}

// rate is a cleanup's tokens checked a second.
func rate(r Result) float64 {
	checked := r.num("checked")
	if checked == 0 {
		checked = r.num("n")
	}
	return checked / r.num("seconds")
}

// best is the fastest run of mode at n tokens (runs may be repeated).
func best(rs results, mode string, n float64) Result {
	var b Result
	for _, r := range rs.section("cleanup") {
		if r["mode"] == mode && r.num("n") == n && (b == nil || r.num("seconds") < b.num("seconds")) {
			b = r
		}
	}
	return b
}

// stageSum is the time summed over a stage's calls, and their number.
func stageSum(r Result, name string) (sum, calls float64) {
	st, _ := r["stages"].(map[string]any)
	s, _ := st[name].(map[string]any)
	sum, _ = s["sum_s"].(float64)
	calls, _ = s["calls"].(float64)
	return sum, calls
}

func printStages(w io.Writer, c, f Result) {
	get := stageSum
	fmt.Fprintf(w, "  %-18s %14s %14s\n", "stage", "cleanup s/calls", "floor s/calls")
	for _, name := range []string{"page", "plaid_get", "plaid_remove", "reread", "token_writes", "floor_queue_write", "audit", "run_record", "lease"} {
		cs, cc := get(c, name)
		fs, fc := get(f, name)
		if cc == 0 && fc == 0 {
			continue
		}
		fmt.Fprintf(w, "  %-18s %8.1f/%-6.0f %8.1f/%-6.0f\n", name, cs, cc, fs, fc)
	}
}

func pacingReport(w io.Writer, rs results) []row {
	var out []row
	for _, p := range rs.section("pacing") {
		rpm := p.num("rpm")
		fmt.Fprintln(w)
		fmt.Fprintf(w, "== Plaid pacing: a cleanup with PLAID_ITEM_GET_RPM=%.0f for %.0f s, /item/get counted at the Plaid stand-in\n", rpm, p.num("seconds"))
		fmt.Fprintf(w, "calls %.0f; in the 60 s from the first: %.0f (%.1f%%); most in any 60 s: %.0f; average %.0f/min\n",
			p.num("calls"), p.num("first_minute"), 100*p.num("first_minute")/rpm, p.num("max_60s"), p.num("rate_per_min"))
		fmt.Fprintf(w, "the cleanup had checked %.0f tokens when stopped; %.0f counted as errors: the calls in flight when it was stopped, waiting their turn for the quota\n",
			p.num("checked"), p.num("errors"))
		out = append(out,
			row{fmt.Sprintf("pacing: /item/get in the first 60 s at %.0f/min", rpm), fmt.Sprintf("%.0f (%.1f%%)", p.num("first_minute"), 100*p.num("first_minute")/rpm), ">= 90%", verdict(p.num("first_minute") >= 0.9*rpm)},
			row{"pacing: most /item/get in any 60 s", fmt.Sprintf("%.0f", p.num("max_60s")), fmt.Sprintf("<= %.0f", rpm), verdict(p.num("max_60s") <= rpm)})
	}
	return out
}

func quotaReport(w io.Writer, rs results) []row {
	qs := rs.section("quota")
	if len(qs) == 0 {
		return nil
	}
	q0 := qs[0]
	fmt.Fprintln(w)
	fmt.Fprintf(w, "== One Plaid quota, %.0f processes: the stand-in enforces %.0f /item/get a minute per client (429 past it), each process has PLAID_ITEM_GET_RPM=%.0f, %.0f s\n",
		q0.num("procs"), q0.num("limit"), q0.num("limit"), q0.num("seconds"))
	fmt.Fprintf(w, "%-34s %6s %16s %16s %16s %14s %12s\n", "pacing", "429s", "received max/60s", "received avg/min", "accepted max/60s", "calls still 429", "other fails")
	var out []row
	for _, q := range qs {
		name := "shared quota (SharedPacer)"
		if q["mode"] == "local" {
			name = "per process (LocalPacer, baseline)"
		}
		fmt.Fprintf(w, "%-34s %6.0f %16.0f %16.0f %16.0f %14.0f %12.0f\n", name, q.num("rate_limited"), q.num("received_max_60s"),
			q.num("received_rate_per_min"), q.num("accepted_max_60s"), q.num("calls_rate_limited"), q.num("calls_failed"))
		measured := fmt.Sprintf("%.0f 429s, %.0f/min at most", q.num("rate_limited"), q.num("received_max_60s"))
		if q["mode"] == "shared" {
			out = append(out, row{fmt.Sprintf("one quota, %.0f processes, shared", q.num("procs")), measured,
				fmt.Sprintf("0, <= %.0f", q.num("limit")), verdict(q["pass"] == true)})
		} else {
			out = append(out, row{fmt.Sprintf("one quota, %.0f processes, per process (baseline)", q.num("procs")), measured, "", nil})
		}
	}
	return out
}

func coldStartReport(w io.Writer, rs results) []row {
	cs := rs.section("coldstart")
	if len(cs) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "== Cold start: the buildpack-built binary, FUNCTION_TARGET=<target>, only the target's own variables; median of its starts")
	fmt.Fprintf(w, "%-16s %10s %10s %12s %10s %10s %8s\n", "target", "listen ms", "cold ms", "1st req ms", "warm ms", "keys", "status")
	var out []row
	worst, worstName := 0.0, ""
	for _, c := range cs {
		keys := "-"
		if c["derives_keys"] == true {
			keys = "PBKDF2"
		}
		fmt.Fprintf(w, "%-16s %10.0f %10.0f %12.0f %10.0f %10s %8.0f\n", c["target"], c.num("listen_ms"), c.num("cold_ms"),
			c.num("first_ms"), c.num("warm_ms"), keys, c.num("status"))
		if c.num("cold_ms") > worst {
			worst, worstName = c.num("cold_ms"), fmt.Sprint(c["target"])
		}
	}
	for _, d := range rs.section("coldstart_derive") {
		fmt.Fprintf(w, "key derivation alone (NewVault, one key, 600,000 PBKDF2 iterations): %.0f ms\n", d.num("derive_ms"))
	}
	out = append(out, row{"cold start, slowest target (median)", fmt.Sprintf("%.0f ms (%s)", worst, worstName), "", nil})
	return out
}

func loadReport(w io.Writer, rs results) []row {
	var out []row
	for _, l := range rs.section("load") {
		endpoint := fmt.Sprint(cmp.Or(l["endpoint"], any("revoke")))
		fmt.Fprintln(w)
		fmt.Fprintf(w, "== HTTP under load through scripts/serve %v: %.0f users (%s), %.0f admins polling analytics (every %v), Plaid 20 ms, %s\n",
			l["serve_flags"], l.num("users"), endpoint, l.num("admins"), l["admin_interval"], l.rates())
		fmt.Fprintf(w, "%-10s %9s %8s %9s %9s %9s  %s\n", "request", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "statuses")
		for _, k := range []struct{ name, prefix string }{{endpoint, ""}, {"analytics", "analytics_"}} {
			fmt.Fprintf(w, "%-10s %9.0f %8.1f %9.0f %9.0f %9.0f  %v\n", k.name, l.num(k.prefix+"requests"), l.num(k.prefix+"rps"),
				l.num(k.prefix+"p50_ms"), l.num(k.prefix+"p99_ms"), l.num(k.prefix+"max_ms"), l[k.prefix+"statuses"])
		}
		fmt.Fprintf(w, "5xx: %.0f, no answer: %.0f; in Firestore and at Plaid afterwards:", l.num("server_errors"), l.num("no_answer"))
		if bench, ok := floorBenches[endpoint]; ok {
			for _, c := range bench.columns {
				fmt.Fprintf(w, " %s %.0f,", c.header, c.value(l))
			}
		}
		fmt.Fprintf(w, " pass %v\n", l["pass"])
		who := fmt.Sprintf("%.0f users", l.num("users"))
		if l.num("admins") > 0 {
			who += fmt.Sprintf(" + %.0f admins", l.num("admins"))
		}
		if f, _ := l["serve_flags"].(string); f != "" {
			who += " (" + strings.TrimPrefix(f, "-") + ")"
		}
		out = append(out, row{"HTTP " + endpoint + ", " + who + ": req/s, p50, p99",
			fmt.Sprintf("%.0f/s, %.0f ms, %.0f ms", l.num("rps"), l.num("p50_ms"), l.num("p99_ms")), "p99 <= 2 s", verdict(l.num("p99_ms") <= 2000)})
		if l.num("admins") > 0 {
			out = append(out, row{"HTTP analytics, " + who + ": req/s, p50, p99",
				fmt.Sprintf("%.0f/s, %.0f ms, %.0f ms", l.num("analytics_rps"), l.num("analytics_p50_ms"), l.num("analytics_p99_ms")), "", nil})
		}
		out = append(out, row{"HTTP 5xx, " + who + "; outcome checked in Firestore",
			fmt.Sprintf("%.0f; wrong %.0f", l.num("server_errors"), l.num("wrong")+l.num("unaudited")+l.num("billed_unstored")), "0; 0",
			verdict(l["pass"] == true)})
	}
	return out
}

// deployedReport compares an endpoint as deployed with its floor
// (deployedCmd), for each endpoint and Plaid rates measured: the ratio of
// the medians over rounds of each's p99, and whether every guarantee held
// in every round of the service.
func deployedReport(w io.Writer, rs results) []row {
	var out []row
	var groups []string
	byGroup := map[string][]Result{}
	for _, d := range rs.section("deployed") {
		g := fmt.Sprintf("%v at %s", d["endpoint"], d.rates())
		if byGroup[g] == nil {
			groups = append(groups, g)
		}
		byGroup[g] = append(byGroup[g], d)
	}
	for _, g := range groups {
		out = append(out, deployedGroupReport(w, byGroup[g])...)
	}
	return out
}

// rates are the service's Plaid rates a load result was measured at
// (PLAID_ITEM_REMOVE_RPM, PLAID_ITEM_GET_RPM).
func (r Result) rates() string {
	return fmt.Sprintf("remove %.0f/min, get %.0f/min", r.num("remove_rpm"), r.num("get_rpm"))
}

// A column is one of a workload's figures in a round's line of the report.
type column struct {
	header string
	value  func(Result) float64
}

func key(k string) func(Result) float64 { return func(r Result) float64 { return r.num(k) } }

var (
	revokeColumns = []column{{"reached Plaid", key("removed_at_plaid")}, {"went local", key("revoked_locally")},
		{"removals/60 s", key("removals_max_60s")}, {"wrong", func(r Result) float64 { return r.num("wrong") + r.num("unaudited") }}}
	exchangeColumns = []column{{"201", key("created")}, {"stored", key("stored")}, {"removed", key("removed_at_plaid")},
		{"billed", key("billed_unstored")}, {"wrong", key("wrong")}, {"/item/get/60 s", key("item_get_max_60s")}}
)

// revokeGuarantees: no 5xx, every revocation right and audited, never
// more removals in 60 s than the rate.
func revokeGuarantees(ds []Result) row {
	ok := true
	var maxWait, mostRemovals, errors5xx, right, revoked float64
	for _, d := range ds {
		ok = ok && d["pass"] == true && d.num("removals_max_60s") <= d.num("remove_rpm")
		maxWait = max(maxWait, d.num("max_ms"))
		mostRemovals = max(mostRemovals, d.num("removals_max_60s"))
		errors5xx += d.num("server_errors") + d.num("no_answer")
		right += d.num("verified") - d.num("wrong") - d.num("unaudited")
		revoked += d.num("verified")
	}
	return row{fmt.Sprintf("revoke as deployed, %.0f/min: 5xx, right+audited, Plaid/60 s, max", ds[0].num("remove_rpm")),
		fmt.Sprintf("%.0f; %.0f of %.0f; %.0f; %.0f ms", errors5xx, right, revoked, mostRemovals, maxWait),
		fmt.Sprintf("0; all; <= %.0f", ds[0].num("remove_rpm")), verdict(ok)}
}

// exchangeGuarantees: no 5xx, every exchange answered 201 and stored right,
// no Item billed without a document, /item/get within its rate.
func exchangeGuarantees(ds []Result) row {
	ok := true
	var maxWait, errors5xx, created, want, wrong, billed, gets float64
	for _, d := range ds {
		ok = ok && d["pass"] == true && d.num("item_get_max_60s") <= d.num("get_rpm")
		maxWait = max(maxWait, d.num("max_ms"))
		errors5xx += d.num("server_errors") + d.num("no_answer")
		created += d.num("created")
		want += d.num("requests")
		wrong += d.num("wrong")
		billed += d.num("billed_unstored")
		gets = max(gets, d.num("item_get_max_60s"))
	}
	return row{fmt.Sprintf("exchange as deployed, get %.0f/min: 5xx; 201s; wrong; billed; gets/60 s; max", ds[0].num("get_rpm")),
		fmt.Sprintf("%.0f; %.0f of %.0f; %.0f; %.0f; %.0f; %.0f ms", errors5xx, created, want, wrong, billed, gets, maxWait),
		fmt.Sprintf("0; all; 0; 0; <= %.0f", ds[0].num("get_rpm")), verdict(ok)}
}

func deployedGroupReport(w io.Writer, ds []Result) []row {
	d0 := ds[0]
	bench, ok := floorBenches[fmt.Sprint(d0["endpoint"])]
	if !ok {
		return nil
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "== As deployed against the floor: %v, %s (each function a process, the buildpack's binary; TokenAnalytics beside it), %.0f users at once, %.0f admins polling analytics every %v, Plaid 20 ms, %s; floor and service alternate, after a warm-up of both\n",
		d0["endpoint"], bench.target, d0.num("users"), d0.num("admins"), d0["admin_interval"], d0.rates())
	fmt.Fprintf(w, "%-5s %-8s %8s %7s %8s %8s %8s %14s %5s", "round", "", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "analytics p99", "5xx")
	for _, c := range bench.columns {
		fmt.Fprintf(w, " %*s", max(6, len(c.header)), c.header)
	}
	fmt.Fprintln(w)
	p99 := map[string][]float64{}
	p50 := map[string][]float64{}
	var service []Result
	for _, d := range ds {
		impl := fmt.Sprint(d["impl"])
		fmt.Fprintf(w, "%-5.0f %-8s %8.0f %7.0f %8.0f %8.0f %8.0f %14.0f %5.0f", d.num("round"), impl,
			d.num("requests"), d.num("rps"), d.num("p50_ms"), d.num("p99_ms"), d.num("max_ms"), d.num("analytics_p99_ms"), d.num("server_errors"))
		for _, c := range bench.columns {
			fmt.Fprintf(w, " %*.0f", max(6, len(c.header)), c.value(d))
		}
		fmt.Fprintln(w)
		p99[impl] = append(p99[impl], d.num("p99_ms"))
		p50[impl] = append(p50[impl], d.num("p50_ms"))
		if impl == "service" {
			service = append(service, d)
		}
	}
	fmt.Fprintln(w, "(wrong: an outcome in Firestore or at the Plaid stand-in that the load test's answers do not account for; the run's log names each)")
	if len(p99["floor"]) == 0 || len(service) == 0 {
		return nil
	}
	ratio := median(p99["service"]) / median(p99["floor"])
	name := fmt.Sprintf("%v as deployed vs its floor, %s", d0["endpoint"], d0.rates())
	return []row{
		{name + ": p99", fmt.Sprintf("%.2fx (%.0f ms vs %.0f ms)", ratio, median(p99["service"]), median(p99["floor"])), "<= 1.2x", verdict(ratio <= 1.2)},
		{name + ": p50", fmt.Sprintf("%.2fx (%.0f ms vs %.0f ms)", median(p50["service"])/median(p50["floor"]), median(p50["service"]), median(p50["floor"])), "", nil},
		bench.guarantees(service),
	}
}

// median is the middle of v (the mean of the two middle ones).
func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s) == 0 {
		return 0
	}
	return (s[(len(s)-1)/2] + s[len(s)/2]) / 2
}

// thousands formats n with thousands separators: 100000 → 100,000.
func thousands(n float64) string {
	s := fmt.Sprintf("%.0f", n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
