//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package bare

import (
	"golang.org/x/sys/unix"

	"github.com/sockbench/sockbench/protocol"
)

// readDgrams answers the datagrams waiting on the socket, up to
// dgramBatch of them. Each is read into the loop's buffer (one byte
// larger than the largest request, so a truncated read shows: such
// datagrams are dropped and counted, never answered with a wrong length),
// transformed in place and sent back from there to the sender's address
// as the kernel gave it.
func (l *loop) readDgrams() {
	if l.draining {
		return // an event of the batch that began the drain
	}
	for range dgramBatch {
		n, e := recvFrom(l.lfd, l.buf, &l.from)
		if e != 0 {
			if e != unix.EAGAIN && e != unix.EINTR {
				l.ctr.ReadErrors.Add(1)
				l.logs.Warn(l.s.log, "datagram read failed", "err", e)
			}
			return
		}
		l.bytesIn += uint64(n)
		if n > protocol.MaxDatagram {
			l.ctr.BadDgrams.Add(1)
			l.logs.Warn(l.s.log, "datagram larger than the largest request; dropped", "max", protocol.MaxDatagram)
			continue
		}
		if !l.from.named() {
			l.ctr.BadDgrams.Add(1)
			l.logs.Warn(l.s.log, "datagram from an unbound unix socket; cannot reply, dropped")
			continue
		}
		b := l.buf[:n]
		if l.blocks {
			l.dispatchDgram(b)
			continue
		}
		if l.work > 0 {
			protocol.Burn(l.work)
		}
		l.mode.Apply(b)
		l.reply(b, &l.from)
	}
}

// reply sends one reply datagram without waiting: a peer whose receive
// queue is full (a unixgram client that does not read) would otherwise
// stall the loop and every other client. Such a reply is dropped and
// counted in WriteErrors.
func (l *loop) reply(b []byte, to *sockaddr) {
	e := sendTo(l.lfd, b, to)
	if e == unix.EINTR {
		e = sendTo(l.lfd, b, to)
	}
	if e != 0 {
		l.ctr.WriteErrors.Add(1)
		l.logs.Warn(l.s.log, "datagram reply dropped", "err", e)
		return
	}
	l.requests++
	l.bytesOut += uint64(len(b))
}

// dispatchDgram hands a datagram to the pool (--block). When the pool
// already holds as many as it has goroutines the datagram is dropped and
// counted in BadDatagrams, as a real overloaded UDP server's kernel would
// drop it: the loop never queues without bound.
func (l *loop) dispatchDgram(b []byte) {
	if !l.pool.hasRoom() {
		l.ctr.BadDgrams.Add(1)
		l.logs.Warn(l.s.log, "every handler is busy; datagram dropped", "pool", l.pool.max)
		return
	}
	j := l.pool.get()
	j.c = nil
	j.buf = append(j.buf[:0], b...)
	j.from = l.from
	l.pool.submit(j)
}

// dgramDone sends a reply the pool finished.
func (l *loop) dgramDone(j *job) {
	if l.lfd >= 0 {
		l.reply(j.buf, &j.from)
	}
	l.pool.release(j)
}
