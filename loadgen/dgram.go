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

// doneRing remembers how recently finished datagrams ended, so a reply that
// arrives for one of them can be told apart: a duplicate (it was answered
// already) or a late reply (it was already counted lost). Each entry is
// (seq+1)<<2 | counted<<1 | lost.
const doneRingSize = 1 << 12

// runDatagram drives one connected UDP socket from a single goroutine.
// Sending never blocks for long on UDP, so one loop can both send (while
// fewer than Pipeline datagrams are pending and the schedule allows) and
// wait for replies, with the read deadline set to the earliest of: the
// oldest pending datagram's timeout and, in the open loop, the next due
// time. A datagram whose reply does not come within Timeout is counted lost
// and frees its slot: a lost datagram never hangs the connection.
func (w *worker) runDatagram() {
	r := w.r
	cfg := r.cfg
	timeout := int64(cfg.Timeout)
	pend := make([]pending, 0, cfg.Pipeline)
	ring := make([]uint64, doneRingSize)
	rbuf := make([]byte, cfg.SizeMax+1) // one more byte shows an oversized reply
	wbuf := make([]byte, 0, cfg.SizeMax)
	var (
		seq                uint64
		maxSeen            uint64
		seenAny            bool
		due                int64
		dueCounted, hasDue bool
		sending            = true
	)
	defer w.kill(nil)

	markDone := func(p pending, lost bool) {
		e := (p.seq + 1) << 2
		if p.counted {
			e |= 2
		}
		if lost {
			e |= 1
		}
		ring[p.seq%doneRingSize] = e
	}

	for {
		if r.stopping.Load() {
			return
		}
		now := r.now()
		// Expire datagrams whose reply is overdue (pend is in send order,
		// so the oldest deadline comes first).
		for len(pend) > 0 && pend[0].deadline <= now {
			p := pend[0]
			if p.counted {
				w.lost++
				w.timeouts++
			}
			markDone(p, true)
			pend = append(pend[:0], pend[1:]...)
		}
		// Send while there is room and the schedule allows.
		for sending && len(pend) < cfg.Pipeline {
			var p pending
			if r.pacer != nil {
				if now >= r.end {
					sending = false
					break
				}
				if !hasDue {
					var ok bool
					due, dueCounted, ok = r.pacer.Claim(now)
					if !ok {
						sending = false
						break
					}
					hasDue = true
				}
				if due > now {
					break
				}
				hasDue = false
				p = pending{seq: seq, intended: due, sent: now, counted: dueCounted}
				if dueCounted {
					lag := now - due
					if lag > int64(lateSend) {
						w.lateSends++
					}
					w.maxLag = max(w.maxLag, lag)
				}
			} else {
				t, counted, ok := r.claimClosed()
				if !ok {
					sending = false
					break
				}
				now = t
				p = pending{seq: seq, intended: t, sent: t, counted: counted}
			}
			p.deadline = p.sent + timeout
			if p.counted {
				w.sent++
			}
			wbuf = r.gen.datagram(wbuf[:0], w.id, seq)
			if _, err := w.conn.Write(wbuf); err != nil {
				w.datagramFailed(err, append(pend, p))
				return
			}
			pend = append(pend, p)
			seq++
			now = r.now()
		}
		if !sending && len(pend) == 0 {
			return
		}
		// Wait for a reply, the next timeout or the next due time.
		wake := int64(-1)
		if len(pend) > 0 {
			wake = pend[0].deadline
		}
		if sending && hasDue && len(pend) < cfg.Pipeline && (wake < 0 || due < wake) {
			wake = due
		}
		if wake < 0 { // cannot happen: either something is pending or due
			wake = now + timeout
		}
		w.conn.SetReadDeadline(r.at(wake))
		if r.stopping.Load() {
			return
		}
		n, err := w.conn.Read(rbuf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if r.stopping.Load() {
				return
			}
			w.datagramFailed(err, pend)
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
		i := -1
		for j := range pend {
			if pend[j].seq == got {
				i = j
				break
			}
		}
		if i < 0 {
			e := ring[got%doneRingSize]
			switch {
			case e>>2 == got+1 && e&1 == 0:
				if e&2 != 0 {
					w.duplicated++
				}
			case e>>2 == got+1:
				if e&2 != 0 {
					w.late++
				}
			case got >= seq:
				w.mismatch(got, nil, reply, true) // a tag we never sent
			default:
				w.late++ // too old to remember
			}
			continue
		}
		p := pend[i]
		pend = append(pend[:i], pend[i+1:]...)
		markDone(p, false)
		if seenAny && got < maxSeen && p.counted {
			w.reorder++
		}
		if !seenAny || got > maxSeen {
			maxSeen, seenAny = got, true
		}
		if !p.counted {
			if r.live != nil { // warmup: only the progress line sees it
				r.live.record(now - p.intended)
			}
			continue
		}
		if r.gen.checkDatagram(reply, w.id, got) {
			w.record(now, p.intended, p.sent, n)
		} else {
			w.mismatch(got, r.gen.expectedDatagram(nil, w.id, got), reply, true)
		}
	}
}

// datagramFailed ends a UDP connection on a socket error (typically
// ECONNREFUSED once the server's port is closed); every pending datagram of
// the window failed with that kind.
func (w *worker) datagramFailed(err error, pend []pending) {
	w.kill(err)
	if w.r.stopping.Load() {
		return
	}
	w.failure = err
	kind := classify(err)
	for _, p := range pend {
		if p.counted {
			w.errs[kind]++
		}
	}
}
