package loadgen

import (
	"errors"
	"fmt"

	"github.com/sockbench/sockbench/protocol"
)

// stamp travels from a connection's sender to its receiver, one per request
// in flight, in send order (the protocol answers in request order).
type stamp struct {
	seq      uint64
	intended int64 // due time (open loop) or send time (closed loop)
	sent     int64
	counted  bool // in the measurement window
}

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
	p := w.r.cfg.Pipeline
	slots := make(chan struct{}, p)
	for range p {
		slots <- struct{}{}
	}
	inflight := make(chan stamp, p)
	go w.sendStream(slots, inflight)
	w.receiveStream(slots, inflight)
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
	buf := make([]byte, 0, min(r.cfg.SizeMax*r.cfg.Pipeline, maxBatch)+r.cfg.SizeMax)
	acquire := func() bool {
		select {
		case <-slots:
			return true
		case <-w.dead:
		case <-r.stop:
		}
		return false
	}
	for seq := uint64(0); ; {
		buf = buf[:0]
		if r.tokens != nil {
			if !acquire() {
				return
			}
			var tok slot
			select {
			case t, ok := <-r.tokens:
				if !ok {
					return
				}
				tok = t
			case <-w.dead:
				return
			case <-r.stop:
				return
			}
			now := r.now()
			if now >= r.end {
				// The window is over: a backlog of due requests is
				// reported as unsent, not sent late.
				return
			}
			if tok.counted {
				w.sent++
				lag := now - tok.due
				if lag > int64(lateSend) {
					w.lateSends++
				}
				w.maxLag = max(w.maxLag, lag)
			}
			inflight <- stamp{seq: seq, intended: tok.due, sent: now, counted: tok.counted}
			buf = r.gen.line(buf, w.id, seq)
			seq++
		} else {
			if !acquire() {
				return
			}
			for more := true; more; {
				now, counted, ok := r.claimClosed()
				if !ok {
					break
				}
				if counted {
					w.sent++
				}
				inflight <- stamp{seq: seq, intended: now, sent: now, counted: counted}
				buf = r.gen.line(buf, w.id, seq)
				seq++
				select { // another free slot, and room for its request?
				case <-slots:
					if len(buf)+r.cfg.SizeMax > cap(buf) {
						slots <- struct{}{} // no room: give it back
						more = false
					}
				default:
					more = false
				}
			}
			if len(buf) == 0 {
				return
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
	// A reply longer than the longest request is wrong whatever it holds;
	// the bound is at least 4 KiB so pipelined replies are read in batches.
	lr := protocol.NewLineReader(w.conn, max(r.cfg.SizeMax, 4<<10))
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
		now := r.now()
		ok, size := r.gen.checkLine(line, w.id, st.seq)
		switch {
		case st.counted && ok:
			w.record(now, st.intended, st.sent, size)
		case st.counted:
			w.mismatch(st.seq, r.gen.expectedLine(nil, w.id, st.seq), line, false)
		case r.warm != nil: // warmup: only the progress line sees it
			r.warm.record(now - st.intended)
		}
		slots <- struct{}{}
	}
	w.kill(nil)
	for range inflight { // wait for the sender: its counters are read next
	}
}

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
	kind := classify(err)
	if errors.Is(err, protocol.ErrLineTooLong) {
		err = fmt.Errorf("a reply line ran past %d bytes without a newline (the longest request is %d)", max(w.r.cfg.SizeMax, 4<<10), w.r.cfg.SizeMax)
	}
	w.failure = err
	if kind == kindTimeout {
		w.failure = fmt.Errorf("no reply within --timeout %v", w.r.cfg.Timeout)
	}
	n := int64(0)
	if st.counted {
		n++
	}
	for s := range inflight {
		if s.counted {
			n++
		}
	}
	w.errs[kind] += n
	if kind == kindTimeout {
		w.timeouts += n
	}
}
