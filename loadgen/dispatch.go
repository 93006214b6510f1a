package loadgen

import "time"

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
func (r *run) dispatch(tokens chan<- slot, quit <-chan struct{}) {
	defer close(tokens)
	sleep := preciseSleeper()
	for {
		due, counted, ok := r.pacer.Claim(r.now())
		if !ok {
			return
		}
		for {
			d := due - r.now()
			if d <= 0 {
				break
			}
			select {
			case <-quit:
				return
			default:
			}
			sleep(time.Duration(min(d, int64(20*time.Millisecond))))
		}
		select {
		case tokens <- slot{due, counted}:
		case <-quit:
			return
		}
	}
}
