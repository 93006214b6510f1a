package eventloop

import (
	"bytes"
	"context"
	"net"
	"os"
	"sync"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"
	"golang.org/x/sys/unix"

	"github.com/sockbench/sockbench/protocol"
)

// Blocking handlers (Config.Cost.Block) run in the pool, one job per
// connection at a time, holding the lines the loop had complete when it
// dispatched the job. The job writes each reply as soon as its handler
// returns, itself, on a dup of the socket through Go's poller, rather than
// with gnet's AsyncWrite: AsyncWrite leaves what a full socket does not
// take in gnet's outbound buffer, which gnet drops when the client
// half-closes (gnet closes a connection on EOF and flushes only until
// EAGAIN), and a client that pipelines, half-closes and only then reads
// would lose replies (TestSlowReader). Writing from the job also keeps the
// order trivially: one writer per connection at a time. When the job is
// done, the loop (jobDone, through Execute) takes the lines that arrived
// meanwhile; until then they wait in gnet's inbound buffer.

// jobSync is what a connection's job shares with its loop. Guarded by mu.
type jobSync struct {
	mu       sync.Mutex
	runDone  bool                       // the job will take no more lines
	detached bool                       // gnet closed the connection: the job finishes and closes it
	tail     *bytebufferpool.ByteBuffer // detached: lines gnet still held
	failed   bool                       // a reply could not be written
}

// reset prepares for a new job; the loop calls it when no job runs.
func (js *jobSync) reset(detached bool) {
	js.mu.Lock()
	js.runDone, js.detached, js.tail, js.failed = false, detached, nil, false
	js.mu.Unlock()
}

// dispatch hands st.job to the pool; the loop calls it with st.job set.
// It returns false when the connection cannot be served and must close.
func (ss *streamSide) dispatch(c gnet.Conn, st *connState) bool {
	fd, err := c.Dup()
	if err != nil {
		bufs.Put(st.job)
		st.job = nil
		st.countFailure(&ss.s.ctr.WriteErrors)
		ss.s.logs.Warn(ss.s.log, "no descriptor for a blocking handler's replies; closing", "err", err)
		return false
	}
	st.busy = true
	st.js.reset(false)
	if !ss.s.pool.submit(&blockJob{st: st, fd: fd}) {
		unix.Close(fd)
		st.busy = false
		bufs.Put(st.job)
		st.job = nil
		return false
	}
	return true
}

// blockJob answers a batch of lines of one connection.
type blockJob struct {
	st *connState
	fd int // a dup of the socket, owned by the job
}

func (j *blockJob) run() {
	st := j.st
	s := st.side.s
	js := &st.js
	f := os.NewFile(uintptr(j.fd), "")
	conn, err := net.FileConn(f)
	f.Close()
	ok := err == nil
	if ok && st.job != nil {
		ok = j.answer(conn, st.job.B)
	}
	js.mu.Lock()
	js.runDone = true
	for js.detached && js.tail != nil {
		tail := js.tail
		js.tail = nil
		js.mu.Unlock()
		if ok {
			ok = j.answer(conn, tail.B)
		}
		bufs.Put(tail)
		js.mu.Lock()
	}
	detached := js.detached
	js.failed = !ok
	js.mu.Unlock()
	if !ok {
		st.countFailure(&s.ctr.WriteErrors)
	}
	switch {
	case conn == nil:
	case detached && ok:
		lingerConn(conn)
	default:
		conn.Close()
	}
	if detached {
		bufs.Put(st.job)
		st.job = nil
		st.side.closed(st)
		return
	}
	st.heldOut.Store(0)
	s.stopMu.RLock()
	if !s.stopped {
		st.c.EventLoop().Execute(context.Background(), st.jobDoneFn)
	}
	s.stopMu.RUnlock()
}

// answer pays the cost of each line of b, transforms it in place and
// writes it. It returns false when a write failed or the client left.
func (j *blockJob) answer(conn net.Conn, b []byte) bool {
	st := j.st
	s := st.side.s
	for len(b) > 0 {
		n := bytes.IndexByte(b, protocol.Newline) + 1
		line := b[:n]
		b = b[n:]
		if st.gone.Load() {
			return false
		}
		s.cfg.Cost.Pay(s.taskCtx)
		s.cfg.Mode.Apply(line)
		if !s.writeAll(conn, line, st.gone.Load) {
			return false
		}
		s.ctr.Requests.Add(1)
		s.ctr.BytesOut.Add(uint64(n))
	}
	return true
}

// jobDone runs on the loop after a job that was not detached: the
// connection takes the lines that arrived meanwhile.
func (st *connState) jobDone(context.Context) error {
	if st.handedOff {
		return nil
	}
	bufs.Put(st.job)
	st.job, st.busy = nil, false
	if st.gone.Load() {
		return nil
	}
	ss := st.side
	switch {
	case st.js.failed:
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

// detach is OnClose's part for a connection whose job is in the pool when
// the client half-closes: gnet closes the connection on the EOF, but the
// job has its own dup of the socket, so it gets the complete lines gnet
// still held and answers them too before closing. It returns false when
// nothing is left to answer and the connection may close as usual.
func (st *connState) detach(c gnet.Conn) bool {
	s := st.side.s
	tail := bufs.Get()
	if !st.stopAfter {
		data, _ := c.Peek(-1)
		if st.draining {
			data = data[:min(len(data), st.budget)]
		}
		if st.partial != nil {
			tail.B = append(tail.B, st.partial.B...)
		}
		tail.B = append(tail.B, data...)
		end := 0
		for {
			n, err := protocol.LineLen(tail.B[end:], s.maxLine)
			if err != nil || n == 0 {
				break
			}
			end += n
		}
		tail.B = tail.B[:end]
		if st.partial != nil && end > 0 {
			end -= len(st.partial.B) // counted when it was taken
		}
		s.ctr.BytesIn.Add(uint64(end))
	}
	js := &st.js
	js.mu.Lock()
	if !js.runDone {
		js.detached, js.tail = true, tail
		js.mu.Unlock()
		return true
	}
	js.mu.Unlock()
	// The job is over but jobDone has not run: a new job for the tail.
	if len(tail.B) == 0 {
		bufs.Put(tail)
		return false
	}
	fd, err := c.Dup()
	if err != nil {
		bufs.Put(tail)
		return false
	}
	bufs.Put(st.job)
	st.job = tail
	st.handedOff = true // the old job's jobDone must leave st.job alone
	st.js.reset(true)
	if !s.pool.submit(&blockJob{st: st, fd: fd}) {
		unix.Close(fd)
		return false
	}
	return true
}
