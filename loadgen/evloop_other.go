//go:build !linux

package loadgen

import (
	"errors"
	"runtime"
	"time"
)

// epollAvailable reports whether the epoll engine runs here.
const epollAvailable = false

// timerFloor is how far ahead of a due time the dispatcher stops sleeping
// on a Go timer and yield-spins. kqueue's timeouts are exact to the
// nanosecond, so only the wake-up from idle needs covering; Windows' timers
// are about a millisecond coarse.
var timerFloor = func() time.Duration {
	if runtime.GOOS == "windows" {
		return 1200 * time.Microsecond
	}
	return 100 * time.Microsecond
}()

func newEpollEngine(*run) (engine, error) {
	return nil, errors.New("the epoll engine exists on Linux only")
}
