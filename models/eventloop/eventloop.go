// Package eventloop is the event-loop model: a few gnet v2 event loops
// (epoll on Linux, kqueue on macOS and the BSDs), Config.Workers of them,
// multiplex every connection; no goroutine is tied to a connection.
//
// Streams (tcp, unix). The listener is a plain net.Listener (so Unix
// sockets get models.ListenStream's stale-socket and permission handling:
// gnet's own listener unlinks the path before it binds and again, without
// checking whose socket it is, when it closes) and one goroutine
// accepts on it and hands each connection to the loop with the fewest
// connections (gnet.Client.EnrollContext, gnet.LeastConnections). gnet's own acceptor would be the obvious
// choice, but in v2.10.0 an accept error such as EMFILE is fatal to the
// whole engine (the acceptor returns ErrAcceptSocket and every loop shuts
// down); ours backs off and retries, so a server out of file descriptors
// keeps serving the connections it has. Everything after the accept — reads,
// framing, replies, idle timeouts, closing — happens on the loops.
//
// Framing works straight on gnet's inbound buffer with Peek and Discard:
// complete lines are answered in place, and only the tail of a line that
// has not fully arrived is copied, into a per-connection buffer that never
// holds more than Config.MaxLine bytes. The replies to every line of one
// read are built in the loop's reusable buffer and go out in one write, so
// a steady stream of echo or upper requests allocates nothing, at any line
// size (other buffers come from a bytebufferpool.Pool of the model's own).
//
// Replies are written with write(2) on the connection's descriptor rather
// than with gnet's Conn.Write or AsyncWrite: gnet parks what a full socket
// does not take in its outbound buffer, and when the client half-closes it
// closes the connection on the EOF, flushes that buffer only until EAGAIN
// and drops the rest. So a full socket hands the rest to a writer job in
// the pool (write.go), and the connection takes no new lines until it is
// written: backpressure, which gnet lacks as well. gnet still reads what
// the client sends meanwhile; past 64×MaxLine (at least 1 MiB) of input
// ahead of its replies, a connection is closed and counted in WriteErrors.
//
// Handler cost. Config.Cost.Work alone runs on the loop: burning CPU there
// is the honest cost of an event loop, and the reason the model loses when
// handlers are heavy. Cost.Block (with Work, if set) must never run on a
// loop: the lines go to a bounded goroutine pool (job.go), one job per
// connection at a time and at most MaxLine bytes of lines a job, which
// writes each reply as its handler returns; lines that arrive meanwhile
// wait in gnet's inbound buffer and are taken, in order, when the job is
// done, so replies keep request order.
//
// Datagrams (udp) run on gnet's own engine (gnet.Run) with one
// SO_REUSEPORT socket per loop; there is no accept to fail. The reply is
// made in place in gnet's read buffer and sent with no allocation, but
// gnet's readUDP allocates five objects (464 B on amd64) per datagram
// before OnTraffic runs, whatever the handler does: unix.Recvfrom's
// sockaddr buffer and the SockaddrInet4 made from it, a conn, its read
// callback and its net.UDPAddr (a -memprofile of -bench /net=udp shows
// nothing else). Avoiding them means reading the socket without gnet.
// gnet has no unixgram transport, so Start refuses it with
// models.ErrUnsupportedNet.
//
// Idle timeouts, line timeouts and lingering closes are driven by gnet's
// ticker: each tick runs a sweep on every loop over intrusive lists of its
// connections, one kept in order of last activity, one of the connections
// holding a partial line in the order their lines began; the cost is one
// list move per read (with an idle timeout) and two per partial line (none
// when every read ends on a line's end, as a benchmark's do), and the
// sweep only looks at connections that expired. No timer or goroutine is
// tied to a connection, let alone to a byte.
//
// Config.MaxBuffered: each connection reports what it holds (its partial
// line, what gnet read while it waited for its job or writer, the lines
// and replies a job or writer holds) to a models.Buffers; past the bound
// the connection holding the most, on whatever loop, is closed. Without
// the bound none of this runs.
//
// Max-conns is checked in OnOpen: a connection past it is closed there and
// counted in Rejected.
//
// Shutdown closes the listener, then every loop drains its connections:
// one with nothing in flight starts a lingering close at once (FIN, then
// discard until the client closes), one with a job or a writer answers the
// bytes already received, then closes the same way. Once no connection is
// left and the pool is idle, the loops stop (gnet.Client.Stop; Engine.Stop
// for datagrams, which have no connections: the pool answers the requests
// it holds first).
package eventloop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sockbench/sockbench/models"
)

// Name is the model's registry name.
const Name = "eventloop"

// Tunables. They are constants, not flags: the model is compared with the
// others at the same Config, and these only bound pathological clients.
const (
	// DefaultPoolSize bounds the goroutines that run blocking handlers;
	// Config.Extra["pool"] overrides it.
	DefaultPoolSize = 1024
	// lingerTime bounds how long a closing connection reads and discards
	// what the client still sends after the server's FIN.
	lingerTime = 1500 * time.Millisecond
	// lingerMax bounds the bytes discarded while lingering.
	lingerMax = 1 << 20
	// maxTick is the longest interval between two sweeps.
	maxTick = 50 * time.Millisecond
)

func init() {
	models.Register(Name, New)
}

// server is one eventloop server; stream.go and packet.go hold the two
// transports' halves.
type server struct {
	cfg     models.Config
	log     *slog.Logger
	ctr     models.Counters
	blocks  bool // handlers go to the pool
	maxLine int
	backlog int   // bytes a connection may have waiting, in or out, before it is dropped
	lineTO  int64 // Config.LineBound in ns; 0: none
	tick    time.Duration
	t0      time.Time
	clock   atomic.Int64 // coarse time since t0 in ns, set on every tick

	mu       sync.Mutex // lifecycle
	started  bool
	closed   bool
	stopOnce sync.Once
	stopErr  error
	addr     string

	pool        *pool
	taskCtx     context.Context // cancelled when Shutdown gives up waiting
	cancelTasks context.CancelFunc
	stopMu      sync.RWMutex // held for reading around every AsyncWrite/SendTo from the pool
	stopped     bool         // the loops are gone: the pool must not touch them
	draining    atomic.Bool

	stream *streamSide
	packet *packetSide

	// logs limits every log line a client can cause (see models.RateLog).
	logs models.RateLog
	// bufs is the account of Config.MaxBuffered; nil without a bound.
	bufs *models.Buffers
}

// New builds an eventloop server for cfg (already normalized by
// models.New); it binds nothing until Start.
func New(cfg models.Config) (models.Server, error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	size := DefaultPoolSize
	if v, ok := cfg.Extra["pool"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("eventloop: extra pool=%q: want a positive number of goroutines", v)
		}
		size = n
	}
	for k := range cfg.Extra {
		if k != "pool" {
			return nil, fmt.Errorf("eventloop: unknown extra option %q (known: pool)", k)
		}
	}
	s := &server{
		cfg:     cfg,
		log:     cfg.Logger.With("model", Name),
		blocks:  cfg.Cost.Blocks(),
		maxLine: cfg.MaxLine,
		lineTO:  int64(cfg.LineBound()),
		tick:    models.SweepInterval(maxTick, cfg.IdleTimeout, cfg.LineBound()),
		t0:      time.Now(),
		pool:    newPool(size),
		bufs:    models.NewBuffers(cfg.MaxBuffered),
	}
	s.backlog = 64 * cfg.MaxLine
	if s.backlog < 1<<20 {
		s.backlog = 1 << 20
	}
	s.taskCtx, s.cancelTasks = context.WithCancel(context.Background())
	return s, nil
}

// Start binds and starts the loops; it returns once they serve. Bind
// errors (address in use, bad address, a live server on the Unix socket)
// are returned as they are, wrapped with the transport and address.
func (s *server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return models.ErrServerClosed
	}
	if s.started {
		return errors.New("eventloop: Start called twice")
	}
	var err error
	switch {
	case s.cfg.Net == "unixgram":
		err = fmt.Errorf("%w unixgram: the eventloop model (gnet v2) serves tcp, udp and unix", models.ErrUnsupportedNet)
	case s.cfg.IsStream():
		err = s.startStream()
	default:
		err = s.startPacket()
	}
	if err != nil {
		s.cancelTasks()
		s.pool.close()
		return err
	}
	s.started = true
	return nil
}

// Addr reports the bound address: host:port with the real port, or the
// socket path.
func (s *server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stats reads the counters.
func (s *server) Stats() models.Stats {
	st := s.ctr.Snapshot()
	st.Buffered = s.bufs.Mine()
	return st
}

// Shutdown stops accepting (streams) or taking new blocking work
// (datagrams), answers every request already read — including those still
// in the pool — then closes the connections and stops the loops. When ctx
// ends first it stops everything at once and returns ctx.Err().
func (s *server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		started := s.started
		s.mu.Unlock()
		if !started {
			s.cancelTasks()
			s.pool.close()
			return
		}
		s.draining.Store(true)
		if s.stream != nil {
			s.stopErr = s.stream.shutdown(ctx)
		} else {
			s.stopErr = s.packet.shutdown(ctx)
		}
		s.logs.Flush()
		s.log.Debug("stopped", "stats", s.Stats().String())
	})
	return s.stopErr
}

// stop marks the loops as gone for the pool, cancels blocking handlers
// still sleeping, and is called right before the loops stop.
func (s *server) stop() {
	s.stopMu.Lock()
	s.stopped = true
	s.stopMu.Unlock()
	s.cancelTasks()
}

// now is the coarse clock: nanoseconds since t0 as of the last tick.
func (s *server) now() int64 { return s.clock.Load() }

// preciseNow is the clock read now, on the coarse clock's scale.
func (s *server) preciseNow() int64 { return int64(time.Since(s.t0)) }

// ticked advances the coarse clock; called from gnet's ticker goroutine.
func (s *server) ticked() int64 {
	n := int64(time.Since(s.t0))
	s.clock.Store(n)
	return n
}

// gnetOptions are the options both transports share.
func (s *server) gnetOptions() []gnet.Option {
	return []gnet.Option{
		gnet.WithNumEventLoop(s.cfg.Workers),
		gnet.WithMulticore(s.cfg.Workers > 1),
		gnet.WithTicker(true),
		gnet.WithLogger(gnetLogger{s.log.With("lib", "gnet"), &s.logs}),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
	}
}

// gnetLogger routes gnet's logging (which otherwise goes to stdout, where
// only the ready line belongs) to the server's logger. gnet's Infof is
// start-up chatter ("Starting gnet client with 2 event loops"), logged at
// debug level; its Fatalf is logged as an error: a library must not exit
// the process. gnet logs some errors per connection, so every line goes
// through the server's RateLog, grouped by gnet's format string. gnet
// keeps one logger per process, so with several servers in one process
// (tests) gnet's messages go to the last one started.
type gnetLogger struct {
	l    *slog.Logger
	logs *models.RateLog
}

func (g gnetLogger) logf(level slog.Level, f string, a []any) {
	g.logs.LogAs(f, g.l, level, fmt.Sprintf(f, a...))
}

func (g gnetLogger) Debugf(f string, a ...any) { g.logf(slog.LevelDebug, f, a) }
func (g gnetLogger) Infof(f string, a ...any)  { g.logf(slog.LevelDebug, f, a) }
func (g gnetLogger) Warnf(f string, a ...any)  { g.logf(slog.LevelWarn, f, a) }
func (g gnetLogger) Errorf(f string, a ...any) { g.logf(slog.LevelError, f, a) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.logf(slog.LevelError, f, a) }

// netAddrString formats a listener address the way Addr reports it.
func netAddrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
