//go:build !unix

package modeltest

import (
	"errors"
	"os/exec"
)

func setNoFile(n uint64) error { return errors.New("RLIMIT_NOFILE is not supported on this system") }

func ownGroup(cmd *exec.Cmd) {}

func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		cmd.Process.Kill()
	}
}

func groupAlive(cmd *exec.Cmd) bool { return false }

func setUmask(mask int) int { return 0 }
