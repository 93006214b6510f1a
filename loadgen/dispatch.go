package loadgen

import (
	"math"
	"runtime"
	"time"
)

// slot is one open-loop request the dispatcher hands to a connection.
type slot struct {
	due     int64
	counted bool
}

// dispatch is the goroutine engine's open-loop clock: one goroutine that
// claims due times from the run's pacer in order, waits for each, and hands
// it to whichever connection is free to send (tokens). A connection takes a
// token only when it has a free pipeline slot, so a token waits in the
// channel only while every connection is busy, and that wait is counted:
// latency runs from the due time.
//
// It returns, closing tokens, when the schedule is over or quit closes.
// With -d the schedule is over only at the end of the window, even when its
// last request fell due long before (a low rate): the window measured is
// the one asked for, not cut short at the last reply.
func (r *run) dispatch(tokens chan<- slot, quit <-chan struct{}) {
	defer close(tokens)
	for {
		due, counted, ok := r.pacer.Claim(r.now())
		if !ok {
			if r.cfg.Requests == 0 && r.end != math.MaxInt64 {
				r.waitUntil(r.end, quit)
			}
			return
		}
		if !r.waitUntil(due, quit) {
			return
		}
		select {
		case tokens <- slot{due, counted}:
		case <-quit:
			return
		}
	}
}

// waitUntil returns at t on the run's clock, or false if quit closed first.
// It sleeps on a Go timer until timerFloor before t, then yield-spins
// (runtime.Gosched, so the connections' goroutines keep the CPU): a Go
// timer on an idle P wakes through the poller, whose wait is rounded up to
// a millisecond on Linux (0.55 ms late at the median, see the package
// doc), while a yield-spin meets t within microseconds and never holds the
// only P in a sleeping system call.
//
// The time it yield-spins inside the measurement adds to r.spinNs: every
// round of the spin that came back at once (a round in which another
// goroutine ran is its work, not spin).
func (r *run) waitUntil(t int64, quit <-chan struct{}) bool {
	last := int64(-1) // when the last spin round began
	for {
		now := r.now()
		if last >= 0 && now-last < int64(20*time.Microsecond) && last >= r.measureStart {
			r.spinNs += now - last
		}
		last = -1
		d := t - now
		if d <= 0 {
			return true
		}
		select {
		case <-quit:
			return false
		default:
		}
		if d > int64(timerFloor) {
			time.Sleep(time.Duration(min(d-int64(timerFloor), int64(20*time.Millisecond))))
		} else {
			last = now
			runtime.Gosched()
		}
	}
}
