package models

import (
	"iter"
	"log/slog"
	"sync"
	"sync/atomic"
)

// Buffers is a server's account of the bytes it holds for its clients
// (Config.MaxBuffered): partial lines, lines read and not yet answered,
// replies a socket has not taken. Each connection keeps its share in a
// Hold and reports it with Set whenever it changes; Set says when the
// server as a whole is past the bound, and the model then closes the
// connection holding the most (Largest helps pick it) and Releases it.
//
// The total is kept in one or more cells of which this process writes
// only its own: a single-process server has one; prefork's pool workers
// share cells in memory mapped by all of them (one per worker slot, so the
// parent can zero a dead worker's cell), and every Set sums them. A nil
// *Buffers, what NewBuffers returns without a bound, accounts nothing and
// costs one nil check, so a server without --max-buffered pays nothing.
type Buffers struct {
	max   int64
	cells []atomic.Int64
	mine  *atomic.Int64
}

// NewBuffers returns the account of a single-process server bounded to
// max bytes, or nil when max <= 0 (no bound).
func NewBuffers(max int64) *Buffers {
	if max <= 0 {
		return nil
	}
	cells := make([]atomic.Int64, 1)
	return &Buffers{max: max, cells: cells, mine: &cells[0]}
}

// SharedBuffers returns the account of one process of a server whose
// processes share cells (one each, cells[mine] this one's), or nil when
// max <= 0.
func SharedBuffers(max int64, cells []atomic.Int64, mine int) *Buffers {
	if max <= 0 {
		return nil
	}
	return &Buffers{max: max, cells: cells, mine: &cells[mine]}
}

// Max is the bound in bytes.
func (b *Buffers) Max() int64 { return b.max }

// Mine is what this process holds now, in bytes: a model's
// Stats.Buffered (prefork's parent sums its workers'). 0 for a nil
// *Buffers.
func (b *Buffers) Mine() int64 {
	if b == nil {
		return 0
	}
	return b.mine.Load()
}

// Total is what the server holds now, in bytes.
func (b *Buffers) Total() int64 {
	var t int64
	for i := range b.cells {
		t += b.cells[i].Load()
	}
	return t
}

// Hold is one connection's share of a server's Buffers. Its zero value
// holds nothing. Set and Release may be called from any goroutine.
type Hold struct {
	mu       sync.Mutex
	n        int64
	released bool
}

// Held is what h holds now.
func (h *Hold) Held() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// Set records that h now holds n bytes and reports whether that growth
// took the server past its bound (a Set that does not grow h reports
// false: whoever grew last deals with it). After Release it records
// nothing and reports false: the connection is on its way out.
func (b *Buffers) Set(h *Hold, n int) (over bool) {
	h.mu.Lock()
	grew := int64(n) > h.n
	if h.released || int64(n) == h.n {
		h.mu.Unlock()
		return false
	}
	b.mine.Add(int64(n) - h.n)
	h.n = int64(n)
	h.mu.Unlock()
	return grew && b.Total() > b.max
}

// Release gives back everything h holds, for good, and reports whether
// this call did it (the first Release of h): the one that closes the
// connection for OverBuffered counts it.
func (b *Buffers) Release(h *Hold) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.released {
		return false
	}
	b.mine.Add(-h.n)
	h.n, h.released = 0, true
	return true
}

// A Holder is a model's connection with a share of its server's Buffers.
type Holder interface {
	comparable
	Hold() *Hold
	Remote() string // the peer, for a log line
}

// Largest returns the connection of conns holding the most, or false when
// none holds anything.
func Largest[T Holder](conns iter.Seq[T]) (T, bool) {
	var (
		best  T
		most  int64
		found bool
	)
	for c := range conns {
		if n := c.Hold().Held(); n > most {
			best, most, found = c, n, true
		}
	}
	return best, found
}

// Shed brings a server back within its bound after the growth of self's
// share took it past (Set reported over). Again and again, until the
// server is within the bound or nothing is held: it takes the connection
// holding the most (largest returns it, picked under the model's own lock,
// Largest helps), gives its share back at once, so whoever grows next sees
// the server as it will be, counts it in ctr.OverBuffered, logs it through
// logs, and has the model close it (closeIt, never called for self). It
// reports whether self was one: its caller then closes it.
//
// Under prefork's pool the total is the pool's and largest sees only this
// worker's connections: the worker whose connection grew closes its own
// largest, and does nothing when it holds nothing.
func Shed[T Holder](b *Buffers, self T, largest func() (T, bool), closeIt func(T), ctr *Counters, logs *RateLog, log *slog.Logger) (closedSelf bool) {
	for b.Total() > b.max {
		victim, ok := largest()
		if !ok {
			return closedSelf
		}
		h := victim.Hold()
		held := h.Held()
		if !b.Release(h) {
			continue
		}
		ctr.OverBuffered.Add(1)
		logs.Warn(log, "server holds more than max-buffered; closing the connection holding the most",
			"remote", victim.Remote(), "held", held, "max_buffered", b.max)
		if victim == self {
			closedSelf = true
		} else {
			closeIt(victim)
		}
	}
	return closedSelf
}
