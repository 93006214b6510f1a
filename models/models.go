// Package models is the contract every sockbench server model implements:
// a Config, a Server that starts, reports its address, shuts down
// gracefully and counts what it did, and a registry so the serve command
// and the conformance suite can build any model by name.
//
// Models know nothing of the load generator or the orchestrator; they
// speak the wire protocol of package protocol and nothing else.
package models

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sockbench/sockbench/protocol"
)

// Defaults for Config fields left zero.
const (
	DefaultGrace       = 5 * time.Second
	DefaultSocketMode  = os.FileMode(0o600)
	DefaultLineTimeout = 5 * time.Second
	// DefaultWriteTimeout is how long a stream client may leave its
	// replies untaken: a client reading at a few KB/s takes a batch of
	// replies (one read's worth, 64 KiB at most) well within it.
	DefaultWriteTimeout = 30 * time.Second
)

// Upper bounds of Config fields. A typo must not turn into a million
// worker processes (prefork) or UDP readers with a 64 KiB buffer each, nor
// into a line limit that lets one client make the server hold gigabytes.
const (
	MaxWorkers = 1024
	MaxMaxLine = 64 << 20
)

// Sentinel errors shared by every model.
var (
	// ErrServerClosed is returned by Start after Shutdown, as net/http does.
	ErrServerClosed = errors.New("models: server closed")
	// ErrUnknownModel is returned by New for a name nobody registered.
	ErrUnknownModel = errors.New("models: unknown model")
	// ErrUnsupportedNet is returned when a model does not serve a transport.
	ErrUnsupportedNet = errors.New("models: unsupported network")
	// ErrSocketInUse means a Unix socket path has a live listener on it.
	ErrSocketInUse = errors.New("models: unix socket in use by another server")
)

// Config is what every model is configured with. The zero value of every
// field but Net, Addr and Mode means "the default"; call Normalize to fill
// them in before use.
type Config struct {
	// Net is the transport: "tcp", "udp", "unix" (stream) or "unixgram".
	Net string `json:"net"`
	// Addr is host:port for tcp and udp (":0" or "127.0.0.1:0" picks a free
	// port), or a filesystem path for unix and unixgram.
	Addr string `json:"addr"`
	// Mode is what the server does to each request.
	Mode protocol.Mode `json:"mode"`
	// Workers is the number of event loops (eventloop), worker processes
	// (prefork) or UDP reader goroutines (threaded). 0 means the number of
	// CPUs the process may use.
	Workers int `json:"workers"`
	// MaxConns bounds concurrent stream connections; connections past it
	// are closed at once and counted as Rejected. 0 means unlimited.
	MaxConns int `json:"max_conns"`
	// MaxLine bounds one request line, '\n' included, and so the bytes a
	// server holds per connection. 0 means protocol.DefaultMaxLine.
	MaxLine int `json:"max_line"`
	// IdleTimeout closes a stream connection that sends nothing for this
	// long. 0 means never.
	IdleTimeout time.Duration `json:"idle_timeout"`
	// LineTimeout bounds the time from the first byte of a request line to
	// its '\n' on stream transports; a connection whose line takes longer
	// is closed (after the replies to its earlier lines) and counted in
	// LineTimeouts. It is the bound IdleTimeout cannot give: every byte is
	// activity, so a client trickling a byte a second is never idle and,
	// with MaxConns, 200 such clients would hold 200 places for ever, as
	// net/http's ReadHeaderTimeout guards against slow headers beside its
	// IdleTimeout. A connection between lines (nothing partial) is bounded
	// by IdleTimeout only. 0 means DefaultLineTimeout; negative means no
	// bound.
	LineTimeout time.Duration `json:"line_timeout"`
	// WriteTimeout bounds how long a stream client may leave its replies
	// untaken: a connection whose pending replies make no progress for
	// this long is closed and counted in WriteTimeouts. It is the bound
	// the others cannot give: a client that sends a pipeline and never
	// reads is neither idle nor slow to send a line, and with MaxConns
	// such clients would hold every place for ever. 0 means
	// DefaultWriteTimeout; negative means no bound.
	WriteTimeout time.Duration `json:"write_timeout"`
	// MaxBuffered bounds the bytes the whole server holds for clients: the
	// start of lines not complete yet, lines read and not answered yet, and
	// replies written to a socket that does not take them. Past it the
	// connection holding the most is closed and counted in OverBuffered.
	// Without it memory is bounded only per connection (MaxLine and a
	// model's reply buffer), so 2,000 clients each holding a 60 KiB partial
	// line make a server hold 120 MB. 0 means no server-wide bound; when
	// set it must be at least MaxLine. Stream transports only: datagram
	// servers hold a fixed number of datagrams whatever the clients do.
	MaxBuffered int64 `json:"max_buffered"`
	// Cost is the per-request handler cost (--work, --block).
	Cost protocol.Cost `json:"cost"`
	// Grace bounds a graceful shutdown. 0 means DefaultGrace.
	Grace time.Duration `json:"grace"`
	// SocketMode is the permission of a Unix socket file. 0 means 0600.
	SocketMode os.FileMode `json:"socket_mode"`
	// Logger receives what the server has to say (accept errors, oversized
	// lines, shutdown). nil means discard.
	Logger *slog.Logger `json:"-"`
	// Extra holds model-specific options (prefork's "spawn"), as key=value.
	Extra map[string]string `json:"extra,omitempty"`
}

// ConfigError is what Normalize returns for a field a server cannot run
// with. Field is the field's flag name (net, addr, mode, workers,
// max-conns, max-line, idle-timeout, grace, work, block) and Problem
// finishes the sentence, so a command can name its own flag:
// "--" + Field + " " + Problem reads "--workers must not be negative (got -2)".
type ConfigError struct {
	Field   string
	Problem string
	// Err is the sentinel behind the problem (ErrUnsupportedNet,
	// protocol.ErrUnknownMode), or nil.
	Err error
}

func (e *ConfigError) Error() string { return "models: " + e.Field + " " + e.Problem }

// Unwrap returns the sentinel behind the problem, if any.
func (e *ConfigError) Unwrap() error { return e.Err }

// Normalize fills defaults in and checks the fields, returning a
// *ConfigError naming the first field a server could not run with. It is
// the one place these rules live: `sockbench serve` checks its flags by
// calling it.
func (c *Config) Normalize() error {
	bad := func(field string, sentinel error, format string, args ...any) error {
		return &ConfigError{Field: field, Problem: fmt.Sprintf(format, args...), Err: sentinel}
	}
	if c.Net == "" {
		return bad("net", ErrUnsupportedNet, "must not be empty (want %s)", protocol.TransportsWanted)
	}
	if _, err := protocol.ParseTransport(c.Net); err != nil {
		return bad("net", fmt.Errorf("%w: %w", ErrUnsupportedNet, err), "%q is not a transport (want %s)", c.Net, protocol.TransportsWanted)
	}
	if c.Addr == "" {
		return bad("addr", nil, "must not be empty")
	}
	if c.Mode != protocol.Echo && c.Mode != protocol.Upper {
		return bad("mode", protocol.ErrUnknownMode, "%v is not a mode (want echo or upper)", c.Mode)
	}
	for _, f := range []struct {
		name     string
		negative bool
		value    any
	}{
		{"workers", c.Workers < 0, c.Workers}, {"max-conns", c.MaxConns < 0, c.MaxConns},
		{"max-line", c.MaxLine < 0, c.MaxLine}, {"idle-timeout", c.IdleTimeout < 0, c.IdleTimeout},
		{"grace", c.Grace < 0, c.Grace}, {"work", c.Cost.Work < 0, c.Cost.Work}, {"block", c.Cost.Block < 0, c.Cost.Block},
		{"max-buffered", c.MaxBuffered < 0, c.MaxBuffered},
	} {
		if f.negative {
			return bad(f.name, nil, "must not be negative (got %v)", f.value)
		}
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.MaxLine == 0 {
		c.MaxLine = protocol.DefaultMaxLine
	}
	if c.MaxLine < 2 {
		return bad("max-line", nil, "must be at least 2 bytes, one byte and its newline (got %d)", c.MaxLine)
	}
	if c.Workers > MaxWorkers {
		return bad("workers", nil, "must be at most %d (got %d)", MaxWorkers, c.Workers)
	}
	if c.MaxLine > MaxMaxLine {
		return bad("max-line", nil, "must be at most %d bytes (64 MiB), the memory a server may hold per connection (got %d)", MaxMaxLine, c.MaxLine)
	}
	if c.MaxBuffered > 0 && c.MaxBuffered < int64(c.MaxLine) {
		return bad("max-buffered", nil, "must be 0 (no bound) or at least max-line %d, or one client's longest line could not be held (got %d)", c.MaxLine, c.MaxBuffered)
	}
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.LineTimeout == 0 {
		c.LineTimeout = DefaultLineTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.SocketMode == 0 {
		c.SocketMode = DefaultSocketMode
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// Transport returns Net parsed; the zero Transport when Net is not one.
func (c *Config) Transport() protocol.Transport {
	t, _ := protocol.ParseTransport(c.Net)
	return t
}

// LineBound is the line timeout a model enforces: LineTimeout, or 0 when
// it is negative (no bound). Call it on a normalized Config.
func (c *Config) LineBound() time.Duration { return max(c.LineTimeout, 0) }

// WriteBound is the write timeout a model enforces: WriteTimeout, or 0
// when it is negative (no bound). Call it on a normalized Config.
func (c *Config) WriteBound() time.Duration { return max(c.WriteTimeout, 0) }

// IsStream reports whether the transport is a byte stream (framed in lines).
func (c *Config) IsStream() bool { return c.Transport().IsStream() }

// IsUnix reports whether Addr is a filesystem path.
func (c *Config) IsUnix() bool { return c.Transport().IsUnix() }

// Server is one running instance of a model.
//
// Start binds and begins serving; when it returns nil the server accepts
// traffic and Addr reports the real address (the chosen port for ":0").
// Shutdown stops accepting, answers every request already read, closes
// every connection and returns; it returns ctx.Err() if ctx ends first,
// after forcing everything closed. Stats may be called at any time.
type Server interface {
	Start() error
	Addr() string
	Shutdown(ctx context.Context) error
	Stats() Stats
}

// Factory builds a server of one model; it must not bind yet.
type Factory func(Config) (Server, error)

var (
	regMu    sync.RWMutex
	registry = map[string]Factory{}
)

// Register makes a model available by name. Models call it from init.
func Register(name string, f Factory) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("models: Register called twice for " + name)
	}
	registry[name] = f
}

// Names lists registered models, sorted.
func Names() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// New normalizes cfg and builds a server of the named model.
func New(name string, cfg Config) (Server, error) {
	regMu.RLock()
	f, ok := registry[name]
	regMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (want one of %s)", ErrUnknownModel, name, strings.Join(Names(), ", "))
	}
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	return f(cfg)
}
