// Package threaded is the goroutine-per-connection model: blocking reads and
// writes on package net, one goroutine for each stream connection, and a
// fixed set of reader goroutines on a datagram socket. Go's netpoller turns
// the blocking calls into epoll/kqueue underneath, so this is the model
// "threads" become in Go, and the baseline the other models are measured
// against.
//
// It registers itself as "threaded". NewFromListener, NewFromPacketConn and
// ServeConn let the prefork model run the same code in worker processes.
package threaded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/sockbench/sockbench/models"
)

func init() {
	models.Register("threaded", New)
}

// Server states.
const (
	stateNew = iota
	stateStarted
	stateClosed
)

// aLongTimeAgo is a deadline in the past: setting it makes a blocked Read
// return at once.
var aLongTimeAgo = time.Unix(1, 0)

// Server is a threaded server. Build one with New, NewFromListener or
// NewFromPacketConn; all methods are safe for concurrent use.
type Server struct {
	cfg models.Config
	ctr models.Counters
	log *slog.Logger

	// hardCtx is cancelled when Shutdown gives up on a graceful stop; it
	// cuts short --block waits so forced shutdown is quick.
	hardCtx    context.Context
	hardCancel context.CancelFunc

	mu      sync.Mutex
	state   int
	forced  bool
	ln      net.Listener    // stream transports
	pc      net.PacketConn  // datagram transports
	raw     syscall.RawConn // pc's socket, for unixgram replies that never wait
	sf      *models.SocketFile
	conns   map[*conn]struct{}
	closing chan struct{} // closed when Shutdown begins
	done    chan struct{} // closed when every goroutine has exited

	wg          sync.WaitGroup // every goroutine the server started
	cleanupOnce sync.Once
	// logs limits every log line a client can cause (see models.RateLog).
	logs models.RateLog
	// bufs is the account of Config.MaxBuffered; nil without a bound.
	bufs *models.Buffers
}

// New builds a threaded server for cfg; Start binds it. It is the Factory
// registered as "threaded" (models.New normalizes cfg first).
func New(cfg models.Config) (models.Server, error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	return newServer(cfg), nil
}

// NewFromListener builds a server that serves stream connections from an
// already bound listener, such as one a prefork worker inherited as a file
// descriptor. cfg must already be normalized (models.Config.Normalize);
// cfg.Net and cfg.Addr are informational only. Start begins accepting;
// Shutdown closes ln but never removes a Unix socket file (its owner does).
func NewFromListener(cfg models.Config, ln net.Listener) (models.Server, error) {
	if ln == nil {
		return nil, errors.New("threaded: nil listener")
	}
	s := newServer(cfg)
	s.ln = ln
	return s, nil
}

// NewFromPacketConn is NewFromListener for a datagram socket (udp or
// unixgram). cfg must already be normalized.
func NewFromPacketConn(cfg models.Config, pc net.PacketConn) (models.Server, error) {
	if pc == nil {
		return nil, errors.New("threaded: nil packet conn")
	}
	s := newServer(cfg)
	s.pc = pc
	return s, nil
}

func newServer(cfg models.Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger.With("model", "threaded"),
		conns:   make(map[*conn]struct{}),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		bufs:    models.NewBuffers(cfg.MaxBuffered),
	}
	s.hardCtx, s.hardCancel = context.WithCancel(context.Background())
	return s
}

// SetBuffers makes the server account its stream clients' buffers in b
// instead of an account of its own (prefork's pool workers share one
// across processes). Call it before Start; nil turns the bound off.
func (s *Server) SetBuffers(b *models.Buffers) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bufs = b
}

// Start binds (unless the server was built on an inherited socket) and
// starts serving in the background.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateStarted:
		return errors.New("threaded: server already started")
	case stateClosed:
		return models.ErrServerClosed
	}
	stream := s.ln != nil || (s.pc == nil && s.cfg.IsStream())
	if s.ln == nil && s.pc == nil {
		var err error
		if stream {
			s.ln, s.sf, err = models.ListenStream(&s.cfg)
		} else {
			s.pc, s.sf, err = models.ListenPacket(&s.cfg)
		}
		if err != nil {
			return err
		}
	}
	s.state = stateStarted
	if stream {
		s.wg.Add(1)
		go s.acceptLoop()
	} else {
		s.startPacket()
	}
	return nil
}

// Addr returns the address the server listens on: host:port with the real
// port, or the socket path. It is empty before Start.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.ln != nil:
		return s.ln.Addr().String()
	case s.pc != nil:
		return s.pc.LocalAddr().String()
	}
	return ""
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() models.Stats {
	st := s.ctr.Snapshot()
	s.mu.Lock()
	st.Buffered = s.bufs.Mine()
	s.mu.Unlock()
	return st
}

// Shutdown stops accepting, lets every connection answer the requests it
// has already read and close gracefully (see conn.linger), and returns once
// every goroutine has exited. If ctx ends first it closes everything at
// once, waits for the goroutines, and returns ctx.Err(). A Unix socket file
// the server created is removed either way.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	prev := s.state
	s.state = stateClosed
	if prev != stateClosed {
		close(s.closing)
		if prev == stateStarted {
			if s.ln != nil {
				s.ln.Close()
			}
			if s.pc != nil {
				// Wakes every reader; they see closing and return. The
				// socket stays open so in-flight replies can still be sent.
				s.pc.SetReadDeadline(aLongTimeAgo)
			}
			for cn := range s.conns {
				cn.stop()
			}
			go func() {
				s.wg.Wait()
				close(s.done)
			}()
		} else {
			close(s.done)
		}
	}
	s.mu.Unlock()

	var err error
	select {
	case <-s.done:
	case <-ctx.Done():
		err = ctx.Err()
		s.force()
		<-s.done
	}
	s.cleanup()
	s.logs.Flush()
	return err
}

// force closes every socket and cancels blocking handler waits.
func (s *Server) force() {
	s.hardCancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forced = true
	for cn := range s.conns {
		cn.c.Close()
	}
	if s.pc != nil {
		s.pc.Close()
	}
}

func (s *Server) cleanup() {
	s.cleanupOnce.Do(func() {
		s.hardCancel()
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.pc != nil {
			s.pc.Close()
		}
		if s.ln != nil {
			s.ln.Close()
		}
		s.sf.Remove()
	})
}

func (s *Server) isClosing() bool { return models.Closed(s.closing) }

// acceptLoop accepts stream connections until Shutdown. Failing accepts
// (EMFILE, ENFILE, ENOBUFS, ...) are counted and retried after a backoff
// (models.Acceptor), so the server neither spins nor exits while the
// process is out of file descriptors; connections it already has keep
// being served.
func (s *Server) acceptLoop() {
	defer s.wg.Done()
	acc := models.Acceptor{Listener: s.ln, Stop: s.closing, Failed: &s.ctr.AcceptErrors, Logs: &s.logs, Log: s.log}
	for {
		c, err := acc.Accept()
		if err != nil {
			if !s.isClosing() {
				s.log.Error("listener closed underneath the server; no longer accepting", "err", err)
			}
			return
		}
		if !s.ctr.Admit(s.cfg.MaxConns) {
			c.Close()
			continue
		}
		s.ctr.Accepted.Add(1)
		cn := newConn(c, &s.cfg, &s.ctr, s.log, &s.logs)
		if s.bufs != nil {
			cn.bufs, cn.shed = s.bufs, s.shed
		}
		s.mu.Lock()
		s.conns[cn] = struct{}{}
		if s.state == stateClosed {
			cn.stop()
		}
		if s.forced {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serveConn(cn)
	}
}

func (s *Server) serveConn(cn *conn) {
	defer s.wg.Done()
	cn.serve(s.hardCtx)
	s.mu.Lock()
	delete(s.conns, cn)
	s.mu.Unlock()
	if cn.bufs != nil {
		cn.bufs.Release(&cn.hold)
	}
	s.ctr.Active.Add(-1)
}

// shed is called by a connection whose growth took the server past
// Config.MaxBuffered: it closes the connections holding the most until the
// server is within the bound again, counting each in OverBuffered, and
// reports whether cn itself was one (it then stops at once). The others
// are closed under their goroutines, which see net.ErrClosed and leave.
func (s *Server) shed(cn *conn) (self bool) {
	largest := func() (*conn, bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return models.Largest(maps.Keys(s.conns))
	}
	return models.Shed(s.bufs, cn, largest, func(c *conn) { c.c.Close() }, &s.ctr, &s.logs, s.log)
}

// ServeConn serves one stream connection to its end and closes it: the
// body of a fork-per-connection child. cfg must already be normalized.
// When ctx ends the connection stops reading, answers the requests it has
// read (paying their cost), and closes gracefully; when hard ends, the
// drain has run out of time: --block waits are cut short and the socket
// is closed under whatever is left. ServeConn counts requests, bytes and
// errors in ctr but not Accepted or Active, which belong to whoever
// accepted the connection. A connection alone in its process has no
// server-wide buffers to share: Config.MaxBuffered does not apply.
func ServeConn(ctx, hard context.Context, cfg *models.Config, c net.Conn, ctr *models.Counters) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var logs models.RateLog
	defer logs.Flush()
	cn := newConn(c, cfg, ctr, log.With("model", "threaded"), &logs)
	stop := context.AfterFunc(ctx, cn.stop)
	defer stop()
	force := context.AfterFunc(hard, func() { c.Close() })
	defer force()
	cn.serve(hard)
}

// String names the model, for logs.
func (s *Server) String() string { return fmt.Sprintf("threaded(%s %s)", s.cfg.Net, s.Addr()) }
