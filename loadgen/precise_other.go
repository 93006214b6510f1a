//go:build !linux

package loadgen

import "time"

// preciseSleeper returns time.Sleep where no finer sleep is wired up.
func preciseSleeper() func(time.Duration) { return time.Sleep }
