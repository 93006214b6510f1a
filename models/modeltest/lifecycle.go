package modeltest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/sockbench/sockbench/models"
)

// expectEOF reads until the server closes c and requires a clean close: a
// FIN (io.EOF), not a reset, and no byte first.
func (e *env) expectEOF(c net.Conn, timeout time.Duration) error {
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	var extra int
	for {
		n, err := c.Read(buf)
		extra += n
		if err == nil {
			continue
		}
		switch {
		case extra > 0:
			return fmt.Errorf("server sent %d unexpected bytes before closing (%v)", extra, err)
		case err == io.EOF:
			return nil
		case IsTimeout(err):
			return fmt.Errorf("no EOF within %v", timeout)
		case isReset(err):
			return fmt.Errorf("connection reset instead of a clean close (EOF): %w", err)
		default:
			return fmt.Errorf("reading until EOF: %w", err)
		}
	}
}

// checkHalfClose: a client that shuts its write side gets every reply to
// the lines it sent, then EOF; a partial last line is never answered.
func checkHalfClose(e *env) {
	s := e.start(nil)
	timeout := e.d(opTimeout)
	cases := []struct {
		name    string
		reqs    int
		size    int
		partial bool
	}{
		{"nothing sent", 0, 0, false},
		{"one request", 1, 20, false},
		{"50 pipelined requests", 50, 100, false},
		{"200 requests of 4 KiB", 200, 4 << 10, false},
		{"requests then a partial line", 10, 30, true},
	}
	errs := goAll(len(cases), func(i int) error {
		tc := cases[i]
		c, err := e.dial(s.addr)
		if err != nil {
			return fmt.Errorf("%s: dial: %w", tc.name, err)
		}
		defer c.Close()
		var all, want []byte
		for range tc.reqs {
			r := e.line(tc.size)
			all = append(all, r...)
			want = e.mode.AppendReply(want, r)
		}
		if tc.partial {
			all = append(all, e.payload(40)...)
		}
		werr := make(chan error, 1)
		go func() {
			if err := e.writeAll(c, all); err != nil {
				werr <- fmt.Errorf("write: %w", err)
				return
			}
			werr <- closeWrite(c)
		}()
		if err := e.readExpect(c, want); err != nil {
			return fmt.Errorf("%s: %w", tc.name, err)
		}
		if err := <-werr; err != nil {
			return fmt.Errorf("%s: %w", tc.name, err)
		}
		if err := e.expectEOF(c, timeout); err != nil {
			return fmt.Errorf("%s, after every reply: %w", tc.name, err)
		}
		return nil
	})
	e.reportErrs("half-close", errs)
	s.waitStats("active=0", func(st models.Stats) bool { return st.Active == 0 })
}

// abort closes c so that the peer sees a reset where the transport has
// one (SO_LINGER 0 on TCP); a Unix socket just closes.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// checkReset: clients that reset mid-line, mid-request and while replies
// are still being written neither crash nor wedge the server: it keeps
// serving, and every aborted connection is cleaned up (Active back to 0).
func checkReset(e *env) {
	s := e.start(nil)
	good := e.mustDial(s.addr)
	if err := e.exchange(good, e.line(10)); err != nil {
		e.t.Fatalf("good connection: %v", err)
	}
	const each = 15
	var aborted atomic.Int64
	kinds := []func(c net.Conn) error{
		// mid-line
		func(c net.Conn) error { return e.writeAll(c, e.payload(100)) },
		// a whole request and half of the next, reply never read
		func(c net.Conn) error { return e.writeAll(c, append(e.line(50), e.payload(30)...)) },
		// a megabyte of requests, replies never read: the server's writes fail
		func(c net.Conn) error {
			big := bytes.Repeat(e.line(8<<10), 64)
			c.SetWriteDeadline(time.Now().Add(e.d(500 * time.Millisecond)))
			_, err := c.Write(big)
			if IsTimeout(err) {
				err = nil // the server stopped reading while its replies were unread: expected
			}
			return err
		},
	}
	errs := goAll(each*len(kinds), func(i int) error {
		c, err := e.dial(s.addr)
		if err != nil {
			return fmt.Errorf("dial: %w", err)
		}
		if err := kinds[i%len(kinds)](c); err != nil {
			c.Close()
			return fmt.Errorf("client kind %d: write: %w", i%len(kinds), err)
		}
		time.Sleep(time.Duration(e.intn(20)) * time.Millisecond)
		abort(c)
		aborted.Add(1)
		return nil
	})
	e.reportErrs("resetting clients", errs)
	if err := e.exchange(good, e.line(100), e.line(5)); err != nil {
		e.t.Errorf("good connection after %d resets: %v", aborted.Load(), err)
	}
	c := e.mustDial(s.addr)
	if err := e.exchange(c, e.line(10)); err != nil {
		e.t.Errorf("new connection after %d resets: %v", aborted.Load(), err)
	}
	good.Close()
	c.Close()
	s.waitStats("active=0 once every client is gone", func(st models.Stats) bool { return st.Active == 0 })
}

// checkIdleTimeout: connections silent for Config.IdleTimeout are closed
// (silent from the start, after a reply, or stalled mid-line), a connection
// that keeps talking is not, and the closes are counted.
func checkIdleTimeout(e *env) {
	idle := e.d(time.Second)
	s := e.start(func(c *models.Config) { c.IdleTimeout = idle })
	timeout := idle + e.d(opTimeout)

	type idler struct {
		name string
		c    net.Conn
		last time.Time
	}
	var idlers []*idler
	for _, name := range []string{"silent from the start", "silent after a reply", "stalled mid-line"} {
		// The server's last read of this connection comes after this
		// moment, so its idle period ends no sooner than idle past it.
		mark := time.Now()
		c := e.mustDial(s.addr)
		switch name {
		case "silent after a reply":
			mark = time.Now()
			if err := e.exchange(c, e.line(10)); err != nil {
				e.t.Fatalf("%s: %v", name, err)
			}
		case "stalled mid-line":
			mark = time.Now()
			if err := e.writeAll(c, e.payload(10)); err != nil {
				e.t.Fatalf("%s: %v", name, err)
			}
		}
		idlers = append(idlers, &idler{name, c, mark})
	}

	// The busy client talks every idle/5 for 2.5 idle periods.
	busy := e.mustDial(s.addr)
	busyErr := make(chan error, 1)
	go func() {
		var maxGap time.Duration
		last := time.Now()
		for end := last.Add(idle * 5 / 2); time.Now().Before(end); {
			time.Sleep(idle / 5)
			if gap := time.Since(last); gap > maxGap {
				maxGap = gap
			}
			if err := e.exchange(busy, e.line(10)); err != nil {
				if maxGap >= idle*9/10 {
					e.t.Logf("busy client: %v, but the test itself stalled for %v, so it was idle", err, maxGap)
					busyErr <- nil
					return
				}
				busyErr <- fmt.Errorf("a client sending every %v was cut off (idle-timeout %v): %w", idle/5, idle, err)
				return
			}
			last = time.Now()
		}
		busyErr <- nil
	}()

	errs := goAll(len(idlers), func(i int) error {
		id := idlers[i]
		if err := e.expectClosed(id.c, timeout); err != nil {
			return fmt.Errorf("%s: %w", id.name, err)
		}
		if took := time.Since(id.last); took < idle {
			return fmt.Errorf("%s: closed after %v, before the idle-timeout of %v", id.name, took, idle)
		}
		return nil
	})
	e.reportErrs("idle connections", errs)
	if err := <-busyErr; err != nil {
		e.t.Error(err)
	}
	s.waitStats("idle_timeouts>=3", func(st models.Stats) bool { return st.IdleTimeouts >= 3 })
}

// checkMaxConns: with Config.MaxConns=4, a fifth connection is closed at
// once without a reply and counted as Rejected, the four keep working, and
// once one of them leaves a new connection is served.
func checkMaxConns(e *env) {
	const maxConns = 4
	s := e.start(func(c *models.Config) { c.MaxConns = maxConns })
	conns := make([]net.Conn, maxConns)
	for i := range conns {
		conns[i] = e.mustDial(s.addr)
		if err := e.exchange(conns[i], e.line(10)); err != nil {
			e.t.Fatalf("connection %d of %d: %v", i+1, maxConns, err)
		}
	}
	s.waitStats(fmt.Sprintf("active=%d", maxConns), func(st models.Stats) bool { return st.Active == maxConns })
	timeout := e.d(opTimeout)
	errs := goAll(8, func(i int) error {
		c, err := e.dial(s.addr)
		if err != nil {
			return nil // refused outright: fine
		}
		defer c.Close()
		if err := e.writeAll(c, e.line(10)); err != nil && !isReset(err) {
			return fmt.Errorf("excess connection %d: write: %w", i, err)
		}
		if err := e.expectClosed(c, timeout); err != nil {
			return fmt.Errorf("excess connection %d (max-conns %d): %w", i, maxConns, err)
		}
		return nil
	})
	e.reportErrs("excess connections", errs)
	for i, c := range conns {
		if err := e.exchange(c, e.line(20)); err != nil {
			e.t.Errorf("connection %d after excess ones were turned away: %v", i+1, err)
		}
	}
	s.waitStats("rejected>=1", func(st models.Stats) bool { return st.Rejected >= 1 })

	conns[0].Close()
	s.waitStats(fmt.Sprintf("active=%d after one client left", maxConns-1), func(st models.Stats) bool {
		return st.Active == maxConns-1
	})
	c := e.mustDial(s.addr)
	if err := e.exchange(c, e.line(10)); err != nil {
		e.t.Errorf("a new connection once below max-conns: %v", err)
	}
}

// ping checks the server at addr answers one request on the check's
// transport.
func (e *env) ping(addr string) error {
	if e.stream() {
		c, err := e.dial(addr)
		if err != nil {
			return err
		}
		defer c.Close()
		return e.exchange(c, e.line(12))
	}
	var retries atomic.Int64
	dc, err := e.dgramClient(addr, &retries)
	if err != nil {
		return err
	}
	defer dc.close()
	return dc.roundTrip(e.payloadAny(12))
}

// checkSocketFile: the socket file gets Config.SocketMode; a stale socket
// is replaced; a live server's socket is not stolen (ErrSocketInUse, and
// the live server keeps its file and keeps serving), nor is a live socket
// of the other type; a file that is not a socket is left alone; and the
// file is gone after shutdown (checked by the server harness).
func checkSocketFile(e *env) {
	path := e.unixPath()
	// A stale socket: bound, then its owner went away without unlinking.
	if e.stream() {
		ln, err := net.Listen(e.net, path)
		if err != nil {
			e.t.Fatalf("make a stale socket: %v", err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close()
	} else {
		pc, err := net.ListenPacket(e.net, path)
		if err != nil {
			e.t.Fatalf("make a stale socket: %v", err)
		}
		pc.Close()
	}
	if _, err := os.Lstat(path); err != nil {
		e.t.Fatalf("stale socket file: %v", err)
	}
	s := e.start(func(c *models.Config) { c.Addr = path })
	if err := e.ping(s.addr); err != nil {
		e.t.Fatalf("server that replaced a stale socket: %v", err)
	}
	st, err := os.Lstat(path)
	if err != nil || st.Mode()&os.ModeSocket == 0 {
		e.t.Fatalf("socket file %s: %v (mode %v)", path, err, st.Mode())
	}
	if perm := st.Mode().Perm(); perm != models.DefaultSocketMode {
		e.t.Errorf("socket file mode %v, want %v by default", perm, models.DefaultSocketMode)
	}

	// A second server on the live path must fail and leave the first alone.
	cfg := e.config()
	cfg.Addr = path
	if s2, err := e.tryStart(cfg); err == nil {
		e.t.Errorf("a second server started on the live socket %s (its Addr %s)", path, s2.addr)
	} else if !errors.Is(err, models.ErrSocketInUse) {
		e.t.Errorf("second server on a live socket: error %v, want models.ErrSocketInUse", err)
	}
	if st2, err := os.Lstat(path); err != nil || !os.SameFile(st, st2) {
		e.t.Errorf("the live server's socket file was replaced or removed (%v)", err)
	}
	if err := e.ping(s.addr); err != nil {
		e.t.Errorf("the first server after a second tried its path: %v", err)
	}

	// A live socket of the other type (a datagram socket where a stream
	// server wants to bind, or the reverse) is in use too: probing it
	// fails with EPROTOTYPE, not ECONNREFUSED, and it must not be taken
	// for stale.
	other := e.unixPath()
	otherNet := "unixgram"
	if !e.stream() {
		otherNet = "unix"
	}
	if otherNet == "unix" {
		ln, err := net.Listen("unix", other)
		if err != nil {
			e.t.Fatalf("bind a live %s socket: %v", otherNet, err)
		}
		defer ln.Close()
	} else {
		pc, err := net.ListenPacket("unixgram", other)
		if err != nil {
			e.t.Fatalf("bind a live %s socket: %v", otherNet, err)
		}
		defer pc.Close()
	}
	ost, _ := os.Lstat(other)
	cfg = e.config()
	cfg.Addr = other
	if s4, err := e.tryStart(cfg); err == nil {
		e.t.Errorf("a %s server started on the live %s socket %s (its Addr %s): it took a live socket for a stale one", e.net, otherNet, other, s4.addr)
	} else if !errors.Is(err, models.ErrSocketInUse) {
		e.t.Errorf("%s server on a live %s socket: error %v, want models.ErrSocketInUse", e.net, otherNet, err)
	}
	if st2, err := os.Lstat(other); err != nil || ost == nil || !os.SameFile(ost, st2) {
		e.t.Errorf("the live %s socket's file was replaced or removed (%v)", otherNet, err)
	}

	// A file that is not a socket is never removed.
	plain := e.unixPath()
	if err := os.WriteFile(plain, []byte("keep me"), 0o600); err != nil {
		e.t.Fatal(err)
	}
	cfg = e.config()
	cfg.Addr = plain
	if _, err := e.tryStart(cfg); err == nil {
		e.t.Errorf("a server started on %s, a regular file", plain)
	}
	if b, err := os.ReadFile(plain); err != nil || string(b) != "keep me" {
		e.t.Errorf("the regular file at the socket path was changed or removed (%v)", err)
	}

	// A configured mode is applied.
	s3 := e.start(func(c *models.Config) { c.SocketMode = 0o660 })
	if st, err := os.Lstat(s3.cfg.Addr); err != nil {
		e.t.Errorf("socket file: %v", err)
	} else if perm := st.Mode().Perm(); perm != 0o660 {
		e.t.Errorf("socket file mode %v, want the configured 0660", perm)
	}
	if _, err := s3.shutdown(); err != nil {
		e.t.Errorf("shutdown: %v", err)
	}
}

// checkAddrInUse: a second server on a live server's port must fail to
// start (a listener opened with SO_REUSEPORT by mistake would share the
// port silently and split the traffic), and the first keeps serving.
func checkAddrInUse(e *env) {
	s := e.start(nil)
	cfg := e.config()
	cfg.Addr = s.addr
	if s2, err := e.tryStart(cfg); err == nil {
		e.t.Errorf("a second server started on %s %s, the address of a live server (its Addr %s)", e.net, s.addr, s2.addr)
	}
	for range 3 {
		if err := e.ping(s.addr); err != nil {
			e.t.Errorf("the first server after a second tried its address: %v", err)
		}
	}
}
