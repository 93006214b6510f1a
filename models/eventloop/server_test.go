package eventloop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/protocol"
)

func start(t *testing.T, cfg models.Config) models.Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
		if cfg.IsUnix() {
			dir, err := os.MkdirTemp("", "sb")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			cfg.Addr = filepath.Join(dir, "s.sock")
		}
	}
	srv, err := models.New(Name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return srv
}

func dial(t *testing.T, network string, srv models.Server) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, srv.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends line and returns the reply line.
func roundTrip(c net.Conn, r *bufio.Reader, line string) (string, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, line); err != nil {
		return "", err
	}
	return r.ReadString('\n')
}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

// TestLoopNeverStalls: with --block 50ms and 50 connections keeping one
// loop busy, a request on another connection costs its own 50 ms and no
// more, and a request the loop answers itself (a line over max-line: it
// closes the connection, no handler runs) is answered in well under 50 ms.
// A loop that slept in the handler would make both wait behind the other
// connections' sleeps (at least one more 50 ms), and the 50 busy clients
// together would get about one reply per 50 ms instead of 50.
func TestLoopNeverStalls(t *testing.T) {
	const block = 50 * time.Millisecond
	srv := start(t, models.Config{Net: "tcp", Workers: 1, MaxLine: 1024, Cost: protocol.Cost{Block: block}})

	var replies atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		c := dial(t, "tcp", srv)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := bufio.NewReader(c)
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := roundTrip(c, r, "busy\n")
				if err != nil || got != "busy\n" {
					errs <- fmt.Errorf("busy client: %q %v", got, err)
					return
				}
				replies.Add(1)
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	if !waitFor(10*time.Second, func() bool { return replies.Load() >= 100 }) {
		t.Fatalf("busy clients got only %d replies", replies.Load())
	}

	probe := dial(t, "tcp", srv)
	pr := bufio.NewReader(probe)
	best := time.Hour
	for i := 0; i < 10; i++ { // the best of 10: the machine may be busy, a stalled loop never is fast
		t0 := time.Now()
		got, err := roundTrip(probe, pr, "probe\n")
		if err != nil || got != "probe\n" {
			t.Fatalf("probe: %q %v", got, err)
		}
		best = min(best, time.Since(t0))
	}
	bestLoop := time.Hour
	long := bytes.Repeat([]byte("x"), 2048)
	for i := 0; i < 5; i++ {
		c := dial(t, "tcp", srv)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		t0 := time.Now()
		if _, err := c.Write(long); err != nil {
			t.Fatalf("long line: %v", err)
		}
		if n, err := io.Copy(io.Discard, c); n != 0 || err != nil { // until the server's FIN
			t.Fatalf("long line: read %d bytes, %v; want EOF", n, err)
		}
		bestLoop = min(bestLoop, time.Since(t0))
		c.Close()
	}
	before := replies.Load()
	time.Sleep(500 * time.Millisecond)
	during := replies.Load() - before
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	t.Logf("probe: best %v for a %v handler; line over max-line closed in %v at best; busy clients: %d replies in 500ms",
		best, block, bestLoop, during)
	if extra := best - block; extra > 25*time.Millisecond {
		t.Errorf("probe waited %v beyond its own %v handler: the loop stalled", extra, block)
	}
	if bestLoop > 25*time.Millisecond {
		t.Errorf("the loop took %v at best to close a connection for a line over max-line: it stalled", bestLoop)
	}
	// 50 clients × 500ms / 50ms = 500 if the handlers overlap; 10 if the loop ran them one by one.
	if during < 100 {
		t.Errorf("busy clients got %d replies in 500ms: the handlers did not run concurrently", during)
	}
}

// TestBlockKeepsOrderAndDrains: pipelined requests with a blocking handler
// come back in order, and a shutdown that starts while they are in the
// pool still answers every one of them before closing.
func TestBlockKeepsOrderAndDrains(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			srv, err := models.New(Name, models.Config{Net: network, Addr: addrFor(t, network),
				Mode: protocol.Upper, Workers: 1, Cost: protocol.Cost{Block: 20 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			var want, req bytes.Buffer
			for i := 0; i < 20; i++ {
				fmt.Fprintf(&req, "line %d\n", i)
				fmt.Fprintf(&want, "LINE %d\n", i)
			}
			c := dial(t, network, srv)
			if _, err := c.Write(req.Bytes()); err != nil {
				t.Fatal(err)
			}
			// Let the loop read them; the pool needs 400 ms to answer.
			time.Sleep(50 * time.Millisecond)
			done := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				done <- srv.Shutdown(ctx)
			}()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("read: %v (got %d bytes)", err, len(got))
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("got %q\nwant %q", got, want.Bytes())
			}
			if err := <-done; err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if st := srv.Stats(); st.Requests != 20 || st.Active != 0 {
				t.Fatalf("stats: %v", st)
			}
		})
	}
}

func addrFor(t *testing.T, network string) string {
	if network != "unix" && network != "unixgram" {
		return "127.0.0.1:0"
	}
	dir, err := os.MkdirTemp("", "sb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// TestHalfClose: a client that shuts its write side gets every reply,
// then EOF, with and without blocking handlers.
func TestHalfClose(t *testing.T) {
	for _, tc := range []struct {
		network string
		block   time.Duration
	}{{"tcp", 0}, {"tcp", 10 * time.Millisecond}, {"unix", 0}, {"unix", time.Millisecond}} {
		t.Run(fmt.Sprintf("%s/block=%v", tc.network, tc.block), func(t *testing.T) {
			srv := start(t, models.Config{Net: tc.network, Workers: 1, Cost: protocol.Cost{Block: tc.block}})
			c := dial(t, tc.network, srv)
			var req bytes.Buffer
			for i := 0; i < 10; i++ {
				fmt.Fprintf(&req, "half %d\n", i)
			}
			c.Write(req.Bytes())
			c.(interface{ CloseWrite() error }).CloseWrite()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, req.Bytes()) {
				t.Fatalf("got %q, %v; want %q", got, err, req.Bytes())
			}
			if !waitFor(5*time.Second, func() bool { return srv.Stats().Active == 0 }) {
				t.Fatalf("stats after the client left: %v", srv.Stats())
			}
			if st := srv.Stats(); st.Requests != 10 || st.Errors() != 0 {
				t.Fatalf("stats: %v", st)
			}
		})
	}
}

// TestIdleTimeoutAndMaxConns: a connection past max-conns is closed at
// once and counted; an idle one is closed after the timeout, a busy one is
// not.
func TestIdleTimeoutAndMaxConns(t *testing.T) {
	srv := start(t, models.Config{Net: "tcp", MaxConns: 2, IdleTimeout: 300 * time.Millisecond})
	busy := dial(t, "tcp", srv)
	// The idle connection's clock starts when the server accepts it, so
	// no sooner than this.
	t0 := time.Now()
	idle := dial(t, "tcp", srv)
	br := bufio.NewReader(busy)
	if got, err := roundTrip(busy, br, "a\n"); err != nil || got != "a\n" {
		t.Fatalf("busy: %q %v", got, err)
	}
	if !waitFor(5*time.Second, func() bool { return srv.Stats().Active == 2 }) {
		t.Fatalf("stats: %v", srv.Stats())
	}
	extra := dial(t, "tcp", srv)
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := extra.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("connection past max-conns: read %d, %v; want it closed", n, err)
	}
	idleClosed := make(chan time.Duration, 1)
	go func() {
		idle.SetReadDeadline(time.Now().Add(5 * time.Second))
		idle.Read(make([]byte, 1))
		idleClosed <- time.Since(t0)
	}()
	for i := 0; i < 10; i++ {
		time.Sleep(100 * time.Millisecond)
		if got, err := roundTrip(busy, br, "b\n"); err != nil || got != "b\n" {
			t.Fatalf("busy connection after %v: %q %v", time.Since(t0), got, err)
		}
	}
	select {
	case d := <-idleClosed:
		if d < 300*time.Millisecond {
			t.Errorf("idle connection closed %v after it was dialed, before its 300ms timeout", d)
		}
	default:
		t.Fatalf("idle connection still open after %v", time.Since(t0))
	}
	st := srv.Stats()
	if st.Rejected != 1 || st.IdleTimeouts != 1 || st.Accepted != 2 {
		t.Fatalf("stats: %v", st)
	}
}

// TestStartErrors: bind failures come back from Start, clearly.
func TestStartErrors(t *testing.T) {
	tcp := start(t, models.Config{Net: "tcp"})
	udp := start(t, models.Config{Net: "udp", Workers: 2})
	unixSrv := start(t, models.Config{Net: "unix"})
	for _, tc := range []struct {
		cfg  models.Config
		want error
	}{
		{models.Config{Net: "tcp", Addr: tcp.Addr()}, nil},
		{models.Config{Net: "udp", Addr: udp.Addr()}, nil},
		{models.Config{Net: "tcp", Addr: "300.1.2.3:0"}, nil},
		{models.Config{Net: "unix", Addr: unixSrv.Addr()}, models.ErrSocketInUse},
		{models.Config{Net: "unixgram", Addr: "/tmp/x.sock"}, models.ErrUnsupportedNet},
	} {
		srv, err := models.New(Name, tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = srv.Start()
		t.Logf("%s %s: %v", tc.cfg.Net, tc.cfg.Addr, err)
		if err == nil {
			srv.Shutdown(context.Background())
			t.Errorf("%s %s: Start succeeded", tc.cfg.Net, tc.cfg.Addr)
		} else if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s %s: %v, want %v", tc.cfg.Net, tc.cfg.Addr, err, tc.want)
		}
	}
	// The live server's socket survived the attempt, with mode 0600.
	st, err := os.Stat(unixSrv.Addr())
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket file: %v %v", st, err)
	}
	c := dial(t, "unix", unixSrv)
	if got, err := roundTrip(c, bufio.NewReader(c), "still\n"); err != nil || got != "still\n" {
		t.Fatalf("live unix server after a second bind: %q %v", got, err)
	}
	// UDP: every loop shares the one port.
	uc := dial(t, "udp", udp)
	for i := 0; i < 20; i++ {
		uc.Write([]byte("dgram"))
		buf := make([]byte, 64)
		uc.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := uc.Read(buf); err != nil || string(buf[:n]) != "dgram" {
			t.Fatalf("udp: %q %v", buf[:n], err)
		}
	}
}

// TestNoLeaks: servers of every transport started, used and shut down
// leave no goroutine, descriptor or socket file behind.
func TestNoLeaks(t *testing.T) {
	cycle := func(network string, block time.Duration) {
		addr := addrFor(t, network)
		srv, err := models.New(Name, models.Config{Net: network, Addr: addr, Cost: protocol.Cost{Block: block}})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			c, err := net.Dial(network, srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			c.Write([]byte("leak\n"))
			c.Read(make([]byte, 16))
			c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if network == "unix" {
			if _, err := os.Lstat(addr); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket file left after shutdown: %v", err)
			}
		}
	}
	cycle("tcp", 0) // warm up lazily started runtime goroutines
	g0, f0 := runtime.NumGoroutine(), openFDs()
	for _, network := range []string{"tcp", "unix", "udp"} {
		for _, block := range []time.Duration{0, time.Millisecond} {
			cycle(network, block)
		}
	}
	if !waitFor(3*time.Second, func() bool { return runtime.NumGoroutine() <= g0 && openFDs() <= f0 }) {
		buf := make([]byte, 1<<16)
		t.Fatalf("goroutines %d -> %d, fds %d -> %d\n%s", g0, runtime.NumGoroutine(), f0, openFDs(),
			buf[:runtime.Stack(buf, true)])
	}
}

func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}

// TestNoAllocsPerRequest: steady echo and upper traffic allocates nothing
// per request (the client side allocates nothing either, so the count is
// the server's; ticks allocate a little, hence the bound well under one).
func TestNoAllocsPerRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	for _, network := range []string{"tcp", "unix"} {
		for _, mode := range protocol.Modes {
			t.Run(network+"/"+mode.String(), func(t *testing.T) {
				srv := start(t, models.Config{Net: network, Mode: mode, Workers: 1})
				c := dial(t, network, srv)
				req := []byte("hello, event loop\n")
				reply := make([]byte, len(req))
				c.SetDeadline(time.Now().Add(time.Minute))
				do := func() {
					if _, err := c.Write(req); err != nil {
						t.Fatal(err)
					}
					if _, err := io.ReadFull(c, reply); err != nil {
						t.Fatal(err)
					}
				}
				for i := 0; i < 200; i++ {
					do()
				}
				if a := testing.AllocsPerRun(2000, do); a > 0.2 {
					t.Errorf("%.3f allocations per request", a)
				}
			})
		}
	}
}

// TestSlowReader: a client that sends far more than the socket buffers
// hold before it reads gets every reply in order, with and without
// blocking handlers, and also when it half-closes before reading.
func TestSlowReader(t *testing.T) {
	for _, tc := range []struct {
		network   string
		block     time.Duration
		halfClose bool
	}{
		{"unix", 0, false}, {"unix", 0, true}, {"tcp", 0, true},
		{"unix", 100 * time.Microsecond, false}, {"unix", 100 * time.Microsecond, true},
	} {
		t.Run(fmt.Sprintf("%s/block=%v/halfclose=%v", tc.network, tc.block, tc.halfClose), func(t *testing.T) {
			srv := start(t, models.Config{Net: tc.network, Mode: protocol.Upper, Workers: 1, Cost: protocol.Cost{Block: tc.block}})
			c := dial(t, tc.network, srv)
			var req, want bytes.Buffer
			line := bytes.Repeat([]byte("abcdefgh"), 512)
			for i := 0; req.Len() < 2<<20; i++ {
				fmt.Fprintf(&req, "%d %s\n", i, line)
				fmt.Fprintf(&want, "%d %s\n", i, bytes.ToUpper(line))
			}
			werr := make(chan error, 1)
			go func() {
				_, err := c.Write(req.Bytes())
				if err == nil && tc.halfClose {
					// Let the server answer into full socket buffers first.
					time.Sleep(500 * time.Millisecond)
					err = c.(interface{ CloseWrite() error }).CloseWrite()
				}
				werr <- err
			}()
			if tc.halfClose {
				if err := <-werr; err != nil {
					t.Fatal(err)
				}
			} else {
				time.Sleep(200 * time.Millisecond) // let the server's socket fill up
			}
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			got := make([]byte, want.Len())
			if n, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("read %d of %d bytes: %v", n, want.Len(), err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatal("replies differ from the requests")
			}
			if !tc.halfClose {
				if err := <-werr; err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestFarAheadCountsOnce: with a blocking handler, a client that sends
// far more than the backlog without reading is closed, and its connection
// counts as one write error: the job that finds it closed under it adds
// no second one.
func TestFarAheadCountsOnce(t *testing.T) {
	srv := start(t, models.Config{Net: "tcp", Workers: 1, Cost: protocol.Cost{Block: 20 * time.Millisecond}})
	c := dial(t, "tcp", srv)
	chunk := bytes.Repeat([]byte("far ahead\n"), 10<<10)
	c.SetWriteDeadline(time.Now().Add(20 * time.Second))
	var err error
	for sent := 0; err == nil && sent < 64<<20; sent += len(chunk) {
		_, err = c.Write(chunk)
	}
	if err == nil {
		t.Fatal("64 MiB sent ahead of the replies and the server still holds the connection")
	}
	if !waitFor(10*time.Second, func() bool { return srv.Stats().Active == 0 }) {
		t.Fatalf("stats: %v", srv.Stats())
	}
	// The job wakes from its handler and finds the connection gone.
	p := srv.(*server).pool
	if !waitFor(10*time.Second, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.pending == 0 }) {
		t.Fatal("the job never finished")
	}
	if st := srv.Stats(); st.WriteErrors != 1 || st.Errors() != 1 {
		t.Fatalf("stats: %v; want one write error", st)
	}
}

// TestNoGoroutinePerConn: open connections with an idle timeout and a
// connection limit cost no goroutine each: the loops and the ticker watch
// them all.
func TestNoGoroutinePerConn(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			srv := start(t, models.Config{Net: network, Workers: 2, MaxConns: 1000, IdleTimeout: time.Minute})
			c0 := dial(t, network, srv)
			if got, err := roundTrip(c0, bufio.NewReader(c0), "first\n"); err != nil || got != "first\n" {
				t.Fatalf("first: %q %v", got, err)
			}
			g0 := runtime.NumGoroutine()
			const n = 200
			for i := 0; i < n; i++ {
				c := dial(t, network, srv)
				if got, err := roundTrip(c, bufio.NewReader(c), "conn\n"); err != nil || got != "conn\n" {
					t.Fatalf("connection %d: %q %v", i, got, err)
				}
			}
			if st := srv.Stats(); st.Active != n+1 {
				t.Fatalf("stats: %v", st)
			}
			if g := runtime.NumGoroutine(); g > g0+n/10 {
				t.Fatalf("%d goroutines with %d more open connections, %d before", g, n, g0)
			}
		})
	}
}

// TestJobBatchBound: with a blocking handler, a client far ahead has its
// lines taken MaxLine bytes at a time (the rest waits in gnet's buffer),
// and every reply still comes back, in order.
func TestJobBatchBound(t *testing.T) {
	const maxLine = 1024
	srv := start(t, models.Config{Net: "tcp", Workers: 1, MaxLine: maxLine, Cost: protocol.Cost{Block: time.Millisecond}})
	ss := srv.(*server).stream
	var req bytes.Buffer
	for i := 0; req.Len() < 32<<10; i++ {
		fmt.Fprintf(&req, "line %d %s\n", i, bytes.Repeat([]byte("x"), 50))
	}
	// The largest job, seen from its loop every millisecond.
	var most atomic.Int64
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			for _, ls := range ss.loopSnapshot() {
				done := make(chan struct{})
				look := gnet.RunnableFunc(func(context.Context) error {
					defer close(done)
					for x := ls.active.Front(); x != nil; x = x.Next() {
						if st := x.Elem; st.job != nil {
							most.Store(max(most.Load(), int64(len(st.job.B))))
						}
					}
					return nil
				})
				if ls.el.Execute(context.Background(), look) == nil {
					<-done
				}
			}
		}
	}()
	c := dial(t, "tcp", srv)
	if _, err := c.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got := make([]byte, req.Len())
	_, err := io.ReadFull(c, got)
	close(stop)
	<-sampled
	if err != nil || !bytes.Equal(got, req.Bytes()) {
		t.Fatalf("replies differ from the requests (%v)", err)
	}
	if m := most.Load(); m == 0 || m > maxLine {
		t.Fatalf("largest job: %d bytes of lines; want 1..%d", m, maxLine)
	}
	t.Logf("largest job: %d bytes of lines", most.Load())
}
