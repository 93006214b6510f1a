package eventloop

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// Replies on the loop are written with a plain write(2) on the
// connection's descriptor, not through gnet's Conn.Write. gnet keeps what
// the socket does not take in its own outbound buffer, and when the client
// half-closes it closes the connection on the EOF, flushes that buffer only
// until EAGAIN and drops the rest: replies lost. So when the socket is
// full, the rest of the batch goes to a writer job in the pool, which owns
// a dup of the socket and waits for it through Go's poller; the loop takes
// no more lines from that client until the writer is done (backpressure,
// which gnet does not have either), and if gnet closes the connection on
// an EOF meanwhile, the writer answers what was left and closes it itself
// (handover.go).

const (
	// writeSlice is how long one blocking write waits before the writer
	// checks whether the server is stopping.
	writeSlice = 250 * time.Millisecond
)

// send writes b to c. What a full socket does not take is copied for a
// writer job. It returns true when c must be closed.
func (ss *streamSide) send(c gnet.Conn, st *connState, b []byte) bool {
	for len(b) > 0 {
		n, err := unix.Write(c.Fd(), b)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			st.countFailure(&ss.s.ctr.WriteErrors)
			return true
		}
		b = b[n:]
	}
	if len(b) == 0 {
		return false
	}
	fd, err := c.Dup()
	if err != nil {
		st.countFailure(&ss.s.ctr.WriteErrors)
		ss.s.logs.Warn(ss.s.log, "socket full and no descriptor to wait on it; closing", "err", err)
		return true
	}
	rest := bufs.Get()
	rest.B = append(rest.B[:0], b...)
	if ss.s.bufs != nil {
		st.heldOut.Store(int64(len(rest.B)))
	}
	st.stalled = true
	st.pooled.start(rest, false)
	if !ss.s.pool.submit(&writer{st: st, fd: fd}) {
		unix.Close(fd)
		return true
	}
	return false
}

// writer sends a stalled connection's pending replies from the pool.
type writer struct {
	st *connState
	fd int
}

func (w *writer) run() {
	st := w.st
	s := st.side.s
	conn, ok := dupConn(w.fd)
	for {
		buf, detached := st.pooled.next(ok)
		if buf == nil {
			st.finish(conn, ok, detached, st.resumeFn)
			return
		}
		if ok && !s.writeAll(st, conn, buf.B, w.abandoned) {
			ok = false
			st.countFailure(&s.ctr.WriteErrors)
		}
		bufs.Put(buf)
	}
}

// abandoned reports whether the loop closed the connection (max backlog,
// reset) while the writer waited on it; a detached connection is the
// writer's to finish.
func (w *writer) abandoned() bool {
	return w.st.gone.Load() && !w.st.pooled.isDetached()
}

// writeAll writes p to c, st's connection, waiting as long as the client
// makes progress within Config.WriteBound (a client that takes nothing
// for that long is counted in WriteTimeouts and loses its connection),
// and giving up when the server stops or abandon says so.
func (s *server) writeAll(st *connState, c net.Conn, p []byte, abandon func() bool) bool {
	bound := s.cfg.WriteBound()
	last := time.Now()
	for len(p) > 0 {
		c.SetWriteDeadline(time.Now().Add(writeSlice))
		n, err := c.Write(p)
		p = p[n:]
		if n > 0 {
			last = time.Now()
		}
		if err == nil {
			continue
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return false
		}
		if bound > 0 && time.Since(last) > bound {
			st.countFailure(&s.ctr.WriteTimeouts)
			s.logs.Warn(s.log, "client left its replies untaken past write-timeout; closing connection",
				"remote", c.RemoteAddr().String(), "write_timeout", bound, "unsent", len(p))
			return false
		}
		s.stopMu.RLock()
		stopped := s.stopped
		s.stopMu.RUnlock()
		if stopped || abandon() {
			return false
		}
	}
	return true
}

// resume runs on the loop once a writer is done: the connection takes its
// lines again, starting with those that arrived meanwhile.
func (st *connState) resume(context.Context) error {
	if st.gone.Load() || !st.stalled {
		return nil
	}
	st.stalled = false
	st.side.takeBack(st)
	return nil
}
