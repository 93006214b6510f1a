//go:build unix

package modeltest

import (
	"os/exec"
	"syscall"
)

// setNoFile lowers the soft RLIMIT_NOFILE of this process to n.
func setNoFile(n uint64) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	rl.Cur = n
	if rl.Max < n {
		rl.Max = n
	}
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
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
