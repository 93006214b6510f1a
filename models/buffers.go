package models

import (
	"iter"
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

// Largest returns the element of conns whose Hold (given by hold) holds
// the most, or false when none holds anything. Models call it over their
// connections when Set reported the server over its bound.
func Largest[T any](conns iter.Seq[T], hold func(T) *Hold) (T, bool) {
	var (
		best  T
		most  int64
		found bool
	)
	for c := range conns {
		if n := hold(c).Held(); n > most {
			best, most, found = c, n, true
		}
	}
	return best, found
}
