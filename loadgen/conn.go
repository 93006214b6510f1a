package loadgen

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// worker is one connection and everything it measures, whichever engine
// drives it. In the goroutine engine its fields are written only by the
// connection's own goroutines, in the epoll engine only by the loop that
// owns it; Run reads them once those have finished (a WaitGroup orders the
// two). The atomics are for the progress line.
type worker struct {
	id   int
	r    *run
	conn net.Conn // the goroutine engine's; nil once the epoll engine took the descriptor

	connectNs int64
	rec       *recorder // the connection's own, or its loop's

	done atomic.Int64 // measured replies so far, for the progress line (counted only while it is shown)

	m, warm  tally // what the measurement counted, and what the warmup did
	examples []string
	lastDone int64 // run clock of the last measured reply
	failure  error // why this connection ended early, nil if it did not
	failedAt int64 // run clock of the failure

	// Owned by the sending side.
	lateSends int64
	maxLag    int64
	early     int64 // open loop: requests sent before they were due (never, the tests check)

	mu    sync.Mutex // guards cause, set once on the error path only
	cause error
	dead  chan struct{}
	once  sync.Once
	_     [64]byte // keep hot counters of neighbouring workers off one cache line
}

// recorder holds the latency histograms of the measurement: a
// connection's own in the goroutine engine, a loop's (shared by its
// connections) in the epoll engine.
type recorder struct {
	lat, svc, lag hist // svc and lag (send time minus due time): open loop only
	open          bool
}

func newRecorder(open, dense bool) *recorder {
	return &recorder{lat: newHistOf(dense), svc: newHistOf(dense && open), lag: newHistOf(dense && open), open: open}
}

// mergeInto adds the recorder's histograms to the report's.
func (rc *recorder) mergeInto(rep *Report) {
	rc.lat.mergeInto(rep.LatencyHist)
	if rc.open {
		rc.svc.mergeInto(rep.ServiceHist)
		rc.lag.mergeInto(rep.SendLagHist)
	}
}

// hist is one histogram of the hot path: dense where one serves many
// connections (recording is an index and an add, a fifth of the packed
// form's cost), packed where every connection has its own (a dense one is
// some 256 KB, too much for 10,000 connections).
type hist struct {
	dense  *hdrhistogram.Histogram
	packed *hdrhistogram.PackedHistogram
}

func newHistOf(dense bool) hist {
	if dense {
		return hist{dense: newHist()}
	}
	return hist{packed: hdrhistogram.NewPacked(histLowest, histHighest, histDigits)}
}

// record adds v nanoseconds, clamped to the histogram's range.
func (h *hist) record(v int64) {
	v = min(max(v, histLowest), histHighest)
	if h.dense != nil {
		_ = h.dense.RecordValue(v)
	} else {
		_ = h.packed.RecordValue(v)
	}
}

func (h *hist) mergeInto(dst *hdrhistogram.Histogram) {
	if h.dense != nil {
		dst.Merge(h.dense)
	} else {
		h.packed.MergeInto(dst)
	}
}

// tally is one connection's counters, for the measurement or the warmup.
// sent belongs to the sending side, the rest to the receiving side.
type tally struct {
	requests, bytes     int64
	mismatches          int64
	timeouts, lost      int64
	duplicated, reorder int64
	late                int64
	otherMode           int64 // mismatches that match the other mode exactly
	sent                int64
	errs                [numKinds]int64
}

// tally returns the counters a request belongs to.
func (w *worker) tally(counted bool) *tally {
	if counted {
		return &w.m
	}
	return &w.warm
}

// counts converts t into the report's Counts.
func (t *tally) counts(examples []string) Counts {
	c := newCounts()
	c.Requests, c.Bytes, c.Mismatches = t.requests, t.bytes, t.mismatches
	c.Lost, c.Duplicated, c.Reordered, c.Late = t.lost, t.duplicated, t.reorder, t.late
	c.Timeouts, c.Sent = t.timeouts, t.sent
	for k, n := range t.errs {
		if n > 0 {
			c.ErrorsByKind[errKind(k).String()] += n
			c.Errors += n
		}
	}
	c.Examples = append(c.Examples, examples...)
	return c
}

// kill ends the connection once, remembering the first cause (goroutine
// engine).
func (w *worker) kill(cause error) {
	w.once.Do(func() {
		w.mu.Lock()
		w.cause = cause
		w.mu.Unlock()
		close(w.dead)
		w.conn.Close()
	})
}

// firstCause returns the error that killed the connection, if any.
func (w *worker) firstCause() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cause
}

// setFailure records why the connection ended early, and when.
func (w *worker) setFailure(err error) {
	w.failure, w.failedAt = err, w.r.now()
}

// sentAt counts a request going out at now, due (open loop) at due.
func (w *worker) sentAt(now, due int64, counted, open bool) {
	w.tally(counted).sent++
	if open && now < due {
		w.early++
	}
	if open && counted {
		lag := now - due
		if lag > int64(lateSend) {
			w.lateSends++
		}
		w.maxLag = max(w.maxLag, lag)
	}
}

// record stores one measured, validated reply.
func (w *worker) record(now, intended, sent int64, size int) {
	w.m.requests++
	w.m.bytes += int64(size)
	w.lastDone = now
	lat := now - intended
	w.rec.lat.record(lat)
	if w.r.ivl != nil { // interval log (shard.go)
		w.r.ivl.record(w.id, now, min(max(lat, histLowest), histHighest))
	}
	if w.rec.open {
		w.rec.svc.record(now - sent)
		w.rec.lag.record(sent - intended)
	}
	if w.r.live != nil { // the progress line is shown
		w.r.live.record(lat)
		w.done.Add(1)
	}
}

// warmReply counts a validated reply of the warmup.
func (w *worker) warmReply(now, intended int64, size int) {
	w.warm.requests++
	w.warm.bytes += int64(size)
	if w.r.warm != nil { // only the progress line sees its latency
		w.r.warm.record(now - intended)
	}
}

// reply counts a reply to request seq that was (ok) or was not the
// expected one.
func (w *worker) reply(now int64, seq uint64, intended, sent int64, counted, ok bool, got []byte, datagram bool) {
	switch {
	case ok && counted:
		w.record(now, intended, sent, len(got))
	case ok:
		w.warmReply(now, intended, len(got))
	default:
		w.mismatch(counted, seq, true, got, datagram)
	}
}

// mismatch counts a wrong reply and keeps the first few of the measurement
// as examples. known says whether seq is the request it answers (an
// unreadable or never-sent datagram tag has none to compare with);
// datagram says which kind of request seq was, to recognise a server
// running in the other mode.
func (w *worker) mismatch(counted bool, seq uint64, known bool, got []byte, datagram bool) {
	t := w.tally(counted)
	t.mismatches++
	t.errs[kindMismatch]++
	if known && w.r.gen.otherMode(got, w.id, seq, datagram) {
		t.otherMode++
	}
	if counted && len(w.examples) < w.r.cfg.MaxExamples {
		var want []byte
		if known && datagram {
			want = w.r.gen.expectedDatagram(nil, w.id, seq)
		} else if known {
			want = w.r.gen.expectedLine(nil, w.id, seq)
		}
		w.examples = append(w.examples, describeMismatch(w.id, seq, want, got))
	}
}

// failed counts n requests that failed with kind.
func (w *worker) failed(kind errKind, counted bool, n int64) {
	t := w.tally(counted)
	t.errs[kind] += n
	if kind == kindTimeout {
		t.timeouts += n
	}
}

// describeMismatch shows where a reply first differs from the expected one.
func describeMismatch(conn int, seq uint64, want, got []byte) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	from := max(0, i-8)
	excerpt := func(b []byte) string {
		if from >= len(b) {
			return `""`
		}
		to := min(len(b), from+24)
		s := fmt.Sprintf("%q", b[from:to])
		if to < len(b) {
			s += "..."
		}
		return s
	}
	if want == nil {
		return fmt.Sprintf("conn %d: a %d-byte reply answering no request sent (its sequence tag is unreadable or was never sent): %s",
			conn, len(got), excerpt(got))
	}
	return fmt.Sprintf("conn %d request %d: %d bytes back for %d sent, first difference at byte %d: want %s, got %s",
		conn, seq, len(got), len(want), i, excerpt(want), excerpt(got))
}

// stamp is one stream request in flight, in send order (the protocol
// answers in request order).
type stamp struct {
	seq      uint64
	intended int64 // due time (open loop) or send time (closed loop)
	sent     int64
	counted  bool // in the measurement window
}

// stampRing is a fixed-size FIFO of stamps: a connection's requests in
// flight, at most Pipeline of them.
type stampRing struct {
	buf     []stamp
	head, n int
}

func newStampRing(n int) stampRing { return stampRing{buf: make([]stamp, n)} }

func (q *stampRing) push(s stamp) {
	i := q.head + q.n
	if i >= len(q.buf) {
		i -= len(q.buf)
	}
	q.buf[i] = s
	q.n++
}

func (q *stampRing) pop() stamp {
	s := q.buf[q.head]
	if q.head++; q.head == len(q.buf) {
		q.head = 0
	}
	q.n--
	return s
}

func (q *stampRing) peek() *stamp { return &q.buf[q.head] }

// pending is a datagram waiting for its reply.
type pending struct {
	seq      uint64
	intended int64
	sent     int64
	deadline int64
	counted  bool
}

// doneRing returns how many finished datagrams a connection remembers, so a
// reply that arrives for one of them can be told apart: a duplicate (it was
// answered already) or a late reply (it was already counted lost). Each
// entry is (seq+1)<<2 | counted<<1 | lost. A reply for a datagram older than
// that is counted late. 64 per pipeline slot covers a duplicate that comes
// right after its original, and bounds the memory: 2 KiB a connection at
// -p 1 (10,000 UDP sockets: 20 MB), never more than 32 KiB.
func doneRing(pipeline int) int { return min(max(256, 64*pipeline), 1<<12) }

// dgramTracker is one datagram socket's table of datagrams awaiting their
// replies, shared by both engines. Replies are matched by their sequence
// tag: they may come in any order, twice, or never.
type dgramTracker struct {
	pend    []pending // in send order, so the oldest deadline comes first
	ring    []uint64
	maxSeen uint64
	seenAny bool
	// refill, when set, moves datagrams the sender has written since into
	// pend (the goroutine engine passes them through a channel, so a reply
	// can overtake its record).
	refill func()
}

func newDgramTracker(pipeline int) dgramTracker {
	return dgramTracker{pend: make([]pending, 0, pipeline), ring: make([]uint64, doneRing(pipeline))}
}

func (t *dgramTracker) markDone(p pending, lost bool) {
	e := (p.seq + 1) << 2
	if p.counted {
		e |= 2
	}
	if lost {
		e |= 1
	}
	t.ring[p.seq%uint64(len(t.ring))] = e
}

// remove takes pend[i] out, keeping the order.
func (t *dgramTracker) remove(i int) pending {
	p := t.pend[i]
	t.pend = append(t.pend[:i], t.pend[i+1:]...)
	return p
}

// expire counts every datagram whose reply is overdue at now as lost and
// returns how many slots that frees.
func (t *dgramTracker) expire(w *worker, now int64) int {
	n := 0
	for len(t.pend) > 0 && t.pend[0].deadline <= now {
		p := t.remove(0)
		tl := w.tally(p.counted)
		tl.lost++
		tl.timeouts++
		t.markDone(p, true)
		n++
	}
	return n
}

// find returns the index of seq in pend, or -1. Replies mostly come in
// order, so the oldest is tried first.
func (t *dgramTracker) find(seq uint64) int {
	for i := range t.pend {
		if t.pend[i].seq == seq {
			return i
		}
	}
	if t.refill != nil {
		t.refill() // the reply may have overtaken its record
		for i := range t.pend {
			if t.pend[i].seq == seq {
				return i
			}
		}
	}
	return -1
}

// onReply checks and counts one reply datagram received at now and
// reports whether it answered a pending datagram (which frees its slot).
func (t *dgramTracker) onReply(w *worker, reply []byte, now int64) bool {
	got, ok := parseTag(reply)
	if !ok {
		// Unreadable tag: a corrupted reply. Replies mostly come in order,
		// so it answers the oldest datagram still waiting: that one is a
		// mismatch, not a datagram lost (it was answered, wrongly).
		if len(t.pend) == 0 && t.refill != nil {
			t.refill()
		}
		if len(t.pend) == 0 {
			w.mismatch(now >= w.r.measureStart, 0, false, reply, true) // nothing was waiting
			return false
		}
		p := t.remove(0)
		t.markDone(p, false)
		w.mismatch(p.counted, p.seq, false, reply, true)
		return true
	}
	if got >= probeSeq {
		return false // a late reply to the reachability probe
	}
	i := t.find(got)
	if i < 0 {
		e := t.ring[got%uint64(len(t.ring))]
		switch {
		case e>>2 == got+1 && e&1 == 0:
			if e&2 != 0 {
				w.m.duplicated++
			}
		case e>>2 == got+1:
			if e&2 != 0 {
				w.m.late++
			}
		case len(t.pend) > 0 && got > t.pend[len(t.pend)-1].seq:
			w.mismatch(now >= w.r.measureStart, got, false, reply, true) // a tag never sent
		default:
			w.m.late++ // too old to remember
		}
		return false
	}
	p := t.remove(i)
	t.markDone(p, false)
	if t.seenAny && got < t.maxSeen && p.counted {
		w.m.reorder++
	}
	if !t.seenAny || got > t.maxSeen {
		t.maxSeen, t.seenAny = got, true
	}
	w.reply(now, got, p.intended, p.sent, p.counted, w.r.gen.checkDatagram(reply, w.id, got), reply, true)
	return true
}
