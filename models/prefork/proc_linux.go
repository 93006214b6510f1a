package prefork

import "syscall"

// sysProcAttr makes the kernel SIGKILL a child when its parent dies, even
// when the parent itself was SIGKILLed and had no chance to clean up.
//
// Pdeathsig is tied to the thread that forked the child, not to the
// process: see spawner for how every child is started from one locked
// thread that lives as long as the server.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
