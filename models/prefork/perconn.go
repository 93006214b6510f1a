package prefork

import (
	"errors"
	"net"
	"syscall"

	"github.com/sockbench/sockbench/models"
)

// acceptLoop is the per-conn parent: it accepts each connection and hands
// it to a new child process running threaded.ServeConn. At most MaxConns
// (DefaultPerConnLimit when 0) children serve at once; connections past
// that are closed at once and counted as Rejected. The parent counts
// Accepted and Active; the children count requests, bytes and errors.
func (s *Server) acceptLoop() {
	defer s.wg.Done()
	limit := s.perConnLimit()
	acc := models.Acceptor{Listener: s.ln, Stop: s.closing, Failed: &s.parent.AcceptErrors, Logs: &s.logs, Log: s.log}
	for {
		c, err := acc.Accept()
		if err != nil {
			return // closed by Shutdown
		}
		if gone, reset := closedOnArrival(c); gone {
			// Nothing to serve: no process for it.
			s.parent.Accepted.Add(1)
			if reset {
				s.parent.ReadErrors.Add(1)
			}
			c.Close()
			continue
		}
		// The place is given back when the child is reaped (watch), or
		// by handOffRetrying when no child could be started.
		if !s.parent.Admit(limit) {
			c.Close()
			continue
		}
		if !s.handOffRetrying(c) {
			return
		}
	}
}

// perConnLimit is how many per-conn children may serve at once.
func (s *Server) perConnLimit() int {
	if s.cfg.MaxConns == 0 {
		return DefaultPerConnLimit
	}
	return s.cfg.MaxConns
}

// otherSpawnTries bounds the attempts to start a child for one connection
// when the failure is not a shortage: a transient error gets a second and
// third chance, a lasting one (the executable removed) costs 15ms a
// connection rather than stalling every client behind it.
const otherSpawnTries = 3

// handOffRetrying starts a child for c. When that fails for want of file
// descriptors or processes it keeps c and retries with a models.Backoff
// (5ms doubling to 1s) instead of dropping the client: accepting pauses,
// new clients wait in the listen backlog as they would with a failing
// Accept, and service resumes once children exit and free what they held.
// Any other failure gets otherSpawnTries tries in all, with a backoff of
// its own, before c is dropped. c holds a place (Counters.Admit), which
// its child gives back when it is reaped; when no child takes c, this
// gives it back. It reports false when the server is stopping.
func (s *Server) handOffRetrying(c net.Conn) bool {
	defer c.Close() // the child has its own copy
	taken := false
	defer func() {
		if !taken {
			s.parent.Active.Add(-1)
		}
	}()
	var shortage, other models.Backoff
	for tries := 1; ; tries++ {
		err := s.handOff(c)
		switch {
		case err == nil:
			taken = true
			return true
		case errors.Is(err, errClosing):
			return false
		case !outOfResources(err) && tries >= otherSpawnTries:
			s.parent.AcceptErrors.Add(1)
			s.logs.Warn(s.log, "could not start a process for a connection; dropped it", "err", err, "tries", tries)
			return true
		case !outOfResources(err):
			s.parent.AcceptErrors.Add(1)
			s.logs.Warn(s.log, "could not start a process for a connection; retrying", "err", err)
			if !models.Sleep(other.Next(), s.closing) {
				return false
			}
			continue
		}
		s.parent.AcceptErrors.Add(1)
		d := shortage.Next()
		s.logs.Warn(s.log, "out of resources to start a process for a connection; retrying", "err", err, "backoff", d)
		if !models.Sleep(d, s.closing) {
			return false
		}
	}
}

// outOfResources reports whether err is a shortage that ends when
// descriptors or processes are freed.
func outOfResources(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.ENOBUFS)
}

// handOff starts a child serving c, and counts c as accepted. The caller
// closes its copy of c.
func (s *Server) handOff(c net.Conn) error {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return err
	}
	if _, err := s.spawnProc(ConnRole, -1, rc); err != nil {
		return err
	}
	s.parent.Accepted.Add(1)
	return nil
}

// closedOnArrival reports whether the client already closed c without
// sending a byte (gone), or reset it (gone and reset), by peeking at the
// socket without blocking. Starting a process for such a connection would
// only have it read EOF and exit; port scanners and health checks open
// many of them. A connection with data, or nothing yet, gets a process.
func closedOnArrival(c net.Conn) (gone, reset bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, false
	}
	var b [1]byte
	rc.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == nil && n == 0:
			gone = true
		case errors.Is(err, syscall.ECONNRESET):
			gone, reset = true, true
		}
	})
	return gone, reset
}
