//go:build !linux

package bench

import (
	"errors"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// pinningSupported reports whether startPinned can pin: only on Linux
// (macOS has no API to bind a process to CPUs).
const pinningSupported = false

// startPinned starts cmd; without an affinity API it cannot pin.
func startPinned(cmd *exec.Cmd, _ []int) error { return cmd.Start() }

// allowedCPUs lists CPUs 0..n-1.
func allowedCPUs() []int {
	cpus := make([]int, runtime.NumCPU())
	for i := range cpus {
		cpus[i] = i
	}
	return cpus
}

// childAttr puts a child in its own process group, as on Linux (there is
// no parent-death signal outside Linux).
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// sampleTree uses ps(1): CPU time so far of pid and its descendants, and
// their current RSS summed (ps shows no peak; the orchestrator samples at
// the end of the measured window, when it is usually highest).
func sampleTree(pid int) (cpuS float64, rssKB int64, procs int, err error) {
	out, err := exec.Command("ps", "-A", "-o", "pid=,ppid=,time=,rss=").Output()
	if err != nil {
		return 0, 0, 0, err
	}
	type p struct {
		pid, ppid int
		cpu       float64
		rss       int64
	}
	children := map[int][]p{}
	var root *p
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		var q p
		q.pid, _ = strconv.Atoi(f[0])
		q.ppid, _ = strconv.Atoi(f[1])
		q.cpu = parsePSTime(f[2])
		q.rss, _ = strconv.ParseInt(f[3], 10, 64)
		if q.pid == pid {
			root = &q
		}
		children[q.ppid] = append(children[q.ppid], q)
	}
	if root == nil {
		return 0, 0, 0, errors.New("bench: server process is gone")
	}
	tree := []p{*root}
	for i := 0; i < len(tree); i++ {
		tree = append(tree, children[tree[i].pid]...)
	}
	for _, q := range tree {
		cpuS += q.cpu
		rssKB += q.rss
	}
	return cpuS, rssKB, len(tree), nil
}

// parsePSTime parses ps's [[dd-]hh:]mm:ss.ss.
func parsePSTime(s string) float64 {
	days := 0.0
	if d, rest, ok := strings.Cut(s, "-"); ok {
		days, _ = strconv.ParseFloat(d, 64)
		s = rest
	}
	var total float64
	for _, part := range strings.Split(s, ":") {
		v, _ := strconv.ParseFloat(part, 64)
		total = total*60 + v
	}
	return total + days*86400
}

// memAvailable is unknown here: the memory check is skipped.
func memAvailable() (int64, error) { return 0, errors.ErrUnsupported }

// cpuModel names the processor (sysctl on macOS).
func cpuModel() string {
	out, err := exec.Command("sysctl", "-n", "machdep.cpu.brand_string").Output()
	if err != nil {
		return runtime.GOARCH
	}
	return strings.TrimSpace(string(out))
}
