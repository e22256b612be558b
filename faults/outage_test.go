package faults

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/finwell/plaid-token-lifecycle/internal/emulator"
	"github.com/finwell/plaid-token-lifecycle/internal/wait"
)

// How scenario 2 takes Firestore away and brings it back.
//
// `gcloud emulators firestore start --export-on-exit=DIR` wrote nothing
// when the emulator was stopped with SIGTERM or SIGINT (gcloud 5xx, Java
// 11: checked by hand), and the emulator's export endpoint exports one
// project while --import-data brings the data back into every project with
// every document's update time reset to the import: all the service's
// update-time preconditions would fail, and whatever was committed between
// the export and the stop would be lost, which no real Firestore does. So
// a restart would not keep the data faithfully. Instead, the scenario's own
// emulator is frozen (SIGSTOP on its process group, SIGCONT to resume) and,
// at the same moment, every connection the processes have to it is cut and
// new ones are refused by a TCP proxy they reach it through: to the
// service that is a Firestore that stopped (connections reset, connection
// refused, no answers) and came back with all its data and update times.

// dedicatedEmulator is a Firestore emulator of one scenario's own, which it
// may freeze without stalling the others.
type dedicatedEmulator struct {
	host string
	pgid int
}

// startDedicatedEmulator starts a Firestore emulator for t, stopped when t
// ends. Without gcloud the test is skipped, loudly, or fails when
// REQUIRE_FIRESTORE_EMULATOR is set (as emulator.Host does).
func startDedicatedEmulator(t *testing.T) *dedicatedEmulator {
	t.Helper()
	unavailable := func(why string) {
		if os.Getenv(emulator.RequireEnv) != "" {
			t.Fatalf("no Firestore emulator of its own for this scenario: %s", why)
		}
		t.Skipf("SKIPPED: no Firestore emulator of its own for this scenario: %s", why)
	}
	gcloud, err := exec.LookPath("gcloud")
	if err != nil {
		unavailable("gcloud is not installed")
	}
	port := wait.Port(t)
	host := "127.0.0.1:" + port
	logFile, err := os.Create(filepath.Join(t.TempDir(), "firestore-emulator.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(gcloud, "emulators", "firestore", "start", "--host-port="+host, "--quiet")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the JVM it forks joins the group
	if err := cmd.Start(); err != nil {
		unavailable(err.Error())
	}
	e := &dedicatedEmulator{host: host, pgid: cmd.Process.Pid}
	t.Logf("the scenario's own Firestore emulator: %s, process group %d", host, e.pgid)
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-e.pgid, syscall.SIGCONT) // a frozen JVM cannot stop
		_ = syscall.Kill(-e.pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
		_ = syscall.Kill(-e.pgid, syscall.SIGKILL) // the JVM, if gcloud left it behind
	})
	client := &http.Client{Timeout: 2 * time.Second}
	wait.Until(t, "the scenario's Firestore emulator to start", 2*time.Minute, func() bool {
		select {
		case <-exited:
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("the Firestore emulator exited during start:\n%s", log)
		default:
		}
		resp, err := client.Get("http://" + host + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return e
}

// freeze stops every process of the emulator: nothing it holds is lost,
// and nothing is answered.
func (e *dedicatedEmulator) freeze() error { return syscall.Kill(-e.pgid, syscall.SIGSTOP) }

// thaw resumes a frozen emulator.
func (e *dedicatedEmulator) thaw() error { return syscall.Kill(-e.pgid, syscall.SIGCONT) }

// tcpProxy forwards TCP connections to a target until it is taken down:
// then every connection is cut and new ones are refused, until it is
// brought up again on the same address. Muted, it still forwards requests
// but drops every answer: the target acts on what it receives and the
// sender never hears of it, as when a server or the network dies with
// answers on their way.
type tcpProxy struct {
	addr, target string
	muted        atomic.Bool

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	cut   int // connections cut by down
}

func newProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	p := &tcpProxy{target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *tcpProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // taken down
			}
			go p.forward(c)
		}
	}()
}

func (p *tcpProxy) forward(c net.Conn) {
	upstream, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil { // taken down meanwhile
		p.mu.Unlock()
		c.Close()
		upstream.Close()
		return
	}
	p.conns[c], p.conns[upstream] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { // requests
		_, _ = io.Copy(upstream, c)
		done <- struct{}{}
	}()
	go func() { // answers, dropped while muted
		buf := make([]byte, 32<<10)
		for {
			n, err := upstream.Read(buf)
			if n > 0 && !p.muted.Load() {
				if _, werr := c.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}()
	<-done
	c.Close()
	upstream.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, upstream)
	p.mu.Unlock()
}

// down cuts every connection (RST, as a dying server's kernel sends) and
// refuses new ones.
func (p *tcpProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // reset, not a graceful close
		}
		c.Close()
		p.cut++
	}
	clear(p.conns)
}

// mute drops every answer from now on; requests still reach the target.
// A connection that lost answers is useless afterwards: only down ends the
// mute, cutting them all.
func (p *tcpProxy) mute() { p.muted.Store(true) }

// up listens again on the same address, no longer muted.
func (p *tcpProxy) up() error {
	p.muted.Store(false)
	var ln net.Listener
	var err error
	// The port was just ours; another process taking it meanwhile is
	// possible but unlikely, and retrying briefly covers TIME_WAIT quirks.
	for range 50 {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			p.serve(ln)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("bringing the proxy back on %s: %w", p.addr, errors.Join(err))
}
