package loadgen

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sockbench/sockbench/protocol"
)

// epollAvailable reports whether the epoll engine runs here.
const epollAvailable = true

// timerFloor is how far ahead of a due time the goroutine engine's
// dispatcher stops sleeping on a Go timer and yield-spins: Go's poller
// waits in epoll_wait with a millisecond timeout, so a Go timer due in less
// than that wakes up to a millisecond late.
const timerFloor = 1200 * time.Microsecond

// Spin windows of the epoll engine's pacer: it parks until spinFor before
// a due time, then yield-spins. spinFor follows the wake-up lateness the
// loop measures on this machine (mean plus four deviations, as TCP sizes
// its retransmission timeout), within these bounds.
const (
	minSpin     = 10 * time.Microsecond
	maxSpin     = 250 * time.Microsecond
	initialSpin = 100 * time.Microsecond
)

// epollEngine runs one loop per CPU the run may use, each multiplexing its
// share of the connections on raw non-blocking sockets. See the package
// doc for why it is shaped so.
type epollEngine struct {
	r     *run
	loops []*loop
	wg    sync.WaitGroup
}

// loop is one event loop: an epoll set of its connections and a timerfd,
// driven from one goroutine.
type loop struct {
	r    *run
	cpu  int // pinned to this CPU, or -1
	ep   int
	tfd  int
	file *os.File        // ep, registered with Go's poller: where the loop parks
	rc   syscall.RawConn // file's
	body func(uintptr) bool

	conns []*lconn
	rec   *recorder // the histograms of every connection of the loop
	evs   []unix.EpollEvent
	rbuf  []byte // stream: a partial reply line, then what one read brings; datagram: one datagram
	wbuf  []byte // the requests one write sends
	open  bool   // open loop
	dgram bool

	live     int // connections not closed
	sending  int // closed loop: connections that may still send
	inflight int // requests in flight on all connections

	// Open loop: connections free to send (a pipeline slot free, nothing
	// unsent), oldest first, and the due time this loop has claimed.
	ready      connQueue
	due        int64
	dueCounted bool
	haveDue    bool
	schedDone  bool // the pacer has no more due times for this run

	started    bool  // the measurement's start has been seen
	nextSweep  int64 // next check of timeouts
	sweepEvery int64
	armedAt    int64 // the timerfd is armed for this time (run clock); 0: not armed
	deadlineAt int64 // file's read deadline (run clock); 0: none or expired
	monoOff    int64 // CLOCK_MONOTONIC minus the run's clock
	parked     bool
	wakeAt     int64 // when a parked loop asked to be woken
	spinFor    int64 // current spin window
	lateAvg    int64 // wake-up lateness estimate: mean and mean deviation
	lateDev    int64
	spinning   bool // the current round began with a yield-spin, at spinFrom
	spinFrom   int64
	spinNs     int64 // time yield-spun inside the measurement, rounds that found nothing to do
	// Pinned loops (Calibrate) measure their own thread's CPU time over
	// the measurement: the process's would include the sink's.
	threadCPU0, threadCPU1 int64
}

// lconn is a connection of a loop.
type lconn struct {
	w        *worker
	fd       int
	idx      int32 // position in the loop's conns: its epoll data
	inflight int
	seq      uint64
	stamps   stampRing    // stream: requests in flight, in order
	dt       dgramTracker // datagram: datagrams awaiting replies
	out      []byte       // bytes the socket did not take yet; nothing else is sent meanwhile
	carry    []byte       // stream: the start of a reply line still arriving
	sendDone bool         // closed loop: no more requests will be sent
	closed   bool
	queued   bool // in the loop's ready queue
}

// connQueue is a FIFO of connections, each at most once.
type connQueue struct {
	buf     []*lconn
	head, n int
}

func (q *connQueue) push(c *lconn) {
	if c.queued {
		return
	}
	c.queued = true
	q.buf[(q.head+q.n)%len(q.buf)] = c
	q.n++
}

func (q *connQueue) pop() *lconn {
	for q.n > 0 {
		c := q.buf[q.head]
		q.buf[q.head] = nil
		q.head = (q.head + 1) % len(q.buf)
		q.n--
		c.queued = false
		if !c.closed {
			return c
		}
	}
	return nil
}

// newEpollEngine builds the loops and hands each its connections, taking
// their descriptors out of Go's poller.
func newEpollEngine(r *run) (engine, error) {
	n := usableCPUs()
	if len(r.cfg.loopCPUs) > 0 {
		n = len(r.cfg.loopCPUs)
	}
	n = max(min(n, len(r.workers)), 1)
	e := &epollEngine{r: r}
	for i := range n {
		cpu := -1
		if len(r.cfg.loopCPUs) > 0 {
			cpu = r.cfg.loopCPUs[i]
		}
		l, err := newLoop(r, cpu, (len(r.workers)+n-1)/n)
		if err != nil {
			e.close()
			return nil, err
		}
		e.loops = append(e.loops, l)
	}
	for i, w := range r.workers {
		if err := e.loops[i%n].adopt(w); err != nil {
			e.close()
			return nil, fmt.Errorf("conn %d: %w", w.id, err)
		}
	}
	return e, nil
}

func newLoop(r *run, cpu, conns int) (*loop, error) {
	cfg := r.cfg
	l := &loop{r: r, cpu: cpu, ep: -1, tfd: -1, open: cfg.Rate > 0, dgram: cfg.datagram()}
	var err error
	if l.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if l.tfd, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC); err != nil {
		unix.Close(l.ep)
		return nil, fmt.Errorf("timerfd_create: %w", err)
	}
	if err = unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, l.tfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1}); err == nil {
		err = unix.SetNonblock(l.ep, true)
	}
	if err != nil {
		unix.Close(l.ep)
		unix.Close(l.tfd)
		return nil, fmt.Errorf("epoll set-up: %w", err)
	}
	// A non-blocking epoll descriptor wrapped in an os.File is registered
	// with Go's poller: it turns readable when any descriptor in the set
	// is ready (the kernel nests epoll sets), so the loop parks through
	// the runtime like any goroutine blocked on I/O, and a read deadline
	// on it (a Go timer) wakes it too.
	l.file = os.NewFile(uintptr(l.ep), "loadgen-epoll")
	if l.rc, err = l.file.SyscallConn(); err != nil {
		l.file.Close()
		unix.Close(l.tfd)
		return nil, err
	}
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	l.monoOff = ts.Nano() - r.now()
	l.conns = make([]*lconn, 0, conns)
	l.rec = newRecorder(l.open, true)
	l.evs = make([]unix.EpollEvent, min(max(conns, 16), 512))
	if l.dgram {
		l.rbuf = make([]byte, cfg.SizeMax+1) // one more byte shows an oversized reply
		l.wbuf = make([]byte, 0, cfg.SizeMax)
	} else {
		l.rbuf = make([]byte, maxReplyLine(cfg)+maxBatch)
		l.wbuf = make([]byte, 0, min(cfg.SizeMax*cfg.Pipeline, maxBatch)+cfg.SizeMax)
	}
	l.sweepEvery = int64(min(max(cfg.Timeout/10, time.Millisecond), 100*time.Millisecond))
	l.lateAvg, l.lateDev = int64(initialSpin)/2, int64(initialSpin)/8
	l.spinFor = int64(initialSpin)
	l.body = l.step
	return l, nil
}

// adopt takes w's descriptor: a duplicate, which is not in Go's poller
// once w.conn is closed (the poller would otherwise be woken for every
// reply too).
func (l *loop) adopt(w *worker) error {
	sc, _ := w.conn.(syscall.Conn)
	fd, err := dupConn(sc)
	if err != nil {
		return err
	}
	w.conn.Close()
	w.conn = nil
	c := &lconn{w: w, fd: fd, idx: int32(len(l.conns))}
	w.rec = l.rec
	if l.dgram {
		c.dt = newDgramTracker(l.r.cfg.Pipeline)
	} else {
		c.stamps = newStampRing(l.r.cfg.Pipeline)
	}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: l.inEvents(), Fd: int32(len(l.conns))}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	l.conns = append(l.conns, c)
	l.live++
	l.sending++
	return nil
}

func (e *epollEngine) name() string { return EngineEpoll }

func (e *epollEngine) start() <-chan struct{} {
	finished := make(chan struct{})
	for _, l := range e.loops {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			l.run()
		}()
	}
	go func() { e.wg.Wait(); close(finished) }()
	return finished
}

// interrupt wakes every parked loop; each then sees r.stopping and returns.
func (e *epollEngine) interrupt() {
	for _, l := range e.loops {
		l.file.SetReadDeadline(time.Unix(1, 0))
	}
}

func (e *epollEngine) stop() {}

func (e *epollEngine) close() {
	for _, l := range e.loops {
		for _, c := range l.conns {
			if !c.closed {
				c.closed = true
				unix.Close(c.fd)
			}
		}
		l.file.Close()
		unix.Close(l.tfd)
	}
}

// cpu returns the CPU time the loops' own threads used in the
// measurement, when they are pinned and so measured apart.
func (e *epollEngine) cpu() (time.Duration, bool) {
	var ns int64
	for _, l := range e.loops {
		if l.cpu < 0 {
			return 0, false
		}
		ns += l.threadCPU1 - l.threadCPU0
	}
	return time.Duration(ns), true
}

func (e *epollEngine) spin() time.Duration {
	var ns int64
	for _, l := range e.loops {
		ns += l.spinNs
	}
	return time.Duration(ns)
}

// run drives the loop until its connections are done or the run stops.
func (l *loop) run() {
	pinThread(l.cpu)
	l.ready.buf = make([]*lconn, len(l.conns))
	l.nextSweep = l.r.now() + l.sweepEvery
	for _, c := range l.conns {
		l.after(c)
	}
	defer func() {
		l.threadCPU1 = l.threadCPU()
		if !l.started {
			l.threadCPU0 = l.threadCPU1
		}
	}()
	for !l.r.stopping.Load() {
		err := l.rc.Read(l.body)
		if err == nil {
			return
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return // the epoll descriptor is gone: cannot happen before close
		}
		// The deadline passed (the loop's own wake-up, or interrupt: step
		// checks r.stopping first). Until it is cleared, every Read fails
		// at once without running step.
		l.file.SetReadDeadline(time.Time{})
		l.deadlineAt = 0
	}
}

// threadCPU returns the CPU time of a pinned loop's thread, 0 otherwise.
func (l *loop) threadCPU() int64 {
	if l.cpu < 0 {
		return 0
	}
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return ts.Nano()
}

// step is the loop's body, run by the runtime's poller glue (RawConn.Read)
// until it returns true; returning false parks the goroutine until the
// epoll set is ready or the read deadline passes.
func (l *loop) step(uintptr) bool {
	r := l.r
	for {
		if r.stopping.Load() {
			return true
		}
		k := rawEpollWait(l.ep, l.evs)
		if k > 0 {
			l.handle(l.evs[:k])
		}
		now := r.now()
		if l.parked {
			l.parked = false
			if now >= l.wakeAt {
				l.noteWake(now - l.wakeAt)
			}
		}
		if !l.started && now >= r.measureStart {
			l.started = true
			r.sampleStartCPU()
			l.threadCPU0 = l.threadCPU()
		}
		sent := 0
		if l.open {
			sent = l.pace(now)
		}
		if now >= l.nextSweep {
			l.sweep(now)
		}
		if l.spinning {
			// The last round was a spin; it counts as spin only if it
			// found nothing to do (busy time must not hide as spin).
			if k == 0 && sent == 0 {
				l.addSpin(l.spinFrom, now)
			}
			l.spinning = false
		}
		if l.finished(now) {
			return true
		}
		if k > 0 {
			continue // busy: poll again before anything else
		}
		wake, spin := l.nextWake(now)
		if spin {
			// Yield-spin until the due time: waking from a park takes this
			// machine tens of microseconds, a spin none.
			l.spinning, l.spinFrom = true, now
			runtime.Gosched()
			continue
		}
		if wake <= now {
			continue
		}
		l.park(wake)
		if r.stopping.Load() { // interrupt may have come before the deadline was set
			return true
		}
		l.parked, l.wakeAt = true, wake
		return false
	}
}

// addSpin counts [from, now) as yield-spin, as far as it fell inside the
// measurement.
func (l *loop) addSpin(from, now int64) {
	if from = max(from, l.r.measureStart); now > from {
		l.spinNs += now - from
	}
}

// noteWake updates the spin window with one measured wake-up lateness.
func (l *loop) noteWake(late int64) {
	late = min(late, int64(maxSpin)) // one stall must not set the window for long
	d := late - l.lateAvg
	l.lateAvg += d / 8
	l.lateDev += (abs64(d) - l.lateDev) / 4
	l.spinFor = min(max(l.lateAvg+4*l.lateDev, int64(minSpin)), int64(maxSpin))
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// nextWake returns when the loop must next run without an event: the
// timeout sweep, the end of the window (open loop), or spinFor before
// the next due time; spin is true when that due time is already within
// spinFor.
func (l *loop) nextWake(now int64) (wake int64, spin bool) {
	wake = l.nextSweep
	if l.open {
		if l.haveDue && l.ready.n > 0 {
			if l.due-l.spinFor <= now {
				return l.due, true
			}
			wake = min(wake, l.due-l.spinFor)
		}
		if l.schedDone && l.r.cfg.Requests == 0 && l.r.end > now {
			wake = min(wake, l.r.end)
		}
	}
	return wake, false
}

// park arms the timerfd (exact when the loop is idle) and the file's read
// deadline (a Go timer, which fires on time when other goroutines keep the
// P busy and the poller is not consulted) for wake.
func (l *loop) park(wake int64) {
	if wake != l.armedAt {
		spec := unix.ItimerSpec{Value: unix.NsecToTimespec(wake + l.monoOff)}
		if unix.TimerfdSettime(l.tfd, unix.TFD_TIMER_ABSTIME, &spec, nil) == nil {
			l.armedAt = wake
		}
	}
	if wake != l.deadlineAt {
		l.file.SetReadDeadline(l.r.at(wake))
		l.deadlineAt = wake
	}
}

// finished reports whether the loop has nothing more to do.
func (l *loop) finished(now int64) bool {
	switch {
	case l.live == 0:
		return true
	case l.inflight > 0:
		return false
	case l.open:
		return l.schedDone && (l.r.cfg.Requests > 0 || now >= l.r.end)
	}
	return l.sending == 0
}

// handle serves the ready events.
func (l *loop) handle(evs []unix.EpollEvent) {
	for i := range evs {
		ev := &evs[i]
		if ev.Fd < 0 { // the timerfd: consume its expiry
			var b [8]byte
			rawRead(l.tfd, b[:])
			l.armedAt = 0
			continue
		}
		c := l.conns[ev.Fd]
		if c.closed {
			continue
		}
		if ev.Events&unix.EPOLLOUT != 0 && len(c.out) > 0 {
			l.flush(c)
		}
		now := int64(-1)
		if !c.closed && ev.Events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			if l.dgram {
				now = l.readDatagrams(c)
			} else {
				now = l.readStream(c)
			}
		}
		if !c.closed {
			if now < 0 {
				now = l.r.now()
			}
			l.afterAt(c, now)
		}
	}
}

// after gives c more to do once a reply or a flush freed it: the closed
// loop sends at once, the open loop queues it for the next due time.
func (l *loop) after(c *lconn) { l.afterAt(c, l.r.now()) }

// afterAt is after at time now, already read (the time the replies were
// read: as the C yardstick does, the next request's send time is the
// previous reply's arrival).
func (l *loop) afterAt(c *lconn, now int64) {
	if l.open {
		if !c.closed && c.inflight < l.r.cfg.Pipeline && len(c.out) == 0 {
			l.ready.push(c)
		}
		return
	}
	l.fillAt(c, now)
}

// fillAt sends closed-loop requests on c for every free pipeline slot,
// the first at now: one write for the lot on a stream, one per datagram.
func (l *loop) fillAt(c *lconn, now int64) {
	r := l.r
	p, w := r.cfg.Pipeline, c.w
	first := true
	// Batch after batch (each at most maxBatch and one request), until
	// the pipeline is full, the socket stops taking them, or the run ends.
	for c.inflight < p && !c.sendDone && !c.closed && len(c.out) == 0 {
		buf := l.wbuf[:0]
		for c.inflight < p {
			if !first {
				now = r.now()
			}
			first = false
			counted, ok := r.claimClosedAt(now)
			if !ok {
				c.sendDone = true
				l.sending--
				break
			}
			w.sentAt(now, now, counted, false)
			if l.dgram {
				c.dt.pend = append(c.dt.pend, pending{seq: c.seq, intended: now, sent: now, deadline: now + int64(r.cfg.Timeout), counted: counted})
				buf = r.gen.datagram(buf[:0], w.id, c.seq)
				c.seq++
				c.inflight++
				l.inflight++
				if !l.write(c, buf) {
					return
				}
				continue
			}
			c.stamps.push(stamp{seq: c.seq, intended: now, sent: now, counted: counted})
			buf = r.gen.line(buf, w.id, c.seq)
			c.seq++
			c.inflight++
			l.inflight++
			if len(buf)+r.cfg.SizeMax > cap(buf) {
				break
			}
		}
		if !l.dgram && len(buf) > 0 && !l.write(c, buf) {
			return
		}
	}
}

// pace sends every request that has fallen due on a connection free to
// send, and returns how many it sent. A due time with no connection free waits for one (its wait is
// counted: latency runs from the due time); one still unsent when the
// window closes is reported as unsent, not sent late.
func (l *loop) pace(now int64) (sent int) {
	r := l.r
	for ; ; sent++ {
		if !l.haveDue {
			if l.schedDone {
				return sent
			}
			due, counted, ok := r.pacer.Claim(now)
			if !ok {
				l.schedDone = true
				return sent
			}
			l.due, l.dueCounted, l.haveDue = due, counted, true
		}
		if l.due > now {
			return sent
		}
		if now >= r.end {
			l.haveDue, l.schedDone = false, true
			return sent
		}
		c := l.ready.pop()
		if c == nil {
			return sent
		}
		l.haveDue = false
		l.send(c, now, l.due, l.dueCounted)
		if !c.closed && c.inflight < r.cfg.Pipeline && len(c.out) == 0 {
			l.ready.push(c)
		}
		now = r.now()
	}
}

// send writes one open-loop request, due at due, on c.
func (l *loop) send(c *lconn, now, due int64, counted bool) {
	r, w := l.r, c.w
	w.sentAt(now, due, counted, true)
	var buf []byte
	if l.dgram {
		c.dt.pend = append(c.dt.pend, pending{seq: c.seq, intended: due, sent: now, deadline: now + int64(r.cfg.Timeout), counted: counted})
		buf = r.gen.datagram(l.wbuf[:0], w.id, c.seq)
	} else {
		c.stamps.push(stamp{seq: c.seq, intended: due, sent: now, counted: counted})
		buf = r.gen.line(l.wbuf[:0], w.id, c.seq)
	}
	c.seq++
	c.inflight++
	l.inflight++
	l.write(c, buf)
}

// write sends b on c; what the socket does not take waits in c.out for
// EPOLLOUT. It returns false when not all of b went out.
func (l *loop) write(c *lconn, b []byte) bool {
	for {
		n, errno := rawWrite(c.fd, b)
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			n = 0
		default:
			l.fail(c, errno)
			return false
		}
		if n == len(b) {
			return true
		}
		c.out = append(c.out[:0], b[n:]...)
		l.watchOut(c, true)
		return false
	}
}

// flush writes what c.out holds.
func (l *loop) flush(c *lconn) {
	n, errno := rawWrite(c.fd, c.out)
	switch errno {
	case 0:
	case unix.EINTR, unix.EAGAIN:
		return
	default:
		l.fail(c, errno)
		return
	}
	if n < len(c.out) {
		c.out = c.out[:copy(c.out, c.out[n:])]
		return
	}
	c.out = c.out[:0]
	l.watchOut(c, false)
}

// inEvents are the epoll events a connection is watched for. Streams are
// edge-triggered: a level-triggered socket is polled again at the next
// epoll_pwait after every event it reported (tcp_poll and ep_item_poll
// were 9% of the C yardstick client's profile, which pays them), while a
// stream read that comes back short has emptied the socket, so no edge
// is missed. A datagram socket answers one datagram per read and cannot
// tell whether more wait: level-triggered.
func (l *loop) inEvents() uint32 {
	if l.dgram {
		return unix.EPOLLIN
	}
	return unix.EPOLLIN | unix.EPOLLET
}

func (l *loop) watchOut(c *lconn, on bool) {
	ev := unix.EpollEvent{Events: l.inEvents(), Fd: c.idx}
	if on {
		ev.Events |= unix.EPOLLOUT
	}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_MOD, c.fd, &ev); err != nil {
		l.fail(c, err)
	}
}

// readStream reads what c has and checks every complete reply line, until
// a read comes back short (the socket is empty: it is edge-triggered). It
// returns the time the last replies were read, or -1 when nothing was.
func (l *loop) readStream(c *lconn) int64 {
	last := int64(-1)
	for {
		now, full := l.readStreamOnce(c)
		if now >= 0 {
			last = now
		}
		if !full || c.closed {
			return last
		}
	}
}

// readStreamOnce is one read of readStream; full reports that it filled
// the buffer, so more may wait.
func (l *loop) readStreamOnce(c *lconn) (int64, bool) {
	r, w := l.r, c.w
	buf := l.rbuf
	n := 0
	if len(c.carry) > 0 {
		n = copy(buf, c.carry)
	}
	k, errno := rawRead(c.fd, buf[n:])
	for errno == unix.EINTR {
		k, errno = rawRead(c.fd, buf[n:])
	}
	switch {
	case errno == unix.EAGAIN:
		return -1, false
	case errno != 0:
		l.fail(c, errno)
		return -1, false
	case k == 0:
		switch {
		case n > 0:
			l.fail(c, io.ErrUnexpectedEOF)
		case c.inflight > 0 || !l.sendOver(c):
			l.fail(c, io.EOF)
		default:
			l.closeConn(c)
		}
		return -1, false
	}
	full := n+k == len(buf)
	data := buf[:n+k]
	now := r.now()
	maxLine := maxReplyLine(r.cfg)
	for {
		ln, err := protocol.LineLen(data, maxLine)
		if err != nil {
			l.fail(c, err)
			return -1, false
		}
		if ln == 0 {
			break
		}
		line := data[:ln]
		data = data[ln:]
		if c.stamps.n == 0 {
			w.mismatch(now >= r.measureStart, 0, false, line, false) // a reply to no request
			continue
		}
		st := c.stamps.pop()
		c.inflight--
		l.inflight--
		ok, _ := r.gen.checkLine(line, w.id, st.seq)
		w.reply(now, st.seq, st.intended, st.sent, st.counted, ok, line, false)
	}
	if len(data) > 0 || len(c.carry) > 0 {
		c.carry = append(c.carry[:0], data...)
	}
	return now, full
}

// sendOver reports whether c will send no more requests.
func (l *loop) sendOver(c *lconn) bool {
	if l.open {
		return l.schedDone
	}
	return c.sendDone
}

// readDatagrams reads the replies waiting on c (one per datagram in
// flight at most; a duplicate waits for the next round) and checks them.
// It returns the time of the last reply read, or -1.
func (l *loop) readDatagrams(c *lconn) int64 {
	r := l.r
	now := int64(-1)
	for range max(c.inflight, 1) {
		k, errno := rawRead(c.fd, l.rbuf)
		for errno == unix.EINTR {
			k, errno = rawRead(c.fd, l.rbuf)
		}
		switch {
		case errno == unix.EAGAIN:
			return now
		case errno != 0:
			l.fail(c, errno)
			return -1
		}
		now = r.now()
		if c.dt.onReply(c.w, l.rbuf[:k], now) {
			c.inflight--
			l.inflight--
		}
	}
	return now
}

// sweep enforces --timeout: a stream whose oldest request waited past it
// fails (as a blocked read with a deadline would), a datagram past it is
// lost and frees its slot.
func (l *loop) sweep(now int64) {
	timeout := int64(l.r.cfg.Timeout)
	l.nextSweep = now + l.sweepEvery
	for _, c := range l.conns {
		if c.closed || c.inflight == 0 {
			continue
		}
		if !l.dgram {
			if c.stamps.peek().sent+timeout <= now {
				l.fail(c, os.ErrDeadlineExceeded)
			}
			continue
		}
		if n := c.dt.expire(c.w, now); n > 0 {
			c.inflight -= n
			l.inflight -= n
			l.after(c)
		}
	}
}

// fail ends c after an error: every request in flight failed with its
// kind (nothing is counted when the run is being cancelled).
func (l *loop) fail(c *lconn, err error) {
	if c.closed {
		return
	}
	w := c.w
	if !l.r.stopping.Load() {
		if l.dgram {
			w.datagramFailed(err, c.dt.pend)
		} else {
			kind := w.streamFailure(err)
			for c.stamps.n > 0 {
				w.failed(kind, c.stamps.pop().counted, 1)
			}
		}
	}
	l.closeConn(c)
}

// closeConn closes c and drops what it had in flight from the loop's count.
func (l *loop) closeConn(c *lconn) {
	c.closed = true
	unix.Close(c.fd) // also leaves the epoll set
	l.live--
	l.inflight -= c.inflight
	c.inflight = 0
	if !c.sendDone {
		c.sendDone = true
		l.sending--
	}
}

// pinThread locks the calling goroutine to its thread and pins that
// thread to cpu (nothing for -1). The thread dies with the goroutine (no
// UnlockOSThread), and its affinity with it.
func pinThread(cpu int) {
	if cpu < 0 {
		return
	}
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	_ = unix.SchedSetaffinity(0, &set)
}

// dupConn returns a close-on-exec duplicate of sc's descriptor, which Go's
// poller does not watch.
func dupConn(sc syscall.Conn) (int, error) {
	if sc == nil {
		return -1, errors.New("socket has no descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup: %w", derr)
	}
	return fd, nil
}

// Raw system calls. The loop's descriptors are non-blocking, so none of
// these can sleep; made raw, they skip the runtime's entersyscall and
// exitsyscall, and with them the sysmon thread's retaking of a P it sees
// in a system call: on a CPU shared with the generator (taskset, one
// CPU), that thread's wake-ups alone cost about 6,000 context switches a
// second and a quarter of the throughput (see the package doc).

func rawEpollWait(ep int, evs []unix.EpollEvent) int {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
	if e != 0 {
		return 0
	}
	return int(n)
}

func rawRead(fd int, b []byte) (int, unix.Errno) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

func rawWrite(fd int, b []byte) (int, unix.Errno) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}
