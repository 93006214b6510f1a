package modeltest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sockbench/sockbench/models"
)

// ChildRole is the models.RegisterChild name under which a model's test
// binary, re-executed, runs one server for the suite.
const ChildRole = "modeltest-server"

// SpecEnv is the environment variable that carries the child's JSON spec:
// {"model": ..., "config": {...}, "nofile": N}.
const SpecEnv = "SOCKBENCH_MODELTEST"

// childSpec is what the suite tells a subprocess server.
type childSpec struct {
	Model  string        `json:"model"`
	Config models.Config `json:"config"`
	// NoFile, when set, lowers RLIMIT_NOFILE before the server starts.
	NoFile uint64 `json:"nofile,omitempty"`
	// LiveStats, when set, makes the child print "live {json}" with the
	// server's Stats this often while it runs.
	LiveStats time.Duration `json:"live_stats,omitempty"`
}

func init() { models.RegisterChild(ChildRole, childMain) }

// childMain serves one model as `sockbench serve` would: the ready line on
// stdout, SIGTERM for a graceful stop. On exit it prints one more line,
// "stats {json}", with the server's final Stats so the suite can compare
// them with what its clients received; with LiveStats it prints "live
// {json}" lines while it runs, so the suite can wait for the server to
// have read something.
func childMain() int {
	var spec childSpec
	if err := json.Unmarshal([]byte(os.Getenv(SpecEnv)), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "%s: bad %s: %v\n", ChildRole, SpecEnv, err)
		return 2
	}
	if spec.NoFile > 0 {
		if err := setNoFile(spec.NoFile); err != nil {
			fmt.Fprintf(os.Stderr, "%s: RLIMIT_NOFILE=%d: %v\n", ChildRole, spec.NoFile, err)
			return 2
		}
	}
	cfg := spec.Config
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := cfg.Normalize(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", ChildRole, err)
		return 2
	}
	srv, err := models.New(spec.Model, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", ChildRole, err)
		return 2
	}
	out := &lockedWriter{w: os.Stdout}
	ran := make(chan struct{})
	var live sync.WaitGroup
	if spec.LiveStats > 0 {
		live.Add(1)
		go func() {
			defer live.Done()
			t := time.NewTicker(spec.LiveStats)
			defer t.Stop()
			for {
				select {
				case <-ran:
					return
				case <-t.C:
				}
				if st, err := json.Marshal(srv.Stats()); err == nil {
					fmt.Fprintf(out, "live %s\n", st)
				}
			}
		}()
	}
	err = models.Run(context.Background(), srv, cfg, out)
	close(ran)
	live.Wait()
	if st, jerr := json.Marshal(srv.Stats()); jerr == nil {
		fmt.Printf("stats %s\n", st)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", ChildRole, err)
		return 1
	}
	return 0
}

// lockedWriter serialises whole writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (lw *lockedWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.w.Write(p)
}

// proc is a server the suite runs in a subprocess.
type proc struct {
	e    *env
	cmd  *exec.Cmd
	pid  int // from the ready line
	addr string

	stderr  *tailBuffer
	done    chan struct{} // closed when the process has exited
	waitErr error
	exitAt  time.Time

	mu    sync.Mutex
	stats *models.Stats
	live  *models.Stats // the last "live" line (childSpec.LiveStats)
}

// startLimit bounds starting a subprocess (fork and exec), scaled like
// every wait of the suite.
const startLimit = 10 * time.Second

// startProc runs the model with cfg in a subprocess (re-executing the test
// binary as ChildRole) and waits for its ready line. nofile > 0 lowers its
// RLIMIT_NOFILE. The process is killed, if still running, when the test ends.
func (e *env) startProc(cfg models.Config, nofile uint64) *proc {
	e.t.Helper()
	return e.startProcSpec(childSpec{Model: e.model, Config: cfg, NoFile: nofile})
}

// startProcSpec is startProc with the whole child spec (Model is the
// check's model whatever it says).
func (e *env) startProcSpec(cs childSpec) *proc {
	e.t.Helper()
	cs.Model = e.model
	cfg := cs.Config
	spec, err := json.Marshal(cs)
	if err != nil {
		e.t.Fatalf("marshal child spec: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		e.t.Fatalf("os.Executable: %v", err)
	}
	// -test.run=^$: should the test binary not call models.MaybeRunChild,
	// it runs no test instead of the whole suite again.
	p := &proc{e: e, stderr: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	var (
		cmd *exec.Cmd
		out io.ReadCloser
	)
	for try := 1; ; try++ {
		cmd = exec.Command(exe, "-test.run=^$", "-test.count=1")
		cmd.Env = append(os.Environ(), models.ChildEnv+"="+ChildRole, SpecEnv+"="+string(spec))
		cmd.Stderr = p.stderr
		ownGroup(cmd)
		if out, err = cmd.StdoutPipe(); err != nil {
			e.t.Fatalf("stdout pipe: %v", err)
		}
		stuck, err := startCmd(cmd, e.d(startLimit))
		if stuck && try < 3 {
			e.t.Logf("subprocess server hung between fork and exec (a qemu-user fault); killed it, trying again")
			continue
		}
		if err != nil || stuck {
			e.t.Fatalf("start subprocess server: %v (hung between fork and exec: %v)", err, stuck)
		}
		break
	}
	p.cmd = cmd
	ready := make(chan string, 1)
	var outWG sync.WaitGroup
	outWG.Add(1)
	go func() {
		defer outWG.Done()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "ready "):
				select {
				case ready <- line:
				default:
				}
			case strings.HasPrefix(line, "stats "):
				var st models.Stats
				if err := json.Unmarshal([]byte(line[len("stats "):]), &st); err == nil {
					p.mu.Lock()
					p.stats = &st
					p.mu.Unlock()
				}
			case strings.HasPrefix(line, "live "):
				var st models.Stats
				if err := json.Unmarshal([]byte(line[len("live "):]), &st); err == nil {
					p.mu.Lock()
					p.live = &st
					p.mu.Unlock()
				}
			}
		}
	}()
	go func() {
		outWG.Wait() // Wait closes the pipe: read it all first
		p.waitErr = cmd.Wait()
		p.exitAt = time.Now()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		killGroup(cmd) // the process, and any worker it left behind
		<-p.done
	})
	select {
	case line := <-ready:
		f := strings.Fields(line)
		if len(f) != 4 || f[1] != cfg.Net || !strings.HasPrefix(f[3], "pid=") {
			e.t.Fatalf("subprocess server printed a malformed ready line %q (want \"ready %s <addr> pid=<pid>\")", line, cfg.Net)
		}
		p.addr = f[2]
		p.pid, err = strconv.Atoi(strings.TrimPrefix(f[3], "pid="))
		if err != nil || p.pid <= 0 {
			e.t.Fatalf("bad pid in ready line %q", line)
		}
	case <-p.done:
		e.t.Fatalf("subprocess server exited (%v) before its ready line; did the test's TestMain call models.MaybeRunChild()? stderr:\n%s", p.waitErr, p.stderr)
	case <-time.After(e.d(readyTimeout)):
		e.t.Fatalf("subprocess server printed no ready line within %v; stderr:\n%s", e.d(readyTimeout), p.stderr)
	}
	return p
}

// alive reports whether the process has not exited.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// terminate sends SIGTERM and waits up to timeout for the exit. It returns
// how long the exit took and the exit error (nil for status 0).
func (p *proc) terminate(timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && p.alive() {
		return 0, fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		return time.Since(start), fmt.Errorf("still running %v after SIGTERM", timeout)
	}
	took := p.exitAt.Sub(start)
	// Processes it started (prefork workers) must be gone with it.
	for deadline := time.Now().Add(p.e.d(graceSlack)); groupAlive(p.cmd); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			killGroup(p.cmd)
			return took, fmt.Errorf("exited (%v), but processes it started were still running %v later", p.waitErr, p.e.d(graceSlack))
		}
	}
	return took, p.waitErr
}

// waitLive waits until cond holds on the Stats the child prints while it
// runs (childSpec.LiveStats), or fails after timeout.
func (p *proc) waitLive(what string, timeout time.Duration, cond func(models.Stats) bool) {
	p.e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		st := p.live
		p.mu.Unlock()
		if st != nil && cond(*st) {
			return
		}
		if time.Now().After(deadline) || !p.alive() {
			p.e.t.Fatalf("the subprocess server's live stats never showed %s (last: %v); stderr:\n%s", what, st, p.stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// finalStats returns the Stats the child printed on exit.
func (p *proc) finalStats() (models.Stats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stats == nil {
		return models.Stats{}, errors.New("the subprocess server printed no final stats line")
	}
	return *p.stats, nil
}

// tailBuffer keeps the last max bytes written to it, and counts every
// line.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	b     []byte
	lines int
}

// Lines is how many lines were written in all.
func (tb *tailBuffer) Lines() int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.lines
}

func (tb *tailBuffer) Write(p []byte) (int, error) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.lines += bytes.Count(p, []byte{'\n'})
	tb.b = append(tb.b, p...)
	if len(tb.b) > tb.max {
		tb.b = append(tb.b[:0], tb.b[len(tb.b)-tb.max:]...)
	}
	return len(p), nil
}

func (tb *tailBuffer) String() string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return string(tb.b)
}
