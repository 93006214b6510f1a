//go:build unix

package bench

import (
	"runtime"
	"syscall"
)

// fdLimit is the open-file limit the server and load generator will run
// with. Both are Go programs, and Go raises its soft RLIMIT_NOFILE to the
// hard limit at startup, so the hard limit is what counts (on macOS Go
// caps the raise, so there our own raised soft limit is the answer).
func fdLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if runtime.GOOS == "darwin" {
		return uint64(rl.Cur), nil
	}
	return uint64(rl.Max), nil
}
