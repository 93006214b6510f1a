package bench

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The parsers of Linux /proc files bench samples, on bytes: the local
// sampler (proc_linux.go) reads the files itself, a remote one
// (remote_proc.go) reads them on the server's host over ssh, and both
// parse them here, the same way. They build on every OS, so a macOS
// workstation can sample a Linux server across the network.

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports.
const clockTicks = 100

// procStat is what we read of one process.
type procStat struct {
	pid, ppid int
	cpuTicks  uint64 // utime + stime
}

// parseStat parses the contents of /proc/<pid>/stat. The command name is
// in parentheses and may itself contain spaces and parentheses, so fields
// are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	j := bytes.IndexByte(b, ' ')
	if i < 0 || j < 0 || j > i {
		return procStat{}, errors.New("bench: odd /proc/<pid>/stat")
	}
	pid, err := strconv.Atoi(string(b[:j]))
	if err != nil {
		return procStat{}, fmt.Errorf("bench: odd /proc/<pid>/stat: pid %q", b[:j])
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("bench: short /proc/%d/stat", pid)
	}
	ppid, _ := strconv.Atoi(f[1])
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return procStat{pid: pid, ppid: ppid, cpuTicks: ut + st}, nil
}

// descendants returns pid and all its descendants among all, found by
// parent pid (prefork's workers are the parent's children); nil when pid
// is not among them.
func descendants(pid int, all []procStat) []procStat {
	children := map[int][]procStat{}
	var root *procStat
	for i := range all {
		if all[i].pid == pid {
			root = &all[i]
		}
		children[all[i].ppid] = append(children[all[i].ppid], all[i])
	}
	if root == nil {
		return nil
	}
	out := []procStat{*root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i].pid]...)
	}
	return out
}

// parseSched returns se.sum_exec_runtime from task/<tid>/sched in ns
// (the file gives milliseconds with six decimals); found is false when
// the line is missing.
func parseSched(b []byte) (ns uint64, found bool, err error) {
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "se.sum_exec_runtime"); ok {
			v = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
			ms, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, true, err
			}
			return uint64(ms * 1e6), true, nil
		}
	}
	return 0, false, nil
}

// parseSchedstat returns the first field of task/<tid>/schedstat: time on
// CPU in ns.
func parseSchedstat(b []byte) (uint64, error) {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, errors.New("bench: empty schedstat")
	}
	return strconv.ParseUint(f[0], 10, 64)
}

// cpuSeconds is one process's CPU time: the sum of its threads' time on
// CPU (threadNs, when threadsOK) where that is at least its stat total
// less a tick, else the stat total. Threads that exited are not in task/,
// so a thread sum below the stat total means a thread died and the stat
// total is the better figure.
func cpuSeconds(p procStat, threadNs uint64, threadsOK bool) float64 {
	ticksS := float64(p.cpuTicks) / clockTicks
	if threadsOK && float64(threadNs)/1e9 > ticksS-1.0/clockTicks {
		return float64(threadNs) / 1e9
	}
	return ticksS
}

// parseVmHWM reads a process's peak resident set size in KiB from the
// contents of /proc/<pid>/status (0 when absent).
func parseVmHWM(b []byte) int64 {
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// parseMemAvailable returns MemAvailable from /proc/meminfo in bytes.
func parseMemAvailable(b []byte) (int64, error) {
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n * 1024, err
		}
	}
	return 0, errors.New("bench: no MemAvailable in /proc/meminfo")
}

// parseCPUInfo names the CPU from /proc/cpuinfo. A Raspberry Pi's board
// ("Model: Raspberry Pi 3 Model B Rev 1.2") says more than its cores'
// "model name" (ARMv7 Processor rev 4 (v7l), on 32-bit kernels only), so
// the board wins; arm64 kernels without either give the CPU part.
func parseCPUInfo(info string) string {
	var hw, name, board string
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "model name":
			if name == "" {
				name = v
			}
		case "Model": // Raspberry Pi; x86's "model" is a number, lower case
			board = v
		case "Hardware", "CPU part":
			if hw == "" {
				hw = v
			}
		}
	}
	switch {
	case board != "":
		return board
	case name != "":
		return name
	}
	return hw
}
