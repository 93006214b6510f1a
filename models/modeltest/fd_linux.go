package modeltest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// OpenFDs counts this process's open file descriptors: a model's tests
// compare it before and after, as the leaks check does.
func OpenFDs() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// clockTick is USER_HZ, the unit of the CPU times in /proc/<pid>/stat; it
// is 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// procCPU returns the CPU time (user + system) used so far by pid and by
// every live descendant of it (prefork workers).
func procCPU(pid int) (time.Duration, error) {
	self, _, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	total := self
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return total, nil
	}
	parent := map[int]int{}
	cpu := map[int]time.Duration{}
	for _, ent := range ents {
		p, err := strconv.Atoi(ent.Name())
		if err != nil || p == pid {
			continue
		}
		c, pp, err := readStat(p)
		if err != nil {
			continue
		}
		parent[p], cpu[p] = pp, c
	}
	for p, c := range cpu {
		for q, hops := parent[p], 0; q > 1 && hops < 64; q, hops = parent[q], hops+1 {
			if q == pid {
				total += c
				break
			}
		}
	}
	return total, nil
}

// readStat parses utime+stime and the parent pid from /proc/<pid>/stat.
func readStat(pid int) (cpu time.Duration, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ppid, _ = strconv.Atoi(f[1])
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("malformed times in /proc/%d/stat", pid)
	}
	return time.Duration(ut+st) * clockTick, ppid, nil
}

// procGroupAlive reports whether a process other than a zombie is in
// process group pgid. Zombies are left out: an exited worker whose parent
// is gone waits for init to reap it, and init in a container may be slow.
func procGroupAlive(pgid int) (alive, ok bool) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false, false
	}
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		// f[0] state, f[1] ppid, f[2] pgrp
		if len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			return true, true
		}
	}
	return false, true
}
