package loadgen

import (
	"errors"
	"fmt"
	"time"

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
// the receiver gives it back per reply, so exactly Pipeline requests are in
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

// sendStream writes requests until the schedule, the window or the
// connection ends, then closes inflight.
func (w *worker) sendStream(slots chan struct{}, inflight chan<- stamp) {
	r := w.r
	defer close(inflight)
	buf := make([]byte, 0, r.cfg.SizeMax)
	var timer *time.Timer
	if r.pacer != nil {
		timer = time.NewTimer(time.Hour)
		timer.Stop()
		defer timer.Stop()
	}
	for seq := uint64(0); ; seq++ {
		var st stamp
		if r.pacer != nil {
			due, counted, ok := r.pacer.Claim(r.now())
			if !ok || r.now() >= r.end {
				// The schedule is over, or the window is: a backlog of
				// due requests is reported as unsent, not sent late.
				return
			}
			if d := due - r.now(); d > 0 {
				timer.Reset(time.Duration(d))
				select {
				case <-timer.C:
				case <-w.dead:
					return
				case <-r.stop:
					return
				}
			}
			select {
			case <-slots:
			case <-w.dead:
				return
			case <-r.stop:
				return
			}
			now := r.now()
			st = stamp{seq: seq, intended: due, sent: now, counted: counted}
			if counted {
				lag := now - due
				if lag > int64(lateSend) {
					w.lateSends++
				}
				w.maxLag = max(w.maxLag, lag)
			}
		} else {
			select {
			case <-slots:
			case <-w.dead:
				return
			case <-r.stop:
				return
			}
			now, counted, ok := r.claimClosed()
			if !ok {
				return
			}
			st = stamp{seq: seq, intended: now, sent: now, counted: counted}
		}
		if st.counted {
			w.sent++
		}
		inflight <- st
		buf = r.gen.line(buf[:0], w.id, seq)
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
	lr := protocol.NewLineReader(w.conn, r.cfg.SizeMax)
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
		case r.live != nil: // warmup: only the progress line sees it
			r.live.record(now - st.intended)
		}
		slots <- struct{}{}
	}
	w.kill(nil)
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
		err = fmt.Errorf("a reply line ran past %d bytes (the longest request) without a newline", w.r.cfg.SizeMax)
	}
	w.failure = err
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
