//go:build unix

package modeltest

import (
	"os/exec"
	"syscall"
)

// setNoFile lowers RLIMIT_NOFILE of this process to n, the hard limit
// too: a Go program raises its soft limit to the hard one at start, so
// worker processes it execs (prefork) would otherwise escape the limit.
func setNoFile(n uint64) error {
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n})
}

// ownGroup puts the subprocess in a process group of its own, so that a
// model that spawns workers (prefork) can be killed whole.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killGroup kills the subprocess and everything in its process group.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Process.Kill()
}

// groupAlive reports whether any process is left in the process group of
// the subprocess (a worker that outlived its parent).
func groupAlive(cmd *exec.Cmd) bool {
	if cmd.Process == nil {
		return false
	}
	if alive, ok := procGroupAlive(cmd.Process.Pid); ok {
		return alive
	}
	return syscall.Kill(-cmd.Process.Pid, 0) == nil
}

// setUmask sets the process's umask and returns the old one.
func setUmask(mask int) int { return syscall.Umask(mask) }
