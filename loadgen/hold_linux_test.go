package loadgen

import (
	"time"

	"golang.org/x/sys/unix"
)

// holdUntil blocks the calling goroutine until t with the kernel's
// high-resolution nanosleep. Go's own timers wake through the netpoller with
// millisecond granularity and overshoot a 2 ms sleep by 0.1-0.5 ms, which
// would make the accuracy test measure the test server's timer instead of
// the load generator.
func holdUntil(t time.Time) {
	for {
		d := time.Until(t)
		if d <= 0 {
			return
		}
		ts := unix.NsecToTimespec(int64(d))
		unix.Nanosleep(&ts, nil)
	}
}
