//go:build !linux

package loadgen

import "runtime"

// usableCPUs returns how many CPUs this process may run on: runtime.NumCPU,
// or GOMAXPROCS if that is lower.
func usableCPUs() int {
	n := runtime.NumCPU()
	if g := runtime.GOMAXPROCS(0); g < n {
		n = g
	}
	return n
}

// allowedCPUs returns nil: threads cannot be pinned here.
func allowedCPUs() []int { return nil }
