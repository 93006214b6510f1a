//go:build !linux

package prefork

import "syscall"

// sysProcAttr has nothing to add where there is no Pdeathsig (macOS, the
// BSDs): children notice the parent's death by EOF on their control pipe
// and exit (see child.watch).
func sysProcAttr() *syscall.SysProcAttr { return nil }

func gettid() int { return 0 }

// killUnknownChildren has no per-thread child list to read here, so a
// hung start is not cut short outside Linux.
func killUnknownChildren(tid int, known map[int]bool) int { return 0 }
