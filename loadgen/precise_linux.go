package loadgen

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// preciseSleeper returns a sleep function accurate to tens of
// microseconds. It locks the calling goroutine to its OS thread (which the
// runtime discards when the goroutine ends) and sets that thread's timer
// slack to 1 ns, so nanosleep wakes on time instead of up to 50 µs late.
func preciseSleeper() func(time.Duration) {
	runtime.LockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
	return func(d time.Duration) {
		ts := unix.NsecToTimespec(int64(d))
		_ = unix.Nanosleep(&ts, nil) // EINTR: the caller re-checks the clock
	}
}
