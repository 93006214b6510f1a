package eventloop

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"
	"golang.org/x/sys/unix"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/protocol"
)

// streamSide is the tcp/unix half of a server.
type streamSide struct {
	s          *server
	ln         net.Listener
	sf         *models.SocketFile
	cli        *gnet.Client
	stopAccept chan struct{}
	acceptDone chan struct{}
	drained    chan struct{} // closed once draining and no connection is left
	drainOnce  sync.Once

	loopsMu  sync.Mutex
	loops    map[gnet.EventLoop]*loopState
	loopList []*loopState

	// With Config.MaxBuffered only: every open connection, for shed.
	regMu sync.Mutex
	reg   map[*connState]struct{}
}

// loopState is what one event loop knows about its connections. Only that
// loop touches it (sweeps and drains run there through Execute).
type loopState struct {
	el      gnet.EventLoop
	active  models.List[*connState] // open connections, least recently active first (connState.link)
	closing models.List[*connState] // flushing or lingering, in order of deadline (connState.link)
	lines   models.List[*connState] // connections holding a partial line, oldest line first (connState.lineLink)
	sweep   gnet.Runnable
	drain   gnet.Runnable
	out     bytebufferpool.ByteBuffer // the replies of one read, reused by every connection of the loop
	conns   atomic.Int32              // connections on the loop; an empty loop is not woken by ticks
}

// Connection phases.
const (
	phaseOpen      = iota
	phaseFlushing  // closing: waiting for gnet to write what it buffered
	phaseLingering // closing: FIN sent, discarding what still comes
)

// connState is a connection's context. Fields without a comment are owned
// by the connection's loop.
type connState struct {
	side *streamSide
	c    gnet.Conn
	loop *loopState

	link      models.Link[*connState] // on loop.active or loop.closing
	last      int64                   // time of the last read (see touch)
	deadline  int64                   // closing: when to give up and close
	phase     int
	discarded int

	partial   *bytebufferpool.ByteBuffer // start of a line not yet complete
	lineStart int64                      // when partial began (preciseNow), if on loop.lines
	lineLink  models.Link[*connState]    // on loop.lines
	busy      bool                       // a job is in the pool (job.go)
	stalled   bool                       // the socket was full: a writer is in the pool (write.go)
	pooled    pooled                     // shared with that job or writer (handover.go)
	resumeFn  gnet.Runnable              // st.resume, after a writer
	job       *bytebufferpool.ByteBuffer // the lines of that job
	stopAfter bool                       // linger once the job is done (line too long)
	draining  bool                       // shutdown: answer budget more bytes, then linger
	budget    int

	gone      atomic.Bool   // closed, and not detached: read by the job or writer
	failed    atomic.Bool   // the failure that ends the connection is counted (countFailure)
	jobDoneFn gnet.Runnable // st.jobDone, after a job
	handedOff bool          // gnet closed c and a detached job finishes it

	// Config.MaxBuffered only. hold is set on the loop (account);
	// heldOut is what a job or writer holds, set when it is handed over
	// and cleared by the job or writer when it is done.
	hold    models.Hold
	heldOut atomic.Int64
}

// bufs holds the buffers of partial lines, jobs and replies waiting for a
// full socket. It is the model's own pool, not bytebufferpool's default:
// that one is shared with whatever else runs in the process, and it stops
// keeping buffers larger than the sizes it has mostly seen.
var bufs bytebufferpool.Pool

// rejected marks a connection closed in OnOpen for max-conns.
var rejected = &connState{}

func (s *server) startStream() error {
	ln, sf, err := models.ListenStream(&s.cfg)
	if err != nil {
		return err
	}
	ss := &streamSide{
		s:          s,
		ln:         ln,
		sf:         sf,
		stopAccept: make(chan struct{}),
		acceptDone: make(chan struct{}),
		drained:    make(chan struct{}),
		loops:      map[gnet.EventLoop]*loopState{},
	}
	if s.bufs != nil {
		ss.reg = map[*connState]struct{}{}
	}
	cli, err := gnet.NewClient(&streamHandler{ss: ss}, append(s.gnetOptions(),
		gnet.WithReadBufferCap(64<<10), gnet.WithLoadBalancing(gnet.LeastConnections))...)
	if err == nil {
		err = cli.Start()
	}
	if err != nil {
		ln.Close()
		sf.Remove()
		return errors.Join(errors.New("eventloop: starting the event loops"), err)
	}
	ss.cli = cli
	s.stream = ss
	s.addr = netAddrString(ln.Addr())
	go ss.acceptLoop()
	return nil
}

// acceptLoop accepts connections and hands each to an event loop. Accept
// errors (EMFILE when file descriptors run out) are counted and back off
// (models.Acceptor) instead of spinning.
func (ss *streamSide) acceptLoop() {
	defer close(ss.acceptDone)
	s := ss.s
	acc := models.Acceptor{Listener: ss.ln, Stop: ss.stopAccept, Failed: &s.ctr.AcceptErrors, Logs: &s.logs, Log: s.log}
	for {
		nc, err := acc.Accept()
		if err != nil {
			return // closed by Shutdown
		}
		// EnrollContext dups the descriptor, closes nc, and returns once
		// the loop has run OnOpen.
		if _, err := ss.cli.EnrollContext(nc, nil); err != nil {
			// Out of descriptors, the accept took the last one and
			// EnrollContext's dup fails: one of these per connection
			// refused, tens of thousands a second in a flood.
			s.ctr.AcceptErrors.Add(1)
			s.logs.Warn(s.log, "could not hand a connection to an event loop", "err", err)
		}
	}
}

// loopFor returns the state of the loop el, creating it on first use.
func (ss *streamSide) loopFor(el gnet.EventLoop) *loopState {
	ss.loopsMu.Lock()
	defer ss.loopsMu.Unlock()
	ls := ss.loops[el]
	if ls == nil {
		ls = &loopState{el: el}
		ls.sweep = gnet.RunnableFunc(func(context.Context) error {
			ss.sweep(ls, ss.s.now())
			return nil
		})
		ls.drain = gnet.RunnableFunc(func(context.Context) error {
			ss.drainLoop(ls)
			return nil
		})
		ss.loops[el] = ls
		ss.loopList = append(ss.loopList, ls)
	}
	return ls
}

func (ss *streamSide) loopSnapshot() []*loopState {
	ss.loopsMu.Lock()
	defer ss.loopsMu.Unlock()
	return append([]*loopState(nil), ss.loopList...)
}

// streamHandler is the gnet.EventHandler of the stream loops.
type streamHandler struct {
	gnet.BuiltinEventEngine
	ss *streamSide
}

func (h *streamHandler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	ss := h.ss
	s := ss.s
	if !s.ctr.Admit(s.cfg.MaxConns) {
		c.SetContext(rejected)
		return nil, gnet.Close
	}
	s.ctr.Accepted.Add(1)
	st := &connState{side: ss, c: c, loop: ss.loopFor(c.EventLoop()), last: s.preciseNow()}
	if s.blocks {
		st.jobDoneFn = gnet.RunnableFunc(st.jobDone)
	} else {
		st.resumeFn = gnet.RunnableFunc(st.resume)
	}
	st.link.Elem, st.lineLink.Elem = st, st
	st.loop.active.PushBack(&st.link)
	st.loop.conns.Add(1)
	if ss.reg != nil {
		ss.regMu.Lock()
		ss.reg[st] = struct{}{}
		ss.regMu.Unlock()
	}
	c.SetContext(st)
	return nil, gnet.None
}

func (h *streamHandler) OnTraffic(c gnet.Conn) gnet.Action {
	st := c.Context().(*connState)
	s := h.ss.s
	switch {
	case st.phase != phaseOpen:
		n := c.InboundBuffered()
		c.Discard(n)
		if st.discarded += n; st.discarded > lingerMax {
			return gnet.Close
		}
		return gnet.None
	case st.waiting():
		h.ss.touch(st)
		if h.ss.account(st) {
			return gnet.Close
		}
		if c.InboundBuffered() > s.backlog {
			st.countFailure(&s.ctr.WriteErrors)
			s.logs.Warn(s.log, "client is too far ahead of its replies; closing", "remote", c.RemoteAddr().String(), "buffered", c.InboundBuffered())
			return gnet.Close
		}
		return gnet.None
	}
	h.ss.touch(st)
	if h.ss.serve(c, st) {
		return gnet.Close
	}
	return gnet.None
}

func (h *streamHandler) OnClose(c gnet.Conn, err error) gnet.Action {
	st, _ := c.Context().(*connState)
	if st == nil || st == rejected {
		return gnet.None
	}
	ss := h.ss
	s := ss.s
	st.link.Remove()
	st.lineLink.Remove()
	st.loop.conns.Add(-1)
	if ss.reg != nil {
		ss.regMu.Lock()
		delete(ss.reg, st)
		ss.regMu.Unlock()
	}
	detached := st.phase == phaseOpen && errors.Is(err, io.EOF) && st.waiting() && ss.detach(c, st)
	if !detached {
		st.gone.Store(true)
	}
	if st.partial != nil {
		bufs.Put(st.partial)
		st.partial = nil
	}
	if detached {
		return gnet.None // the finisher owns the connection, its Active count and its hold now
	}
	if s.bufs != nil {
		s.bufs.Release(&st.hold)
	}
	if err != nil && st.phase == phaseOpen && !errors.Is(err, io.EOF) {
		var se *os.SyscallError
		if errors.As(err, &se) && (se.Syscall == "write" || se.Syscall == "writev") {
			st.countFailure(&s.ctr.WriteErrors)
		} else {
			st.countFailure(&s.ctr.ReadErrors)
		}
	}
	if s.ctr.Active.Add(-1) == 0 && s.draining.Load() {
		ss.signalDrained()
	}
	return gnet.None
}

func (h *streamHandler) OnTick() (time.Duration, gnet.Action) {
	h.ss.s.ticked()
	for _, ls := range h.ss.loopSnapshot() {
		if ls.conns.Load() > 0 {
			ls.el.Execute(context.Background(), ls.sweep)
		}
	}
	return h.ss.s.tick, gnet.None
}

// countFailure counts, in ctr, the failure that ends st's connection, once:
// the loop and the connection's job or writer may both see it (the loop
// closes a client too far ahead, and the job then cannot write; a reset
// fails the loop's read and the job's write), and it is one failure, as
// in the other models.
func (st *connState) countFailure(ctr *atomic.Uint64) {
	if st.failed.CompareAndSwap(false, true) {
		ctr.Add(1)
	}
}

// waiting reports whether st takes no lines until something in the pool
// is done with it.
func (st *connState) waiting() bool { return st.busy || st.stalled }

// touch records activity on st for the idle timeout. It reads the clock
// rather than the tick's coarse one: that lags by up to a tick (more on a
// loaded machine), and a sweep would then close a connection idle for
// less than the timeout. The sweep's own time is the coarse clock, which
// only errs late.
func (ss *streamSide) touch(st *connState) {
	if ss.s.cfg.IdleTimeout <= 0 {
		return
	}
	st.last = ss.s.preciseNow()
	st.loop.active.MoveToBack(&st.link)
}

// serve takes everything gnet holds for c and answers every complete line
// in it, or hands them to a job. A job takes no more than MaxLine bytes of
// lines (one line at least): the rest stays in gnet's buffer for the next
// job, so the model's own copy of a connection's input stays within a
// line's bound however far ahead the client is. It returns true when c
// must be closed at once.
func (ss *streamSide) serve(c gnet.Conn, st *connState) (closeNow bool) {
	s := ss.s
	data, _ := c.Peek(-1)
	total := len(data)
	if st.draining {
		data = data[:min(len(data), st.budget)]
	}
	avail := len(data)
	// The replies of a read are built in the loop's own buffer and written
	// before serve returns; the lines of a job need a buffer of their own.
	batch := &st.loop.out
	if s.blocks {
		batch = bufs.Get()
	}
	batch.Reset()
	lines, bytesIn := 0, 0
	tooLong := false
	if p := st.partial; p != nil {
		// Complete the line an earlier read started: copy only up to its
		// '\n', which must come within MaxLine of the line's start.
		look := data[:min(len(data), s.maxLine-len(p.B))]
		if i := bytes.IndexByte(look, protocol.Newline); i >= 0 {
			p.B = append(p.B, data[:i+1]...)
			ss.appendLine(batch, p.B)
			lines, bytesIn = 1, len(p.B)
			data = data[i+1:]
			bufs.Put(p)
			st.partial = nil
			st.lineLink.Remove()
		} else if len(p.B)+len(data) >= s.maxLine {
			tooLong = true
		} else {
			p.B = append(p.B, data...)
			data = data[len(data):]
		}
	}
	for !tooLong && len(data) > 0 {
		n, err := protocol.LineLen(data, s.maxLine)
		if err != nil {
			tooLong = true
			break
		}
		if n == 0 {
			st.partial = bufs.Get()
			st.partial.B = append(st.partial.B[:0], data...)
			data = data[len(data):]
			if s.lineTO > 0 {
				st.lineStart = s.preciseNow()
				st.loop.lines.PushBack(&st.lineLink)
			}
			break
		}
		if s.blocks && lines > 0 && len(batch.B)+n > s.maxLine {
			break // the next job's
		}
		ss.appendLine(batch, data[:n])
		lines++
		bytesIn += n
		data = data[n:]
	}
	consumed := avail - len(data)
	if st.draining {
		st.budget -= consumed
	}
	// Counted as taken, complete lines and partial ones alike, before any
	// job answers them: Stats.BytesIn is what the server has read.
	s.ctr.BytesIn.Add(uint64(consumed))
	if len(data) == 0 || tooLong {
		c.Discard(total) // past a draining connection's budget: dropped
	} else {
		c.Discard(consumed) // never 0 here: a job took a line at least
	}

	switch {
	case lines == 0:
		if s.blocks {
			bufs.Put(batch)
		}
	case s.blocks:
		st.job = batch
		if s.bufs != nil {
			st.heldOut.Store(int64(len(batch.B)))
		}
		if !ss.dispatch(c, st) {
			return true
		}
	default:
		if ss.send(c, st, batch.B) {
			return true
		}
		s.ctr.Requests.Add(uint64(lines))
		s.ctr.BytesOut.Add(uint64(bytesIn))
	}

	if tooLong {
		s.ctr.LineTooLong.Add(1)
		s.logs.Warn(s.log, "request line longer than max-line; closing the connection",
			"remote", c.RemoteAddr().String(), "max_line", s.maxLine)
		if st.waiting() {
			st.stopAfter = true
		} else {
			ss.startLinger(c, st)
		}
		return false
	}
	if st.draining && !st.waiting() {
		ss.startLinger(c, st)
		return false
	}
	if c.OutboundBuffered() > s.backlog {
		st.countFailure(&s.ctr.WriteErrors)
		s.logs.Warn(s.log, "client does not read its replies; closing", "remote", c.RemoteAddr().String(), "buffered", c.OutboundBuffered())
		return true
	}
	return ss.account(st)
}

// account reports what st holds to the server's Buffers (a no-op without
// Config.MaxBuffered) and, when that takes the server past the bound,
// sheds; it returns true when st itself must close. It runs on st's loop:
// gnet's buffer is read there only.
func (ss *streamSide) account(st *connState) bool {
	s := ss.s
	if s.bufs == nil || st.phase != phaseOpen {
		return false
	}
	n := int(st.heldOut.Load())
	if st.partial != nil {
		n += len(st.partial.B)
	}
	if st.waiting() {
		n += st.c.InboundBuffered()
	}
	return s.bufs.Set(&st.hold, n) && ss.shed(st)
}

// shed closes the connections holding the most, on whichever loop, until
// the server is within Config.MaxBuffered again, counting each in
// OverBuffered, and reports whether cur (on the calling loop) was one;
// the others are closed on their own loops. Each victim's share is given
// back at once, so the next connection to grow sees the server as it will
// be.
func (ss *streamSide) shed(cur *connState) (self bool) {
	s := ss.s
	largest := func() (*connState, bool) {
		ss.regMu.Lock()
		defer ss.regMu.Unlock()
		victim, ok := models.Largest(maps.Keys(ss.reg))
		if ok {
			delete(ss.reg, victim)
		}
		return victim, ok
	}
	closeIt := func(victim *connState) {
		victim.loop.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			if !victim.gone.Load() {
				victim.loop.el.Close(victim.c)
			}
			return nil
		}))
	}
	return models.Shed(s.bufs, cur, largest, closeIt, &s.ctr, &s.logs, s.log)
}

// Hold and Remote make a connState a models.Holder.
func (st *connState) Hold() *models.Hold { return &st.hold }
func (st *connState) Remote() string     { return st.c.RemoteAddr().String() }

// appendLine adds the reply to line to batch, or line itself when the
// pool will answer it.
func (ss *streamSide) appendLine(batch *bytebufferpool.ByteBuffer, line []byte) {
	s := ss.s
	if s.blocks {
		batch.B = append(batch.B, line...)
		return
	}
	protocol.Burn(s.cfg.Cost.Work)
	batch.B = s.cfg.Mode.AppendReply(batch.B, line)
}

// startLinger begins closing c without losing replies: a server that
// closes a socket with unread input makes the kernel send RST, which can
// destroy replies the client has not read yet. So: let gnet flush what it
// buffered, send FIN, discard what the client still sends until it closes
// or lingerTime passes, then close (see sweep).
func (ss *streamSide) startLinger(c gnet.Conn, st *connState) {
	if st.phase != phaseOpen {
		return
	}
	st.loop.closing.PushBack(&st.link)
	st.deadline = ss.s.now() + int64(lingerTime)
	if st.partial != nil {
		bufs.Put(st.partial)
		st.partial = nil
	}
	st.lineLink.Remove()
	if c.OutboundBuffered() > 0 {
		st.phase = phaseFlushing
		return
	}
	ss.shutdownWrite(c, st)
}

func (ss *streamSide) shutdownWrite(c gnet.Conn, st *connState) {
	st.phase = phaseLingering
	if err := unix.Shutdown(c.Fd(), unix.SHUT_WR); err != nil {
		st.deadline = 0 // the peer is gone: close at the next sweep
	}
}

// sweep runs on the loop on every tick: it closes idle connections and
// moves closing ones along.
func (ss *streamSide) sweep(ls *loopState, now int64) {
	s := ss.s
	if idle := int64(s.cfg.IdleTimeout); idle > 0 {
		for x := ls.active.Front(); x != nil && now-x.Elem.last >= idle; {
			st, next := x.Elem, x.Next()
			if st.waiting() {
				// Waiting for its own handler or for the client to
				// read is not idleness.
				st.last = now
				ls.active.MoveToBack(x)
			} else {
				s.ctr.IdleTimeouts.Add(1)
				ss.startLinger(st.c, st)
			}
			x = next
		}
	}
	if lt := s.lineTO; lt > 0 {
		for x := ls.lines.Front(); x != nil && now-x.Elem.lineStart >= lt; {
			st, next := x.Elem, x.Next()
			x.Remove()
			s.ctr.LineTimeouts.Add(1)
			s.logs.Warn(s.log, "request line not complete within line-timeout; closing the connection",
				"remote", st.c.RemoteAddr().String(), "line_timeout", time.Duration(lt))
			if st.waiting() {
				st.stopAfter = true // once its job or writer is done
			} else {
				ss.startLinger(st.c, st)
			}
			x = next
		}
	}
	for x := ls.closing.Front(); x != nil; {
		st, next := x.Elem, x.Next()
		if st.phase == phaseFlushing && st.c.OutboundBuffered() == 0 {
			ss.shutdownWrite(st.c, st)
		}
		if now >= st.deadline {
			ls.el.Close(st.c)
		}
		x = next
	}
}

// drainLoop runs on the loop when shutdown starts: connections with
// nothing in flight start closing; busy ones answer the bytes they have
// already received, then close.
func (ss *streamSide) drainLoop(ls *loopState) {
	for x := ls.active.Front(); x != nil; {
		st, next := x.Elem, x.Next()
		st.draining = true
		if st.waiting() {
			st.budget = st.c.InboundBuffered()
		} else {
			ss.startLinger(st.c, st)
		}
		x = next
	}
}

func (ss *streamSide) signalDrained() {
	ss.drainOnce.Do(func() { close(ss.drained) })
}

// shutdown is Server.Shutdown for streams.
func (ss *streamSide) shutdown(ctx context.Context) error {
	s := ss.s
	ss.ln.Close()
	close(ss.stopAccept)
	<-ss.acceptDone // every accepted connection has had its OnOpen
	for _, ls := range ss.loopSnapshot() {
		if err := ls.el.Execute(ctx, ls.drain); err != nil {
			s.log.Warn("could not start draining a loop", "err", err)
		}
	}
	if s.ctr.Active.Load() == 0 {
		ss.signalDrained()
	}
	var err error
	select {
	case <-ss.drained:
		err = s.pool.wait(ctx)
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		s.log.Warn("shutdown grace ran out; closing what is left", "active", s.ctr.Active.Load())
	}
	s.stop()
	if stopErr := ss.cli.Stop(); stopErr != nil {
		s.log.Warn("stopping the event loops", "err", stopErr)
	}
	s.pool.close()
	ss.sf.Remove()
	return err
}
