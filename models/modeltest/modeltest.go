// Package modeltest is the conformance suite every sockbench server model
// must pass, in the spirit of testing/fstest: a model's test is one call,
//
//	func TestMain(m *testing.M) { models.MaybeRunChild(); os.Exit(m.Run()) }
//	func TestConformance(t *testing.T) { modeltest.Run(t, "threaded") }
//
// Run starts real servers of the model on loopback (127.0.0.1:0 and short
// Unix socket paths), drives them with real clients and checks every reply
// byte for byte. Each check starts its own server, so its Stats belong to
// that check alone. Checks that count goroutines and file descriptors run
// alone, before the parallel checks of their group start; servers that need
// their own process (SIGTERM, RLIMIT_NOFILE) run as the child role
// "modeltest-server" of the model's test binary.
//
// As testing/fstest exports MapFS beside TestFS, the package exports what
// a model's own tests need beside Run: Start (a server on a free address,
// shut down when the test ends), Addr, Dial, RoundTrip, WaitStats,
// WaitFor, OpenFDs, Goroutines, IsTimeout and Scaled. A model's tests
// test what is particular to it; what every model must do is the suite's.
package modeltest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/protocol"
)

// Check names, usable with Skip. Each is one t.Run leaf: "tcp/echo/pipelined".
const (
	// CheckSingle sends one request and checks its reply.
	CheckSingle = "single"
	// CheckPipelined sends 1000 requests in one write; replies come in order.
	CheckPipelined = "pipelined"
	// CheckBytewise writes requests one byte per write.
	CheckBytewise = "bytewise"
	// CheckBinary sends every byte value but '\n' (datagrams: every value).
	CheckBinary = "binary"
	// CheckLineSizes sends lines of 0 bytes, 1 byte and just under max-line.
	CheckLineSizes = "line-sizes"
	// CheckOverLimit sends a line over max-line: only that connection is
	// closed, others keep being served, Stats.LineTooLong counts it.
	CheckOverLimit = "over-limit"
	// CheckConcurrent runs 200 clients at once (200 connections, or 200
	// datagram sockets) with validated random traffic.
	CheckConcurrent = "concurrent"
	// CheckHalfClose: a client that shuts its write side gets every reply,
	// then EOF.
	CheckHalfClose = "half-close"
	// CheckReset: clients that reset mid-line do not hurt the server.
	CheckReset = "reset"
	// CheckIdleTimeout: idle connections are closed after Config.IdleTimeout,
	// busy ones are not.
	CheckIdleTimeout = "idle-timeout"
	// CheckMaxConns: connections past Config.MaxConns are closed at once and
	// counted as Rejected; existing ones keep working.
	CheckMaxConns = "max-conns"
	// CheckDatagramSizes sends datagrams of 1 to 65507 bytes from many
	// source ports.
	CheckDatagramSizes = "datagram-sizes"
	// CheckShutdown is graceful shutdown under load, in process
	// (Server.Shutdown) and in a subprocess (SIGTERM).
	CheckShutdown = "shutdown"
	// CheckLeaks runs 2000 connect/disconnect cycles and checks goroutines,
	// file descriptors and socket files come back to their baseline.
	CheckLeaks = "leaks"
	// CheckFDExhaustion runs the server in a subprocess with a low
	// RLIMIT_NOFILE and floods it with connections.
	CheckFDExhaustion = "fd-exhaustion"
	// CheckCost: Config.Cost is paid per request (no reply sooner than
	// Block or Work), blocked requests of different clients run
	// concurrently, and pipelined replies stay in order.
	CheckCost = "cost"
	// CheckAddrInUse (tcp and udp): a second server on the port of a live
	// one fails to start, and the first keeps serving.
	CheckAddrInUse = "addr-in-use"
	// CheckSocketFile (unix transports only): the socket file is created with
	// Config.SocketMode, a stale one is replaced, a live one of either type
	// is not stolen (models.ErrSocketInUse), a non-socket file is left
	// alone, and the file is gone after shutdown.
	CheckSocketFile = "socket-file"
	// CheckSocketUmask (unix transports only): under umask 000 the socket
	// file is never seen wider than Config.SocketMode, not even while the
	// server starts.
	CheckSocketUmask = "socket-umask"
	// CheckLineTimeout: clients trickling a line a byte at a time are
	// closed after Config.LineTimeout, so they cannot hold MaxConns places
	// for ever; clients completing their lines in time are not.
	CheckLineTimeout = "line-timeout"
	// CheckWriteTimeout: clients that send a pipeline and never read their
	// replies are closed after Config.WriteTimeout, so they cannot hold
	// MaxConns places for ever; a client reading slowly is not.
	CheckWriteTimeout = "write-timeout"
	// CheckSlowPeer (datagrams): a client that never reads its replies
	// neither blocks the server's readers nor its shutdown; what cannot be
	// sent is counted.
	CheckSlowPeer = "slow-peer"
	// CheckShortGrace: SIGTERM with a grace too short for a request in
	// flight ends the server with a non-zero exit status.
	CheckShortGrace = "short-grace"
	// CheckLogFlood: log lines clients can cause are rate-limited, and the
	// log still accounts for every event once the server has stopped.
	CheckLogFlood = "log-flood"
	// CheckMaxBuffered: past Config.MaxBuffered the connections holding the
	// most are closed and counted, and the server stays within the bound.
	CheckMaxBuffered = "max-buffered"
)

// Option configures Run and Benchmark.
type Option func(*options)

type options struct {
	extra  map[string]string
	nets   []string
	skips  map[string]string
	scale  float64
	cycles int
	modes  []protocol.Mode // the suite's own tests narrow this
}

// Extra sets Config.Extra[key] = value on every server the suite starts
// (for example prefork's "spawn" = "per-conn").
func Extra(key, value string) Option {
	return func(o *options) { o.extra[key] = value }
}

// Nets restricts the transports the suite covers. The default is "tcp",
// "udp" and "unix"; "unixgram" may be added by models that serve it.
func Nets(nets ...string) Option {
	return func(o *options) { o.nets = slices.Clone(nets) }
}

// Skip skips a check that cannot apply to this variant; reason is logged
// through t.Skip. check is a check name ("max-conns"), or a check on one
// transport ("udp/shutdown").
func Skip(check, reason string) Option {
	return func(o *options) { o.skips[check] = reason }
}

// Scale multiplies every timeout and grace period of the suite by f, for
// emulation under qemu or slow machines. The environment variable
// SOCKBENCH_TEST_SCALE, when set to a number, multiplies it further.
func Scale(f float64) Option {
	return func(o *options) {
		if f > 0 {
			o.scale *= f
		}
	}
}

// DefaultLeakCycles is how many connect/disconnect cycles CheckLeaks runs.
const DefaultLeakCycles = 2000

// LeakCycles sets how many connect/disconnect cycles CheckLeaks runs (at
// least 100), for variants where each connection is expensive (a process
// per connection under -race) and 2000 would not fit the suite's time.
func LeakCycles(n int) Option {
	return func(o *options) { o.cycles = max(n, 100) }
}

func newOptions(opts []Option) *options {
	o := &options{
		extra:  map[string]string{},
		nets:   []string{"tcp", "udp", "unix"},
		skips:  map[string]string{},
		scale:  1,
		cycles: DefaultLeakCycles,
		modes:  protocol.Modes,
	}
	o.scale = envScale()
	for _, opt := range opts {
		opt(o)
	}
	return o
}

func (o *options) skipReason(network, check string) (string, bool) {
	if r, ok := o.skips[network+"/"+check]; ok {
		return r, true
	}
	r, ok := o.skips[check]
	return r, ok
}

// check is one entry of the suite.
type check struct {
	name   string
	stream bool // applies to tcp and unix
	dgram  bool // applies to udp and unixgram
	unix   bool // applies to Unix-path transports only
	ip     bool // applies to IP transports only
	modes  bool // runs in both modes (else echo only)
	serial bool // counts process-wide resources: must run alone
	fn     func(e *env)
}

// checks is the suite, in the order it runs. Serial checks run before
// their group's parallel ones start (Go runs parallel subtests after their
// parent's function returns), so nothing else of the suite runs beside them.
var checks []check

func init() {
	checks = []check{
		{name: CheckSingle, stream: true, dgram: true, modes: true, fn: checkSingle},
		{name: CheckPipelined, stream: true, modes: true, fn: checkPipelined},
		{name: CheckBytewise, stream: true, modes: true, fn: checkBytewise},
		{name: CheckBinary, stream: true, dgram: true, modes: true, fn: checkBinary},
		{name: CheckLineSizes, stream: true, modes: true, fn: checkLineSizes},
		{name: CheckOverLimit, stream: true, modes: true, fn: checkOverLimit},
		{name: CheckConcurrent, stream: true, dgram: true, modes: true, fn: checkConcurrent},
		{name: CheckHalfClose, stream: true, modes: true, fn: checkHalfClose},
		{name: CheckReset, stream: true, modes: true, fn: checkReset},
		{name: CheckIdleTimeout, stream: true, modes: true, fn: checkIdleTimeout},
		{name: CheckMaxConns, stream: true, modes: true, fn: checkMaxConns},
		{name: CheckDatagramSizes, dgram: true, modes: true, fn: checkDatagramSizes},
		{name: CheckCost, stream: true, dgram: true, fn: checkCost},
		{name: CheckShutdown, stream: true, dgram: true, modes: true, fn: checkShutdown},
		{name: CheckLeaks, stream: true, dgram: true, serial: true, fn: checkLeaks},
		{name: CheckFDExhaustion, stream: true, fn: checkFDExhaustion},
		{name: CheckAddrInUse, stream: true, dgram: true, ip: true, fn: checkAddrInUse},
		{name: CheckSocketFile, stream: true, dgram: true, unix: true, fn: checkSocketFile},
		{name: CheckSocketUmask, stream: true, dgram: true, unix: true, serial: true, fn: checkSocketUmask},
		{name: CheckLineTimeout, stream: true, fn: checkLineTimeout},
		{name: CheckWriteTimeout, stream: true, fn: checkWriteTimeout},
		{name: CheckSlowPeer, dgram: true, fn: checkSlowPeer},
		{name: CheckShortGrace, stream: true, dgram: true, fn: checkShortGrace},
		{name: CheckLogFlood, stream: true, dgram: true, fn: checkLogFlood},
		{name: CheckMaxBuffered, stream: true, fn: checkMaxBuffered},
	}
}

func (c *check) applies(network string, mode protocol.Mode) bool {
	if !c.modes && mode != protocol.Echo {
		return false
	}
	if c.unix && !transport(network).IsUnix() || c.ip && transport(network).IsUnix() {
		return false
	}
	if transport(network).IsStream() {
		return c.stream
	}
	return c.dgram
}

func findCheck(name string) *check {
	for i := range checks {
		if checks[i].name == name {
			return &checks[i]
		}
	}
	return nil
}

// transport parses a network name of the suite; the zero Transport (which
// answers false to everything) when it is not one. Run refuses unknown
// names in Nets and Skip before any check runs.
func transport(network string) protocol.Transport {
	t, _ := protocol.ParseTransport(network)
	return t
}

// Run runs the whole conformance suite against the registered model
// (t.Run per net × mode × check, "tcp/echo/pipelined"). Every check that
// reads replies runs in both modes; the resource, binding and abuse checks
// (leaks, fd-exhaustion, cost, addr-in-use, socket-file, socket-umask,
// line-timeout, slow-peer, short-grace, log-flood, max-buffered), where
// the mode changes nothing, run in echo mode only.
func Run(t *testing.T, model string, opts ...Option) {
	t.Helper()
	o := newOptions(opts)
	if !slices.Contains(models.Names(), model) {
		t.Fatalf("modeltest: model %q is not registered (have %v): does the test import its package?", model, models.Names())
	}
	for _, nw := range o.nets {
		if !transport(nw).IsValid() {
			t.Fatalf("modeltest: unknown network %q in Nets", nw)
		}
	}
	for name := range o.skips {
		check := name
		if nw, c, ok := strings.Cut(name, "/"); ok && transport(nw).IsValid() {
			check = c
		}
		if findCheck(check) == nil {
			t.Fatalf("modeltest: Skip(%q): no such check", name)
		}
	}
	start := time.Now()
	for _, nw := range o.nets {
		t.Run(nw, func(t *testing.T) {
			for _, mode := range o.modes {
				t.Run(mode.String(), func(t *testing.T) {
					for i := range checks {
						c := &checks[i]
						if !c.applies(nw, mode) {
							continue
						}
						t.Run(c.name, func(t *testing.T) {
							if reason, ok := o.skipReason(nw, c.name); ok {
								t.Skip(reason)
							}
							if !c.serial {
								t.Parallel()
							}
							runCheck(t, model, nw, mode, c, o)
						})
					}
				})
			}
		})
	}
	t.Logf("modeltest: %s suite took %v", model, time.Since(start).Round(time.Millisecond))
}

// runCheck runs one check on t, which may be a fake testing.TB (the suite's
// own tests use one to prove checks fail against broken servers).
func runCheck(t testing.TB, model, network string, mode protocol.Mode, c *check, o *options) {
	t.Helper()
	e := newEnv(t, model, network, mode, o)
	c.fn(e)
}
