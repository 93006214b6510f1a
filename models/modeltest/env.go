package modeltest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/protocol"
)

// Base durations of the suite, before Scale. They are generous on purpose:
// the suite checks behaviour, not speed, and runs under -race on loaded
// two-core machines.
const (
	opTimeout    = 10 * time.Second // every single network operation
	testGrace    = 3 * time.Second  // Config.Grace of the servers the suite starts
	graceSlack   = 2 * time.Second  // how far past Grace a shutdown may end
	readyTimeout = 20 * time.Second // a subprocess server printing its ready line
)

// env is what one check runs with.
type env struct {
	t     testing.TB
	model string
	net   string
	mode  protocol.Mode
	o     *options

	mu        sync.Mutex
	rng       *rand.Rand
	clientDir string // unixgram client sockets
	clients   int
}

func newEnv(t testing.TB, model, network string, mode protocol.Mode, o *options) *env {
	seed := rand.Uint64()
	return &env{t: t, model: model, net: network, mode: mode, o: o, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// d scales a base duration.
func (e *env) d(base time.Duration) time.Duration {
	return time.Duration(float64(base) * e.o.scale)
}

func (e *env) stream() bool { return transport(e.net).IsStream() }

// intn is a goroutine-safe rand.IntN.
func (e *env) intn(n int) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rng.IntN(n)
}

// payload returns n random request bytes, never '\n', rich in ASCII
// letters of both cases so that upper mode has work to do.
func (e *env) payload(n int) []byte {
	const alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:-_{}\"'\t\r\x00\xff\xe9"
	e.mu.Lock()
	defer e.mu.Unlock()
	b := make([]byte, n)
	for i := range b {
		if e.rng.IntN(8) == 0 {
			c := byte(e.rng.IntN(256))
			if c == '\n' {
				c = 'n'
			}
			b[i] = c
		} else {
			b[i] = alpha[e.rng.IntN(len(alpha))]
		}
	}
	return b
}

// line returns a request of content n bytes plus its '\n'.
func (e *env) line(n int) []byte { return append(e.payload(n), '\n') }

// reply is the reply the server must send for req.
func (e *env) reply(req []byte) []byte { return e.mode.AppendReply(nil, req) }

// unixPath returns a fresh short socket path in its own temp directory,
// removed when the test ends.
func (e *env) unixPath() string { return Addr(e.t, "unix") }

// config returns the Config every check starts from.
func (e *env) config() models.Config {
	// The line timeout is the default, scaled like every other wait, so a
	// slow (emulated) machine does not cut off clients the checks drive.
	cfg := models.Config{Net: e.net, Mode: e.mode, Grace: e.d(testGrace), Workers: 2,
		LineTimeout: e.d(models.DefaultLineTimeout)}
	if tr := transport(e.net); tr.IsUnix() {
		cfg.Addr = e.unixPath()
	} else {
		cfg.Addr = tr.Loopback("0")
	}
	if len(e.o.extra) > 0 {
		cfg.Extra = map[string]string{}
		for k, v := range e.o.extra {
			cfg.Extra[k] = v
		}
	}
	return cfg
}

// server is an in-process server a check started.
type server struct {
	e    *env
	srv  models.Server
	cfg  models.Config
	addr string

	once    sync.Once
	took    time.Duration
	shutErr error
}

// start builds and starts a server of the model with the check's config,
// changed by mod. It is shut down, and its socket file checked gone, when
// the test ends.
func (e *env) start(mod func(*models.Config)) *server {
	e.t.Helper()
	cfg := e.config()
	if mod != nil {
		mod(&cfg)
	}
	s, err := e.tryStart(cfg)
	if err != nil {
		e.t.Fatalf("start %s server on %s %s: %v", e.model, cfg.Net, cfg.Addr, err)
	}
	return s
}

// tryStart starts a server with cfg, returning Start's error.
func (e *env) tryStart(cfg models.Config) (*server, error) {
	e.t.Helper()
	srv, err := models.New(e.model, cfg)
	if err != nil {
		return nil, fmt.Errorf("models.New: %w", err)
	}
	started := make(chan error, 1)
	go func() { started <- srv.Start() }()
	select {
	case err = <-started:
	case <-time.After(e.d(opTimeout)):
		return nil, fmt.Errorf("the server's Start did not return within %v", e.d(opTimeout))
	}
	if err != nil {
		// A server whose Start failed may still hold goroutines; give it
		// the chance to release them.
		ctx, cancel := context.WithTimeout(context.Background(), e.d(testGrace))
		srv.Shutdown(ctx)
		cancel()
		return nil, err
	}
	s := &server{e: e, srv: srv, cfg: cfg, addr: srv.Addr()}
	e.t.Cleanup(func() {
		if took, err := s.shutdown(); err != nil {
			e.t.Errorf("Shutdown at the end of the check: %v (after %v)", err, took)
		}
	})
	if s.addr == "" {
		e.t.Fatalf("Addr() is empty after Start")
	}
	if transport(cfg.Net).IsUnix() && s.addr != cfg.Addr {
		e.t.Errorf("Addr() = %q, want the socket path %q", s.addr, cfg.Addr)
	}
	if !transport(cfg.Net).IsUnix() {
		if _, port, err := net.SplitHostPort(s.addr); err != nil || port == "0" {
			e.t.Fatalf("Addr() = %q after Start: want host:port with the real port", s.addr)
		}
	}
	return s, nil
}

// shutdown shuts the server down once, bounded by Grace; it then checks a
// Unix socket file is gone. Later calls return the first result. A
// Shutdown that ignores its context is reported, not waited for forever.
func (s *server) shutdown() (time.Duration, error) {
	s.once.Do(func() {
		grace := s.cfg.Grace
		if grace == 0 {
			grace = models.DefaultGrace
		}
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- s.srv.Shutdown(ctx) }()
		select {
		case s.shutErr = <-done:
		case <-time.After(grace + s.e.d(graceSlack)):
			s.shutErr = fmt.Errorf("the server's Shutdown was still running %v after its context ended (grace %v)", s.e.d(graceSlack), grace)
		}
		s.took = time.Since(start)
		if transport(s.cfg.Net).IsUnix() {
			if _, err := os.Lstat(s.cfg.Addr); !errors.Is(err, os.ErrNotExist) {
				s.e.t.Errorf("socket file %s still there after Shutdown (lstat: %v)", s.cfg.Addr, err)
			}
		}
	})
	return s.took, s.shutErr
}

// waitStats waits until cond holds on the server's Stats, or fails after
// timeout; it returns the last Stats seen.
func (s *server) waitStats(what string, cond func(models.Stats) bool) models.Stats {
	s.e.t.Helper()
	var st models.Stats
	if !WaitFor(s.e.d(opTimeout), func() bool { st = s.srv.Stats(); return cond(st) }) {
		s.e.t.Errorf("Stats never showed %s: %s", what, st)
	}
	return st
}

// dial connects to addr on the check's transport.
func (e *env) dial(addr string) (net.Conn, error) {
	network := e.net
	if network == "unixgram" {
		return e.dialUnixgram(addr)
	}
	c, err := net.DialTimeout(network, addr, e.d(opTimeout))
	if err != nil {
		return nil, err
	}
	if uc, ok := c.(*net.UDPConn); ok {
		uc.SetReadBuffer(4 << 20)
		uc.SetWriteBuffer(4 << 20)
	}
	return c, nil
}

// dialUnixgram binds a client datagram socket at its own path (a unixgram
// server can only answer a sender that has an address) in the check's
// client directory. Closing the conn does not remove the path: unixConn
// files are removed with the directory, or by dgramClient.close.
func (e *env) dialUnixgram(addr string) (net.Conn, error) {
	e.mu.Lock()
	if e.clientDir == "" {
		dir, err := os.MkdirTemp("", "sbc")
		if err != nil {
			e.mu.Unlock()
			return nil, err
		}
		e.clientDir = dir
		e.t.Cleanup(func() { os.RemoveAll(dir) })
	}
	e.clients++
	local := &net.UnixAddr{Name: filepath.Join(e.clientDir, fmt.Sprintf("c%d", e.clients)), Net: "unixgram"}
	e.mu.Unlock()
	c, err := net.DialUnix("unixgram", local, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	c.SetReadBuffer(4 << 20)
	c.SetWriteBuffer(4 << 20)
	return c, nil
}

// mustDial dials or fails the check, and closes the conn when it ends.
func (e *env) mustDial(addr string) net.Conn {
	e.t.Helper()
	c, err := e.dial(addr)
	if err != nil {
		e.t.Fatalf("dial %s %s: %v", e.net, addr, err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// writeAll writes b with a deadline.
func (e *env) writeAll(c net.Conn, b []byte) error {
	c.SetWriteDeadline(time.Now().Add(e.d(opTimeout)))
	_, err := c.Write(b)
	return err
}

// readExpect reads exactly len(want) bytes and compares them with want.
func (e *env) readExpect(c net.Conn, want []byte) error {
	c.SetReadDeadline(time.Now().Add(e.d(opTimeout)))
	got := make([]byte, len(want))
	n, err := io.ReadFull(c, got)
	if err != nil {
		return fmt.Errorf("read reply: got %d of %d bytes: %w", n, len(want), err)
	}
	return diff(got, want)
}

// diff describes the first difference between a reply and what was due.
func diff(got, want []byte) error {
	if bytes.Equal(got, want) {
		return nil
	}
	n := min(len(got), len(want))
	i := 0
	for i < n && got[i] == want[i] {
		i++
	}
	return fmt.Errorf("reply differs at byte %d of %d (got %d bytes): got %q, want %q",
		i, len(want), len(got), excerpt(got, i), excerpt(want, i))
}

func excerpt(b []byte, at int) []byte {
	lo, hi := max(0, at-8), min(len(b), at+24)
	return b[lo:hi]
}

// exchange writes reqs in one write while reading their replies, and checks
// every reply byte. Writing and reading at once keeps a large batch from
// deadlocking on full socket buffers.
func (e *env) exchange(c net.Conn, reqs ...[]byte) error {
	var all, want []byte
	for _, r := range reqs {
		all = append(all, r...)
		want = e.mode.AppendReply(want, r)
	}
	werr := make(chan error, 1)
	go func() { werr <- e.writeAll(c, all) }()
	rerr := e.readExpect(c, want)
	if err := <-werr; err != nil {
		return fmt.Errorf("write %d bytes: %w", len(all), err)
	}
	return rerr
}

// expectClosed reads until the server closes c and fails if it sends any
// byte first or keeps c open past the timeout. It returns how the
// connection ended (io.EOF or a reset).
func (e *env) expectClosed(c net.Conn, timeout time.Duration) error {
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	var extra int
	for {
		n, err := c.Read(buf)
		extra += n
		if err != nil {
			if IsTimeout(err) {
				return fmt.Errorf("connection still open after %v (and sent %d unexpected bytes)", timeout, extra)
			}
			if extra > 0 {
				return fmt.Errorf("server sent %d unexpected bytes before closing (%v)", extra, err)
			}
			if err == io.EOF || isReset(err) {
				return nil
			}
			return fmt.Errorf("reading until close: %w", err)
		}
	}
}

// isReset reports a connection reset (or its Unix-socket equivalents).
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}

// newLineReader reads reply lines of bounded size.
func newLineReader(c net.Conn, maxLine int) *bufio.Reader {
	return bufio.NewReaderSize(c, maxLine+1)
}

// closeWrite shuts the write side of a stream connection.
func closeWrite(c net.Conn) error {
	type closeWriter interface{ CloseWrite() error }
	cw, ok := c.(closeWriter)
	if !ok {
		return fmt.Errorf("%T has no CloseWrite", c)
	}
	return cw.CloseWrite()
}

// goAll runs n copies of fn at once and returns the errors they report.
func goAll(n int, fn func(i int) error) []error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(i)
		}()
	}
	wg.Wait()
	var out []error
	for _, err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// reportErrs fails the test with the first few errors of many.
func (e *env) reportErrs(what string, errs []error) {
	e.t.Helper()
	if len(errs) == 0 {
		return
	}
	for i, err := range errs {
		if i == 5 {
			e.t.Errorf("%s: ... and %d more errors", what, len(errs)-5)
			break
		}
		e.t.Errorf("%s: %v", what, err)
	}
}
