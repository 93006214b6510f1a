//go:build unix

package loadgen

import (
	"syscall"
	"time"
)

// raiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit and reports
// an error wrapping ErrFileLimit when even that cannot hold need descriptors.
func raiseFileLimit(need int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil // cannot tell; let the dials speak for themselves
	}
	if uint64(lim.Cur) < uint64(lim.Max) {
		want := lim
		want.Cur = lim.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
			lim = want
		}
	}
	if uint64(lim.Cur) < uint64(need) {
		return errorf(ErrFileLimit, "%d connections need about %d open files, but the limit is %d (hard limit %d); raise it (ulimit -n) or use fewer connections", need-fdReserve, need, uint64(lim.Cur), uint64(lim.Max))
	}
	return nil
}

// cpuTime returns the user+system CPU time this process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
