package loadgen

import (
	"errors"
	"net"
	"os"
)

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

// runDatagram drives one datagram socket (udp or unixgram) with a sender
// goroutine and this receiving one, shaped like runStream: slots holds
// Pipeline tokens, the sender takes one per datagram and passes the
// datagram's pending record through newPend before writing it; the
// receiver owns the table of pending datagrams, matches replies by their
// sequence tag (they may come in any order, twice, or never), and gives the
// slot back on a reply or once the datagram's Timeout has passed. A lost
// datagram therefore never hangs the connection: it costs its slot for
// Timeout, then counts as lost.
func (w *worker) runDatagram() {
	p := w.r.cfg.Pipeline
	slots := make(chan struct{}, p)
	for range p {
		slots <- struct{}{}
	}
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
		select {
		case <-slots:
		case <-w.dead:
			return
		case <-r.stop:
			return
		}
		var p pending
		if r.tokens != nil {
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
				return // the window is over; the backlog counts as unsent
			}
			p = pending{seq: seq, intended: tok.due, sent: now, counted: tok.counted}
			if tok.counted {
				lag := now - tok.due
				if lag > int64(lateSend) {
					w.lateSends++
				}
				w.maxLag = max(w.maxLag, lag)
			}
		} else {
			now, counted, ok := r.claimClosed()
			if !ok {
				return
			}
			p = pending{seq: seq, intended: now, sent: now, counted: counted}
		}
		p.deadline = p.sent + timeout
		if p.counted {
			w.sent++
		}
		newPend <- p // never blocks: it has room for every slot
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
	pend := make([]pending, 0, r.cfg.Pipeline)
	ring := make([]uint64, doneRing(r.cfg.Pipeline))
	rbuf := make([]byte, r.cfg.SizeMax+1) // one more byte shows an oversized reply
	var maxSeen uint64
	seenAny, open := false, true
	defer func() {
		w.kill(nil)
		for range newPend { // wait for the sender: its counters are read next
		}
	}()

	markDone := func(p pending, lost bool) {
		e := (p.seq + 1) << 2
		if p.counted {
			e |= 2
		}
		if lost {
			e |= 1
		}
		ring[p.seq%uint64(len(ring))] = e
	}
	// take moves datagrams the sender has written into pend; with block set
	// it waits for one when pend is empty.
	take := func(block bool) {
		for open {
			var p pending
			var ok bool
			if block && len(pend) == 0 {
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
			pend = append(pend, p)
		}
	}

	for {
		take(true)
		if len(pend) == 0 { // the sender is done and nothing is pending
			return
		}
		// Expire datagrams whose reply is overdue (pend is in send order,
		// so the oldest deadline comes first).
		now := r.now()
		for len(pend) > 0 && pend[0].deadline <= now {
			p := pend[0]
			if p.counted {
				w.lost++
				w.timeouts++
			}
			markDone(p, true)
			pend = append(pend[:0], pend[1:]...)
			slots <- struct{}{}
		}
		if len(pend) == 0 {
			continue
		}
		w.conn.SetReadDeadline(r.at(pend[0].deadline))
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
			w.datagramFailed(err, pend, newPend)
			return
		}
		reply := rbuf[:n]
		now = r.now()
		got, ok := parseTag(reply)
		if !ok {
			// Unreadable tag: a corrupted reply. Its request, whichever it
			// was, will time out as lost.
			if now >= r.measureStart {
				w.mismatch(0, nil, reply, true)
			}
			continue
		}
		if got >= probeSeq {
			continue // a late reply to the reachability probe
		}
		i := findPending(pend, got)
		if i < 0 {
			take(false) // the reply may have overtaken its record
			i = findPending(pend, got)
		}
		if i < 0 {
			e := ring[got%uint64(len(ring))]
			switch {
			case e>>2 == got+1 && e&1 == 0:
				if e&2 != 0 {
					w.duplicated++
				}
			case e>>2 == got+1:
				if e&2 != 0 {
					w.late++
				}
			case len(pend) > 0 && got > pend[len(pend)-1].seq:
				w.mismatch(got, nil, reply, true) // a tag never sent
			default:
				w.late++ // too old to remember
			}
			continue
		}
		p := pend[i]
		pend = append(pend[:i], pend[i+1:]...)
		markDone(p, false)
		slots <- struct{}{}
		if seenAny && got < maxSeen && p.counted {
			w.reorder++
		}
		if !seenAny || got > maxSeen {
			maxSeen, seenAny = got, true
		}
		switch {
		case !p.counted:
			if r.warm != nil { // warmup: only the progress line sees it
				r.warm.record(now - p.intended)
			}
		case r.gen.checkDatagram(reply, w.id, got):
			w.record(now, p.intended, p.sent, n)
		default:
			w.mismatch(got, r.gen.expectedDatagram(nil, w.id, got), reply, true)
		}
	}
}

// findPending returns the index of seq in pend, or -1. Replies mostly come
// in order, so the oldest is tried first.
func findPending(pend []pending, seq uint64) int {
	for i := range pend {
		if pend[i].seq == seq {
			return i
		}
	}
	return -1
}

// datagramFailed ends a datagram connection on a socket error (typically
// ECONNREFUSED once the server's port is closed): every pending datagram of
// the window, and every one the sender still passes on, failed with that
// kind.
func (w *worker) datagramFailed(err error, pend []pending, newPend <-chan pending) {
	w.kill(err)
	w.failure = err
	kind := classify(err)
	for _, p := range pend {
		if p.counted {
			w.errs[kind]++
		}
	}
	for p := range newPend {
		if p.counted {
			w.errs[kind]++
		}
	}
}
