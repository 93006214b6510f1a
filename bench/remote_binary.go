package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// remotePlatform maps `uname -s` and `uname -m` to Go's GOOS and GOARCH
// (and GOARM), and to the suffix make pi / make release give the binary
// in dist/ (sockbench-linux-armv7).
func remotePlatform(sys, mach string) (goos, goarch, goarm, dist string, err error) {
	switch strings.ToLower(sys) {
	case "linux":
		goos = "linux"
	case "darwin":
		goos = "darwin"
	default:
		return "", "", "", "", fmt.Errorf("the server host runs %s, which sockbench does not support (Linux or macOS)", sys)
	}
	switch mach {
	case "x86_64", "amd64":
		goarch = "amd64"
	case "aarch64", "arm64":
		goarch = "arm64"
	case "armv7l", "armv7", "armv8l": // armv8l: a 32-bit OS on a 64-bit Pi
		goarch, goarm = "arm", "7"
	case "armv6l", "armv6":
		goarch, goarm = "arm", "6"
	case "i386", "i686":
		goarch = "386"
	default:
		return "", "", "", "", fmt.Errorf("the server host's CPU is %q, which this bench does not know how to build for", mach)
	}
	arch := goarch
	if goarm != "" {
		arch = "armv" + goarm
	}
	return goos, goarch, goarm, "sockbench-" + goos + "-" + arch, nil
}

// remoteBinary finds a sockbench binary for the server host: this one when
// the host is of the same kind, else make pi / make release's dist/ output
// (in the current directory or beside --binary's bin/), else one built now
// with GOOS/GOARCH when a Go toolchain and the sockbench source are at
// hand. cleanup removes a binary built for the run.
func (r *Runner) remoteBinary(ctx context.Context, sys, mach string) (string, func(), error) {
	none := func() {}
	goos, goarch, goarm, dist, err := remotePlatform(sys, mach)
	if err != nil {
		return "", none, fmt.Errorf("bench: %w", err)
	}
	if goos == runtime.GOOS && goarch == runtime.GOARCH && goarch != "arm" {
		return r.opts.Binary, none, nil
	}
	var tried []string
	for _, d := range []string{"dist", filepath.Join(filepath.Dir(r.opts.Binary), "..", "dist")} {
		p := filepath.Join(d, dist)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, none, nil
		}
		tried = append(tried, p)
	}
	src := findModuleRoot()
	goTool, gerr := exec.LookPath("go")
	if src == "" || gerr != nil {
		return "", none, fmt.Errorf("bench: the server host is %s/%s (%s %s): there is no %s (looked for %s) and no Go toolchain with the sockbench source here to build one; run 'make release' (or 'make pi') in a sockbench checkout and run bench from there, or build one with GOOS=%s GOARCH=%s",
			goos, goarch, sys, mach, dist, strings.Join(tried, ", "), goos, goarch)
	}
	tmp, err := os.MkdirTemp("", "sbcross")
	if err != nil {
		return "", none, fmt.Errorf("bench: %w", err)
	}
	cleanup := func() { os.RemoveAll(tmp) }
	out := filepath.Join(tmp, dist)
	fmt.Fprintf(r.opts.Progress, "sockbench: no %s here; building one for %s/%s from %s\n", dist, goos, goarch, src)
	ldflags := "-s -w -X main.version=" + r.opts.Env.SuiteVersion + " -X main.commit=" + r.opts.Env.Commit
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-ldflags", ldflags, "-o", out, "./cmd/sockbench")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOARM="+goarm)
	if b, err := cmd.CombinedOutput(); err != nil {
		cleanup()
		return "", none, fmt.Errorf("bench: building sockbench for %s/%s failed (%v): %s", goos, goarch, err, strings.TrimSpace(string(b)))
	}
	return out, cleanup, nil
}

// findModuleRoot returns the sockbench checkout the current directory is
// in, or "".
func findModuleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			if strings.Contains(string(b), "module github.com/sockbench/sockbench\n") {
				if _, err := os.Stat(filepath.Join(dir, "cmd", "sockbench")); err == nil {
					return dir
				}
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
