package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestInterruptLeavesNoOrphans sends SIGINT (Ctrl-C) to a running
// `sockbench bench` while a prefork server and its workers are serving,
// and checks that every process it started is gone, the exit status is
// 130, and the CSV holds only complete rows. The test process makes
// itself a child subreaper, so any process orphaned by the orchestrator
// would be re-parented to the test, where it cannot hide.
func TestInterruptLeavesNoOrphans(t *testing.T) {
	bin := sockbenchBinary(t)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("cannot become a subreaper: %v", err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	dir := t.TempDir()
	prof := filepath.Join(dir, "p.yaml")
	os.WriteFile(prof, []byte(`
count: 3
duration: 1500ms
warmup: 100ms
matrix:
  - models: [prefork, threaded]
    nets: [tcp, unix]
    conns: [4]
`), 0o644)
	out := filepath.Join(dir, "out")
	cmd := exec.Command(bin, "bench", "--profile", prof, "-o", out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	seen := map[int]bool{}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("never saw a finished row and a running prefork server with workers\nstderr: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
		tree := processTree(cmd.Process.Pid)
		for _, p := range tree[min(1, len(tree)):] {
			seen[p.pid] = true
		}
		if rowsOnDisk(out) < 1 {
			continue
		}
		if preforkServing(tree) {
			break
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("bench did not exit within 30s of SIGINT\nstderr: %s", stderr.String())
	}
	// Checked at once: bench must have stopped and waited for everything
	// itself. (Its children also get a parent-death SIGTERM as a safety
	// net, which would tidy up a little later and hide a bug here.)
	for pid := range seen {
		if st := procState(pid); st != "" && st != "Z" {
			t.Errorf("process %d (%s) still alive when bench exited", pid, cmdline(pid))
		}
	}
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.ExitCode() != 130 {
		t.Errorf("exit: %v, want status 130\nstderr: %s", werr, stderr.String())
	}
	if len(seen) < 3 {
		t.Errorf("saw only %d child processes", len(seen))
	}
	// Orphans would now be our children; reap zombies, flag anything alive.
	time.Sleep(100 * time.Millisecond)
	for _, p := range childrenOf(os.Getpid()) {
		state := procState(p)
		if state != "Z" {
			t.Errorf("orphan left running: pid %d (%s), state %s", p, cmdline(p), state)
			syscall.Kill(p, syscall.SIGKILL)
		}
		var ws syscall.WaitStatus
		syscall.Wait4(p, &ws, 0, nil)
	}
	for pid := range seen {
		if st := procState(pid); st != "" && st != "Z" {
			t.Errorf("process %d (%s) started by bench still alive", pid, cmdline(pid))
		}
	}
	// The CSV: only complete rows, each a clean measurement.
	csvs, _ := filepath.Glob(filepath.Join(out, "*.csv"))
	if len(csvs) != 1 {
		t.Fatalf("csv files: %v", csvs)
	}
	b, _ := os.ReadFile(csvs[0])
	if !bytes.HasSuffix(b, []byte("\n")) {
		t.Errorf("CSV does not end with a complete line")
	}
	rows, err := ReadCSVFile(csvs[0])
	if err != nil || len(rows) < 2 || len(rows) >= 13 {
		t.Fatalf("rows %d, %v", len(rows), err)
	}
	// Every run a complete measurement; then the set marked partial.
	for _, r := range rows[:len(rows)-1] {
		if r.Status != StatusOK || !(r.RPS > 0) {
			t.Errorf("row %s: %s %s", r.Key, r.Status, r.Note)
		}
	}
	last := rows[len(rows)-1]
	p, ok := PartialOf(rows)
	if last.Status != StatusPartial || !ok || p.Why != "interrupted" || p.Done != len(rows)-1 || p.Planned != 12 || last.Model != "" {
		t.Errorf("last row %+v, partial %+v", last, p)
	}
	// The .txt and the report still cover what was finished, and say
	// it is partial; so do the summary and compare.
	stem := strings.TrimSuffix(csvs[0], ".csv")
	txt, err1 := os.ReadFile(stem + ".txt")
	html, err2 := os.ReadFile(stem + ".html")
	if err1 != nil || err2 != nil || !bytes.Contains(txt, []byte("# partial: interrupted: ")) || !bytes.Contains(html, []byte("Partial results: ")) {
		t.Errorf("after interrupt: %v %v, or no partial mark in the .txt or the report", err1, err2)
	}
	if back, err := ReadResults(stem + ".txt"); err != nil {
		t.Error(err)
	} else if _, ok := PartialOf(back); !ok {
		t.Error("the .txt does not read back as partial")
	}
	want := fmt.Sprintf("(interrupted: %d of 12 runs)", len(rows)-1)
	if !strings.Contains(stdout.String(), "PARTIAL RESULTS "+want) || !strings.Contains(stdout.String(), fmt.Sprintf("%d runs %s in", len(rows)-1, want)) {
		t.Errorf("the summary does not say %q:\n%s", want, stdout.String())
	}
	if !strings.Contains(stderr.String(), "interrupted") {
		t.Errorf("stderr does not say it was interrupted: %s", stderr.String())
	}
	cmpOut, err := exec.Command(bin, "compare", csvs[0], csvs[0]).CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(cmpOut), "is a partial result set (interrupted:") || !strings.Contains(string(cmpOut), "--allow-partial") {
		t.Errorf("compare of a partial set: %v\n%s", err, cmpOut)
	}
	cmpOut, err = exec.Command(bin, "compare", csvs[0], csvs[0], "--allow-partial").CombinedOutput()
	if err != nil || !strings.Contains(string(cmpOut), "note: base is a partial set (interrupted: ") {
		t.Errorf("compare --allow-partial: %v\n%s", err, cmpOut)
	}
}

func rowsOnDisk(dir string) int {
	csvs, _ := filepath.Glob(filepath.Join(dir, "*.csv"))
	if len(csvs) == 0 {
		return 0
	}
	b, _ := os.ReadFile(csvs[0])
	return bytes.Count(b, []byte("\n")) - 1
}

// preforkServing reports whether tree holds a prefork serve process with
// at least one child (a worker).
func preforkServing(tree []procStat) bool {
	for _, p := range tree {
		c := cmdline(p.pid)
		if strings.Contains(c, " serve ") && strings.Contains(c, "prefork") {
			for _, q := range tree {
				if q.ppid == p.pid {
					return true
				}
			}
		}
	}
	return false
}

func cmdline(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.ReplaceAll(string(b), "\x00", " ")
}

func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func childrenOf(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(p); err == nil && st.ppid == pid {
			out = append(out, p)
		}
	}
	return out
}
