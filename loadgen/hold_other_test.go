//go:build !linux

package loadgen

import "time"

// holdUntil blocks until t.
func holdUntil(t time.Time) { time.Sleep(time.Until(t)) }
