package prefork

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// testNoPdeathsig turns Pdeathsig off, so a test can show the
// control-pipe watch alone (what macOS relies on) also takes workers
// down. It is a test hook: only prefork_linux_test.go sets it, in the
// parent process it runs; a production binary has no way to set it.
var testNoPdeathsig bool

// sysProcAttr makes the kernel SIGKILL a child when its parent dies, even
// when the parent itself was SIGKILLed and had no chance to clean up.
//
// Pdeathsig is tied to the thread that forked the child, not to the
// process: see spawner for how every child is started from one locked
// thread that lives as long as the server.
func sysProcAttr() *syscall.SysProcAttr {
	if testNoPdeathsig {
		return nil
	}
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

func gettid() int { return syscall.Gettid() }

// killUnknownChildren SIGKILLs every child of thread tid that is not in
// known, and reports how many it killed. Linux lists a thread's children
// in /proc/self/task/TID/children.
func killUnknownChildren(tid int, known map[int]bool) int {
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/children")
	if err != nil {
		return 0
	}
	n := 0
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil || known[pid] {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}
