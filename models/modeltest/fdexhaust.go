package modeltest

import (
	"fmt"
	"net"
	"os"
	"time"
)

// Bounds of the fd-exhaustion check.
const (
	exhaustNoFile = 64  // the server's RLIMIT_NOFILE
	exhaustFlood  = 200 // connections opened against it
	// exhaustMaxCPU is the share of one core the server may use while it
	// cannot accept: an accept loop that spins on EMFILE uses all of one.
	exhaustMaxCPU = 0.2
	// exhaustMaxAcceptErrRate bounds failed accepts per second: a server
	// that backs off fails a few hundred times a second at most.
	exhaustMaxAcceptErrRate = 2000
	// exhaustMaxLogLines bounds the server's log lines from the flood to
	// the end of the exhaustion: a line per refused connection was 42,056
	// lines in three seconds of a real flood.
	exhaustMaxLogLines = 20
)

// checkFDExhaustion runs the server in a subprocess with RLIMIT_NOFILE=64
// and opens far more connections than it can hold. While it is out of fds
// it must keep answering the connections it has, stay alive, not spin
// (its CPU time, from /proc, stays low) and not log a line per refused
// connection; once the clients leave it must accept and serve again, and
// still stop cleanly on SIGTERM.
func checkFDExhaustion(e *env) {
	if _, err := procCPU(os.Getpid()); err != nil {
		e.t.Logf("server CPU use is not measured here: %v", err)
	}
	cfg := e.config()
	p := e.startProc(cfg, exhaustNoFile)
	timeout := e.d(opTimeout)

	keep := make([]net.Conn, 3)
	for i := range keep {
		keep[i] = e.mustDial(p.addr)
		if err := e.exchange(keep[i], e.line(10)); err != nil {
			e.t.Fatalf("connection %d before the flood: %v", i, err)
		}
	}

	// The flood. Dials succeed as long as the kernel's backlog has room,
	// whether or not the server can accept.
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	var dialErrs int
	logged := p.stderr.Lines()
	for range exhaustFlood {
		c, err := net.DialTimeout(e.net, p.addr, e.d(2*time.Second))
		if err != nil {
			dialErrs++
			continue
		}
		flood = append(flood, c)
		c.SetWriteDeadline(time.Now().Add(timeout))
		c.Write(e.line(8)) // a request it may or may not get to
	}
	if len(flood) < exhaustNoFile {
		e.t.Fatalf("only %d of %d flood connections could be opened (%d dial errors): the server was never out of fds", len(flood), exhaustFlood, dialErrs)
	}
	if !p.alive() {
		e.t.Fatalf("the server died under the connection flood: %v; stderr:\n%s", p.waitErr, p.stderr)
	}

	// While out of fds: keep answering, no spinning.
	window := e.d(1500 * time.Millisecond)
	cpu0, cpuErr := procCPU(p.pid)
	start := time.Now()
	for time.Since(start) < window {
		for i, c := range keep {
			if err := e.exchange(c, e.line(20)); err != nil {
				e.t.Fatalf("existing connection %d while the server is out of fds: %v", i, err)
			}
		}
		time.Sleep(e.d(100 * time.Millisecond))
	}
	elapsed := time.Since(start)
	if cpuErr == nil {
		if cpu1, err := procCPU(p.pid); err == nil {
			share := float64(cpu1-cpu0) / float64(elapsed)
			e.t.Logf("server CPU while out of fds: %v in %v (%.0f%% of a core)", cpu1-cpu0, elapsed.Round(time.Millisecond), 100*share)
			if share > exhaustMaxCPU {
				e.t.Errorf("the server used %.0f%% of a core while out of fds, with nothing to do but wait: does it spin on accept errors (EMFILE)? it must back off", 100*share)
			}
		}
	}
	if !p.alive() {
		e.t.Fatalf("the server died while out of fds: %v; stderr:\n%s", p.waitErr, p.stderr)
	}
	exhaustedFor := time.Since(start)
	if n := p.stderr.Lines() - logged; n > exhaustMaxLogLines {
		e.t.Errorf("the server logged %d lines while %d connections flooded it out of fds, more than %d: log lines a client can cause must be rate-limited; stderr:\n%s",
			n, exhaustFlood, exhaustMaxLogLines, p.stderr)
	}

	// The flood leaves: the server must accept and serve again.
	for _, c := range flood {
		c.Close()
	}
	flood = nil
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		c, err := e.dial(p.addr)
		if err == nil {
			c.SetDeadline(time.Now().Add(e.d(time.Second)))
			err = e.exchangeQuick(c, e.line(12))
			c.Close()
		}
		if err == nil {
			break
		}
		lastErr = err
		if time.Now().After(deadline) {
			e.t.Fatalf("no new connection was served within %v after the flood left: %v; stderr:\n%s", timeout, lastErr, p.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i, c := range keep {
		if err := e.exchange(c, e.line(20)); err != nil {
			e.t.Errorf("existing connection %d after the flood: %v", i, err)
		}
	}
	took, err := p.terminate(e.d(testGrace + graceSlack))
	if err != nil {
		e.t.Errorf("SIGTERM after the flood: %v (after %v); stderr:\n%s", err, took, p.stderr)
	}
	st, err := p.finalStats()
	if err != nil {
		e.t.Errorf("%v", err)
		return
	}
	e.t.Logf("server stats: %s", st)
	if st.AcceptErrors+st.Rejected == 0 {
		e.t.Errorf("with RLIMIT_NOFILE=%d and %d connections the server reported no failed accept and no rejected connection: was it ever out of fds, and does it count AcceptErrors?", exhaustNoFile, len(keep)+exhaustFlood)
	}
	if rate := float64(st.AcceptErrors) / exhaustedFor.Seconds(); rate > exhaustMaxAcceptErrRate {
		e.t.Errorf("%d failed accepts in about %v (%.0f/s): the server retries accept without backing off",
			st.AcceptErrors, exhaustedFor.Round(time.Millisecond), rate)
	}
}

// exchangeQuick is exchange under the deadline already set on c.
func (e *env) exchangeQuick(c net.Conn, req []byte) error {
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got := make([]byte, len(req))
	for n := 0; n < len(got); {
		m, err := c.Read(got[n:])
		n += m
		if err != nil {
			return fmt.Errorf("read: got %d of %d bytes: %w", n, len(got), err)
		}
	}
	return diff(got, e.reply(req))
}
