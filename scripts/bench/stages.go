package main

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// stages adds up the time spent in each kind of call of a measurement, so
// that a cleanup and its floor can be compared call by call. With many
// calls in flight the sum exceeds the wall time: sum/wall is the average
// number in flight.
type stages struct {
	mu sync.Mutex
	m  map[string]*stage
}

type stage struct {
	Calls int     `json:"calls"`
	Items int     `json:"items"`  // documents or writes the calls carried
	SumS  float64 `json:"sum_s"`  // total time in calls
	MaxMS float64 `json:"max_ms"` // slowest call
}

func newStages() *stages { return &stages{m: map[string]*stage{}} }

func (s *stages) observe(name string, start time.Time, items int) {
	d := time.Since(start)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.m[name]
	if st == nil {
		st = &stage{}
		s.m[name] = st
	}
	st.Calls++
	st.Items += items
	st.SumS += d.Seconds()
	st.MaxMS = max(st.MaxMS, float64(d.Microseconds())/1000)
}

func (s *stages) snapshot() map[string]stage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]stage, len(s.m))
	for k, v := range s.m {
		out[k] = *v
	}
	return out
}

// timedTokens times the token store's calls.
type timedTokens struct {
	lifecycle.TokenStore
	st *stages
}

func (t timedTokens) Page(ctx context.Context, after string, limit int) ([]*lifecycle.Token, string, error) {
	defer t.st.observe("page", time.Now(), limit)
	return t.TokenStore.Page(ctx, after, limit)
}

func (t timedTokens) Get(ctx context.Context, itemID string) (*lifecycle.Token, error) {
	defer t.st.observe("reread", time.Now(), 1)
	return t.TokenStore.Get(ctx, itemID)
}

func (t timedTokens) Apply(ctx context.Context, writes []lifecycle.Write) []error {
	if len(writes) == 0 {
		return make([]error, 0)
	}
	defer t.st.observe("token_writes", time.Now(), len(writes))
	return t.TokenStore.Apply(ctx, writes)
}

func (t timedTokens) Update(ctx context.Context, itemID string, p lifecycle.Patch, ifVersion time.Time) (time.Time, error) {
	defer t.st.observe("token_update", time.Now(), 1)
	return t.TokenStore.Update(ctx, itemID, p, ifVersion)
}

func (t timedTokens) Delete(ctx context.Context, itemID string, ifVersion time.Time) error {
	defer t.st.observe("token_delete", time.Now(), 1)
	return t.TokenStore.Delete(ctx, itemID, ifVersion)
}

// timedRuns times the run store's writes of every batch: audit entries and
// run records (the lease is renewed once a minute: negligible).
type timedRuns struct {
	lifecycle.RunStore
	st *stages
}

func (r timedRuns) Audit(ctx context.Context, entries ...lifecycle.AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	defer r.st.observe("audit", time.Now(), len(entries))
	return r.RunStore.Audit(ctx, entries...)
}

func (r timedRuns) SaveRun(ctx context.Context, run *lifecycle.RunRecord) error {
	defer r.st.observe("run_record", time.Now(), 1)
	return r.RunStore.SaveRun(ctx, run)
}

// timedPlaid times the Plaid calls (pacing included).
type timedPlaid struct {
	lifecycle.PlaidAPI
	st *stages
}

func (p timedPlaid) GetItem(ctx context.Context, accessToken string) (*lifecycle.Item, error) {
	defer p.st.observe("plaid_get", time.Now(), 1)
	return p.PlaidAPI.GetItem(ctx, accessToken)
}

func (p timedPlaid) RemoveItem(ctx context.Context, accessToken string) error {
	defer p.st.observe("plaid_remove", time.Now(), 1)
	return p.PlaidAPI.RemoveItem(ctx, accessToken)
}

// timeline records how many tokens were done by when, to show whether the
// rate falls as a run goes on (a cost that grows with the collection or
// with what the run has written).
type timeline struct {
	mu     sync.Mutex
	start  time.Time
	points [][2]float64 // seconds, tokens done
}

func (t *timeline) mark(done int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.points = append(t.points, [2]float64{time.Since(t.start).Seconds(), float64(done)})
}

// tenths returns the rate (tokens/s) over each tenth of the tokens.
func (t *timeline) tenths(n int) []float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []float64
	prevT, prevN := 0.0, 0.0
	for k := 1; k <= 10; k++ {
		target := float64(n) * float64(k) / 10
		i := sort.Search(len(t.points), func(i int) bool { return t.points[i][1] >= target })
		if i == len(t.points) {
			break
		}
		p := t.points[i]
		if p[0] > prevT {
			out = append(out, (p[1]-prevN)/(p[0]-prevT))
		}
		prevT, prevN = p[0], p[1]
	}
	return out
}

// peakRSSKiB is this process's peak resident set (VmHWM).
func peakRSSKiB() int { return procStatusKiB("self", "VmHWM:") }

func procStatusKiB(pid, field string) int {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			kib, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kib
		}
	}
	return -1
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// groupCPU is the CPU time used so far by every process of process group
// pgid (the emulator's: gcloud's wrapper and the JVM it forks), or by the
// one process pid when pgid is 0.
func groupCPU(pgid, pid int) time.Duration {
	const clkTck = 100 // USER_HZ on Linux
	var ticks int64
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range dirs {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		s := string(b)
		// Fields after the command, which is in parentheses and may hold spaces.
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+2:])
		if len(f) < 13 {
			continue
		}
		// f[0] is state (field 3); pgrp is field 5, utime 14, stime 15.
		pg, _ := strconv.Atoi(f[2])
		p, _ := strconv.Atoi(strings.TrimSuffix(filepath.Base(filepath.Dir(path)), "/"))
		if (pgid != 0 && pg == pgid) || (pgid == 0 && p == pid) {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			ticks += u + st
		}
	}
	return time.Duration(ticks) * time.Second / clkTck
}

// cpuMeter measures the CPU time of this process, the emulator
// (BENCH_EMULATOR_PGID) and the Plaid stand-in (BENCH_PLAID_PID) over a
// measurement.
type cpuMeter struct {
	emuPGID, plaidPID    int
	self, emulator, fake time.Duration
}

func startCPUMeter() *cpuMeter {
	m := &cpuMeter{}
	m.emuPGID, _ = strconv.Atoi(os.Getenv("BENCH_EMULATOR_PGID"))
	m.plaidPID, _ = strconv.Atoi(os.Getenv("BENCH_PLAID_PID"))
	m.self = selfCPU()
	if m.emuPGID > 0 {
		m.emulator = groupCPU(m.emuPGID, 0)
	}
	if m.plaidPID > 0 {
		m.fake = groupCPU(0, m.plaidPID)
	}
	return m
}

// stop returns the CPU seconds used since start: this process, the
// emulator and the Plaid stand-in (-1 when not known).
func (m *cpuMeter) stop() (self, emulator, fake float64) {
	self = (selfCPU() - m.self).Seconds()
	emulator, fake = -1, -1
	if m.emuPGID > 0 {
		emulator = (groupCPU(m.emuPGID, 0) - m.emulator).Seconds()
	}
	if m.plaidPID > 0 {
		fake = (groupCPU(0, m.plaidPID) - m.fake).Seconds()
	}
	return self, emulator, fake
}
