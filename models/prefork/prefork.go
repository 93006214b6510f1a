// Package prefork is the multi-process model of the classic socket
// tutorials, done the way Go allows (no bare fork): the parent binds the
// socket, then re-executes its own binary as Workers worker processes that
// inherit it as a file descriptor. Each worker runs the threaded model's
// accept loop with GOMAXPROCS=1 (a goroutine per connection inside, as
// nginx or fasthttp prefork workers do). The parent supervises: a worker
// that dies is respawned at once, with backoff and a crash-loop limit;
// workers die with the parent, even when it is SIGKILLed; Shutdown
// forwards SIGTERM, waits up to the grace period, then SIGKILLs. Stats are
// summed across workers.
//
// Config.Extra["spawn"] = "per-conn" is the inetd-style variant: the
// parent accepts, and a new process serves each connection (tcp and unix
// only), at most MaxConns at a time (DefaultPerConnLimit when MaxConns is
// 0: a process per connection must be bounded somewhere).
//
// A binary that uses this model must call models.MaybeRunChild first thing
// in main (and in TestMain), so that the re-executed copy becomes a worker.
package prefork

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/sockbench/sockbench/models"
)

func init() {
	models.Register("prefork", New)
}

// Spawn modes, the values of Config.Extra["spawn"].
const (
	SpawnPool    = "pool"     // a fixed pool of Workers processes (default)
	SpawnPerConn = "per-conn" // a new process per connection
)

// Tunables of supervision.
const (
	// DefaultPerConnLimit bounds per-conn children when MaxConns is 0:
	// one process per connection must be bounded somewhere.
	DefaultPerConnLimit = 256
	// crashLimit is how many times in a row a worker slot may die within
	// stableRun of starting before the server gives up.
	crashLimit = 5
	stableRun  = 2 * time.Second
	// A worker that died young is respawned after a backoff from
	// minRespawnDelay doubling to maxRespawnDelay, which keeps a killed
	// worker always replaced within a second.
	minRespawnDelay = 100 * time.Millisecond
	maxRespawnDelay = time.Second
	// readyTimeout bounds how long Start waits for the first workers.
	readyTimeout = 30 * time.Second
	// statsWait bounds how long Stats waits for fresh worker snapshots.
	statsWait = 250 * time.Millisecond
)

// ErrCrashLoop is wrapped by the error that ends a server whose workers
// keep dying as soon as they start.
var ErrCrashLoop = errors.New("prefork: workers crash-looping")

// ErrUndrained is wrapped by Shutdown's error when child processes did not
// drain within the grace period.
var ErrUndrained = errors.New("prefork: child processes did not drain within grace")

// Server states.
const (
	stateNew = iota
	stateRunning
	stateClosing
	stateClosed
)

// Server is a prefork server. Build it with models.New("prefork", cfg).
type Server struct {
	cfg   models.Config
	log   *slog.Logger
	spawn string
	exe   string
	level slog.Level

	ln      net.Listener
	pc      net.PacketConn
	sock    syscall.RawConn // the socket handed to pool workers
	devnull *os.File        // children's stdin
	sf      *models.SocketFile
	adm     *admission
	admF    *os.File
	addr    string
	sp      *spawner
	parent  models.Counters // per-conn: what the parent counts (accepts, rejects)
	// logs limits every log line a client can cause: the parent's own
	// per-connection lines, and per-conn children's lines, which it
	// relays (each child is new, so its own limit would never bite).
	logs models.RateLog

	mu       sync.Mutex
	state    int
	procs    map[*proc]struct{}
	retired  models.Stats  // stats of children that have exited
	changed  chan struct{} // closed and replaced whenever a child reports or exits
	statsSeq uint64
	spawned  uint64
	respawns uint64
	fatal    error
	// Children that exited without draining while the server stopped.
	undrained    int
	undrainedErr error

	closing  chan struct{}  // closed when the server starts stopping
	done     chan struct{}  // closed when it has stopped
	wg       sync.WaitGroup // supervisors and the per-conn accept loop
	procWG   sync.WaitGroup // one per live child
	stopOnce sync.Once
}

// New builds a prefork server; Start binds it and starts the workers.
func New(cfg models.Config) (models.Server, error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	spawn := cfg.Extra["spawn"]
	switch spawn {
	case "":
		spawn = SpawnPool
	case SpawnPool:
	case SpawnPerConn:
		if !cfg.IsStream() || cfg.Net == "unixgram" {
			return nil, fmt.Errorf("%w: prefork --spawn per-conn serves one connection per process, so only tcp and unix, not %s",
				models.ErrUnsupportedNet, cfg.Net)
		}
		if cfg.MaxBuffered > 0 {
			return nil, fmt.Errorf("prefork: --max-buffered does not apply to --spawn per-conn: each connection is a process of its own, "+
				"holding at most --max-line and a reply buffer, and costing far more as a process (see the README); "+
				"--max-conns bounds them (%d processes by default)", DefaultPerConnLimit)
		}
	default:
		return nil, fmt.Errorf("prefork: unknown spawn mode %q (want %q or %q)", spawn, SpawnPool, SpawnPerConn)
	}
	for k := range cfg.Extra {
		if k != "spawn" {
			return nil, fmt.Errorf("prefork: unknown option %q (the only one is \"spawn\")", k)
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("prefork: cannot find own executable to re-execute: %w", err)
	}
	return &Server{
		cfg:     cfg,
		log:     cfg.Logger.With("model", "prefork"),
		spawn:   spawn,
		exe:     exe,
		level:   minLevel(cfg.Logger),
		procs:   make(map[*proc]struct{}),
		changed: make(chan struct{}),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}, nil
}

// Start binds, starts the workers (pool) or the accept loop (per-conn),
// and returns once every worker serves. It fails when workers crash-loop
// from the start.
func (s *Server) Start() error {
	s.mu.Lock()
	switch s.state {
	case stateRunning:
		s.mu.Unlock()
		return errors.New("prefork: server already started")
	case stateClosing, stateClosed:
		s.mu.Unlock()
		return models.ErrServerClosed
	}
	if err := s.bind(); err != nil {
		s.state = stateClosed
		close(s.closing)
		close(s.done)
		s.mu.Unlock()
		return err
	}
	s.state = stateRunning
	s.sp = startSpawner(stuckStart)
	var ready sync.WaitGroup
	if s.spawn == SpawnPerConn {
		s.wg.Add(1)
		go s.acceptLoop()
	} else {
		for slot := range s.cfg.Workers {
			ready.Add(1)
			s.wg.Add(1)
			go s.supervise(slot, ready.Done)
		}
	}
	s.mu.Unlock()

	allReady := make(chan struct{})
	go func() { ready.Wait(); close(allReady) }()
	t := time.NewTimer(readyTimeout)
	defer t.Stop()
	select {
	case <-allReady:
		if s.spawn == SpawnPerConn {
			// Workers means nothing here; the bound on processes does.
			s.log.Info("serving", "net", s.cfg.Net, "addr", s.addr, "spawn", s.spawn, "max_conns", s.perConnLimit())
		} else {
			s.log.Info("serving", "net", s.cfg.Net, "addr", s.addr, "spawn", s.spawn, "workers", s.cfg.Workers)
		}
		return nil
	case <-s.closing:
	case <-t.C:
		s.fail(fmt.Errorf("prefork: workers not ready within %v", readyTimeout))
	}
	<-s.done
	if err := s.Err(); err != nil {
		return err
	}
	return models.ErrServerClosed
}

// bind opens the socket and, for the pool, the descriptor the workers
// inherit. Called with s.mu held.
//
// UDP: the workers share the one inherited socket rather than each binding
// its own with SO_REUSEPORT. A shared socket keeps its receive queue when a
// worker dies (with SO_REUSEPORT the dead worker's queue is lost and the
// kernel rehashes clients onto other sockets), it works the same on macOS
// (whose SO_REUSEPORT does not spread datagrams across sockets), and no
// other process of the same user can join the port group. Its cost is
// that every idle worker wakes for each datagram and all but one find
// nothing to read; the benchmark measures that.
func (s *Server) bind() error {
	var err error
	if s.cfg.IsStream() {
		if s.ln, s.sf, err = models.ListenStream(&s.cfg); err != nil {
			return err
		}
		s.addr = s.ln.Addr().String()
		if s.spawn == SpawnPool {
			s.sock, err = s.ln.(syscall.Conn).SyscallConn()
		}
	} else {
		if s.pc, s.sf, err = models.ListenPacket(&s.cfg); err != nil {
			return err
		}
		s.addr = s.pc.LocalAddr().String()
		s.sock, err = s.pc.(syscall.Conn).SyscallConn()
	}
	if err == nil {
		s.devnull, err = os.Open(os.DevNull)
	}
	if err == nil && s.spawn == SpawnPool && s.cfg.IsStream() && (s.cfg.MaxConns > 0 || s.cfg.MaxBuffered > 0) {
		s.adm, s.admF, err = newAdmission(s.cfg.Workers, s.cfg.MaxConns)
	}
	if err != nil {
		s.closeSockets()
		return fmt.Errorf("prefork: preparing the socket for the workers: %w", err)
	}
	return nil
}

// closeSockets closes the parent's copies of the socket and what else
// only spawning needs. Called with s.mu held once no more children can be
// started, or before anything started.
func (s *Server) closeSockets() {
	if s.ln != nil {
		s.ln.Close()
	}
	if s.pc != nil {
		s.pc.Close()
	}
	if s.admF != nil {
		s.admF.Close()
	}
	if s.devnull != nil {
		s.devnull.Close()
	}
}

// Addr returns the address the server listens on (empty before Start).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Done is closed once the server has stopped, by Shutdown or because its
// workers crash-looped (then Err says why).
func (s *Server) Done() <-chan struct{} { return s.done }

// Err returns the error that ended the server on its own (ErrCrashLoop),
// or nil.
func (s *Server) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fatal
}

// Stats returns the sum of every worker's counters: live workers are asked
// for a fresh snapshot (waiting at most statsWait), workers that exited
// count with their last report. A worker killed with SIGKILL loses what it
// did since its last report (at most statsPeriod).
func (s *Server) Stats() models.Stats {
	s.refresh()
	s.mu.Lock()
	defer s.mu.Unlock()
	total := s.retired.Add(s.parent.Snapshot())
	for p := range s.procs {
		total = total.Add(p.contrib())
	}
	return total
}

// Shutdown stops accepting (closing the parent's socket), sends SIGTERM to
// every worker, which answers what it has read and closes gracefully, and
// waits for them; if ctx ends first the rest are SIGKILLed and ctx.Err()
// is returned. A child that gave up draining by itself (its own deadline
// is a little inside the grace, so it exits 1 before the parent would kill
// it) makes Shutdown fail too, with ErrUndrained: a stop that lost
// requests must not look clean. The Unix socket file is removed and the
// totals logged. After a crash loop it returns the error that ended the
// server.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	switch {
	case s.state == stateNew:
		s.state = stateClosed
		close(s.closing)
		close(s.done)
		s.mu.Unlock()
		return nil
	case s.sp == nil: // Start failed before anything ran
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	s.beginStop()
	err := s.waitChildren(ctx)
	s.finish()
	if ferr := s.Err(); ferr != nil {
		return ferr
	}
	s.mu.Lock()
	n, first := s.undrained, s.undrainedErr
	s.mu.Unlock()
	if n > 0 {
		return errors.Join(fmt.Errorf("%w: %d of them (first %v)", ErrUndrained, n, first), err)
	}
	return err
}

// String names the model, for logs.
func (s *Server) String() string {
	return fmt.Sprintf("prefork(%s %s, spawn=%s)", s.cfg.Net, s.Addr(), s.spawn)
}
