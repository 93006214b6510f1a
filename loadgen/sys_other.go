//go:build !unix

package loadgen

import "time"

// raiseFileLimit is a no-op where there is no RLIMIT_NOFILE.
func raiseFileLimit(int) error { return nil }

// cpuTime is unknown on this platform.
func cpuTime() time.Duration { return 0 }
