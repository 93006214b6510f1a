package loadgen

import (
	"math"
	"time"
)

// slot is one open-loop request the dispatcher hands to a connection.
type slot struct {
	due     int64
	counted bool
}

// dispatch is the open loop's clock: one goroutine that claims due times
// from the run's pacer in order, waits for each, and hands it to whichever
// connection is free to send (tokens). A connection takes a token only when
// it has a free pipeline slot, so a token waits in the channel only while
// every connection is busy, and that wait is counted: latency runs from the
// due time.
//
// Why one clock instead of a timer per connection: Go's timers wake a
// sleeping program through the network poller, whose timeout has
// millisecond granularity, so a request due in 300 µs goes out up to a
// millisecond late (0.5 ms at the median on a quiet Linux box), and the
// open loop would report the generator's timer instead of the server. The
// dispatcher sleeps with preciseSleep (nanosleep on a thread of its own on
// Linux: tens of microseconds) and wakes the connections through a channel.
//
// It returns, closing tokens, when the schedule is over or quit closes.
// With -d the schedule is over only at the end of the window, even when its
// last request fell due long before (a low rate): the window measured is
// the one asked for, not cut short at the last reply.
func (r *run) dispatch(tokens chan<- slot, quit <-chan struct{}) {
	defer close(tokens)
	sleep := preciseSleeper()
	// wait sleeps until t on the run's clock; false when quit closed first.
	wait := func(t int64) bool {
		for {
			d := t - r.now()
			if d <= 0 {
				return true
			}
			select {
			case <-quit:
				return false
			default:
			}
			sleep(time.Duration(min(d, int64(20*time.Millisecond))))
		}
	}
	for {
		due, counted, ok := r.pacer.Claim(r.now())
		if !ok {
			if r.cfg.Requests == 0 && r.end != math.MaxInt64 {
				wait(r.end)
			}
			return
		}
		if !wait(due) {
			return
		}
		select {
		case tokens <- slot{due, counted}:
		case <-quit:
			return
		}
	}
}
