package eventloop

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"
	"golang.org/x/sys/unix"

	"github.com/sockbench/sockbench/protocol"
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
// an EOF meanwhile, the writer answers what was left and closes it itself.

const (
	// stallTimeout: a client that takes nothing for this long while
	// replies wait for it loses its connection.
	stallTimeout = 30 * time.Second
	// writeSlice is how long one blocking write waits before the writer
	// checks whether the server is stopping.
	writeSlice = 250 * time.Millisecond
)

// writeState is shared by the loop and a connection's writer. Guarded by mu.
type writeState struct {
	mu       sync.Mutex
	out      *bytebufferpool.ByteBuffer // bytes the writer still has to send
	running  bool                       // a writer owns the dup
	detached bool                       // gnet closed the connection: the writer closes it
	failed   bool
}

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
	st.w.mu.Lock()
	st.w.out, st.w.running, st.w.failed = rest, true, false
	st.w.mu.Unlock()
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
	ws := &st.w
	f := os.NewFile(uintptr(w.fd), "")
	conn, err := net.FileConn(f)
	f.Close()
	ok := err == nil
	for {
		ws.mu.Lock()
		buf := ws.out
		ws.out = nil
		if buf == nil {
			ws.running = false
			detached := ws.detached
			ws.failed = !ok
			ws.mu.Unlock()
			switch {
			case conn == nil:
			case detached && ok:
				lingerConn(conn)
			default:
				conn.Close()
			}
			if detached {
				st.side.closed(st)
				return
			}
			st.heldOut.Store(0)
			s.stopMu.RLock()
			if !s.stopped {
				st.c.EventLoop().Execute(context.Background(), st.resumeFn)
			}
			s.stopMu.RUnlock()
			return
		}
		ws.mu.Unlock()
		if ok && !s.writeAll(conn, buf.B, w.abandoned) {
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
	ws := &w.st.w
	ws.mu.Lock()
	detached := ws.detached
	ws.mu.Unlock()
	return w.st.gone.Load() && !detached
}

// writeAll writes p to c, waiting as long as the client makes progress
// within stallTimeout, and giving up when the server stops or abandon
// says so.
func (s *server) writeAll(c net.Conn, p []byte, abandon func() bool) bool {
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
		if !errors.As(err, &ne) || !ne.Timeout() || time.Since(last) > stallTimeout {
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
	ss := st.side
	st.stalled = false
	st.w.mu.Lock()
	failed := st.w.failed
	st.w.mu.Unlock()
	switch {
	case failed:
		st.loop.el.Close(st.c)
	case st.stopAfter:
		ss.startLinger(st.c, st)
	default:
		ss.touch(st)
		if ss.serve(st.c, st) {
			st.loop.el.Close(st.c)
		}
	}
	return nil
}

// detachWriter is OnClose's part for a stalled connection the client
// half-closed: the lines gnet still held are answered here, and the writer
// sends them after what it has, then closes. It returns false when there
// is nothing left to do and gnet may close the connection as usual.
func (ss *streamSide) detachWriter(c gnet.Conn, st *connState) bool {
	s := ss.s
	tail := bufs.Get()
	if !st.stopAfter {
		data, _ := c.Peek(-1)
		if st.draining {
			data = data[:min(len(data), st.budget)]
		}
		var req []byte
		if st.partial != nil {
			req = append(req, st.partial.B...)
		}
		req = append(req, data...)
		lines := 0
		for {
			n, err := protocol.LineLen(req, s.maxLine)
			if err != nil || n == 0 {
				break
			}
			ss.appendLine(tail, req[:n])
			req = req[n:]
			lines++
		}
		taken := len(tail.B)
		if st.partial != nil && lines > 0 {
			taken -= len(st.partial.B) // counted when it was taken
		}
		s.ctr.Requests.Add(uint64(lines))
		s.ctr.BytesIn.Add(uint64(taken))
		s.ctr.BytesOut.Add(uint64(len(tail.B)))
	}
	ws := &st.w
	ws.mu.Lock()
	if ws.running {
		if ws.out == nil {
			ws.out = tail
		} else {
			ws.out.B = append(ws.out.B, tail.B...)
			bufs.Put(tail)
		}
		ws.detached = true
		ws.mu.Unlock()
		return true
	}
	ws.mu.Unlock()
	// The writer is done and resume has not run yet.
	if len(tail.B) == 0 {
		bufs.Put(tail)
		return false
	}
	fd, err := c.Dup()
	if err != nil {
		bufs.Put(tail)
		return false
	}
	ws.mu.Lock()
	ws.out, ws.running, ws.detached = tail, true, true
	ws.mu.Unlock()
	if !s.pool.submit(&writer{st: st, fd: fd}) {
		unix.Close(fd)
		return false
	}
	return true
}

// closed accounts for a connection a writer or finisher closed after gnet
// had let go of it.
func (ss *streamSide) closed(st *connState) {
	if ss.s.bufs != nil {
		ss.s.bufs.Release(&st.hold)
	}
	if ss.s.ctr.Active.Add(-1) == 0 && ss.s.draining.Load() {
		ss.signalDrained()
	}
}

// lingerConn closes c without destroying replies the client has not read:
// FIN, then read and discard until the client closes, lingerMax bytes or
// lingerTime pass.
func lingerConn(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		c.SetReadDeadline(time.Now().Add(lingerTime))
		buf := make([]byte, 4<<10)
		for total := 0; total < lingerMax; {
			n, err := c.Read(buf)
			total += n
			if err != nil {
				break
			}
		}
	}
	c.Close()
}
