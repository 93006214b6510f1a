package modeltest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockbench/sockbench/models"
)

// The checks in this file are the bounds a hostile client meets: a line
// trickled a byte at a time, datagrams whose replies are never read, log
// lines a client can cause, a shutdown whose grace is too short, a socket
// file's mode while it is created, and the bytes a server holds for its
// clients.

// checkLineTimeout: with MaxConns clients each trickling one line a byte
// at a time (activity that resets any idle timeout), every one is closed
// once its line has taken Config.LineTimeout, no sooner, counted in
// LineTimeouts, and a new client is served again: slowloris cannot hold
// the places for ever. A client whose lines come in pieces but complete in
// time, and one quiet between whole lines, are not cut off.
func checkLineTimeout(e *env) {
	lineTO := e.d(time.Second)
	const places = 4
	s := e.start(func(c *models.Config) { c.LineTimeout = lineTO; c.MaxConns = places })

	type loris struct {
		c     net.Conn
		first time.Time // its line's first byte was written after this
	}
	lorises := make([]*loris, places)
	for i := range lorises {
		c := e.mustDial(s.addr)
		if err := e.exchange(c, e.line(10)); err != nil {
			e.t.Fatalf("client %d before trickling: %v", i, err)
		}
		lorises[i] = &loris{c: c}
	}
	s.waitStats(fmt.Sprintf("active=%d", places), func(st models.Stats) bool { return st.Active == places })
	stop := make(chan struct{})
	var trickling sync.WaitGroup
	defer func() { close(stop); trickling.Wait() }()
	for _, l := range lorises {
		l.first = time.Now()
		if err := e.writeAll(l.c, []byte("x")); err != nil {
			e.t.Fatalf("trickle: %v", err)
		}
		trickling.Add(1)
		go func() {
			defer trickling.Done()
			t := time.NewTicker(lineTO / 10)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				l.c.SetWriteDeadline(time.Now().Add(lineTO))
				if _, err := l.c.Write([]byte("y")); err != nil {
					return
				}
			}
		}()
	}
	errs := goAll(places, func(i int) error {
		l := lorises[i]
		if err := e.expectClosed(l.c, lineTO+e.d(opTimeout)); err != nil {
			return fmt.Errorf("a client trickling one line a byte every %v, line-timeout %v: %w", lineTO/10, lineTO, err)
		}
		if took := time.Since(l.first); took < lineTO {
			return fmt.Errorf("a client trickling one line was closed %v after its first byte, before the line-timeout of %v", took, lineTO)
		}
		l.c.Close() // else a lingering close waits out its own time
		return nil
	})
	e.reportErrs("trickling clients", errs)
	s.waitStats(fmt.Sprintf("line_timeouts>=%d active=0", places), func(st models.Stats) bool {
		return st.LineTimeouts >= places && st.Active == 0
	})
	c := e.mustDial(s.addr)
	if err := e.exchange(c, e.line(10)); err != nil {
		e.t.Errorf("a new client once the trickling ones were closed (max-conns %d): %v", places, err)
	}
	c.Close()

	errs = goAll(2, func(i int) error {
		c, err := e.dial(s.addr)
		if err != nil {
			return err
		}
		defer c.Close()
		if i == 0 {
			// Four lines, each in three pieces lineTO/4 apart: each
			// line completes lineTO/2 after its first byte; the four
			// take twice the line-timeout.
			for k := range 4 {
				req := e.line(30)
				for j, piece := range [][]byte{req[:10], req[10:20], req[20:]} {
					if j > 0 {
						time.Sleep(lineTO / 4)
					}
					if err := e.writeAll(c, piece); err != nil {
						return fmt.Errorf("line %d in pieces: write: %w", k, err)
					}
				}
				if err := e.readExpect(c, e.reply(req)); err != nil {
					return fmt.Errorf("a client whose lines come in pieces %v apart, each complete within %v of its first byte (line-timeout %v), was cut off at line %d: %w",
						lineTO/4, lineTO/2, lineTO, k, err)
				}
			}
			return nil
		}
		// Whole lines with a quiet gap of two line-timeouts between
		// them: nothing is partial, so only an idle timeout (none
		// here) may close it.
		if err := e.exchange(c, e.line(20)); err != nil {
			return err
		}
		time.Sleep(2 * lineTO)
		if err := e.exchange(c, e.line(20)); err != nil {
			return fmt.Errorf("a client quiet for %v between whole lines (no idle-timeout) was cut off: %w", 2*lineTO, err)
		}
		return nil
	})
	e.reportErrs("clients within the line-timeout", errs)
}

// checkWriteTimeout: with MaxConns clients each sending a deep pipeline
// and never reading a reply (they are neither idle nor slow to send a
// line), every one is closed once its replies have waited
// Config.WriteTimeout without progress (WriteTimeouts), or sooner by a
// bound of the model's own on what it holds for a client that does not
// read (WriteErrors: eventloop's, whose gnet reads on while replies
// wait), and a new client is served again: a client that does not read
// cannot hold the places for ever. A client that reads its replies
// slowly, but within the timeout each time, gets them all.
func checkWriteTimeout(e *env) {
	writeTO := e.d(time.Second)
	const places = 2
	s := e.start(func(c *models.Config) { c.WriteTimeout = writeTO; c.LineTimeout = -1; c.MaxConns = places })

	// Lines of 64 bytes, up to 256 MiB of them: far more than the socket
	// buffers of both sides hold (loopback TCP's grow to megabytes), so
	// the server's replies back up.
	chunk := make([]byte, 0, 64<<10)
	for len(chunk)+64 <= cap(chunk) {
		chunk = append(chunk, e.line(63)...)
	}
	hogs := make([]net.Conn, places)
	for i := range hogs {
		hogs[i] = e.mustDial(s.addr)
		if err := e.exchange(hogs[i], e.line(10)); err != nil {
			e.t.Fatalf("client %d before its pipeline: %v", i, err)
		}
	}
	s.waitStats(fmt.Sprintf("active=%d", places), func(st models.Stats) bool { return st.Active == places })
	began := time.Now()
	errs := goAll(places, func(i int) error {
		c := hogs[i]
		defer c.Close()
		c.SetWriteDeadline(time.Now().Add(writeTO + e.d(opTimeout)))
		for sent := 0; sent < 256<<20; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				if IsTimeout(err) {
					return fmt.Errorf("a client sending a pipeline and reading nothing, write-timeout %v: connection still open after %v (%d bytes sent)", writeTO, time.Since(began), sent)
				}
				return nil // the server closed it
			}
		}
		return fmt.Errorf("the server took 256 MiB of requests from a client that read none of their replies")
	})
	e.reportErrs("clients that never read", errs)
	s.waitStats(fmt.Sprintf("write_timeouts+write>=%d active=0", places), func(st models.Stats) bool {
		return st.WriteTimeouts+st.WriteErrors >= places && st.Active == 0
	})
	st := s.srv.Stats()
	e.t.Logf("clients that never read closed: write_timeouts=%d write=%d", st.WriteTimeouts, st.WriteErrors)
	c := e.mustDial(s.addr)
	if err := e.exchange(c, e.line(10)); err != nil {
		e.t.Errorf("a new client once the ones that never read were closed (max-conns %d): %v", places, err)
	}
	c.Close()

	// A slow reader: 1 MiB of requests, their replies read 256 KiB at a
	// time, a quarter of the write-timeout apart.
	slow := e.mustDial(s.addr)
	defer slow.Close()
	var want []byte
	werr := make(chan error, 1)
	reqs := make([]byte, 0, 1<<20)
	for len(reqs) < cap(reqs) {
		reqs = append(reqs, chunk...)
	}
	want = e.reply(reqs)
	go func() {
		slow.SetWriteDeadline(time.Now().Add(e.d(4 * opTimeout)))
		_, err := slow.Write(reqs)
		werr <- err
	}()
	got := make([]byte, 0, len(want))
	buf := make([]byte, 256<<10)
	for len(got) < len(want) {
		time.Sleep(writeTO / 4)
		slow.SetReadDeadline(time.Now().Add(e.d(opTimeout)))
		n, err := io.ReadAtLeast(slow, buf[:min(len(buf), len(want)-len(got))], 1)
		got = append(got, buf[:n]...)
		if err != nil {
			e.t.Errorf("a client reading its replies 256 KiB every %v (write-timeout %v) was cut off after %d of %d bytes: %v", writeTO/4, writeTO, len(got), len(want), err)
			return
		}
	}
	if err := diff(got, want); err != nil {
		e.t.Errorf("slow reader: %v", err)
	}
	if err := <-werr; err != nil {
		e.t.Errorf("slow reader: sending its requests: %v", err)
	}
	if st := s.srv.Stats(); st.WriteTimeouts+st.WriteErrors != places {
		e.t.Errorf("write_timeouts=%d write=%d after the slow reader, want %d in all (only the clients that never read)", st.WriteTimeouts, st.WriteErrors, places)
	}
}

// Sizes of the slow-peer check's floods.
const (
	// slowPeerCount requests of slowPeerSize bytes are the case:
	// replies that overflow Linux's default unixgram send buffer (208 KiB)
	// but fit in the enlarged one on any machine.
	slowPeerCount = 400
	slowPeerSize  = 100
	// slowPeerHugeCount requests of slowPeerHugeSize bytes are replies
	// beyond any send buffer (18 MB).
	slowPeerHugeCount = 300
	slowPeerHugeSize  = 60000
)

// openHog dials a datagram client that will never read, with the smallest
// receive buffer (for udp: the kernel drops its replies).
func (e *env) openHog(addr string) net.Conn {
	e.t.Helper()
	c := e.mustDial(addr)
	if rb, ok := c.(interface{ SetReadBuffer(int) error }); ok {
		rb.SetReadBuffer(1)
	}
	return c
}

// flood sends n datagrams of size bytes on c, each within the suite's
// timeout: a server that stops reading makes a unixgram send wait.
func (e *env) flood(c net.Conn, n, size int) error {
	req := e.payloadAny(size)
	for i := range n {
		if err := e.writeAll(c, req); err != nil {
			return fmt.Errorf("datagram %d of %d: %w", i+1, n, err)
		}
	}
	return nil
}

// accounted is how many datagrams a server has answered or counted as
// not answered.
func accounted(st models.Stats) uint64 { return st.Requests + st.WriteErrors + st.BadDatagrams }

// checkSlowPeer: a datagram client that sends and never reads its replies
// must not stop the server. Its requests are all read, each answered or
// counted (WriteErrors) as a reply that could not be sent; the others keep
// being served while it holds the replies Linux lets it hold (slowPeerCount
// of them: on unixgram every unread reply is charged to the server's send
// buffer); with replies past any buffer (unixgram), the server still reads
// everyone's requests, counts what it cannot send, and serves again the
// moment the client goes; and SIGTERM still stops it promptly with status
// 0. A server whose reply waits for such a client stopped every reader
// after a few hundred datagrams (threaded and prefork over unixgram).
func checkSlowPeer(e *env) {
	s := e.start(nil)
	var retries atomic.Int64
	good, err := e.dgramClient(s.addr, &retries)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	if err := good.roundTrip(e.payloadAny(50)); err != nil {
		e.t.Fatalf("before any slow client: %v", err)
	}

	base := accounted(s.srv.Stats())
	hog := e.openHog(s.addr)
	if err := e.flood(hog, slowPeerCount, slowPeerSize); err != nil {
		e.t.Fatalf("a client that never reads its replies could not send %d datagrams of %d bytes (%v): the server stopped reading",
			slowPeerCount, slowPeerSize, err)
	}
	if e.net == "unixgram" {
		// udp drops what a full socket cannot take, on either side.
		s.waitStats(fmt.Sprintf("%d more datagrams answered or counted", slowPeerCount), func(st models.Stats) bool {
			return accounted(st)-base >= slowPeerCount
		})
	}
	for i := range 20 {
		if err := good.roundTrip(e.payloadAny(1 + e.intn(200))); err != nil {
			e.t.Fatalf("another client, request %d, while a client that read none of its %d replies stays open: %v", i, slowPeerCount, err)
		}
	}
	hog.Close()

	if e.net == "unixgram" {
		base = accounted(s.srv.Stats())
		hog = e.openHog(s.addr)
		if err := e.flood(hog, slowPeerHugeCount, slowPeerHugeSize); err != nil {
			e.t.Fatalf("a client that never reads replies of %d MB in all could not send (%v): the server stopped reading",
				slowPeerHugeCount*slowPeerHugeSize>>20, err)
		}
		other := e.mustDial(s.addr)
		if err := e.flood(other, 20, 64); err != nil {
			e.t.Fatalf("another client could not send while a client holds the server's replies (%v): the server stopped reading", err)
		}
		st := s.waitStats(fmt.Sprintf("all %d datagrams read, answered or counted", slowPeerHugeCount+20), func(st models.Stats) bool {
			return accounted(st)-base >= slowPeerHugeCount+20
		})
		e.t.Logf("replies past the send buffer: %d datagrams read, %d answered in all, %d replies dropped and counted", slowPeerHugeCount+20, st.Requests, st.WriteErrors)
		hog.Close()
		if err := good.roundTrip(e.payloadAny(100)); err != nil {
			e.t.Errorf("another client once the one holding the replies left: %v", err)
		}
	}
	e.logRetries(&retries)

	// SIGTERM while a client holds replies: a prompt, clean stop.
	cfg := e.config()
	p := e.startProc(cfg, 0)
	hog = e.openHog(p.addr)
	n, size := slowPeerCount, slowPeerSize
	if e.net == "unixgram" {
		n, size = slowPeerHugeCount, slowPeerHugeSize
	}
	if err := e.flood(hog, n, size); err != nil {
		e.t.Errorf("subprocess server: a client that never reads could not send: %v", err)
	}
	took, err := p.terminate(cfg.Grace + e.d(graceSlack))
	if err != nil {
		e.t.Errorf("SIGTERM while a client holds unread replies: %v (after %v, grace %v); stderr:\n%s", err, took, cfg.Grace, p.stderr)
	} else if took >= cfg.Grace {
		e.t.Errorf("SIGTERM while a client holds unread replies took %v, the whole grace of %v: a reader waited for that client", took, cfg.Grace)
	}
}

// checkShortGrace: a server stopped by SIGTERM while a request it has read
// is still in its handler, with a grace too short for the handler to end,
// must exit with a non-zero status: it did not answer everything it read,
// and a stop that lost requests must not look clean. (A long enough grace
// exits 0: CheckShutdown.)
func checkShortGrace(e *env) {
	grace := e.d(500 * time.Millisecond)
	cfg := e.config()
	cfg.Grace = grace
	cfg.Cost.Block = 20 * grace
	p := e.startProcSpec(childSpec{Config: cfg, LiveStats: 20 * time.Millisecond})
	req := e.line(20)
	if e.stream() {
		c := e.mustDial(p.addr)
		if err := e.writeAll(c, req); err != nil {
			e.t.Fatalf("write: %v", err)
		}
	} else {
		var retries atomic.Int64
		dc, err := e.dgramClient(p.addr, &retries)
		if err != nil {
			e.t.Fatalf("dial: %v", err)
		}
		if err := e.writeAll(dc.c, req); err != nil {
			e.t.Fatalf("write: %v", err)
		}
	}
	p.waitLive(fmt.Sprintf("the request read (bytes_in>=%d)", len(req)), e.d(opTimeout), func(st models.Stats) bool {
		return st.BytesIn >= uint64(len(req))
	})
	took, err := p.terminate(grace + e.d(graceSlack))
	var ee *exec.ExitError
	switch {
	case err == nil:
		e.t.Errorf("the server exited 0 %v after SIGTERM, though its grace of %v ran out with a request it had read still in a handler that blocks %v: a shutdown that did not finish must exit non-zero; stderr:\n%s",
			took, grace, cfg.Cost.Block, p.stderr)
	case !errors.As(err, &ee) || ee.ExitCode() <= 0:
		e.t.Errorf("SIGTERM with a grace too short: %v (after %v), want an exit status > 0; stderr:\n%s", err, took, p.stderr)
	default:
		e.t.Logf("grace too short: exit status %d after %v", ee.ExitCode(), took)
	}
}

// logRecorder is a slog.Handler that keeps every record's message and
// LogMoreKey count, at every level.
type logRecorder struct {
	mu   sync.Mutex
	recs []loggedLine
}

type loggedLine struct {
	msg  string
	more int64 // models.LogMoreKey, or -1
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l := loggedLine{msg: r.Message, more: -1}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == models.LogMoreKey {
			switch v := a.Value.Resolve(); v.Kind() {
			case slog.KindInt64:
				l.more = v.Int64()
			case slog.KindUint64:
				l.more = int64(v.Uint64())
			case slog.KindFloat64: // relayed through JSON (prefork)
				l.more = int64(v.Float64())
			}
			return false
		}
		return true
	})
	h.mu.Lock()
	h.recs = append(h.recs, l)
	h.mu.Unlock()
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// tally sums, per message, its full lines and the counts of its summary
// lines: how many occurrences the log accounts for.
func (h *logRecorder) tally() (lines int, perMsg map[string]int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	perMsg = map[string]int64{}
	for _, l := range h.recs {
		if l.more >= 0 {
			perMsg[l.msg] += l.more
		} else {
			perMsg[l.msg]++
		}
	}
	return len(h.recs), perMsg
}

// Bounds of the log-flood check.
const (
	floodEach     = 100 // clients of each kind
	floodMaxLines = 60  // log records allowed for all of them
)

// checkLogFlood: log lines a client can cause are rate-limited, and the
// counters stay exact. floodEach clients each send a line over max-line,
// as many close in the middle of a line, as many reset after a request,
// and a third as many let a line run past the line-timeout (streams); or
// floodEach datagrams come from a socket with no address to answer
// (unixgram). With every level logged, the server writes at most
// floodMaxLines records in all, and once it has stopped (a RateLog's
// Flush) each kind of event is accounted for exactly in the log: its
// message's full lines plus the models.LogMoreKey counts of its summaries
// equal the Stats counter. One WARN line per over-long line made 11,000
// lines in three seconds from one client loop.
func checkLogFlood(e *env) {
	if !e.stream() && e.net != "unixgram" {
		e.t.Skip("a udp client cannot make a server log per datagram")
	}
	rec := &logRecorder{}
	lineTO := e.d(300 * time.Millisecond)
	s := e.start(func(c *models.Config) {
		c.Logger = slog.New(rec)
		c.MaxLine = 64
		c.LineTimeout = lineTO
	})
	type counted struct {
		what string
		n    func(models.Stats) uint64
	}
	var want []counted
	if e.stream() {
		kinds := []func(c net.Conn) error{
			func(c net.Conn) error { // over max-line
				if err := e.writeAll(c, e.payload(100)); err != nil {
					return err
				}
				return e.expectClosed(c, e.d(opTimeout))
			},
			func(c net.Conn) error { // closes in the middle of a line
				return e.writeAll(c, e.payload(10))
			},
			func(c net.Conn) error { // a request, then a reset (a plain close on unix)
				err := e.exchange(c, e.line(10))
				abort(c)
				return err
			},
		}
		errs := goAll(16, func(w int) error {
			for i := w; i < floodEach*len(kinds); i += 16 {
				c, err := e.dial(s.addr)
				if err != nil {
					return err
				}
				err = kinds[i%len(kinds)](c)
				c.Close()
				if err != nil {
					return fmt.Errorf("client kind %d: %w", i%len(kinds), err)
				}
			}
			return nil
		})
		slow := floodEach / 3
		errs = append(errs, goAll(slow, func(int) error { // a line past the line-timeout
			c, err := e.dial(s.addr)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := e.writeAll(c, e.payload(10)); err != nil {
				return err
			}
			return e.expectClosed(c, lineTO+e.d(opTimeout))
		})...)
		e.reportErrs("flooding clients", errs)
		s.waitStats(fmt.Sprintf("line_too_long=%d line_timeouts=%d active=0", floodEach, slow), func(st models.Stats) bool {
			return st.LineTooLong == floodEach && st.LineTimeouts == uint64(slow) && st.Active == 0
		})
		want = append(want,
			counted{"line_too_long", func(st models.Stats) uint64 { return st.LineTooLong }},
			counted{"line_timeouts", func(st models.Stats) uint64 { return st.LineTimeouts }})
	} else {
		// A client socket with no name: the server has no address to
		// answer it at.
		c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: s.addr, Net: "unixgram"})
		if err != nil {
			e.t.Fatalf("dial unbound: %v", err)
		}
		defer c.Close()
		if err := e.flood(c, floodEach, 20); err != nil {
			e.t.Fatalf("unbound client: %v", err)
		}
		s.waitStats(fmt.Sprintf("bad_datagrams=%d", floodEach), func(st models.Stats) bool { return st.BadDatagrams == floodEach })
		want = append(want, counted{"bad_datagrams", func(st models.Stats) uint64 { return st.BadDatagrams }})
	}
	during, _ := rec.tally()
	if _, err := s.shutdown(); err != nil {
		e.t.Errorf("Shutdown: %v", err)
	}
	st := s.srv.Stats()
	lines, perMsg := rec.tally()
	if during > floodMaxLines || lines > floodMaxLines+20 {
		e.t.Errorf("the server wrote %d log records during a flood of %d client events (%d once stopped), more than %d: per-connection log lines must be rate-limited (models.RateLog)",
			during, len(want)*floodEach, lines, floodMaxLines)
	}
	for _, w := range want {
		n := int64(w.n(st))
		found := false
		for _, c := range perMsg {
			if c == n {
				found = true
			}
		}
		if !found {
			e.t.Errorf("%s=%d, but no message's lines and %s counts add up to it once the server stopped (by message: %v): a rate-limited log must say how many it left out",
				w.what, n, models.LogMoreKey, perMsg)
		}
	}
}

// umaskStarts is how many times checkSocketUmask starts a server: a
// socket bound in place, then chmod'ed, was seen wide in most starts.
const umaskStarts = 20

// umaskPolls counts the umask check's looks at the socket path. Only the
// suite's own test reads it: its broken variant (bound, then chmod'ed)
// waits between the two until a look has begun and ended, so the check
// sees that window in every start however loaded the machine, instead of
// in most starts when its poller is scheduled in time.
var umaskPolls atomic.Uint64

// checkSocketUmask: under umask 000, a goroutine polling the socket path's
// mode from before the server binds never sees it wider than
// Config.SocketMode, in any of umaskStarts starts. A socket bound at its
// path and chmod'ed after has the umask's mode, 0777, in between. It runs
// alone: the umask is the whole process's.
func checkSocketUmask(e *env) {
	old := setUmask(0)
	defer setUmask(old)
	mode := os.FileMode(0o600)
	var widest os.FileMode
	for i := range umaskStarts {
		path := e.unixPath()
		stop := make(chan struct{})
		polling := make(chan struct{})
		seen := make(chan os.FileMode)
		go func() {
			var w os.FileMode
			for n := 0; ; n++ {
				select {
				case <-stop:
					seen <- w
					return
				default:
				}
				if st, err := os.Lstat(path); err == nil {
					w |= st.Mode().Perm()
				}
				umaskPolls.Add(1)
				if n == 0 {
					close(polling)
				}
			}
		}()
		<-polling
		cfg := e.config()
		cfg.Addr, cfg.SocketMode = path, mode
		s, err := e.tryStart(cfg)
		close(stop)
		widest |= <-seen
		if err != nil {
			e.t.Fatalf("start %d: %v", i, err)
		}
		if st, err := os.Lstat(path); err != nil || st.Mode().Perm() != mode {
			e.t.Fatalf("start %d: socket file %v, %v; want mode %v", i, st, err, mode)
		}
		if _, err := s.shutdown(); err != nil {
			e.t.Errorf("shutdown %d: %v", i, err)
		}
	}
	if widest&^mode != 0 {
		e.t.Errorf("under umask 000 the socket file was seen with mode %v during start-up, wider than the configured %v: it must never be, not even between bind and chmod",
			widest, mode)
	}
}

// Sizes of the max-buffered check.
const (
	bufBound   = 256 << 10 // Config.MaxBuffered
	bufPartial = 60 << 10  // what each holding client sends without a '\n'
	bufHolders = 8         // 480 KiB in all
)

// checkMaxBuffered: with Config.MaxBuffered set, clients that each hold a
// large partial line past the bound in all are closed, the ones holding
// the most first, until the server is within it again (at most bound /
// size of them stay), each counted in OverBuffered, and Stats.Buffered
// stays within the bound; a client holding a little is never the one
// closed and is answered; clients that pipeline and never read their
// replies leave the server within the bound too while others are served;
// and once everyone has left the server holds nothing.
func checkMaxBuffered(e *env) {
	s := e.start(func(c *models.Config) { c.MaxBuffered = bufBound; c.LineTimeout = -1 })
	maxLine := int64(s.cfg.MaxLine)
	if maxLine == 0 {
		maxLine = 64 << 10
	}
	within := func(when string) {
		e.t.Helper()
		if b := s.srv.Stats().Buffered; b > bufBound+maxLine {
			e.t.Errorf("%s: Stats.Buffered=%d, past max-buffered %d by more than one read", when, b, bufBound)
		}
	}
	good := e.mustDial(s.addr)
	if err := e.exchange(good, e.line(10)); err != nil {
		e.t.Fatalf("good client: %v", err)
	}
	goodPart := e.payload(2 << 10)
	if err := e.writeAll(good, goodPart); err != nil {
		e.t.Fatalf("good client: %v", err)
	}
	holders := make([]net.Conn, bufHolders)
	for i := range holders {
		holders[i] = e.mustDial(s.addr)
		if err := e.writeAll(holders[i], e.payload(bufPartial)); err != nil && !isReset(err) {
			e.t.Fatalf("client %d holding a partial line: write: %v", i, err)
		}
	}
	least := bufHolders - bufBound/bufPartial
	st := s.waitStats(fmt.Sprintf("over_buffered>=%d", least), func(st models.Stats) bool { return st.OverBuffered >= uint64(least) })
	within("clients holding partial lines")
	open := 0
	for _, c := range holders {
		c.SetReadDeadline(time.Now().Add(e.d(200 * time.Millisecond)))
		if _, err := c.Read(make([]byte, 16)); IsTimeout(err) {
			open++
		}
	}
	if open > bufBound/bufPartial {
		e.t.Errorf("%d clients holding %d KiB each are still open: the server holds more than max-buffered %d KiB", open, bufPartial>>10, bufBound>>10)
	}
	if closed := bufHolders - open; uint64(closed) != st.OverBuffered {
		e.t.Logf("%d holding clients closed, over_buffered=%d", closed, st.OverBuffered)
	}
	if err := e.writeAll(good, []byte{'\n'}); err != nil {
		e.t.Fatalf("good client: %v", err)
	}
	if err := e.readExpect(good, e.reply(append(goodPart, '\n'))); err != nil {
		e.t.Errorf("a client holding %d KiB while others held %d KiB each was closed or not answered: %v", len(goodPart)>>10, bufPartial>>10, err)
	}
	for _, c := range holders {
		c.Close()
	}

	// Clients that pipeline and never read their replies.
	var writers sync.WaitGroup
	hogs := make([]net.Conn, bufHolders)
	for i := range hogs {
		hogs[i] = e.mustDial(s.addr)
		writers.Add(1)
		go func() {
			defer writers.Done()
			line := e.line(4 << 10)
			c := hogs[i]
			c.SetWriteDeadline(time.Now().Add(e.d(2 * time.Second)))
			for range (1 << 20) / len(line) {
				if _, err := c.Write(line); err != nil {
					return // the server stopped reading, or closed it
				}
			}
		}()
	}
	for i := range 10 {
		if err := e.exchange(good, e.line(20)); err != nil {
			e.t.Errorf("good client, request %d, while others pipeline without reading: %v", i, err)
			break
		}
		within("clients pipelining without reading")
		time.Sleep(e.d(50 * time.Millisecond))
	}
	writers.Wait()
	within("clients pipelining without reading")
	for _, c := range hogs {
		c.Close()
	}
	good.Close()
	s.waitStats("buffered=0 and active=0 once every client left", func(st models.Stats) bool {
		return st.Buffered == 0 && st.Active == 0
	})
}
