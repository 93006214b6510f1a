package loadgen

import (
	"errors"
	"fmt"

	"github.com/sockbench/sockbench/protocol"
)

// The goroutine engine: two goroutines per connection on Go's net package.
// It is the portable fallback (every platform but Linux runs it) and the
// yardstick the epoll engine is measured against; see the package doc.

// runStream drives one stream connection: a sender goroutine and this
// receiving one.
//
// Sending and receiving are separate goroutines because a single goroutine
// that writes a batch and then reads can deadlock against a server once
// Pipeline*Size exceeds the socket buffers (both sides blocked in write).
// slots is a semaphore of Pipeline tokens: the sender takes one per request,
// the receiver gives it back per reply, so at most Pipeline requests are in
// flight. inflight carries the stamps; it never blocks the sender because it
// has room for Pipeline of them.
func (w *worker) runStream() {
	slots, p := w.newSlots()
	inflight := make(chan stamp, p)
	go w.sendStream(slots, inflight)
	w.receiveStream(slots, inflight)
}

// newSlots returns a semaphore holding Pipeline tokens.
func (w *worker) newSlots() (chan struct{}, int) {
	p := w.r.cfg.Pipeline
	slots := make(chan struct{}, p)
	for range p {
		slots <- struct{}{}
	}
	return slots, p
}

// next waits until the sender may send its next request: a free pipeline
// slot and, in the open loop, a due time from the dispatcher. It returns
// the send time, the due time (the send time in the closed loop), whether
// the request is measured, and false once the connection, the run or the
// schedule is over. In the open loop a backlog of due requests left when
// the window closes is reported as unsent, not sent late.
func (w *worker) next(slots <-chan struct{}) (now, due int64, counted, ok bool) {
	r := w.r
	select {
	case <-slots:
	case <-w.dead:
		return 0, 0, false, false
	case <-r.stop:
		return 0, 0, false, false
	}
	if r.tokens == nil {
		now, counted, ok = r.claimClosed()
		return now, now, counted, ok
	}
	var tok slot
	select {
	case t, open := <-r.tokens:
		if !open {
			return 0, 0, false, false
		}
		tok = t
	case <-w.dead:
		return 0, 0, false, false
	case <-r.stop:
		return 0, 0, false, false
	}
	if now = r.now(); now >= r.end {
		return 0, 0, false, false
	}
	return now, tok.due, tok.counted, true
}

// maxBatch bounds the bytes a closed-loop sender writes at once.
const maxBatch = 64 << 10

// sendStream writes requests until the schedule, the window or the
// connection ends, then closes inflight.
//
// The closed loop batches: when several slots are free (pipelining), it
// writes every request they allow in one write, as a pipelining client
// would, instead of paying a system call per request. The open loop writes
// each request when it is due.
func (w *worker) sendStream(slots chan struct{}, inflight chan<- stamp) {
	r := w.r
	defer close(inflight)
	open := r.tokens != nil
	buf := make([]byte, 0, min(r.cfg.SizeMax*r.cfg.Pipeline, maxBatch)+r.cfg.SizeMax)
	for seq := uint64(0); ; {
		now, due, counted, ok := w.next(slots)
		if !ok {
			return
		}
		buf = buf[:0]
		for more := true; more; {
			w.sentAt(now, due, counted, open)
			inflight <- stamp{seq: seq, intended: due, sent: now, counted: counted}
			buf = r.gen.line(buf, w.id, seq)
			seq++
			more = false
			if !open && len(buf)+r.cfg.SizeMax <= cap(buf) {
				select { // another free slot?
				case <-slots:
					now, counted, more = r.claimClosed()
					due = now
				default:
				}
			}
		}
		if _, err := w.conn.Write(buf); err != nil {
			w.kill(err)
			return
		}
	}
}

// receiveStream reads and checks one reply per stamp until the sender is
// done and nothing is left in flight, or the connection fails.
func (w *worker) receiveStream(slots chan<- struct{}, inflight <-chan stamp) {
	r := w.r
	lr := protocol.NewLineReader(w.conn, maxReplyLine(r.cfg))
	timeout := int64(r.cfg.Timeout)
	for st := range inflight {
		if !lr.HasLine() {
			w.conn.SetReadDeadline(r.at(st.sent + timeout))
			if r.stopping.Load() {
				break
			}
		}
		line, err := lr.Next()
		if err != nil {
			w.streamFailed(err, st, inflight)
			return
		}
		ok, _ := r.gen.checkLine(line, w.id, st.seq)
		w.reply(r.now(), st.seq, st.intended, st.sent, st.counted, ok, line, false)
		slots <- struct{}{}
	}
	w.kill(nil)
	for range inflight { // wait for the sender: its counters are read next
	}
}

// maxReplyLine is the longest reply line a stream connection accepts: a
// reply longer than the longest request is wrong whatever it holds; the
// bound is at least 4 KiB so pipelined replies are read in batches.
func maxReplyLine(cfg *Config) int { return max(cfg.SizeMax, 4<<10) }

// streamFailed ends the connection after a read error: the request being
// read and every one still in flight failed with the same kind, unless the
// run is being cancelled, in which case nothing is counted.
func (w *worker) streamFailed(err error, st stamp, inflight <-chan stamp) {
	if cause := w.firstCause(); cause != nil {
		err = cause // the sender failed first; that is the real reason
	}
	w.kill(err)
	if w.r.stopping.Load() {
		for range inflight {
		}
		return
	}
	kind := w.streamFailure(err)
	w.failed(kind, st.counted, 1)
	for s := range inflight {
		w.failed(kind, s.counted, 1)
	}
}

// streamFailure records why a stream connection failed, in words a user
// reads, and returns the kind its requests in flight count as.
func (w *worker) streamFailure(err error) errKind {
	kind := classify(err)
	switch {
	case errors.Is(err, protocol.ErrLineTooLong):
		err = fmt.Errorf("a reply line ran past %d bytes without a newline (the longest request is %d)", maxReplyLine(w.r.cfg), w.r.cfg.SizeMax)
	case kind == kindTimeout:
		err = fmt.Errorf("no reply within --timeout %v", w.r.cfg.Timeout)
	}
	w.setFailure(err)
	return kind
}
