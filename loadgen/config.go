package loadgen

import (
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sockbench/sockbench/protocol"
)

// Defaults of Config, also the defaults of `sockbench load`.
const (
	DefaultConns    = 16
	DefaultPipeline = 1
	DefaultSize     = 64
	DefaultDuration = 10 * time.Second
	DefaultWarmup   = 1 * time.Second
	DefaultTimeout  = 2 * time.Second
	DefaultSeed     = 1
	// tagLen is the length of the sequence tag that starts every datagram:
	// 16 upper-case hex digits, which `upper` leaves unchanged.
	tagLen = 16
	// maxInFlight bounds Conns*Pipeline: each request in flight costs a
	// record of some 40 bytes, reserved up front.
	maxInFlight = 1 << 22
)

// The kinds of error Run and Config.Normalize return, each inside an
// *Error.
var (
	// ErrConfig means the configuration is invalid (a usage error).
	ErrConfig = errors.New("loadgen: invalid configuration")
	// ErrUnreachable means no connection to the target could be made.
	ErrUnreachable = errors.New("loadgen: target unreachable")
	// ErrFailed means the run started but could not complete cleanly
	// (connections lost, no valid reply); the Report holds partial results.
	ErrFailed = errors.New("loadgen: run failed")
	// ErrFileLimit means RLIMIT_NOFILE is too low for the connections asked.
	ErrFileLimit = errors.New("loadgen: open file limit too low")
)

// Error is a failure of one of the kinds above: errors.Is(err, ErrConfig)
// tells the kind, and Detail says what went wrong in words a user reads
// alone ("-c 0: must be at least 1"), without the kind's prefix.
type Error struct {
	Kind   error // ErrConfig, ErrUnreachable, ErrFailed or ErrFileLimit
	Detail string
}

func (e *Error) Error() string { return e.Kind.Error() + ": " + e.Detail }
func (e *Error) Unwrap() error { return e.Kind }

// errorf returns an *Error of kind with a formatted Detail.
func errorf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

// Config describes one run. Zero values mean the defaults above; call
// Normalize to fill them in and validate the whole.
type Config struct {
	// Target is tcp://host:port, udp://host:port, unix:///path.sock or
	// unixgram:///path.sock; tcp4, tcp6, udp4 and udp6 fix the IP version.
	Target string
	// Mode is what the server does to a request: echo or upper.
	Mode protocol.Mode
	// Conns is the number of connections (UDP: connected sockets).
	Conns int
	// Pipeline is the number of requests in flight on each connection.
	Pipeline int
	// SizeMin and SizeMax bound each request's size in bytes: the line with
	// its '\n' on stream transports, the datagram on UDP. Sizes are drawn
	// uniformly from [SizeMin, SizeMax]; equal bounds give a fixed size.
	// protocol.ParseSizeRange reads them from "SIZE" or "MIN:MAX".
	SizeMin, SizeMax int
	// MaxLine is the server's line limit (default protocol.DefaultMaxLine);
	// stream requests may not be longer.
	MaxLine int
	// Seed makes request contents and sizes reproducible.
	Seed uint64
	// Duration is how long to measure. Requests, when > 0, measures that
	// many requests instead; at most one of the two may be set.
	Duration time.Duration
	Requests int64
	// Warmup runs load before measuring; nothing of it is counted.
	Warmup time.Duration
	// Timeout bounds each connection attempt and each request's wait for
	// its reply.
	Timeout time.Duration
	// Rate > 0 selects the open loop: requests are due at Rate per second on
	// one schedule shared by every connection, and latency counts from the
	// due time. 0 is the closed loop.
	Rate float64
	// MaxExamples is how many mismatching replies to keep as examples (default 5).
	MaxExamples int
	// Progress, when not nil, receives a live status line every second
	// (carriage-return terminated: meant for a terminal).
	Progress io.Writer
	// StartAt, when set, is the wall-clock time the measurement starts:
	// every generator of a run given the same StartAt measures the same
	// window (the warmup runs just before it). Shard is this generator's
	// part of such a run (Shard.Apply). Interval > 0 also records the
	// latencies per Interval for the HdrHistogram interval log
	// (Report.Intervals). See shard.go.
	StartAt  time.Time
	Shard    Shard
	Interval time.Duration

	// Parsed by Normalize.
	network   string // the transport's network name
	transport protocol.Transport
	address   string // host:port or path

	// engine forces EngineEpoll or EngineGoroutines; "" takes the epoll
	// engine where it exists. The tests run both.
	engine string
	// loopCPUs, when set, gives the epoll engine one loop per CPU listed,
	// each pinned to its CPU (Calibrate: the generator's CPUs apart from
	// the sink's).
	loopCPUs []int
}

// ParseTarget splits a target URL, transport://address, into a Go network
// name and an address. The transport is any protocol.Transport (tcp, tcp4,
// tcp6, udp, udp4, udp6, unix, unixgram), as `sockbench serve --net`
// takes them; the address is host:port with a host and a port from 1 to
// 65535, or an absolute socket path within protocol.MaxUnixPath.
func ParseTarget(s string) (network, address string, err error) {
	bad := func(format string, args ...any) (string, string, error) {
		return "", "", errorf(ErrConfig, "target %q: "+format, append([]any{s}, args...)...)
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return bad("want tcp://host:port, udp://host:port or unix:///path")
	}
	tr, err := protocol.ParseTransport(scheme)
	if err != nil {
		return bad("unknown scheme %q (want %s)", scheme, protocol.TransportsWanted)
	}
	if tr.IsUnix() {
		if !filepath.IsAbs(rest) {
			return bad("want an absolute socket path, e.g. %s:///tmp/sb.sock", scheme)
		}
		if err := tr.CheckPath(rest); err != nil {
			return bad("%v", err)
		}
		return tr.Network(), rest, nil
	}
	host, port, err := tr.SplitHostPort(rest)
	switch {
	case err != nil:
		return bad("%v", err)
	case host == "":
		return bad("missing host (e.g. %s://%s)", scheme, tr.Loopback(strconv.Itoa(int(port))))
	case port == 0:
		return bad("port 0: a target needs a port from 1 to 65535")
	}
	return tr.Network(), rest, nil
}

// Normalize fills in defaults and validates c, returning an error that wraps
// ErrConfig and names the offending setting.
func (c *Config) Normalize() error {
	var err error
	if c.network, c.address, err = ParseTarget(c.Target); err != nil {
		return err
	}
	c.transport, _ = protocol.ParseTransport(c.network)
	if c.Mode != protocol.Echo && c.Mode != protocol.Upper {
		return errorf(ErrConfig, "unknown mode %d", c.Mode)
	}
	bad := func(format string, args ...any) error {
		return errorf(ErrConfig, format, args...)
	}
	if c.Conns == 0 {
		c.Conns = DefaultConns
	}
	if c.Conns < 0 || c.Conns > 10_000_000 {
		return bad("-c %d: want 1..10000000 connections", c.Conns)
	}
	if c.Pipeline == 0 {
		c.Pipeline = DefaultPipeline
	}
	if c.Pipeline < 0 || c.Pipeline > 65536 {
		return bad("-p %d: want a pipeline depth of 1..65536", c.Pipeline)
	}
	if int64(c.Conns)*int64(c.Pipeline) > maxInFlight {
		return bad("-c %d x -p %d: more than %d requests in flight", c.Conns, c.Pipeline, maxInFlight)
	}
	if c.SizeMin == 0 && c.SizeMax == 0 {
		c.SizeMin, c.SizeMax = DefaultSize, DefaultSize
	}
	if c.SizeMax == 0 {
		c.SizeMax = c.SizeMin
	}
	if c.SizeMin <= 0 || c.SizeMax < c.SizeMin {
		return bad("size %d:%d: want 1 <= MIN <= MAX", c.SizeMin, c.SizeMax)
	}
	if c.MaxLine == 0 {
		c.MaxLine = protocol.DefaultMaxLine
	}
	if c.MaxLine < 2 {
		return bad("max-line %d: want at least 2", c.MaxLine)
	}
	switch {
	case c.datagram():
		if c.SizeMin < tagLen {
			return bad("size %d: a datagram request carries a %d-byte sequence tag, so it must be at least %d bytes", c.SizeMin, tagLen, tagLen)
		}
		if c.SizeMax > protocol.MaxDatagram {
			return bad("size %d: larger than the largest datagram sockbench sends (%d)", c.SizeMax, protocol.MaxDatagram)
		}
	default:
		if c.SizeMax > c.MaxLine {
			return bad("size %d: longer than the server's max-line %d (the size counts the '\\n'; raise --max-line if the server allows more)", c.SizeMax, c.MaxLine)
		}
	}
	if c.Seed == 0 {
		c.Seed = DefaultSeed
	}
	switch {
	case c.Duration < 0:
		return bad("-d %v: want a positive duration", c.Duration)
	case c.Requests < 0:
		return bad("-n %d: want a positive number of requests", c.Requests)
	case c.Warmup < 0:
		return bad("--warmup %v: want a duration of 0 or more", c.Warmup)
	case c.Timeout < 0:
		return bad("--timeout %v: want a positive duration", c.Timeout)
	case c.Rate < 0 || math.IsNaN(c.Rate):
		return bad("--rate %g: want a number of requests per second (0 for the closed loop)", c.Rate)
	}
	if c.Duration > 0 && c.Requests > 0 {
		return bad("give -d (duration) or -n (requests), not both")
	}
	if c.Duration == 0 && c.Requests == 0 {
		c.Duration = DefaultDuration
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Rate > 1e8 {
		return bad("--rate %g: more than 100M req/s is not something one process can send", c.Rate)
	}
	if c.MaxExamples == 0 {
		c.MaxExamples = 5
	}
	return nil
}

// Network returns the parsed network (a protocol.Transport's name: tcp,
// tcp6, udp, unix, unixgram...) after Normalize.
func (c *Config) Network() string { return c.network }

// Address returns the parsed address after Normalize.
func (c *Config) Address() string { return c.address }

// datagram reports whether the target's transport is datagram-based.
func (c *Config) datagram() bool {
	return c.transport.IsDatagram()
}
