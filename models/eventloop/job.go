package eventloop

import (
	"bytes"
	"context"
	"net"

	"github.com/panjf2000/gnet/v2"
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
// meanwhile; until then they wait in gnet's inbound buffer. If gnet closes
// the connection on an EOF meanwhile, the job answers the lines it still
// held too, and closes it (handover.go).

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
	st.pooled.start(nil, false)
	if !ss.s.pool.submit(&blockJob{st: st, fd: fd}) {
		unix.Close(fd)
		st.busy = false
		bufs.Put(st.job)
		st.job = nil
		return false
	}
	return true
}

// blockJob answers a batch of lines of one connection: st.job, then what
// is handed over to it once the connection is detached.
type blockJob struct {
	st *connState
	fd int // a dup of the socket, owned by the job
}

func (j *blockJob) run() {
	st := j.st
	conn, ok := dupConn(j.fd)
	if ok && st.job != nil {
		ok = j.answer(conn, st.job.B)
	}
	for {
		more, detached := st.pooled.next(ok)
		if more == nil {
			if !ok {
				st.countFailure(&st.side.s.ctr.WriteErrors)
			}
			st.finish(conn, ok, detached, st.jobDoneFn)
			return
		}
		if ok {
			ok = j.answer(conn, more.B)
		}
		bufs.Put(more)
	}
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
		if !s.writeAll(st, conn, line, st.gone.Load) {
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
	st.side.takeBack(st)
	return nil
}
