//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package bare

import (
	"bytes"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/protocol"
)

// Connection phases.
const (
	phaseOpen      = iota
	phaseLingering // FIN sent; what the client still sends is discarded
)

// conn is one stream connection. Only the loop touches it.
//
// Its memory is bounded by max-line and one read: partial holds the start
// of a line not yet complete (less than max-line bytes), out the replies
// the socket did not take (at most one read's worth, plus a line: a
// connection with output waiting is not read), and a job in the pool at
// most the lines of one read. With Config.MaxBuffered, hold is its share
// of the server's account (see account).
type conn struct {
	fd         int
	want       int // interest registered with the poller
	phase      uint8
	busy       bool // a job of its lines is in the pool
	closeAfter bool // linger once its job and output are done
	closed     bool
	partial    []byte
	out        []byte // replies waiting for the socket, from outOff on
	outOff     int
	job        *job
	last       int64 // the last read, for the idle timeout
	deadline   int64 // lingering: when to give up and close
	discarded  int
	lineStart  int64 // when its partial line began, while on loop.lines
	outSince   int64 // when its output last made progress, while on loop.outs

	hold models.Hold // Config.MaxBuffered only
	held int         // what hold was last told

	// link puts it on loop.open or loop.closing, lineLink on loop.lines,
	// outLink on loop.outs.
	link, lineLink, outLink models.Link[*conn]
}

func (c *conn) pending() bool { return c.outOff < len(c.out) }

// accept takes new connections. An accept error other than the ones that
// concern only the connection that failed (EMFILE, ENFILE, ENOBUFS) turns
// the listener off for a models.Backoff (5 ms doubling to 1 s): a
// level-triggered listener with a connection waiting would otherwise
// report it again at once, and the loop would spin.
func (l *loop) accept() {
	for range acceptBatch {
		fd, e := acceptConn(l.lfd)
		switch e {
		case 0:
		case unix.EAGAIN:
			return
		case unix.EINTR, unix.ECONNABORTED, unix.EPROTO:
			continue
		default:
			l.ctr.AcceptErrors.Add(1)
			d := l.backoff.Next()
			l.acceptAt = l.clock() + int64(d)
			l.p.mod(l.lfd, 0)
			l.logs.Warn(l.s.log, "accept failed; retrying", "err", e, "backoff", d)
			return
		}
		l.backoff.Reset()
		if !l.ctr.Admit(l.maxConn) {
			unix.Close(fd)
			continue
		}
		if l.tcp {
			unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		}
		if err := l.p.add(fd, wantRead); err != nil {
			l.ctr.Active.Add(-1)
			l.ctr.AcceptErrors.Add(1)
			l.logs.Warn(l.s.log, "could not watch a new connection; closed it", "err", err)
			unix.Close(fd)
			continue
		}
		c := &conn{fd: fd, want: wantRead}
		c.link.Elem, c.lineLink.Elem, c.outLink.Elem = c, c, c
		if l.idle > 0 {
			c.last = l.clock()
		}
		for fd >= len(l.conns) {
			l.conns = append(l.conns, make([]*conn, len(l.conns)+64)...)
		}
		l.conns[fd] = c
		l.open.PushBack(&c.link)
		l.nconns++
		l.ctr.Accepted.Add(1)
	}
}

// connEvent handles one readiness event of c.
func (l *loop) connEvent(c *conn, r, w, bad bool) {
	if (w || bad) && c.pending() {
		l.flush(c)
	}
	switch {
	case c.closed:
	case c.phase == phaseLingering:
		if r || bad {
			l.discard(c)
		}
	case c.want&wantRead != 0:
		if r || bad {
			l.readServe(c)
		}
	case bad && !c.pending():
		// Not reading (its job is in the pool) and the peer is gone: a
		// level-triggered error would be reported by every wait.
		l.fail(c, &l.ctr.ReadErrors, "connection lost while its requests were in the pool", 0)
	}
}

// readServe reads once from c and answers every complete line read.
//
// The common path is one read into the loop's shared buffer, the
// transform in place, and one write of the same bytes: a request costs
// two syscalls and a share of one wait, and allocates nothing. A partial
// line left from an earlier read is copied in front of the new bytes
// first (prefixMax), so the line it completes goes out in the same write.
func (l *loop) readServe(c *conn) {
	p := len(c.partial)
	long := p > prefixMax
	var (
		n int
		e unix.Errno
	)
	if long {
		l.growPartial(c)
		n, e = sysRead(c.fd, c.partial[p:cap(c.partial)])
	} else {
		n, e = sysRead(c.fd, l.buf[prefixMax:])
	}
	if n <= 0 {
		switch {
		case e == unix.EAGAIN || e == unix.EINTR:
		case e == 0:
			// End of stream: every line read is answered and nothing is
			// left unread, so closing sends a FIN, never a reset. A
			// partial last line was never a request.
			l.closeConn(c)
		default:
			l.fail(c, &l.ctr.ReadErrors, "read failed; closing the connection", e)
		}
		return
	}
	l.bytesIn += uint64(n)
	if l.idle > 0 {
		c.last = l.clock()
		l.open.MoveToBack(&c.link)
	}
	if long {
		l.serve(c, c.partial[:p+n], true)
	} else {
		start := prefixMax - p
		copy(l.buf[start:], c.partial)
		l.serve(c, l.buf[start:prefixMax+n], false)
	}
	if l.bufs != nil {
		l.account(c)
	}
}

// growPartial gives a long partial line room for another read, never past
// max-line (the line is too long before it would need more).
func (l *loop) growPartial(c *conn) {
	want := min(l.maxLine, len(c.partial)+readSize)
	if cap(c.partial) < want {
		nb := make([]byte, len(c.partial), want)
		copy(nb, c.partial)
		c.partial = nb
	}
}

// serve answers the complete lines at the start of region, which begins
// at a line's start, and keeps the rest as c's partial line. inPartial
// says region lies in c.partial itself.
func (l *loop) serve(c *conn, region []byte, inPartial bool) {
	last := bytes.LastIndexByte(region, '\n')
	if last < 0 {
		if len(region) >= l.maxLine {
			l.tooLong(c)
			return
		}
		l.keepPartial(c, region, inPartial, false)
		return
	}
	lines, tail := region[:last+1], region[last+1:]
	n, tooLong := 0, false
	if len(region) <= l.maxLine {
		// No line can be longer than max-line: just count them.
		n = bytes.Count(lines, newline)
	} else {
		for off := 0; off < len(lines); {
			i := bytes.IndexByte(lines[off:min(len(lines), off+l.maxLine)], '\n')
			if i < 0 {
				lines, tooLong = lines[:off], true
				break
			}
			off += i + 1
			n++
		}
		tooLong = tooLong || len(tail) >= l.maxLine
	}
	if n > 0 {
		if l.blocks {
			l.dispatch(c, lines)
		} else {
			if l.work > 0 {
				protocol.Burn(time.Duration(n) * l.work)
			}
			l.mode.Apply(lines)
			l.send(c, lines, n)
		}
		if c.closed {
			return
		}
	}
	if tooLong {
		l.tooLong(c)
		return
	}
	l.keepPartial(c, tail, inPartial, true)
}

var newline = []byte{'\n'}

// keepPartial stores tail, the start of a line not yet complete, as c's
// partial line. newLine says tail begins a line (the read held a '\n'
// before it); otherwise it continues the partial line c held. A line that
// begins goes to the back of loop.lines with its start time, for the line
// timeout; one that continues keeps its place.
func (l *loop) keepPartial(c *conn, tail []byte, inPartial, newLine bool) {
	switch {
	case len(tail) == 0:
		c.partial = c.partial[:0]
		if cap(c.partial) > keepBuf {
			c.partial = nil
		}
		if c.lineLink.Listed() {
			c.lineLink.Remove()
		}
		return
	case inPartial:
		// tail lies further on in the same buffer: move it to the front.
		c.partial = c.partial[:copy(c.partial[:cap(c.partial)], tail)]
	default:
		c.partial = append(c.partial[:0], tail...)
	}
	if l.lineTO > 0 && (newLine || !c.lineLink.Listed()) {
		c.lineStart = l.clock()
		l.lines.PushBack(&c.lineLink)
	}
}

// tooLong closes c for a line over max-line, after the replies to the
// lines before it.
func (l *loop) tooLong(c *conn) {
	l.ctr.LineTooLong.Add(1)
	l.logs.Warn(l.s.log, "request line longer than max-line; closing the connection", "max_line", l.maxLine)
	l.startLinger(c)
}

// send writes b, which holds n whole replies, to c; what the socket does
// not take waits in c.out, and c is not read until it is written (flush).
func (l *loop) send(c *conn, b []byte, n int) {
	if c.pending() {
		c.out = append(c.out, b...) // behind earlier replies
		return
	}
	w, e := sysWrite(c.fd, b)
	for e == unix.EINTR {
		w, e = sysWrite(c.fd, b)
	}
	if e != 0 && e != unix.EAGAIN {
		l.fail(c, &l.ctr.WriteErrors, "write failed; closing the connection", e)
		return
	}
	w = max(w, 0)
	l.bytesOut += uint64(w)
	if w == len(b) {
		l.requests += uint64(n)
		return
	}
	l.requests += uint64(bytes.Count(b[:w], newline))
	c.out, c.outOff = append(c.out[:0], b[w:]...), 0
	l.outStalled(c)
	l.update(c)
}

// outStalled puts c, whose output just made progress and still waits for
// the socket, at the back of loop.outs, so the write timeout counts from
// now.
func (l *loop) outStalled(c *conn) {
	if l.writeTO > 0 {
		c.outSince = l.clock()
		l.outs.PushBack(&c.outLink)
	}
}

// flush writes what waits in c.out; once it is all written, c is read
// again (or closes, if it was to).
func (l *loop) flush(c *conn) {
	b := c.out[c.outOff:]
	w, e := sysWrite(c.fd, b)
	for e == unix.EINTR {
		w, e = sysWrite(c.fd, b)
	}
	if e == unix.EAGAIN {
		return
	}
	if e != 0 {
		l.fail(c, &l.ctr.WriteErrors, "write failed; closing the connection", e)
		return
	}
	l.bytesOut += uint64(w)
	l.requests += uint64(bytes.Count(b[:w], newline))
	c.outOff += w
	if c.pending() {
		if w > 0 {
			l.outStalled(c)
		}
		if l.bufs != nil {
			l.account(c)
		}
		return
	}
	c.outLink.Remove()
	c.out, c.outOff = c.out[:0], 0
	if cap(c.out) > keepBuf {
		c.out = nil
	}
	if l.bufs != nil {
		l.account(c)
	}
	l.resume(c)
}

// resume runs when c's output or its job is done.
func (l *loop) resume(c *conn) {
	if c.closeAfter && !c.busy && !c.pending() {
		l.startLinger(c)
		return
	}
	l.update(c)
}

// update registers the interest c's state calls for: read while open and
// idle, write while output waits (and then not read: backpressure),
// nothing while a job of its lines is in the pool.
func (l *loop) update(c *conn) {
	want := wantRead
	switch {
	case c.phase == phaseLingering:
	case c.pending():
		want = wantWrite
	case c.busy || c.closeAfter:
		want = 0
	}
	if want != c.want {
		if err := l.p.mod(c.fd, want); err != nil {
			l.fail(c, &l.ctr.ReadErrors, "could not change what the connection waits for", 0)
			return
		}
		c.want = want
	}
}

// startLinger closes c without losing replies, once its job and output
// are done. Closing a socket that still has unread bytes in its receive
// buffer makes the kernel send a reset, which can destroy replies the
// client has not read yet. So: send FIN (shutdown SHUT_WR), read and
// discard whatever the client still sends until it closes, lingerMax
// bytes or lingerTime pass (see sweep), then close.
func (l *loop) startLinger(c *conn) {
	c.closeAfter = true
	c.partial = nil
	c.lineLink.Remove()
	if l.bufs != nil {
		l.account(c)
	}
	if c.busy || c.pending() {
		l.update(c)
		return
	}
	if c.phase == phaseLingering || c.closed {
		return
	}
	c.phase = phaseLingering
	l.closing.PushBack(&c.link)
	c.deadline = l.clock() + lingerTime
	if unix.Shutdown(c.fd, unix.SHUT_WR) != nil {
		l.closeConn(c) // the peer is gone already
		return
	}
	l.update(c)
}

// discard reads and drops what a lingering connection's client sends.
func (l *loop) discard(c *conn) {
	n, e := sysRead(c.fd, l.buf)
	if e == unix.EAGAIN || e == unix.EINTR {
		return
	}
	if c.discarded += max(n, 0); n <= 0 || c.discarded > lingerMax {
		l.closeConn(c)
	}
}

// fail counts the failure that ends c, logs it (rate-limited) and closes
// c at once.
func (l *loop) fail(c *conn, ctr *atomic.Uint64, msg string, e unix.Errno) {
	ctr.Add(1)
	if e != 0 {
		l.logs.Warn(l.s.log, msg, "err", e)
	} else {
		l.logs.Warn(l.s.log, msg)
	}
	l.closeConn(c)
}

// closeConn closes c's socket and forgets it. A job of c still in the
// pool finishes, and its replies are dropped (streamDone).
func (l *loop) closeConn(c *conn) {
	if c.closed {
		return
	}
	unix.Close(c.fd)
	l.conns[c.fd] = nil
	c.link.Remove()
	c.lineLink.Remove()
	c.outLink.Remove()
	c.closed = true
	c.partial, c.out = nil, nil
	if l.bufs != nil {
		l.bufs.Release(&c.hold)
	}
	l.nconns--
	l.ctr.Active.Add(-1)
}

// sweep closes idle connections, connections whose partial line has taken
// longer than the line timeout (after the replies to their earlier
// lines), connections whose replies made no progress within the write
// timeout (at once: what they left untaken cannot be sent), and
// lingering ones past their deadline. Each list is in
// deadline order, so it looks only at what expired.
func (l *loop) sweep(now int64) {
	if l.idle > 0 {
		for x := l.open.Front(); x != nil && now-x.Elem.last >= l.idle; {
			c, next := x.Elem, x.Next()
			if c.busy || c.pending() || c.closeAfter {
				// Waiting for its own handler or for the client to read
				// is not idleness.
				c.last = now
				l.open.MoveToBack(x)
			} else {
				l.ctr.IdleTimeouts.Add(1)
				l.startLinger(c)
			}
			x = next
		}
	}
	for x := l.lines.Front(); x != nil && now-x.Elem.lineStart >= l.lineTO; {
		c, next := x.Elem, x.Next()
		l.ctr.LineTimeouts.Add(1)
		l.logs.Warn(l.s.log, "request line not complete within line-timeout; closing the connection",
			"remote", c.Remote(), "line_timeout", time.Duration(l.lineTO), "bytes", len(c.partial))
		l.startLinger(c) // takes it off lines
		x = next
	}
	for x := l.outs.Front(); x != nil && now-x.Elem.outSince >= l.writeTO; {
		c, next := x.Elem, x.Next()
		l.ctr.WriteTimeouts.Add(1)
		l.logs.Warn(l.s.log, "client left its replies untaken past write-timeout; closing connection",
			"remote", c.Remote(), "write_timeout", time.Duration(l.writeTO), "unsent", len(c.out)-c.outOff)
		l.closeConn(c) // takes it off outs
		x = next
	}
	for x := l.closing.Front(); x != nil && now >= x.Elem.deadline; {
		next := x.Next()
		l.closeConn(x.Elem)
		x = next
	}
}

// dispatch hands lines (n of them, all complete) to the pool; c takes no
// more lines until the job is done.
func (l *loop) dispatch(c *conn, lines []byte) {
	j := l.pool.get()
	j.c = c
	j.buf = append(j.buf[:0], lines...)
	j.sent = 0
	c.busy, c.job = true, j
	l.pool.submit(j)
	l.update(c)
}

// streamDone takes a reply the pool finished: it is written in order,
// and once the job's last reply is in, c takes lines again.
func (l *loop) streamDone(d done) {
	j, c := d.j, d.j.c
	mine := !c.closed && c.job == j
	if mine && d.end > j.sent {
		b := j.buf[j.sent:d.end]
		j.sent = d.end
		l.send(c, b, 1)
		if l.bufs != nil {
			l.account(c)
		}
	}
	if !d.last {
		return
	}
	mine = mine && !c.closed
	if mine {
		c.job, c.busy = nil, false
	}
	l.pool.release(j)
	if mine {
		l.resume(c)
	}
}

// account tells the server's Buffers (Config.MaxBuffered) what c holds
// now: its partial line, the replies its socket has not taken and the
// lines its job has not answered yet. When that growth takes the server
// past the bound, the connections holding the most are closed at once,
// without a lingering close, and counted in OverBuffered (models.Shed),
// c itself maybe among them. It runs only with the bound (callers check
// l.bufs), once what c holds has settled: at the end of readServe (what
// serve kept, sent and dispatched), in streamDone, flush and
// startLinger. In between, a partial line copied in front of a read is
// both in c.partial and in what serve sends: accounting then would count
// it twice.
func (l *loop) account(c *conn) {
	if c.closed {
		return
	}
	n := len(c.partial) + len(c.out) - c.outOff
	if c.job != nil {
		n += len(c.job.buf) - c.job.sent
	}
	if n == c.held {
		return
	}
	c.held = n
	if l.bufs.Set(&c.hold, n) && models.Shed(l.bufs, c, l.largest, l.closeConn, l.ctr, l.logs, l.s.log) {
		l.closeConn(c)
	}
}

// largest returns the open connection holding the most, for account.
func (l *loop) largest() (*conn, bool) {
	return models.Largest(func(yield func(*conn) bool) {
		for x := l.open.Front(); x != nil; x = x.Next() {
			if !yield(x.Elem) {
				return
			}
		}
	})
}

// Hold and Remote make a conn a models.Holder.
func (c *conn) Hold() *models.Hold { return &c.hold }

// Remote names the peer for a log line. The loop accepts without asking
// for the address (it would cost every connection a sockaddr), so it is
// asked for here, off the common path.
func (c *conn) Remote() string {
	sa, err := unix.Getpeername(c.fd)
	if err != nil {
		return "unknown"
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrUnix:
		if a.Name != "" {
			return a.Name
		}
	}
	return "unix"
}
