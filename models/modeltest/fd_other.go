//go:build !linux && !darwin

package modeltest

import (
	"errors"
	"time"
)

// OpenFDs counts this process's open file descriptors: not here.
func OpenFDs() (int, error) {
	return 0, errors.New("counting open file descriptors is only supported on Linux and macOS")
}

func procCPU(pid int) (time.Duration, error) {
	return 0, errors.New("process CPU time is only measured on Linux")
}

// procGroupAlive is not known without /proc.
func procGroupAlive(pgid int) (alive, ok bool) { return false, false }
