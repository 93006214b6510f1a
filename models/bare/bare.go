//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package bare

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sockbench/sockbench/models"
)

// Server states.
const (
	stateNew = iota
	stateStarted
	stateClosed
)

// Stop requests, from Shutdown to the loop.
const (
	stopNone = iota
	stopDrain
	stopForce
)

// server is one bare server: its lifecycle here, its loop in loop.go.
type server struct {
	cfg      models.Config
	log      *slog.Logger
	ctr      models.Counters
	poolSize int

	// hardCtx is cancelled when Shutdown gives up on a graceful stop; it
	// cuts short the --block waits of the pool.
	hardCtx    context.Context
	hardCancel context.CancelFunc

	mu    sync.Mutex
	state int
	addr  string
	sf    *models.SocketFile
	l     *loop
	done  chan struct{} // closed when the loop has exited

	stop     atomic.Int32
	shutOnce sync.Once
	shutErr  error

	failed  chan struct{} // closed when the loop ended by itself
	failErr error         // why; written before failed is closed

	// logs limits every log line a client can cause (see models.RateLog);
	// Shutdown flushes its summaries.
	logs models.RateLog
	// bufs is the account of Config.MaxBuffered; nil without a bound.
	bufs *models.Buffers
}

// New builds a bare server for cfg; Start binds it. It is the Factory
// registered as "bare". Config.Workers is ignored: the model is one loop
// on one thread by definition. Config.Extra may set "pool", the most
// goroutines that run --block handlers at once (DefaultPoolSize).
func New(cfg models.Config) (models.Server, error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	size := DefaultPoolSize
	for k, v := range cfg.Extra {
		if k != "pool" {
			return nil, fmt.Errorf("bare: unknown extra option %q (known: pool)", k)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bare: extra pool=%q: want a positive number of goroutines", v)
		}
		size = n
	}
	s := &server{cfg: cfg, log: cfg.Logger.With("model", Name), poolSize: size,
		done: make(chan struct{}), failed: make(chan struct{}), bufs: models.NewBuffers(cfg.MaxBuffered)}
	s.hardCtx, s.hardCancel = context.WithCancel(context.Background())
	return s, nil
}

// Start binds through the helpers every model shares (models.ListenStream
// and ListenPacket: stale Unix sockets, the socket file's mode), takes the
// socket's descriptor out of Go's netpoller, and starts the loop. It
// returns once the loop runs.
func (s *server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateStarted:
		return errors.New("bare: server already started")
	case stateClosed:
		return models.ErrServerClosed
	}
	fd, err := s.bind()
	if err != nil {
		return err
	}
	l, err := newLoop(s, fd)
	if err != nil {
		unix.Close(fd)
		s.sf.Remove()
		return fmt.Errorf("bare: %w", err)
	}
	raiseProcs()
	s.l = l
	s.state = stateStarted
	go l.run()
	return nil
}

// bind opens the socket with the shared helpers and returns a duplicate
// of its descriptor, non-blocking, for the loop alone: the Go listener or
// packet conn is closed, which takes it out of Go's netpoller but leaves
// the socket open through the duplicate (and leaves a Unix socket's file
// in place; SocketFile removes it on exit).
func (s *server) bind() (int, error) {
	var (
		sc  syscall.Conn
		cl  func() error
		err error
	)
	if s.cfg.IsStream() {
		var ln net.Listener
		ln, s.sf, err = models.ListenStream(&s.cfg)
		if err != nil {
			return -1, err
		}
		s.addr, sc, cl = ln.Addr().String(), ln.(syscall.Conn), ln.Close
	} else {
		var pc net.PacketConn
		pc, s.sf, err = models.ListenPacket(&s.cfg)
		if err != nil {
			return -1, err
		}
		s.addr, sc, cl = pc.LocalAddr().String(), pc.(syscall.Conn), pc.Close
	}
	fd, err := dupFD(sc)
	cl()
	if err != nil {
		s.sf.Remove()
		return -1, fmt.Errorf("bare: taking the socket's descriptor: %w", err)
	}
	if !s.cfg.IsStream() {
		// Best effort, as in the other models: the kernel caps both at
		// net.core.rmem_max and wmem_max.
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, socketBuffer)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, socketBuffer)
	}
	return fd, nil
}

// dupFD duplicates the descriptor behind c, close-on-exec, and makes sure
// the duplicate is non-blocking.
func dupFD(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// Addr returns the bound address: host:port with the real port, or the
// socket path. It is empty before Start.
func (s *server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stats returns a snapshot of the counters. The loop adds its per-request
// counts once per batch of events, so a snapshot lags the loop by at most
// one batch.
func (s *server) Stats() models.Stats {
	st := s.ctr.Snapshot()
	st.Buffered = s.bufs.Mine()
	return st
}

// Shutdown asks the loop to stop accepting (streams) or reading
// (datagrams), to answer every request it has read, including those in
// the pool, and to close each connection gracefully; it returns once the
// loop has exited. If ctx ends first the loop closes everything at once
// and Shutdown returns ctx.Err(). A Unix socket file the server created
// is removed either way.
func (s *server) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() {
		s.mu.Lock()
		prev := s.state
		s.state = stateClosed
		l := s.l
		s.mu.Unlock()
		if prev != stateStarted {
			s.hardCancel()
			return
		}
		s.stop.Store(stopDrain)
		l.wake()
		select {
		case <-s.done:
		case <-ctx.Done():
			s.shutErr = ctx.Err()
			s.log.Warn("shutdown grace ran out; closing what is left", "active", s.ctr.Active.Load())
			s.stop.Store(stopForce)
			s.hardCancel()
			l.wake()
			<-s.done
		}
		s.hardCancel()
		s.sf.Remove()
		s.logs.Flush()
		s.log.Debug("stopped", "stats", s.Stats().String())
	})
	return s.shutErr
}

// Done is closed when the loop ended by itself (waiting for events
// failed), which makes the server a models.Failer: `sockbench serve`
// exits with Err instead of serving nothing.
func (s *server) Done() <-chan struct{} { return s.failed }

// Err says why the loop ended by itself, once Done is closed.
func (s *server) Err() error {
	select {
	case <-s.failed:
		return s.failErr
	default:
		return nil
	}
}

// fail records why the loop ends by itself.
func (s *server) fail(err error) {
	s.failErr = err
	close(s.failed)
}

// String names the model, for logs.
func (s *server) String() string { return fmt.Sprintf("%s(%s %s)", Name, s.cfg.Net, s.Addr()) }
