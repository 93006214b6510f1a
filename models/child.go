package models

import (
	"fmt"
	"os"
	"sync"
)

// ChildEnv names the environment variable that turns a sockbench binary (or
// a test binary) into a child process of some model: a prefork worker, or
// a server the conformance suite runs in a subprocess.
const ChildEnv = "SOCKBENCH_CHILD"

var (
	childMu    sync.Mutex
	childMains = map[string]func() int{}
)

// RegisterChild names an entry point a re-executed binary can run instead
// of its usual main. Packages call it from init.
func RegisterChild(name string, main func() int) {
	childMu.Lock()
	defer childMu.Unlock()
	childMains[name] = main
}

// MaybeRunChild runs the registered child entry point named by ChildEnv and
// exits with its status; it returns at once when ChildEnv is unset. Call it
// first thing in main and in TestMain of any package whose tests re-exec
// their own binary.
func MaybeRunChild() {
	name := os.Getenv(ChildEnv)
	if name == "" {
		return
	}
	childMu.Lock()
	fn := childMains[name]
	childMu.Unlock()
	if fn == nil {
		fmt.Fprintf(os.Stderr, "sockbench: unknown child role %q in %s\n", name, ChildEnv)
		os.Exit(2)
	}
	os.Exit(fn())
}
