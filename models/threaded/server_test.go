package threaded

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/protocol"
)

// These tests cover what is particular to this model and its exported
// helpers; the shared conformance suite (threaded_test.go) covers the
// wire protocol in depth.

func startServer(t *testing.T, cfg models.Config) models.Server {
	t.Helper()
	if cfg.Addr == "" {
		if cfg.Net == "unix" || cfg.Net == "unixgram" {
			dir, err := os.MkdirTemp("", "sb")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			cfg.Addr = filepath.Join(dir, "s.sock")
		} else {
			cfg.Addr = "127.0.0.1:0"
		}
	}
	srv, err := models.New("threaded", cfg)
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

func dial(t *testing.T, network, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func TestStreamModes(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		for _, mode := range protocol.Modes {
			t.Run(network+"/"+mode.String(), func(t *testing.T) {
				srv := startServer(t, models.Config{Net: network, Mode: mode})
				c := dial(t, network, srv.Addr())
				// Pipelined, with an empty line and bytes >= 0x80.
				var req bytes.Buffer
				for i := range 1000 {
					req.WriteString(strings.Repeat("aZ\xe9", i%7))
					req.WriteByte('\n')
				}
				want := mode.AppendReply(nil, req.Bytes())
				if _, err := c.Write(req.Bytes()); err != nil {
					t.Fatal(err)
				}
				c.(interface{ CloseWrite() error }).CloseWrite()
				got, err := io.ReadAll(c)
				if err != nil {
					t.Fatalf("reading replies: %v", err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("got %d bytes of replies, want %d (content differs: %v)", len(got), len(want), len(got) == len(want))
				}
				waitStat(t, srv, func(s models.Stats) bool { return s.Requests == 1000 && s.Active == 0 })
			})
		}
	}
}

func TestDatagramModes(t *testing.T) {
	for _, mode := range protocol.Modes {
		t.Run("udp/"+mode.String(), func(t *testing.T) {
			srv := startServer(t, models.Config{Net: "udp", Mode: mode, Workers: 2})
			c := dial(t, "udp", srv.Addr())
			buf := make([]byte, protocol.MaxDatagram+1)
			for _, size := range []int{1, 100, protocol.MaxDatagram} {
				req := bytes.Repeat([]byte("ab\n"), size/3+1)[:size]
				if _, err := c.Write(req); err != nil {
					t.Fatal(err)
				}
				n, err := c.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				if want := mode.AppendReply(nil, req); !bytes.Equal(buf[:n], want) {
					t.Fatalf("size %d: reply of %d bytes differs", size, n)
				}
			}
		})
	}
}

func TestDatagramBlockUsesPool(t *testing.T) {
	// With --block 50ms and one reader, 40 datagrams answered in well under
	// 40*50ms show the handler pool is at work.
	srv := startServer(t, models.Config{Net: "udp", Mode: protocol.Upper, Workers: 1,
		Cost: protocol.Cost{Block: 50 * time.Millisecond}})
	c := dial(t, "udp", srv.Addr())
	start := time.Now()
	for range 40 {
		c.Write([]byte("hi"))
	}
	buf := make([]byte, 16)
	for range 40 {
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "HI" {
			t.Fatalf("reply %q, %v", buf[:n], err)
		}
	}
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Fatalf("40 blocking requests took %v; handlers are not concurrent", el)
	}
}

func TestOverLimitClosesOnlyThatConn(t *testing.T) {
	srv := startServer(t, models.Config{Net: "tcp", MaxLine: 16})
	good := dial(t, "tcp", srv.Addr())
	bad := dial(t, "tcp", srv.Addr())
	bad.Write([]byte("ok\n" + strings.Repeat("x", 40)))
	got, _ := io.ReadAll(bad)
	if string(got) != "ok\n" {
		t.Fatalf("over-limit conn got %q, want the reply to its good line then EOF", got)
	}
	good.Write([]byte(strings.Repeat("y", 15) + "\n"))
	r := bufio.NewReader(good)
	if l, err := r.ReadString('\n'); err != nil || len(l) != 16 {
		t.Fatalf("other conn: %q, %v", l, err)
	}
	waitStat(t, srv, func(s models.Stats) bool { return s.LineTooLong == 1 })
}

func TestIdleTimeoutAndMaxConns(t *testing.T) {
	srv := startServer(t, models.Config{Net: "tcp", MaxConns: 1, IdleTimeout: 200 * time.Millisecond})
	c1 := dial(t, "tcp", srv.Addr())
	c1.Write([]byte("a\n"))
	if _, err := bufio.NewReader(c1).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	c2 := dial(t, "tcp", srv.Addr())
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Fatal("second conn past max-conns was served")
	}
	// c1 sends nothing more: the idle timeout closes it.
	if _, err := c1.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("idle conn: %v, want EOF", err)
	}
	waitStat(t, srv, func(s models.Stats) bool { return s.Rejected == 1 && s.IdleTimeouts == 1 && s.Active == 0 })
}

func TestShutdownAnswersThenEOFAndRemovesSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "sb")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "s.sock")
	srv, err := models.New("threaded", models.Config{Net: "unix", Addr: path,
		Cost: protocol.Cost{Block: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c := dial(t, "unix", path)
	c.Write([]byte(strings.Repeat("req\n", 10)))
	// Once the server has read them (it is then paying --block), they are
	// requests it must answer; a fixed sleep would not be sure of that on
	// a loaded machine.
	waitStat(t, srv, func(s models.Stats) bool { return s.BytesIn == 40 })
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("after shutdown: %v (replies %q)", err, got)
	}
	if string(got) != strings.Repeat("req\n", 10) {
		t.Fatalf("replies after shutdown: %q", got)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file left after shutdown: %v", err)
	}
	if err := srv.Start(); !errors.Is(err, models.ErrServerClosed) {
		t.Fatalf("Start after Shutdown = %v, want ErrServerClosed", err)
	}
}

func TestShutdownForcedWhenContextEnds(t *testing.T) {
	srv, err := models.New("threaded", models.Config{Net: "tcp", Addr: "127.0.0.1:0",
		Cost: protocol.Cost{Block: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c := dial(t, "tcp", srv.Addr())
	c.Write([]byte("x\n"))
	waitStat(t, srv, func(s models.Stats) bool { return s.BytesIn == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("forced shutdown took %v", el)
	}
}

func TestNewFromListenerAndServeConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := models.Config{Net: "tcp", Addr: ln.Addr().String(), Mode: protocol.Upper}
	if err := cfg.Normalize(); err != nil {
		t.Fatal(err)
	}
	srv, err := NewFromListener(cfg, ln)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c := dial(t, "tcp", srv.Addr())
	c.Write([]byte("abc\n"))
	if l, err := bufio.NewReader(c).ReadString('\n'); err != nil || l != "ABC\n" {
		t.Fatalf("NewFromListener: %q, %v", l, err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	// ServeConn on one end of a real socket pair; cancelling ctx stops it
	// gracefully.
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	client := dial(t, "tcp", ln2.Addr().String())
	sc, err := ln2.Accept()
	if err != nil {
		t.Fatal(err)
	}
	var ctr models.Counters
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ServeConn(ctx, context.Background(), &cfg, sc, &ctr); close(done) }()
	client.Write([]byte("hello\n"))
	r := bufio.NewReader(client)
	if l, err := r.ReadString('\n'); err != nil || l != "HELLO\n" {
		t.Fatalf("ServeConn: %q, %v", l, err)
	}
	cancel()
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("after cancel: %v, want EOF", err)
	}
	<-done
	if s := ctr.Snapshot(); s.Requests != 1 || s.BytesIn != 6 || s.BytesOut != 6 {
		t.Fatalf("ServeConn counters: %+v", s)
	}
}

func TestNewFromPacketConn(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := models.Config{Net: "udp", Addr: pc.LocalAddr().String(), Mode: protocol.Upper}
	if err := cfg.Normalize(); err != nil {
		t.Fatal(err)
	}
	srv, err := NewFromPacketConn(cfg, pc)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	c := dial(t, "udp", srv.Addr())
	c.Write([]byte("abc"))
	buf := make([]byte, 8)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "ABC" {
		t.Fatalf("%q, %v", buf[:n], err)
	}
}

// TestZeroAllocs checks the per-request path allocates nothing in steady
// state, measured in-process around batches of requests.
func TestZeroAllocs(t *testing.T) {
	for _, network := range []string{"tcp", "unix", "udp"} {
		t.Run(network, func(t *testing.T) {
			srv := startServer(t, models.Config{Net: network, Mode: protocol.Upper, Workers: 1})
			c := dial(t, network, srv.Addr())
			req := []byte(strings.Repeat("hello world\n", 100))
			perRound := 100
			if network == "udp" {
				req, perRound = req[:12], 1
			}
			buf := make([]byte, len(req))
			round := func() {
				c.Write(req)
				if _, err := io.ReadFull(c, buf); err != nil {
					t.Fatal(err)
				}
			}
			for range 50 {
				round()
			}
			// Allocations anywhere in the process count, the client's
			// included, so allow a little noise; per request it must
			// round to zero.
			allocs := testing.AllocsPerRun(500, round)
			if perReq := allocs / float64(perRound); perReq > 0.05 {
				t.Fatalf("%.3f allocations per request (%.2f per round of %d)", perReq, allocs, perRound)
			}
		})
	}
}

func waitStat(t *testing.T, srv models.Server, ok func(models.Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(srv.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("stats never reached the expected state: %+v", srv.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
