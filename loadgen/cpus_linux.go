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

// allowedCPUs lists the CPUs this process may run on (its affinity mask),
// nil if that cannot be read.
func allowedCPUs() []int {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) != nil {
		return nil
	}
	var cpus []int
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}
