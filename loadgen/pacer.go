package loadgen

import (
	"math"
	"sync/atomic"
)

// pacer hands out the times at which open-loop requests are due, one after
// the other, to the run's dispatcher, which passes each to whichever
// connection is free: the schedule as a whole keeps the rate no matter
// which connections are slow (unlike a ticker per worker, which silently
// lowers the rate when one falls behind). Only a constant rate exists
// today; the interface is where a ramp or a Poisson schedule would go.
type pacer interface {
	// Claim returns the due time of the next request in nanoseconds on the
	// run's clock, whether it falls in the measurement (not the warmup),
	// and false once the schedule is over. now is the current time on the
	// same clock.
	Claim(now int64) (due int64, counted, ok bool)
}

// constantPacer is a pacer for a constant rate: slot k is due at
// start + k/rate. Claiming is one atomic add, no lock.
type constantPacer struct {
	start    int64   // due time of slot 0
	interval float64 // nanoseconds between slots
	measured int64   // first slot of the measurement (slots before are warmup)
	mstart   int64   // due time of the first measured slot's window: the end of warmup
	limit    int64   // no slot at or past this index; MaxInt64 when unbounded
	end      int64   // no due time at or after this; MaxInt64 when unbounded
	next     atomic.Int64
}

// newConstantPacer returns a pacer at rate req/s starting at start; slots due
// before measureStart are warmup. requests > 0 limits the measured slots to
// that many; end > 0 stops the schedule at that time.
func newConstantPacer(rate float64, start, measureStart, end, requests int64) *constantPacer {
	p := &constantPacer{start: start, interval: 1e9 / rate, limit: math.MaxInt64, end: math.MaxInt64}
	// First slot due at or after measureStart; computed with the same
	// expression Claim uses, so the boundary is exact.
	k := int64(float64(measureStart-start) / p.interval)
	for k > 0 && p.due(k-1) >= measureStart {
		k--
	}
	for p.due(k) < measureStart {
		k++
	}
	p.measured, p.mstart = k, measureStart
	if requests > 0 {
		p.limit = k + requests
	}
	if end > 0 {
		p.end = end
	}
	return p
}

func (p *constantPacer) due(k int64) int64 { return p.start + int64(float64(k)*p.interval) }

// Claim implements pacer.
//
// Warmup slots still unclaimed when the measurement begins are dropped: a
// generator that fell behind during the warmup starts the measurement on
// schedule instead of spending it on the warmup's backlog.
func (p *constantPacer) Claim(now int64) (due int64, counted, ok bool) {
	k := p.next.Add(1) - 1
	if k < p.measured && now >= p.mstart {
		// Move the counter to the first measured slot (unless another
		// connection already has) and claim again.
		for {
			cur := p.next.Load()
			if cur >= p.measured || p.next.CompareAndSwap(cur, p.measured) {
				break
			}
		}
		k = p.next.Add(1) - 1
	}
	if k >= p.limit {
		return 0, false, false
	}
	due = p.due(k)
	if due >= p.end {
		return 0, false, false
	}
	return due, k >= p.measured, true
}

// slotsBetween returns how many slots fall due in [from, to).
func (p *constantPacer) slotsBetween(from, to int64) int64 {
	if to <= from {
		return 0
	}
	return int64(float64(to-from) / p.interval)
}
