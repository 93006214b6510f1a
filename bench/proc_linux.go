//go:build linux

package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports.
const clockTicks = 100

// procStat is what we read of one process.
type procStat struct {
	pid, ppid int
	cpuTicks  uint64 // utime + stime
}

// readStat parses /proc/<pid>/stat. The command name is in parentheses and
// may itself contain spaces and parentheses, so fields are counted from the
// last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("bench: odd /proc/%d/stat", pid)
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

// processTree returns pid and all its descendants, found by walking
// /proc/*/stat by parent pid (prefork's workers are the parent's children).
func processTree(pid int) []procStat {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]procStat{}
	var root *procStat
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(p)
		if err != nil {
			continue // exited meanwhile
		}
		if p == pid {
			root = &st
		}
		children[st.ppid] = append(children[st.ppid], st)
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

// sampleTree returns the CPU seconds (user+system) used so far by pid and
// every descendant alive now, the sum of their peak RSS (VmHWM) in KiB,
// and how many processes that was.
//
// CPU time comes from each thread's /proc/<pid>/task/<tid>/sched or
// schedstat (time on CPU, ns) where the kernel provides it: utime+stime in
// /proc/<pid>/stat count whole clock ticks (10 ms), too coarse for a
// window of a few hundred milliseconds. Threads that exited are not in
// task/, so a process whose thread sum is below its stat total (a thread
// died) uses the stat total instead.
func sampleTree(pid int) (cpuS float64, rssKB int64, procs int, err error) {
	tree := processTree(pid)
	if len(tree) == 0 {
		return 0, 0, 0, fmt.Errorf("bench: process %d is gone", pid)
	}
	for _, p := range tree {
		ticksS := float64(p.cpuTicks) / clockTicks
		if ns, ok := threadsCPU(p.pid); ok && float64(ns)/1e9 > ticksS-1.0/clockTicks {
			cpuS += float64(ns) / 1e9
		} else {
			cpuS += ticksS
		}
		rssKB += vmHWM(p.pid)
	}
	return cpuS, rssKB, len(tree), nil
}

// threadsCPU sums the time on CPU of every thread of pid, in ns:
// se.sum_exec_runtime from task/<tid>/sched (milliseconds with six
// decimals), or the first field of task/<tid>/schedstat. Kernels without
// scheduler statistics print zeros there; then it reports false.
func threadsCPU(pid int) (uint64, bool) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, false
	}
	var sum uint64
	for _, e := range ents {
		ns, err := threadCPU(dir + "/" + e.Name())
		if err != nil {
			if os.IsNotExist(err) {
				continue // the thread exited meanwhile
			}
			return 0, false
		}
		sum += ns
	}
	return sum, sum > 0
}

func threadCPU(dir string) (uint64, error) {
	if b, err := os.ReadFile(dir + "/sched"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "se.sum_exec_runtime"); ok {
				v = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				ms, err := strconv.ParseFloat(v, 64)
				if err != nil {
					return 0, err
				}
				return uint64(ms * 1e6), nil
			}
		}
	} else if os.IsNotExist(err) {
		if _, serr := os.Stat(dir); serr != nil {
			return 0, serr
		}
	}
	b, err := os.ReadFile(dir + "/schedstat")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, errors.New("bench: empty schedstat")
	}
	return strconv.ParseUint(f[0], 10, 64)
}

// vmHWM reads a process's peak resident set size in KiB.
func vmHWM(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// memAvailable returns MemAvailable from /proc/meminfo in bytes.
func memAvailable() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n * 1024, err
		}
	}
	return 0, errors.New("bench: no MemAvailable in /proc/meminfo")
}

// allowedCPUs lists the CPUs this process may run on.
func allowedCPUs() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var cpus []int
	for i := 0; i < len(set)*64; i++ {
		if set.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	return cpus
}

// pinningSupported reports whether startPinned can pin.
const pinningSupported = true

// startPinned starts cmd with its CPU affinity set to cpus (none: as is).
// A child inherits the affinity mask of the thread that forks it, so the
// goroutine locks itself to its OS thread, narrows that thread's mask,
// starts the child and restores the mask. If the mask cannot be restored
// the thread stays locked, and Go retires it when the goroutine ends.
func startPinned(cmd *exec.Cmd, cpus []int) error {
	if len(cpus) == 0 {
		return cmd.Start()
	}
	runtime.LockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("bench: reading CPU affinity: %w", err)
	}
	for _, c := range cpus {
		set.Set(c)
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("bench: pinning to CPUs %s: %w", formatCPUs(cpus), err)
	}
	err := cmd.Start()
	if unix.SchedSetaffinity(0, &old) == nil {
		runtime.UnlockOSThread()
	}
	return err
}

// childAttr puts a child in its own process group (so a terminal's Ctrl-C
// reaches only the orchestrator, which then stops its children in order,
// and so a stray prefork worker can be swept by group) and asks the kernel
// to SIGTERM it if the orchestrator dies without cleaning up.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// cpuModel names the processor.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	return parseCPUInfo(string(b))
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
