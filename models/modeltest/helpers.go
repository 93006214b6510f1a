package modeltest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/protocol"
)

// The helpers in this file are for a model's own tests, beside Run, as
// testing/fstest exports MapFS beside TestFS: the pieces every model's
// tests need (a server on a free address, a client, a request and its
// reply, a wait on the server's Stats, a count of descriptors). Each
// reports through t and cleans up what it made when the test ends. Every
// wait is scaled by SOCKBENCH_TEST_SCALE, as the suite's are.

// opWait bounds one network operation or wait of the helpers, before
// scaling.
const opWait = 10 * time.Second

// envScale is SOCKBENCH_TEST_SCALE as a number, or 1.
func envScale() float64 {
	if v, err := strconv.ParseFloat(os.Getenv("SOCKBENCH_TEST_SCALE"), 64); err == nil && v > 0 {
		return v
	}
	return 1
}

// Scaled stretches a test's wait d by SOCKBENCH_TEST_SCALE, for runs on
// slow or emulated machines (make test-emulated), as the suite stretches
// its own.
func Scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) * envScale())
}

// Addr returns an address a server of network can bind: 127.0.0.1:0 for
// tcp and udp, or for unix and unixgram a socket path short enough for
// any system, in a directory of its own that is removed when t ends.
func Addr(t testing.TB, network string) string {
	t.Helper()
	tr, err := protocol.ParseTransport(network)
	if err != nil {
		t.Fatalf("modeltest.Addr: %v", err)
	}
	if !tr.IsUnix() {
		return tr.Loopback("0")
	}
	dir, err := os.MkdirTemp("", "sb")
	if err != nil {
		t.Fatalf("temp dir for a unix socket: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// Start builds a server of model with cfg (an empty cfg.Addr is filled in
// by Addr) and starts it. When t ends it is shut down, within its grace
// and a little more, and t fails if Shutdown fails or leaves the Unix
// socket file behind.
func Start(t testing.TB, model string, cfg models.Config) models.Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = Addr(t, cfg.Net)
	}
	srv, err := models.New(model, cfg)
	if err != nil {
		t.Fatalf("models.New(%q): %v", model, err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("start %s on %s %s: %v", model, cfg.Net, cfg.Addr, err)
	}
	t.Cleanup(func() {
		grace := cfg.Grace
		if grace <= 0 {
			grace = models.DefaultGrace
		}
		ctx, cancel := context.WithTimeout(context.Background(), grace+Scaled(opWait))
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown at the end of the test: %v", err)
		}
		if transport(cfg.Net).IsUnix() {
			if _, err := os.Lstat(cfg.Addr); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket file %s still there after Shutdown (lstat: %v)", cfg.Addr, err)
			}
		}
	})
	return srv
}

// Dial connects to the server at addr over network and closes the
// connection when t ends. A unixgram client binds a path of its own (a
// unixgram server can answer only a sender with an address), removed when
// t ends.
func Dial(t testing.TB, network, addr string) net.Conn {
	t.Helper()
	var (
		c   net.Conn
		err error
	)
	if network == "unixgram" {
		local := &net.UnixAddr{Name: filepath.Join(filepath.Dir(Addr(t, network)), "c"), Net: network}
		c, err = net.DialUnix(network, local, &net.UnixAddr{Name: addr, Net: network})
	} else {
		c, err = net.DialTimeout(network, addr, Scaled(opWait))
	}
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// RoundTrip sends one request line on the stream connection c and reads
// its reply through r, c's reader, within 10 s (scaled). It fails unless
// the reply is what mode makes of line.
func RoundTrip(c net.Conn, r *bufio.Reader, mode protocol.Mode, line string) error {
	c.SetDeadline(time.Now().Add(Scaled(opWait)))
	if _, err := io.WriteString(c, line); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if want := string(mode.AppendReply(nil, []byte(line))); got != want {
		return fmt.Errorf("reply %q, want %q", got, want)
	}
	return nil
}

// WaitStats waits until cond holds on srv's Stats and returns them. After
// 10 s (scaled) it fails t, saying what it waited for, and returns the
// last Stats it saw.
func WaitStats(t testing.TB, srv models.Server, what string, cond func(models.Stats) bool) models.Stats {
	t.Helper()
	var st models.Stats
	if !WaitFor(Scaled(opWait), func() bool { st = srv.Stats(); return cond(st) }) {
		t.Errorf("Stats never showed %s: %s", what, st)
	}
	return st
}

// WaitFor polls cond every few milliseconds until it holds or timeout
// passes, and reports whether it held.
func WaitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// Goroutines counts the goroutines with fn (a function's full name, or
// part of it) in their stack.
func Goroutines(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			count++
		}
	}
	return count
}

// IsTimeout reports whether err is a deadline's expiry.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
