package prefork

import (
	"errors"
	"net"
	"os"
	"time"
)

// Backoff bounds for failing Accept calls (EMFILE and the like), as
// net/http's Serve uses.
const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

// acceptLoop is the per-conn parent: it accepts each connection and hands
// it to a new child process running threaded.ServeConn. At most MaxConns
// (DefaultPerConnLimit when 0) children serve at once; connections past
// that are closed at once and counted as Rejected. The parent counts
// Accepted and Active; the children count requests, bytes and errors.
func (s *Server) acceptLoop() {
	defer s.wg.Done()
	limit := int64(s.cfg.MaxConns)
	if limit == 0 {
		limit = DefaultPerConnLimit
	}
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.isClosing() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.parent.AcceptErrors.Add(1)
			backoff = nextBackoff(backoff)
			s.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
			if !s.sleep(backoff) {
				return
			}
			continue
		}
		backoff = 0
		// Active only grows here, so this never lets more than limit in.
		if s.parent.Active.Load() >= limit {
			s.parent.Rejected.Add(1)
			c.Close()
			continue
		}
		if err := s.handOff(c); err != nil {
			if errors.Is(err, errClosing) {
				return
			}
			// Out of descriptors or processes: the client is dropped and
			// counted, the server carries on.
			s.parent.AcceptErrors.Add(1)
			backoff = nextBackoff(backoff)
			s.log.Warn("could not start a process for a connection; dropped it", "err", err, "backoff", backoff)
			if !s.sleep(backoff) {
				return
			}
		}
	}
}

// handOff starts a child for c; the parent's copy of c is closed either
// way.
func (s *Server) handOff(c net.Conn) error {
	defer c.Close()
	f, err := c.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		return err
	}
	defer f.Close()
	s.parent.Accepted.Add(1)
	s.parent.Active.Add(1) // given back when the child is reaped (watch)
	if _, err := s.spawnProc(ConnRole, -1, f); err != nil {
		s.parent.Accepted.Add(^uint64(0))
		s.parent.Active.Add(-1)
		return err
	}
	return nil
}

// sleep waits d, or reports false when the server starts stopping first.
func (s *Server) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.closing:
		return false
	}
}

func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return minAcceptBackoff
	}
	return min(2*d, maxAcceptBackoff)
}
