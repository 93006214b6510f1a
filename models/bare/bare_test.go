package bare_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/models/bare"
	"github.com/sockbench/sockbench/models/modeltest"
	"github.com/sockbench/sockbench/protocol"
)

func TestMain(m *testing.M) {
	models.MaybeRunChild()
	os.Exit(m.Run())
}

// TestConformance runs the shared suite on every transport bare serves,
// unixgram included; nothing is skipped.
func TestConformance(t *testing.T) {
	modeltest.Run(t, bare.Name, modeltest.Nets("tcp", "udp", "unix", "unixgram"))
}

// BenchmarkBare measures the model in process over loopback on the same
// matrix as the other models' benchmarks. Its allocs/op is the server's:
// 0 on every transport.
//
//	go test -run '^$' -bench Bare -benchmem ./models/bare/
func BenchmarkBare(b *testing.B) {
	for _, network := range []string{"tcp", "udp", "unix"} {
		for _, mode := range protocol.Modes {
			for _, c := range []struct{ conns, size int }{{1, 64}, {64, 64}, {64, 4096}} {
				name := fmt.Sprintf("net=%s/mode=%s/conns=%d/size=%d", network, mode, c.conns, c.size)
				b.Run(name, func(b *testing.B) {
					modeltest.Benchmark(b, bare.Name, network, mode, c.conns, c.size)
				})
			}
		}
	}
}

// start runs a bare server on network for the test, in upper mode, with
// cfg changed by mod.
func start(t *testing.T, network string, mod func(*models.Config)) models.Server {
	t.Helper()
	cfg := models.Config{Net: network, Mode: protocol.Upper, Grace: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	return modeltest.Start(t, bare.Name, cfg)
}

// dial connects to srv.
func dial(t *testing.T, network string, srv models.Server) net.Conn {
	t.Helper()
	return modeltest.Dial(t, network, srv.Addr())
}

// TestNoAllocsPerRequest: the common path (no handler cost) allocates
// nothing per request on any transport, and starts no pool goroutine. The client's calls allocate nothing once connected either, so the
// process's allocation count is the server's.
func TestNoAllocsPerRequest(t *testing.T) {
	const requests = 2000
	for _, network := range []string{"tcp", "unix", "udp", "unixgram"} {
		for _, mode := range protocol.Modes {
			t.Run(network+"/"+mode.String(), func(t *testing.T) {
				srv := start(t, network, func(c *models.Config) { c.Mode = mode })
				c := dial(t, network, srv)
				req := []byte("hello, bare world: a request of some length, in mixed Case\n")
				want := mode.AppendReply(nil, req)
				got := make([]byte, len(want))
				c.SetDeadline(time.Now().Add(30 * time.Second))
				roundTrip := func() {
					if _, err := c.Write(req); err != nil {
						t.Fatal(err)
					}
					if _, err := io.ReadFull(c, got); err != nil {
						t.Fatal(err)
					}
				}
				for range 100 { // warm up: buffers, lazily made runtime state
					roundTrip()
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("reply %q, want %q", got, want)
				}
				if n := modeltest.Goroutines("bare.(*pool).work"); n != 0 {
					t.Errorf("%d pool goroutines without a handler cost: the common path must not use the pool", n)
				}
				var m0, m1 runtime.MemStats
				runtime.ReadMemStats(&m0)
				for range requests {
					roundTrip()
				}
				runtime.ReadMemStats(&m1)
				if per := float64(m1.Mallocs-m0.Mallocs) / requests; per > 0.01 {
					t.Errorf("%.3f allocations per request (%d in %d requests), want 0", per, m1.Mallocs-m0.Mallocs, requests)
				}
			})
		}
	}
}

// TestReaderThatDoesNotRead: a client that pipelines without reading its
// replies makes the server stop reading it once its replies back up, so
// what the server holds for it stays within one read (64 KiB) and a
// partial line, however much the client sends; other clients are served
// meanwhile; and once the client reads, every reply arrives, in order.
func TestReaderThatDoesNotRead(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			srv := start(t, network, nil)
			c := dial(t, network, srv)
			line := []byte(strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789", 3)[:99] + "\n")
			chunk := bytes.Repeat(line, 640) // 64000 bytes
			var sent int
			for {
				// The server stops reading: the kernel's buffers fill and
				// a write stops making progress.
				c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
				n, err := c.Write(chunk)
				sent += n
				if err != nil {
					if !os.IsTimeout(err) {
						t.Fatalf("write: %v", err)
					}
					break
				}
				if sent > 256<<20 {
					t.Fatalf("the server read %d bytes from a client that reads nothing", sent)
				}
			}
			st := srv.Stats()
			const bound = 64<<10 + 16<<10
			if held := st.BytesIn - st.BytesOut; held > bound {
				t.Errorf("the server read %d bytes and wrote %d: it holds %d for one client, more than %d", st.BytesIn, st.BytesOut, held, bound)
			}
			if st.BytesIn >= uint64(sent) {
				t.Fatalf("the server read all %d bytes sent: the test never backed it up", sent)
			}
			t.Logf("client sent %d bytes; server read %d, wrote %d", sent, st.BytesIn, st.BytesOut)

			other := dial(t, network, srv)
			other.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := other.Write([]byte("still there?\n")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 13)
			if _, err := io.ReadFull(other, got); err != nil || string(got) != "STILL THERE?\n" {
				t.Fatalf("another client while the first is backed up: %q, %v", got, err)
			}

			// Now read everything: every reply, in order.
			want := bytes.ToUpper(line)
			r := make([]byte, len(line))
			c.SetDeadline(time.Now().Add(30 * time.Second))
			partial := sent % len(line)
			for i := range sent / len(line) {
				if _, err := io.ReadFull(c, r); err != nil {
					t.Fatalf("reply %d of %d: %v", i, sent/len(line), err)
				}
				if !bytes.Equal(r, want) {
					t.Fatalf("reply %d: %q", i, r)
				}
			}
			if partial > 0 {
				// The last write stopped inside a line: finish it.
				if _, err := c.Write(line[partial:]); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(c, r); err != nil || !bytes.Equal(r, want) {
					t.Fatalf("the line the last write cut: %q, %v", r, err)
				}
			}
		})
	}
}

// TestBlockDoesNotStallTheLoop: while a --block handler waits in the
// pool, the loop serves everything else at once: here it closes another
// connection for a line over max-line (something the loop does itself)
// well before the handler is done.
func TestBlockDoesNotStallTheLoop(t *testing.T) {
	const block = 2 * time.Second
	srv := start(t, "tcp", func(c *models.Config) {
		c.Cost.Block = block
		c.MaxLine = 100
	})
	a := dial(t, "tcp", srv)
	a.SetDeadline(time.Now().Add(block + 10*time.Second))
	t0 := time.Now()
	if _, err := a.Write([]byte("blocked\n")); err != nil {
		t.Fatal(err)
	}
	modeltest.WaitStats(t, srv, "the blocked request read", func(st models.Stats) bool { return st.BytesIn >= 8 })
	// The loop counts the bytes before it hands the line over: wait for
	// the pool's goroutine to have it.
	if !modeltest.WaitFor(modeltest.Scaled(5*time.Second), func() bool { return modeltest.Goroutines("bare.(*pool).work") > 0 }) {
		t.Error("no pool goroutine holds the blocked request")
	}

	b := dial(t, "tcp", srv)
	b.SetDeadline(time.Now().Add(10 * time.Second))
	t1 := time.Now()
	if _, err := b.Write(bytes.Repeat([]byte("x"), 200)); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Read(make([]byte, 1)); err == nil || n > 0 {
		t.Fatalf("over-long line: read %d bytes, %v; want the connection closed", n, err)
	}
	if took := time.Since(t1); took > block/2 {
		t.Errorf("a line over max-line took %v to be refused while another request blocked for %v: the loop stalled", took, block)
	}
	got := make([]byte, 8)
	if _, err := io.ReadFull(a, got); err != nil || string(got) != "BLOCKED\n" {
		t.Fatalf("blocked request: %q, %v", got, err)
	}
	if took := time.Since(t0); took < block*9/10 {
		t.Errorf("blocked request answered after %v, before its block of %v", took, block)
	}
}

// TestDatagramPeerThatDoesNotRead: replies to a unixgram client that
// sends without reading are sent without waiting; when they cannot be
// sent they are dropped and counted (WriteErrors), and the loop goes on
// reading. An unconnected client's queue holds net.unix.max_dgram_qlen
// datagrams, after which only replies to it fail: everyone else is still
// answered. A connected client (sendto skips the queue-length check for a
// socket's own peer) fills the server socket's send buffer instead, which
// Linux charges until the receiver reads: replies to everyone fail until
// it reads or leaves, which no server on one socket can prevent; the loop
// still reads and counts every datagram meanwhile, and answers again once
// it has gone.
func TestDatagramPeerThatDoesNotRead(t *testing.T) {
	srv := start(t, "unixgram", nil)
	req := bytes.Repeat([]byte("q"), 200)
	flood := func(send func() error) int {
		t.Helper()
		sent, base := 0, srv.Stats().WriteErrors
		for st := srv.Stats(); st.WriteErrors == base; st = srv.Stats() {
			if sent == 100000 {
				t.Fatalf("100000 datagrams from a client that reads none, and no reply dropped: %s", st)
			}
			if err := send(); err != nil {
				t.Fatalf("datagram %d: %v", sent, err)
			}
			sent++
		}
		return sent
	}
	ping := func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("hi")); err != nil {
			return err
		}
		buf := make([]byte, 16)
		n, err := c.Read(buf)
		if err == nil && string(buf[:n]) != "HI" {
			err = fmt.Errorf("reply %q", buf[:n])
		}
		return err
	}

	// Unconnected: only its own replies are dropped.
	deaf, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: modeltest.Addr(t, "unixgram"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer deaf.Close()
	to := &net.UnixAddr{Name: srv.Addr(), Net: "unixgram"}
	deaf.SetWriteDeadline(time.Now().Add(10 * time.Second))
	sent := flood(func() error { _, err := deaf.WriteTo(req, to); return err })
	other := dial(t, "unixgram", srv)
	if err := ping(other); err != nil {
		t.Fatalf("another client while replies to an unconnected one are dropped: %v", err)
	}
	st := modeltest.WaitStats(t, srv, "every datagram answered or dropped", func(st models.Stats) bool {
		return st.Requests+st.WriteErrors == uint64(sent)+1
	})
	t.Logf("unconnected: %d datagrams sent by a client that reads none: %s", sent, st)

	// Connected: the loop keeps reading while no reply can be sent.
	deaf2 := dial(t, "unixgram", srv)
	deaf2.SetWriteDeadline(time.Now().Add(10 * time.Second))
	sent = flood(func() error { _, err := deaf2.Write(req); return err })
	in := srv.Stats().BytesIn
	if _, err := other.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	modeltest.WaitStats(t, srv, "the next client's datagram read", func(st models.Stats) bool { return st.BytesIn >= in+2 })
	deaf2.Close()
	for i := 0; ; i++ { // the reply to "hi" above may have been dropped
		err := ping(other)
		if err == nil {
			break
		}
		if i == 5 {
			t.Fatalf("another client once the connected one left: %v", err)
		}
	}
	t.Logf("connected: %d datagrams sent by a client that reads none: %s", sent, srv.Stats())
}

// TestExtraOptions: the pool size is the one model-specific option; a bad
// value or an unknown option is a clear error.
func TestExtraOptions(t *testing.T) {
	base := models.Config{Net: "tcp", Addr: "127.0.0.1:0"}
	for _, tc := range []struct {
		extra map[string]string
		want  string
	}{
		{map[string]string{"pool": "8"}, ""},
		{map[string]string{"pool": "0"}, "positive"},
		{map[string]string{"pool": "x"}, "positive"},
		{map[string]string{"spawn": "per-conn"}, "unknown extra option"},
	} {
		cfg := base
		cfg.Extra = tc.extra
		_, err := models.New(bare.Name, cfg)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.extra, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want one saying %q", tc.extra, err, tc.want)
		}
	}
}

// TestStartErrors: Start twice, and Start after Shutdown, fail clearly.
func TestStartErrors(t *testing.T) {
	srv := start(t, "tcp", nil)
	if err := srv.Start(); err == nil {
		t.Error("a second Start succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); !errors.Is(err, models.ErrServerClosed) {
		t.Errorf("Start after Shutdown: %v, want models.ErrServerClosed", err)
	}
	var wg sync.WaitGroup
	for range 4 { // Shutdown again, concurrently: the first result
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown again: %v", err)
			}
		}()
	}
	wg.Wait()
}
