package loadgen

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// usableCPUs returns how many CPUs this process may run on: the size of its
// sched_getaffinity mask (taskset, cpusets), or GOMAXPROCS if that is lower
// (Go also honours cgroup CPU quotas there).
func usableCPUs() int {
	n := runtime.GOMAXPROCS(0)
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) == nil {
		if c := set.Count(); c > 0 && c < n {
			n = c
		}
	}
	return n
}
