//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package bare

import (
	"fmt"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/protocol"
)

// Tunables. They are constants, not flags: they bound pathological
// clients and do not change what is compared.
const (
	// DefaultPoolSize bounds the goroutines that run --block handlers;
	// Config.Extra["pool"] overrides it.
	DefaultPoolSize = 1024
	// readSize is the most one read takes from a stream connection.
	readSize = 64 << 10
	// prefixMax: a partial line up to this long is copied in front of
	// the next read in the loop's buffer, so the line it completes and the
	// lines after it are one contiguous run, transformed in place and
	// written with one write. A longer partial line grows in its
	// connection's own buffer instead (up to max-line).
	prefixMax = 16 << 10
	// keepBuf: a connection keeps a partial-line or output buffer up to
	// this size between uses, and lets a larger one go.
	keepBuf = 4 << 10
	// lingerTime bounds how long a closing connection reads and discards
	// what the client still sends after the server's FIN.
	lingerTime = int64(1500 * time.Millisecond)
	// lingerMax bounds the bytes discarded while lingering.
	lingerMax = 1 << 20
	// maxTick is the longest interval between two sweeps (idle and line
	// timeouts, lingering closes) while any is due.
	maxTick = 50 * time.Millisecond
	// acceptBatch and dgramBatch bound the accepts and datagrams taken
	// for one readiness event, so one busy socket cannot starve the rest.
	acceptBatch = 64
	dgramBatch  = 64
	// socketBuffer is the receive and send buffer a datagram socket asks
	// for, as in the other models.
	socketBuffer = 4 << 20
	// yieldEvery: the loop yields to the scheduler this often (see run).
	yieldEvery = int64(2 * time.Millisecond)
)

// maxEvents is how many readiness events one wait returns at most, as in
// the C yardstick.
const maxEvents = 256

// Interest bits for poller.add and poller.mod.
const (
	wantRead  = 1 << iota // readable (and accept-ready) events
	wantWrite             // writable events
)

// loop is the readiness loop: one goroutine owns everything in it but the
// fields marked otherwise.
type loop struct {
	s       *server
	ctr     *models.Counters
	p       *poller
	lfd     int  // listening (stream) or datagram socket; -1 once closed
	stream  bool // lfd is a listener
	tcp     bool
	mode    protocol.Mode
	work    time.Duration
	blocks  bool
	maxLine int
	maxConn int
	idle    int64 // idle timeout in ns, 0: none
	lineTO  int64 // line timeout in ns (Config.LineBound), 0: none
	writeTO int64 // write timeout in ns (Config.WriteBound), 0: none

	buf   []byte  // the read buffer every connection shares
	conns []*conn // by descriptor
	// open holds the open connections in order of their last read (with
	// an idle timeout), closing the lingering ones in order of deadline,
	// through conn.link; lines the open ones holding a partial line, in
	// order of when that line began (with a line timeout), through
	// conn.lineLink; outs those with replies the socket did not take, in
	// order of the output's last progress (with a write timeout), through
	// conn.outLink.
	open, closing, lines, outs models.List[*conn]

	nconns int // open and lingering connections
	from   sockaddr
	pool   *pool

	t0        time.Time // the loop's clock counts from here (see clock)
	tick      int64     // ns between sweeps
	nextSweep int64     // 0: none due
	yielded   int64     // when the loop last yielded to the scheduler

	backoff  models.Backoff // accept errors (EMFILE): 5 ms doubling to 1 s
	acceptAt int64          // when to re-arm the listener after an accept error; 0: armed

	draining bool
	forced   bool

	// Per-request counts of the current batch, added to ctr after it, so
	// the hot path touches no atomic.
	requests, bytesIn, bytesOut uint64

	logs *models.RateLog // the server's: every line a client can cause
	bufs *models.Buffers // Config.MaxBuffered; nil without a bound

	wakeMu  sync.Mutex // orders wake against closing the poller
	pclosed bool
}

func newLoop(s *server, fd int) (*loop, error) {
	p, err := newPoller()
	if err != nil {
		return nil, err
	}
	cfg := &s.cfg
	l := &loop{
		s: s, ctr: &s.ctr, p: p, lfd: fd,
		stream: cfg.IsStream(), tcp: cfg.IsStream() && !cfg.IsUnix(),
		mode: cfg.Mode, work: cfg.Cost.Work, blocks: cfg.Cost.Blocks(),
		maxLine: cfg.MaxLine, maxConn: cfg.MaxConns, idle: int64(cfg.IdleTimeout),
		lineTO: int64(cfg.LineBound()), writeTO: int64(cfg.WriteBound()), t0: time.Now(),
		tick: int64(models.SweepInterval(maxTick, cfg.IdleTimeout, cfg.LineBound(), cfg.WriteBound())),
		logs: &s.logs, bufs: s.bufs,
	}
	if l.stream {
		l.buf = make([]byte, prefixMax+readSize)
	} else {
		l.buf = make([]byte, protocol.MaxDatagram+1)
	}
	l.pool = newPool(s.poolSize, cfg.Cost, cfg.Mode, s.hardCtx, l.wake)
	if err := p.add(fd, wantRead); err != nil {
		p.close()
		return nil, err
	}
	return l, nil
}

// clock is the time since the loop started, in ns (monotonic).
func (l *loop) clock() int64 { return int64(time.Since(l.t0)) }

// wake makes the loop look at the stop request and the pool's finished
// work. Safe from any goroutine, at any time.
func (l *loop) wake() {
	l.wakeMu.Lock()
	if !l.pclosed {
		l.p.wake()
	}
	l.wakeMu.Unlock()
}

// run is the loop: wait, handle every ready descriptor, add the batch's
// counts, run what is due, and again, until a drain is complete or a
// forced stop.
//
// Subtleness ahead: the loop yields to the scheduler every yieldEvery. A
// goroutine that never yields is, after 10 ms, preempted by the runtime's
// monitor (sysmon), which, finding it in a syscall (the wait), takes its
// P away; sysmon then polls every 20 µs again for a while, and the loop
// needs a P back when its wait returns. At one connection that cost a
// tenth of the server's CPU (perf: runtime.usleep from sysmon). A yield
// every 2 ms costs a few hundred nanoseconds and keeps sysmon asleep.
func (l *loop) run() {
	defer close(l.s.done)
	defer l.exit()
	for {
		n, err := l.waitEvents()
		if err != nil && err != unix.EINTR {
			l.s.log.Error("waiting for events failed; closing everything", "err", err)
			l.s.fail(fmt.Errorf("bare: waiting for events: %w", err))
			return
		}
		for i := range n {
			fd, r, w, bad := l.p.event(i)
			switch {
			case fd == l.lfd:
				if l.stream {
					l.accept()
				} else {
					l.readDgrams()
				}
			case fd >= 0 && fd < len(l.conns) && l.conns[fd] != nil:
				l.connEvent(l.conns[fd], r, w, bad)
			case fd == l.p.wakeFD():
				l.woken()
			}
		}
		l.flushCounts()
		if l.forced {
			return
		}
		now := l.clock()
		l.timers(now)
		if now-l.yielded > yieldEvery {
			runtime.Gosched()
			l.yielded = now
		}
		if l.draining && l.nconns == 0 && l.pool.idle() {
			return
		}
	}
}

// waitEvents waits for the next batch of events, until the next
// deadline at the latest.
func (l *loop) waitEvents() (int, error) {
	msec := -1
	if at := l.deadline(); at > 0 {
		msec = 0
		if now := l.clock(); at > now {
			msec = int((at - now + int64(time.Millisecond) - 1) / int64(time.Millisecond))
		}
	}
	return l.p.wait(msec)
}

// deadline is the next moment something is due (a sweep, re-arming the
// listener), or 0 when nothing is.
func (l *loop) deadline() int64 {
	var at int64
	if l.sweeping() {
		at = l.nextSweep
		if at == 0 {
			at = l.clock() + l.tick
			l.nextSweep = at
		}
	}
	if l.acceptAt > 0 && (at == 0 || l.acceptAt < at) {
		at = l.acceptAt
	}
	return at
}

// sweeping reports whether sweeps have work: idle, line or write timeouts
// to watch, or lingering connections to close.
func (l *loop) sweeping() bool {
	return (l.idle > 0 && !l.open.Empty()) || !l.lines.Empty() || !l.outs.Empty() || !l.closing.Empty()
}

// timers runs what is due at now.
func (l *loop) timers(now int64) {
	if l.acceptAt == 0 && !l.sweeping() {
		l.nextSweep = 0
		return
	}
	if l.acceptAt > 0 && now >= l.acceptAt {
		l.acceptAt = 0
		if l.lfd >= 0 {
			l.p.mod(l.lfd, wantRead)
		}
	}
	if l.nextSweep > 0 && now >= l.nextSweep {
		l.sweep(now)
		l.nextSweep = now + l.tick
	}
}

// flushCounts adds the batch's counts to the shared counters.
func (l *loop) flushCounts() {
	if l.requests != 0 {
		l.ctr.Requests.Add(l.requests)
		l.requests = 0
	}
	if l.bytesIn != 0 {
		l.ctr.BytesIn.Add(l.bytesIn)
		l.bytesIn = 0
	}
	if l.bytesOut != 0 {
		l.ctr.BytesOut.Add(l.bytesOut)
		l.bytesOut = 0
	}
}

// woken handles a wake-up: a stop request, or work the pool finished.
func (l *loop) woken() {
	l.p.drainWake()
	switch l.s.stop.Load() {
	case stopForce:
		l.forced = true
		return
	case stopDrain:
		if !l.draining {
			l.startDrain()
		}
	}
	for _, d := range l.pool.finished() {
		if d.j.c != nil {
			l.streamDone(d)
		} else {
			l.dgramDone(d.j)
		}
	}
}

// startDrain begins a graceful stop: no new connections or datagrams;
// every connection answers what it has read and closes (startLinger waits
// for a connection's job and output first).
func (l *loop) startDrain() {
	l.draining = true
	l.acceptAt = 0
	if l.stream {
		unix.Close(l.lfd)
		l.lfd = -1
	} else {
		l.p.mod(l.lfd, 0)
	}
	for x := l.open.Front(); x != nil; {
		next := x.Next()
		l.startLinger(x.Elem)
		x = next
	}
}

// exit closes what is left (everything, after a forced stop), stops the
// pool and closes the poller.
func (l *loop) exit() {
	for _, list := range []*models.List[*conn]{&l.open, &l.closing} {
		for !list.Empty() {
			l.closeConn(list.Front().Elem)
		}
	}
	if l.lfd >= 0 {
		unix.Close(l.lfd)
		l.lfd = -1
	}
	l.pool.close()
	l.wakeMu.Lock()
	l.pclosed = true
	l.p.close()
	l.wakeMu.Unlock()
	l.flushCounts()
}

// raiseProcs makes sure the process has two Ps. The loop waits for events
// in a blocking epoll_wait (kevent), holding its P; with a single P the
// runtime's monitor takes that P after 20 µs of every wait, so that the
// rest of the process (the pool, signals, timers) can run, and the loop
// must win it back when the wait returns: at one connection that made a
// request cost up to a fifth more CPU (see the package doc). With a second
// P idle, the runtime leaves the waiting one alone and everything else
// runs on the other. GOMAXPROCS is process-wide, so this never lowers it.
func raiseProcs() {
	if runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
	}
}
