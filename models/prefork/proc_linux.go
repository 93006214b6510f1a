package prefork

import "syscall"

// noPdeathsig turns Pdeathsig off, so tests can show the control-pipe
// watch alone (what macOS relies on) also takes workers down.
var noPdeathsig bool

// sysProcAttr makes the kernel SIGKILL a child when its parent dies, even
// when the parent itself was SIGKILLed and had no chance to clean up.
//
// Pdeathsig is tied to the thread that forked the child, not to the
// process: see spawner for how every child is started from one locked
// thread that lives as long as the server.
func sysProcAttr() *syscall.SysProcAttr {
	if noPdeathsig {
		return nil
	}
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
