package eventloop

import (
	"context"
	"net"
	"os"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"
	"golang.org/x/sys/unix"

	"github.com/sockbench/sockbench/protocol"
)

// A connection's replies are sometimes written from the pool rather than
// from its loop: by its job when handlers block (job.go), or by a writer
// when the socket was full (write.go). Either owns a dup of the socket
// while it runs, and the loop takes no lines from the client meanwhile.
// When the client half-closes then, gnet closes the connection on the
// EOF; the job or writer is then handed the complete lines gnet still
// held (detach), answers them too and closes the connection itself,
// gracefully. This file is what the two share: the state the loop and the
// job or writer hand work over through, the hand-over itself, and how a
// job or writer ends.

// pooled is what a connection shares with its job or writer. Guarded by
// mu.
type pooled struct {
	mu       sync.Mutex
	running  bool                       // a job or writer owns the dup and takes what is handed over
	detached bool                       // gnet closed the connection: the job or writer finishes and closes it
	more     *bytebufferpool.ByteBuffer // handed over to it: lines for a job, replies for a writer
	failed   bool                       // a reply could not be written
}

// start records that a job or writer is about to run, with more to do
// after whatever it was given (nil: nothing).
func (p *pooled) start(more *bytebufferpool.ByteBuffer, detached bool) {
	p.mu.Lock()
	p.running, p.detached, p.more, p.failed = true, detached, more, false
	p.mu.Unlock()
}

// next is how a job or writer takes what was handed over to it. When
// nothing is, the run is over: running is cleared, ok recorded, and more
// is nil. detached says whether the connection is the job's or writer's
// to close.
func (p *pooled) next(ok bool) (more *bytebufferpool.ByteBuffer, detached bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	more, p.more = p.more, nil
	if more == nil {
		p.running, p.failed = false, !ok
	}
	return more, p.detached
}

// isDetached reports whether gnet has let go of the connection.
func (p *pooled) isDetached() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.detached
}

// hasFailed reports whether the last run could not write a reply.
func (p *pooled) hasFailed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// dupConn makes a net.Conn of a dup of the socket a job or writer owns.
func dupConn(fd int) (net.Conn, bool) {
	f := os.NewFile(uintptr(fd), "")
	conn, err := net.FileConn(f)
	f.Close()
	return conn, err == nil
}

// detach is OnClose's part for a connection whose job or writer is in the
// pool when the client half-closes: the complete lines gnet still holds
// go to the job or writer, which answers them too, then closes the
// connection. When it has finished already (and the loop has not taken
// the connection back yet), a new one is started for them. It returns
// false when nothing is left to answer and gnet may close the connection
// as usual.
func (ss *streamSide) detach(c gnet.Conn, st *connState) bool {
	tail := ss.heldLines(c, st)
	p := &st.pooled
	p.mu.Lock()
	if p.running {
		if p.more == nil {
			p.more = tail
		} else {
			p.more.B = append(p.more.B, tail.B...)
			bufs.Put(tail)
		}
		p.detached = true
		p.mu.Unlock()
		if st.busy {
			st.handedOff = true // a detached job never runs jobDone
		}
		return true
	}
	p.mu.Unlock()
	if len(tail.B) == 0 {
		bufs.Put(tail)
		return false
	}
	fd, err := c.Dup()
	if err != nil {
		bufs.Put(tail)
		return false
	}
	var j job = &writer{st: st, fd: fd}
	if st.busy {
		// The job that ran is over, but its jobDone has not run: it must
		// leave the connection alone.
		bufs.Put(st.job)
		st.job, st.handedOff = nil, true
		j = &blockJob{st: st, fd: fd}
	}
	p.start(tail, true)
	if !ss.s.pool.submit(j) {
		unix.Close(fd)
		return false
	}
	return true
}

// heldLines takes the complete lines gnet still holds for c, its partial
// line first, within a draining connection's budget, and returns them as
// the loop would hand them over: the lines themselves for a job, their
// replies for a writer (appendLine, which pays --work here, on the loop,
// as serve does). A partial last line is dropped, never answered. The
// input it takes is counted in BytesIn, and, for a writer, the replies in
// Requests and BytesOut, as serve counts what it sends. After a line over
// max-line (stopAfter) nothing is taken.
func (ss *streamSide) heldLines(c gnet.Conn, st *connState) *bytebufferpool.ByteBuffer {
	s := ss.s
	tail := bufs.Get()
	if st.stopAfter {
		return tail
	}
	data, _ := c.Peek(-1)
	if st.draining {
		data = data[:min(len(data), st.budget)]
	}
	req := data
	if st.partial != nil {
		req = append(append([]byte(nil), st.partial.B...), data...)
	}
	lines, taken := 0, 0
	for {
		n, err := protocol.LineLen(req[taken:], s.maxLine)
		if err != nil || n == 0 {
			break
		}
		ss.appendLine(tail, req[taken:taken+n])
		taken += n
		lines++
	}
	if st.partial != nil && lines > 0 {
		taken -= len(st.partial.B) // counted when it was taken
	}
	s.ctr.BytesIn.Add(uint64(taken))
	if !s.blocks {
		s.ctr.Requests.Add(uint64(lines))
		s.ctr.BytesOut.Add(uint64(len(tail.B)))
	}
	return tail
}

// finish ends a job's or writer's run: it closes its dup of the socket,
// gracefully (lingerConn) when the connection is its own (detached) and
// every reply went out; then it accounts for a connection it closed, or
// hands the connection back to its loop, which runs back.
func (st *connState) finish(conn net.Conn, ok, detached bool, back gnet.Runnable) {
	s := st.side.s
	switch {
	case conn == nil:
	case detached && ok:
		lingerConn(conn)
	default:
		conn.Close()
	}
	if detached {
		if st.job != nil {
			bufs.Put(st.job)
			st.job = nil
		}
		st.side.closed(st)
		return
	}
	st.heldOut.Store(0)
	s.stopMu.RLock()
	if !s.stopped {
		st.c.EventLoop().Execute(context.Background(), back)
	}
	s.stopMu.RUnlock()
}

// takeBack runs on the loop once a job or writer is done with a
// connection gnet still has: it closes when a reply could not be written,
// lingers when it was to (a line over max-line, shutdown), and otherwise
// takes the lines that arrived meanwhile.
func (ss *streamSide) takeBack(st *connState) {
	switch {
	case st.pooled.hasFailed():
		st.loop.el.Close(st.c)
	case st.stopAfter:
		ss.startLinger(st.c, st)
	default:
		ss.touch(st)
		if ss.serve(st.c, st) {
			st.loop.el.Close(st.c)
		}
	}
}

// closed accounts for a connection a job or writer closed after gnet had
// let go of it.
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
