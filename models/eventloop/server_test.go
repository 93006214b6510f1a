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
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/models/modeltest"
	"github.com/sockbench/sockbench/protocol"
)

// These tests cover what is particular to this model (its loops, pool,
// writers and hand-overs); the conformance suite (eventloop_test.go)
// covers the protocol and the bounds.

func start(t *testing.T, cfg models.Config) models.Server {
	t.Helper()
	return modeltest.Start(t, Name, cfg)
}

func dial(t *testing.T, network string, srv models.Server) net.Conn {
	t.Helper()
	return modeltest.Dial(t, network, srv.Addr())
}

// roundTrip sends line and checks its echo.
func roundTrip(c net.Conn, r *bufio.Reader, line string) error {
	return modeltest.RoundTrip(c, r, protocol.Echo, line)
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
				if err := roundTrip(c, r, "busy\n"); err != nil {
					errs <- fmt.Errorf("busy client: %w", err)
					return
				}
				replies.Add(1)
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	if !modeltest.WaitFor(10*time.Second, func() bool { return replies.Load() >= 100 }) {
		t.Fatalf("busy clients got only %d replies", replies.Load())
	}

	probe := dial(t, "tcp", srv)
	pr := bufio.NewReader(probe)
	best := time.Hour
	for i := 0; i < 10; i++ { // the best of 10: the machine may be busy, a stalled loop never is fast
		t0 := time.Now()
		if err := roundTrip(probe, pr, "probe\n"); err != nil {
			t.Fatalf("probe: %v", err)
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

// TestHalfClose: a client that shuts its write side while its requests
// are in the pool (a job: blocking handlers) gets every reply, then EOF:
// gnet closes the connection on the EOF and the job finishes it
// (handover.go). Without a handler cost this is the suite's half-close
// check.
func TestHalfClose(t *testing.T) {
	for _, tc := range []struct {
		network string
		block   time.Duration
	}{{"tcp", 10 * time.Millisecond}, {"unix", time.Millisecond}} {
		t.Run(fmt.Sprintf("%s/block=%v", tc.network, tc.block), func(t *testing.T) {
			srv := start(t, models.Config{Net: tc.network, Workers: 1, Cost: protocol.Cost{Block: tc.block}})
			c := dial(t, tc.network, srv)
			var req bytes.Buffer
			for i := 0; i < 10; i++ {
				fmt.Fprintf(&req, "half %d\n", i)
			}
			c.Write(req.Bytes())
			c.(interface{ CloseWrite() error }).CloseWrite()
			c.SetReadDeadline(time.Now().Add(modeltest.Scaled(5 * time.Second)))
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, req.Bytes()) {
				t.Fatalf("got %q, %v; want %q", got, err, req.Bytes())
			}
			st := modeltest.WaitStats(t, srv, "active=0 after the client left", func(st models.Stats) bool { return st.Active == 0 })
			if st.Requests != 10 || st.Errors() != 0 {
				t.Fatalf("stats: %v", st)
			}
		})
	}
}

// TestStartErrors: a bad address and unixgram (gnet has no such
// transport) come back from Start, clearly, with nothing left running. (A
// port or a socket in use is the suite's addr-in-use and socket-file
// checks.)
func TestStartErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  models.Config
		want error
	}{
		{models.Config{Net: "tcp", Addr: "300.1.2.3:0"}, nil},
		{models.Config{Net: "unixgram", Addr: modeltest.Addr(t, "unixgram")}, models.ErrUnsupportedNet},
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
}

// TestNoLeaks: servers with blocking handlers (the pool, its jobs and
// their dups of the socket) started, used and shut down leave no
// goroutine, descriptor or socket file behind. Without a handler cost
// this is the suite's leaks check.
func TestNoLeaks(t *testing.T) {
	cycle := func(network string, block time.Duration) {
		srv, err := models.New(Name, models.Config{Net: network, Addr: modeltest.Addr(t, network), Cost: protocol.Cost{Block: block}})
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
			c.SetDeadline(time.Now().Add(modeltest.Scaled(5 * time.Second)))
			c.Write([]byte("leak\n"))
			c.Read(make([]byte, 16))
			c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), modeltest.Scaled(5*time.Second))
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if network == "unix" {
			if _, err := os.Lstat(srv.Addr()); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket file left after shutdown: %v", err)
			}
		}
	}
	fds := func() int { n, _ := modeltest.OpenFDs(); return n }
	cycle("tcp", time.Millisecond) // warm up lazily started runtime goroutines
	g0, f0 := runtime.NumGoroutine(), fds()
	for _, network := range []string{"tcp", "unix", "udp"} {
		cycle(network, time.Millisecond)
	}
	if !modeltest.WaitFor(modeltest.Scaled(3*time.Second), func() bool { return runtime.NumGoroutine() <= g0 && fds() <= f0 }) {
		buf := make([]byte, 1<<16)
		t.Fatalf("goroutines %d -> %d, fds %d -> %d\n%s", g0, runtime.NumGoroutine(), f0, fds(),
			buf[:runtime.Stack(buf, true)])
	}
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
	if !modeltest.WaitFor(10*time.Second, func() bool { return srv.Stats().Active == 0 }) {
		t.Fatalf("stats: %v", srv.Stats())
	}
	// The job wakes from its handler and finds the connection gone.
	p := srv.(*server).pool
	if !modeltest.WaitFor(10*time.Second, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.pending == 0 }) {
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
			if err := roundTrip(c0, bufio.NewReader(c0), "first\n"); err != nil {
				t.Fatalf("first: %v", err)
			}
			g0 := runtime.NumGoroutine()
			const n = 200
			for i := 0; i < n; i++ {
				c := dial(t, network, srv)
				if err := roundTrip(c, bufio.NewReader(c), "conn\n"); err != nil {
					t.Fatalf("connection %d: %v", i, err)
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
