package modeltest

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStartBounded: a start that returns is left alone; one that does not
// return within the limit has its child killed and reaped. The hang is
// simulated by a start that waits after forking, as exec.Cmd.Start waits
// for a child that never execs.
func TestStartBounded(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	ok := exec.Command(sleep, "30")
	if stuck, err := startCmd(ok, 5*time.Second); stuck || err != nil {
		t.Fatalf("a normal start: stuck %v, err %v", stuck, err)
	}
	defer func() { ok.Process.Kill(); ok.Wait() }()

	var pid int
	reaped := false
	stuck, err := startBounded(func() error {
		var err error
		pid, _, err = syscall.StartProcess(sleep, []string{"sleep", "30"}, &syscall.ProcAttr{Files: []uintptr{0, 1, 2}})
		for deadline := time.Now().Add(5 * time.Second); err == nil && time.Now().Before(deadline) && !zombie(pid); {
			time.Sleep(10 * time.Millisecond)
		}
		return err
	}, func() {
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, 0, nil)
		reaped = true
	}, 200*time.Millisecond)
	if !stuck || err != nil || !reaped {
		t.Fatalf("a hung start: stuck %v, err %v, reaped %v; want it killed and reaped", stuck, err, reaped)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		t.Errorf("the hung start's child %d is still there", pid)
	}
	if zombie(ok.Process.Pid) {
		t.Errorf("the normal start's child was killed too")
	}
}

func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] == "Z"
}
