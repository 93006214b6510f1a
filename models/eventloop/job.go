package eventloop

import (
	"bytes"
	"net"
	"os"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/sockbench/sockbench/protocol"
)

// finishWriteTimeout bounds each write of a detached connection (see detach).
const finishWriteTimeout = 5 * time.Second

// jobSync is what a connection's job shares with its loop and, after a
// half-close, with whoever finishes the job. Guarded by mu.
type jobSync struct {
	mu         sync.Mutex
	cond       sync.Cond
	out        net.Conn // detached: a dup of the socket, written directly
	issued     int      // replies handed to AsyncWrite
	acked      int      // AsyncWrite callbacks run
	failedFrom int      // index of the first reply whose callback failed, or -1
	runDone    bool     // run issues nothing more
	stopAt     int      // offset in the job of the first line run did not issue
	timedOut   bool
}

func newJobSync() *jobSync {
	js := &jobSync{failedFrom: -1}
	js.cond.L = &js.mu
	return js
}

// reset prepares for a new job; the loop calls it before submitting, when
// no goroutine uses js.
func (js *jobSync) reset() {
	js.issued, js.acked, js.failedFrom, js.runDone, js.stopAt, js.timedOut = 0, 0, -1, false, 0, false
}

// run is the job of a connection with blocking handlers: it pays the cost
// of each line in turn and sends the reply with AsyncWrite, transformed in
// place in the job buffer. The last reply's callback (onJobDone, on the
// loop) frees the buffer and takes the next lines. If the client
// half-closes meanwhile, the loop detaches the connection and run hands
// over to finish.
func (st *connState) run() {
	s := st.side.s
	js := st.js
	b := st.job.B
	for off := 0; off < len(b); {
		n := bytes.IndexByte(b[off:], protocol.Newline) + 1
		line := b[off : off+n]
		if st.gone.Load() {
			return // the client left; the buffer goes to the GC
		}
		s.cfg.Cost.Pay(s.taskCtx)
		s.cfg.Mode.Apply(line)
		last := off+n == len(b)
		js.mu.Lock()
		if js.out != nil {
			js.runDone, js.stopAt = true, off
			js.mu.Unlock()
			st.finish()
			return
		}
		cb := st.lineDone
		if last {
			cb = st.jobDone
			js.runDone, js.stopAt = true, len(b)
		}
		s.stopMu.RLock()
		ok := !s.stopped && st.c.AsyncWrite(line, cb) == nil
		s.stopMu.RUnlock()
		if !ok {
			js.runDone, js.stopAt = true, off
			js.mu.Unlock()
			return
		}
		js.issued++
		js.mu.Unlock()
		s.ctr.BytesIn.Add(uint64(n))
		s.ctr.BytesOut.Add(uint64(n))
		off += n
	}
}

// onLineDone runs on the loop once a reply was written (or buffered by
// gnet), or failed because the connection closed.
func (st *connState) onLineDone(_ gnet.Conn, err error) error {
	js := st.js
	js.mu.Lock()
	if err != nil && js.failedFrom < 0 {
		js.failedFrom = js.acked
	}
	js.acked++
	js.cond.Broadcast()
	js.mu.Unlock()
	if err == nil {
		st.side.s.ctr.Requests.Add(1)
	}
	return nil
}

// onJobDone runs on the loop after the job's last reply: the connection
// may take its next lines.
func (st *connState) onJobDone(c gnet.Conn, err error) error {
	st.onLineDone(c, err)
	if err != nil {
		js := st.js
		js.mu.Lock()
		detached := js.out != nil
		js.mu.Unlock()
		if !detached {
			bytebufferpool.Put(st.job)
			st.job = nil
		}
		return nil
	}
	bytebufferpool.Put(st.job)
	st.job, st.busy = nil, false
	if st.gone.Load() {
		return nil
	}
	ss := st.side
	if st.stopAfter {
		ss.startLinger(c, st)
		return nil
	}
	ss.touch(st)
	if ss.serve(c, st) {
		c.EventLoop().Close(c)
	}
	return nil
}

// detach keeps a half-closed connection alive while its job runs. gnet
// closes a connection as soon as a read returns EOF, which would drop the
// replies still in the pool; so OnClose calls detach, which dups the
// socket (gnet then closes only its own descriptor), takes the complete
// lines gnet still held, and leaves the rest to finish: it writes the
// replies on the dup through Go's poller, from the pool, then closes the
// way startLinger does. It returns false if the socket could not be kept.
func (st *connState) detach(c gnet.Conn) bool {
	s := st.side.s
	tail := bytebufferpool.Get()
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
	}
	fd, err := c.Dup()
	if err != nil {
		bytebufferpool.Put(tail)
		s.log.Warn("half-closed connection: could not keep it for its pending replies", "err", err)
		return false
	}
	f := os.NewFile(uintptr(fd), "")
	out, err := net.FileConn(f)
	f.Close()
	if err != nil {
		bytebufferpool.Put(tail)
		s.log.Warn("half-closed connection: could not keep it for its pending replies", "err", err)
		return false
	}
	st.tail = tail
	js := st.js
	js.mu.Lock()
	js.out = out
	runDone := js.runDone
	js.mu.Unlock()
	if runDone && !s.pool.submit(finisher{st}) {
		out.Close()
		return false
	}
	return true
}

// finisher runs finish from the pool when run had already issued its last
// reply at detach time.
type finisher struct{ st *connState }

func (f finisher) run() { f.st.finish() }

// finish completes a detached connection: it waits until every reply run
// issued has its AsyncWrite callback (they fail from the first one the loop
// had not written before closing), writes the failed ones and then the
// rest of the job and the tail directly, and closes.
func (st *connState) finish() {
	s := st.side.s
	js := st.js
	timer := time.AfterFunc(time.Second, func() {
		js.mu.Lock()
		js.timedOut = true
		js.cond.Broadcast()
		js.mu.Unlock()
	})
	js.mu.Lock()
	for !js.timedOut && js.acked < js.issued {
		js.cond.Wait()
	}
	timer.Stop()
	resendFrom := js.issued
	if js.failedFrom >= 0 {
		resendFrom = js.failedFrom
	}
	if js.timedOut {
		resendFrom = min(resendFrom, js.acked)
	}
	stopAt, out := js.stopAt, js.out
	js.mu.Unlock()

	b := st.job.B
	off := 0
	for i := 0; i < resendFrom; i++ {
		off += bytes.IndexByte(b[off:], protocol.Newline) + 1
	}
	ok := true
	write := func(p []byte, lines int) {
		if !ok || len(p) == 0 {
			return
		}
		out.SetWriteDeadline(time.Now().Add(finishWriteTimeout))
		if _, err := out.Write(p); err != nil {
			ok = false
			s.ctr.WriteErrors.Add(1)
			return
		}
		s.ctr.Requests.Add(uint64(lines))
	}
	// Replies already transformed, whose AsyncWrite failed.
	write(b[off:stopAt], bytes.Count(b[off:stopAt], []byte{protocol.Newline}))
	// Lines run did not get to, then the lines gnet still held.
	for _, rest := range [][]byte{b[stopAt:], st.tail.B} {
		for len(rest) > 0 && ok {
			n := bytes.IndexByte(rest, protocol.Newline) + 1
			line := rest[:n]
			rest = rest[n:]
			s.cfg.Cost.Pay(s.taskCtx)
			s.cfg.Mode.Apply(line)
			s.ctr.BytesIn.Add(uint64(n))
			s.ctr.BytesOut.Add(uint64(n))
			write(line, 1)
		}
	}
	lingerConn(out)
	bytebufferpool.Put(st.job)
	bytebufferpool.Put(st.tail)
	st.job, st.tail = nil, nil
	st.gone.Store(true)
	st.side.closed()
}

// lingerConn closes c without destroying replies the client has not read:
// FIN, then read and discard until the client closes or lingerTime passes.
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
