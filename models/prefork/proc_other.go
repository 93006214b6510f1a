//go:build !linux

package prefork

import "syscall"

// sysProcAttr has nothing to add where there is no Pdeathsig (macOS, the
// BSDs): children notice the parent's death by EOF on their control pipe
// and exit (see watchParent).
func sysProcAttr() *syscall.SysProcAttr { return nil }
