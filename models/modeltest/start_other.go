//go:build !linux

package modeltest

import (
	"os/exec"
	"time"
)

// startCmd starts cmd. Only Linux lists a thread's children, so the start
// is not bounded here (see start_linux.go).
func startCmd(cmd *exec.Cmd, limit time.Duration) (stuck bool, err error) {
	return false, cmd.Start()
}
