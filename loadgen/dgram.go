package loadgen

import (
	"errors"
	"net"
	"os"
)

// runDatagram drives one datagram socket (udp or unixgram) in the
// goroutine engine with a sender goroutine and this receiving one, shaped
// like runStream: slots holds Pipeline tokens, the sender takes one per
// datagram and passes the datagram's pending record through newPend before
// writing it; the receiver owns the dgramTracker, and gives the slot back
// on a reply or once the datagram's Timeout has passed. A lost datagram
// therefore never hangs the connection: it costs its slot for Timeout,
// then counts as lost.
func (w *worker) runDatagram() {
	slots, p := w.newSlots()
	newPend := make(chan pending, p)
	go w.sendDatagrams(slots, newPend)
	w.receiveDatagrams(slots, newPend)
}

// sendDatagrams writes datagrams until the schedule, the window or the
// connection ends, then closes newPend.
func (w *worker) sendDatagrams(slots <-chan struct{}, newPend chan<- pending) {
	r := w.r
	defer close(newPend)
	buf := make([]byte, 0, r.cfg.SizeMax)
	timeout := int64(r.cfg.Timeout)
	for seq := uint64(0); ; seq++ {
		now, due, counted, ok := w.next(slots)
		if !ok {
			return
		}
		w.sentAt(now, due, counted, r.tokens != nil)
		newPend <- pending{seq: seq, intended: due, sent: now, deadline: now + timeout, counted: counted} // never blocks: room for every slot
		buf = r.gen.datagram(buf[:0], w.id, seq)
		if _, err := w.conn.Write(buf); err != nil {
			w.kill(err)
			return
		}
	}
}

// receiveDatagrams matches replies to pending datagrams until the sender is
// done and nothing is pending, or the socket fails.
func (w *worker) receiveDatagrams(slots chan<- struct{}, newPend <-chan pending) {
	r := w.r
	t := newDgramTracker(r.cfg.Pipeline)
	rbuf := make([]byte, r.cfg.SizeMax+1) // one more byte shows an oversized reply
	open := true
	defer func() {
		w.kill(nil)
		for range newPend { // wait for the sender: its counters are read next
		}
	}()
	// take moves datagrams the sender has written into pend; with block set
	// it waits for one when pend is empty.
	take := func(block bool) {
		for open {
			var p pending
			var ok bool
			if block && len(t.pend) == 0 {
				p, ok = <-newPend
			} else {
				select {
				case p, ok = <-newPend:
				default:
					return
				}
			}
			if !ok {
				open = false
				return
			}
			t.pend = append(t.pend, p)
		}
	}
	t.refill = func() { take(false) }

	for {
		take(true)
		if len(t.pend) == 0 { // the sender is done and nothing is pending
			return
		}
		for range t.expire(w, r.now()) {
			slots <- struct{}{}
		}
		if len(t.pend) == 0 {
			continue
		}
		w.conn.SetReadDeadline(r.at(t.pend[0].deadline))
		if r.stopping.Load() {
			return
		}
		n, err := w.conn.Read(rbuf)
		if err != nil {
			var ne net.Error
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
				if r.stopping.Load() {
					return
				}
				continue
			}
			if cause := w.firstCause(); cause != nil {
				err = cause // the sender failed first
			}
			if r.stopping.Load() {
				return
			}
			take(false)
			w.datagramFailed(err, t.pend)
			for p := range newPend {
				w.failed(classify(err), p.counted, 1)
			}
			return
		}
		if t.onReply(w, rbuf[:n], r.now()) {
			slots <- struct{}{}
		}
	}
}

// datagramFailed ends a datagram connection on a socket error (typically
// ECONNREFUSED once the server's port is closed): every pending datagram
// failed with that kind.
func (w *worker) datagramFailed(err error, pend []pending) {
	if w.conn != nil {
		w.kill(err)
	}
	w.setFailure(err)
	kind := classify(err)
	for _, p := range pend {
		w.failed(kind, p.counted, 1)
	}
}
