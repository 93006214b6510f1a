package modeltest

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// startCmd starts cmd with the start bounded by limit. It reports whether
// the child hung between fork and exec and was killed (qemu-user 7.2
// does this now and then to a multithreaded guest; exec.Cmd.Start then
// waits forever).
func startCmd(cmd *exec.Cmd, limit time.Duration) (stuck bool, err error) {
	return startBounded(cmd.Start, func() { cmd.Wait() }, limit)
}

// startBounded runs start, which forks one child, on a goroutine locked to
// its thread, so that child is the one new child of that thread. If start
// has not returned within limit, that child is killed, and reap is called
// once start returns.
func startBounded(start func() error, reap func(), limit time.Duration) (stuck bool, err error) {
	type begun struct {
		tid    int
		before map[int]bool
	}
	began := make(chan begun, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid := syscall.Gettid()
		before := map[int]bool{}
		for _, pid := range threadChildren(tid) {
			before[pid] = true
		}
		began <- begun{tid, before}
		done <- start()
	}()
	b := <-began
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case err := <-done:
		return false, err
	case <-t.C:
	}
	for _, pid := range threadChildren(b.tid) {
		if !b.before[pid] {
			syscall.Kill(pid, syscall.SIGKILL)
			stuck = true
		}
	}
	err = <-done // the kill ends the start
	if stuck && err == nil {
		reap()
	}
	return stuck, err
}

func threadChildren(tid int) []int {
	b, _ := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/children")
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}
