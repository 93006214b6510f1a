//go:build linux

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// readStat reads and parses /proc/<pid>/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// processTree returns pid and all its descendants, found by walking
// /proc/*/stat by parent pid (prefork's workers are the parent's children).
func processTree(pid int) []procStat {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var all []procStat
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(p)
		if err != nil {
			continue // exited meanwhile
		}
		all = append(all, st)
	}
	return descendants(pid, all)
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
// died) uses the stat total instead (cpuSeconds).
func sampleTree(pid int) (cpuS float64, rssKB int64, procs int, err error) {
	tree := processTree(pid)
	if len(tree) == 0 {
		return 0, 0, 0, fmt.Errorf("bench: process %d is gone", pid)
	}
	for _, p := range tree {
		ns, ok := threadsCPU(p.pid)
		cpuS += cpuSeconds(p, ns, ok)
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
		if ns, found, err := parseSched(b); found {
			return ns, err
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
	return parseSchedstat(b)
}

// vmHWM reads a process's peak resident set size in KiB.
func vmHWM(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	return parseVmHWM(b)
}

// memAvailable returns MemAvailable from /proc/meminfo in bytes.
func memAvailable() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	return parseMemAvailable(b)
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
