package threaded

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/models/modeltest"
	"github.com/sockbench/sockbench/protocol"
)

// These tests cover what is particular to this model and its exported
// helpers; the shared conformance suite (threaded_test.go) covers the
// wire protocol and the bounds in depth.

// start runs a threaded server with cfg for the test.
func start(t *testing.T, cfg models.Config) models.Server {
	t.Helper()
	return modeltest.Start(t, "threaded", cfg)
}

// dial connects to addr, with a deadline on the whole connection.
func dial(t *testing.T, network, addr string) net.Conn {
	t.Helper()
	c := modeltest.Dial(t, network, addr)
	c.SetDeadline(time.Now().Add(modeltest.Scaled(10 * time.Second)))
	return c
}

func TestDatagramBlockUsesPool(t *testing.T) {
	// With --block 50ms and one reader, 40 datagrams answered in well under
	// 40*50ms show the handler pool is at work.
	srv := start(t, models.Config{Net: "udp", Mode: protocol.Upper, Workers: 1,
		Cost: protocol.Cost{Block: 50 * time.Millisecond}})
	c := dial(t, "udp", srv.Addr())
	t0 := time.Now()
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
	if el := time.Since(t0); el > 1500*time.Millisecond {
		t.Fatalf("40 blocking requests took %v; handlers are not concurrent", el)
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
			srv := start(t, models.Config{Net: network, Mode: protocol.Upper, Workers: 1})
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
