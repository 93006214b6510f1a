package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sockbench/sockbench/loadgen"
)

// Defaults of the runner.
const (
	DefaultReadyTimeout = 15 * time.Second
	// loadSlack is how long past its window a load run may take (connect,
	// drain, report) before it is stopped and the run counted as failed.
	loadSlack = 30 * time.Second
)

// Options configures a bench run.
type Options struct {
	// Binary is the sockbench executable run as `serve` and `load`.
	Binary string
	// Profile is the plan; Count (if > 0) overrides its count.
	Profile *Profile
	Count   int
	// OutDir receives <stem>.csv, .txt, .html.
	OutDir string
	// ServerCPUs and ClientCPUs pin the server and the load generator
	// (nil: unpinned).
	ServerCPUs, ClientCPUs []int
	// Workers is the server's --workers (0: len(ServerCPUs), or all CPUs).
	Workers int
	// ServerArgs are extra flags for every server, e.g. "--work=50us" to
	// check that compare notices a slower build. They do not change the
	// cells' identity and are recorded in the server_args column.
	ServerArgs []string
	// Env describes this machine and build; Run fills in what is empty.
	Env Env
	// ReadyTimeout bounds the wait for a server's ready line.
	ReadyTimeout time.Duration
	// ServerHost, when not "", is ssh://[user@]host[:port]: every server
	// runs on that host (remote.go) and the load here. ServerCPUs are
	// then the server host's CPUs, and Env describes that host.
	ServerHost string
	// Progress receives progress; a progress bar when TTY is true.
	Progress io.Writer
	TTY      bool
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Outcome is what a bench run produced.
type Outcome struct {
	Rows        []Row
	CSV, TXT    string
	HTML        string
	SkippedNote string
	Interrupted bool
	Elapsed     time.Duration
	sockDir     string // removed at the end of Run (tests check)
}

// Runs counts the runs written (every row but a partial set's marker).
func (o *Outcome) Runs() int {
	n := 0
	for _, r := range o.Rows {
		if r.Status != StatusPartial {
			n++
		}
	}
	return n
}

// Failures counts runs that failed or whose server did not exit cleanly.
func (o *Outcome) Failures() int {
	n := 0
	for _, r := range o.Rows {
		if r.Status == StatusFailed || r.Status == StatusUncleanExit {
			n++
		}
	}
	return n
}

// Per-request CPU costs that size the default pinning, measured by `make
// bench` on the 2-core development machine (server on CPU 0, generator on
// CPU 1, TCP echo at 32 connections, medians of 6 runs): the cheapest
// model's server CPU per request (threaded, cpu_us_per_req 4.42 µs;
// eventloop 4.53, prefork 4.49) and the load generator's CPU per request
// in those same runs (client_cpu_s / requests, 4.08 µs; it pays 3.9 when
// saturated against the C yardstick server, whose own client pays 3.8).
// Both sides of a loopback round trip pay about the same kernel work, so
// the generator needs about as many CPUs as the server it must saturate.
// (The generator of before paid 10 µs against servers paying 8.6 to 9.4,
// and saturated in 96 of the 108 runs at 32 connections; now 20 and 33 in
// two runs.)
const (
	serverCostUS = 4.42
	clientCostUS = 4.08
)

// DefaultPinning splits the CPUs this process may use between the server
// (the first ones) and the load generator (the rest), giving the generator
// as many as it needs to saturate the server: see clientShare. With the
// costs above: 1 and 1 of 2 CPUs, 2 and 2 of 4, 4 and 4 of 8, 1 and 2 of
// 3. With one CPU, or where pinning is unsupported, both are nil and
// nothing is pinned.
func DefaultPinning() (server, client []int) {
	cpus := allowedCPUs()
	if !pinningSupported || len(cpus) < 2 {
		return nil, nil
	}
	c := clientShare(len(cpus), serverCostUS, clientCostUS)
	return cpus[:len(cpus)-c], cpus[len(cpus)-c:]
}

// clientShare returns how many of n CPUs the load generator needs to stay
// below its saturation mark (90% busy) while the server keeps the other
// n-c busy: c/clientCost*0.9 = (n-c)/serverCost, rounded to the nearest
// CPU (the costs are measured to a few percent), at least one each.
func clientShare(n int, serverCost, clientCost float64) int {
	k := clientCost / (clientBusyMark * serverCost)
	c := int(math.Round(float64(n) * k / (1 + k)))
	return min(max(c, 1), n-1)
}

// clientBusyMark is the load generator's CPU share from which it counts as
// saturated (loadgen's client_saturated), and the share of its calibrated
// ceiling from which a cell counts as client-bound.
const clientBusyMark = 0.9

// ParseCPUs parses a CPU list such as "0", "0-3", "0,2,4-5".
func ParseCPUs(s string) ([]int, error) {
	var cpus []int
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 0 || b < a || b > 4095 {
			return nil, fmt.Errorf("bad CPU list %q (want e.g. 0, 0-3 or 0,2,4-5)", s)
		}
		for c := a; c <= b; c++ {
			if !seen[c] {
				seen[c] = true
				cpus = append(cpus, c)
			}
		}
	}
	sort.Ints(cpus)
	return cpus, nil
}

// formatCPUs writes a CPU list compactly: 0-3,6.
func formatCPUs(cpus []int) string {
	var parts []string
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", cpus[i], cpus[j]))
		} else {
			parts = append(parts, strconv.Itoa(cpus[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// interleave orders cells so that the model varies fastest: every model
// runs a workload before the next workload starts, and slow drift of the
// machine (thermal, neighbours) lands on all models alike.
func interleave(cells []Cell) []Cell {
	out := append([]Cell(nil), cells...)
	modelIdx := map[string]int{}
	for _, c := range cells {
		if _, ok := modelIdx[c.Model]; !ok {
			modelIdx[c.Model] = len(modelIdx)
		}
	}
	firstPos := map[Key]int{}
	for i, c := range cells {
		k := c.Key()
		k.Model = ""
		if _, ok := firstPos[k]; !ok {
			firstPos[k] = i
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		ki, kj := out[i].Key(), out[j].Key()
		ki.Model, kj.Model = "", ""
		if firstPos[ki] != firstPos[kj] {
			return firstPos[ki] < firstPos[kj]
		}
		return modelIdx[out[i].Model] < modelIdx[out[j].Model]
	})
	return out
}

// Runner runs a profile.
type Runner struct {
	opts    Options
	cells   []Cell
	count   int
	sockDir string
	workers int
	now     func() time.Time
	host    serverHost
	target  *SSHTarget // parsed Options.ServerHost; nil for a local run
	// What every row records of where it ran: the server's and the load
	// generator's host names, and the measured round trip between them
	// (NaN on one machine).
	serverHost, clientHost string
	linkRTTUS              float64
	ceilings               map[Key]ceiling // by calibrationKey
}

// ceiling is what the calibration step measured for one shape of load.
type ceiling struct {
	rps  float64 // the load generator's ceiling, req/s; 0 when unknown
	note string  // why it is unknown
}

// NewRunner checks the options and prepares a run.
func NewRunner(opts Options) (*Runner, error) {
	if opts.Profile == nil {
		return nil, errors.New("bench: no profile")
	}
	if opts.Binary == "" {
		return nil, errors.New("bench: no sockbench binary given")
	}
	if _, err := os.Stat(opts.Binary); err != nil {
		return nil, fmt.Errorf("bench: sockbench binary: %w", err)
	}
	cells, err := opts.Profile.Cells()
	if err != nil {
		return nil, err
	}
	r := &Runner{opts: opts, cells: interleave(cells), count: opts.Profile.Count, now: opts.Now, linkRTTUS: math.NaN()}
	if opts.ServerHost != "" {
		t, err := ParseServerHost(opts.ServerHost)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		r.target = &t
	}
	if opts.Count > 0 {
		r.count = opts.Count
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.opts.ReadyTimeout == 0 {
		r.opts.ReadyTimeout = DefaultReadyTimeout
	}
	if r.opts.Progress == nil {
		r.opts.Progress = io.Discard
	}
	r.workers = opts.Workers
	if r.workers == 0 {
		r.workers = len(opts.ServerCPUs)
	}
	if r.workers == 0 {
		r.workers = len(allowedCPUs())
	}
	if r.workers == 0 {
		r.workers = 1
	}
	fillEnv(&r.opts.Env)
	r.serverHost, r.clientHost = r.opts.Env.Host, r.opts.Env.Host
	return r, nil
}

// checkBinary runs the binary's serve and load --help: a wrong --binary
// would otherwise cost a ready timeout per cell. Run calls it before it
// creates any file; a dry run (Cells, Estimate) does not need it, so a
// plan can be listed even where the binary cannot be executed by its
// path (an arm binary under qemu-user without binfmt).
func (r *Runner) checkBinary(ctx context.Context) error {
	for _, sub := range []string{"serve", "load"} {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		out, err := exec.CommandContext(cctx, r.opts.Binary, sub, "--help").CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("bench: %s has no working '%s' command (%v): %s", r.opts.Binary, sub, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// Cells returns the cells in run order.
func (r *Runner) Cells() []Cell { return r.cells }

// Total is the number of runs planned.
func (r *Runner) Total() int { return len(r.cells) * r.count }

// runOverhead is a run's wall time beyond its warmup and measurement:
// starting the server, waiting for it to listen, stopping it, reading its
// stats. The quick profile's 288 runs took 2m11s on the 2-core machine,
// 55 ms a run beyond their 0.4 s; this allows for slower machines (a Pi
// starts processes more slowly) without the 300 ms that made the first
// estimate "about 3m29s" for those 2m11s.
const runOverhead = 100 * time.Millisecond

// Estimate is a rough wall time for the whole run.
func (r *Runner) Estimate() time.Duration {
	var d time.Duration
	for _, c := range r.cells {
		d += c.Duration + c.Warmup + runOverhead
	}
	return d*time.Duration(r.count) + r.calibrationEstimate()
}

// Stem is the output file name stem: <UTC time>-<host>.
func Stem(t time.Time, host string) string {
	h := strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == os.PathSeparator {
			return '_'
		}
		return r
	}, host)
	return t.UTC().Format("20060102T150405Z") + "-" + h
}

// Run runs every cell Count times, writing each row as soon as it is
// measured. Cancelling ctx (Ctrl-C) stops the current cell's processes,
// drops its unfinished measurement and still writes the .txt and the
// report of the rows finished so far.
func (r *Runner) Run(ctx context.Context) (*Outcome, error) {
	if err := r.checkBinary(ctx); err != nil {
		return nil, err
	}
	if err := r.openHost(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if err := r.host.close(); err != nil {
			fmt.Fprintln(r.opts.Progress, "sockbench:", err)
		}
	}()
	start := r.now()
	if err := os.MkdirAll(r.opts.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	// Two runs started in the same second (a CI loop) get -2, -3, ...
	base := filepath.Join(r.opts.OutDir, Stem(start, r.opts.Env.Host))
	stem := base
	var cw *CSVWriter
	var err error
	for n := 2; ; n++ {
		cw, err = CreateCSV(stem + ".csv")
		if err == nil || !errors.Is(err, os.ErrExist) || n > 100 {
			break
		}
		stem = fmt.Sprintf("%s-%d", base, n)
	}
	if err != nil {
		return nil, err
	}
	out := &Outcome{CSV: stem + ".csv", TXT: stem + ".txt", HTML: stem + ".html"}
	sockDir, err := os.MkdirTemp("", "sb")
	if err != nil {
		cw.Close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	r.sockDir = sockDir
	out.sockDir = sockDir
	defer os.RemoveAll(sockDir)

	r.calibrate(ctx)
	prog := newProgress(r.opts.Progress, r.opts.TTY, r.Total(), r.Estimate())
	i := 0
	var hostErr error
loop:
	for run := 1; run <= r.count; run++ {
		for _, cell := range r.cells {
			if ctx.Err() != nil {
				break loop
			}
			if hostErr = r.host.broken(); hostErr != nil {
				break loop // the server's host is gone: keep what was measured
			}
			i++
			prog.start(i, cell, run, r.count)
			row := r.runOne(ctx, cell, run)
			if ctx.Err() != nil && row.Status != StatusSkipped {
				break loop // the measurement was cut short: not a result
			}
			if err := cw.Write(&row); err != nil {
				cw.Close()
				return out, err
			}
			out.Rows = append(out.Rows, row)
			prog.done(&row)
		}
	}
	prog.finish()
	out.Interrupted = ctx.Err() != nil
	out.Elapsed = r.now().Sub(start)
	if out.Interrupted || hostErr != nil {
		// Mark the set partial, in the CSV and in what is drawn from
		// the rows (the .txt, the report, the summary).
		why := "interrupted"
		if !out.Interrupted {
			why = "stopped: the server's host was lost"
		}
		row := partialRow(r.now().UTC(), r.opts.Env, Partial{Why: why, Done: len(out.Rows), Planned: r.Total()})
		if err := cw.Write(&row); err != nil {
			cw.Close()
			return out, err
		}
		out.Rows = append(out.Rows, row)
	}
	if err := cw.Close(); err != nil {
		return out, err
	}
	if err := r.writeOutputs(out, stem); err != nil {
		return out, err
	}
	return out, hostErr
}

func (r *Runner) writeOutputs(out *Outcome, stem string) error {
	extra := map[string]string{"profile": r.opts.Profile.Name, "pkg": "github.com/sockbench/sockbench/bench"}
	var buf bytes.Buffer
	if err := WriteBenchfmt(&buf, out.Rows, extra); err != nil {
		return err
	}
	if err := os.WriteFile(out.TXT, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	var skipped []string
	for _, row := range out.Rows {
		if row.Status == StatusSkipped && row.Run == 1 {
			skipped = append(skipped, fmt.Sprintf("%s: %s", row.Key, row.Note))
		}
	}
	if len(skipped) > 0 {
		out.SkippedNote = stem + ".skipped.txt"
		note := fmt.Sprintf("Cells of profile %s skipped on %s (they would not fit; rows with status=skipped in %s):\n%s\n",
			r.opts.Profile.Name, r.opts.Env.Host, filepath.Base(out.CSV), strings.Join(skipped, "\n"))
		if err := os.WriteFile(out.SkippedNote, []byte(note), 0o644); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	f, err := os.Create(out.HTML)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	rep := &Report{Title: "sockbench " + r.opts.Profile.Name + " on " + r.opts.Env.Host,
		Sets: []ResultSet{{Name: filepath.Base(out.CSV), Rows: out.Rows}}}
	if err := rep.WriteHTML(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// baseRow fills the identity columns of a row.
func (r *Runner) baseRow(cell Cell, run int) Row {
	row := Row{Time: r.now().UTC(), Env: r.opts.Env, Key: cell.Key(), Run: run,
		ServerCPUList: formatCPUs(r.opts.ServerCPUs), ClientCPUList: formatCPUs(r.opts.ClientCPUs),
		Workers: r.workers, ServerArgs: strings.Join(r.opts.ServerArgs, " "),
		ServerHost: r.serverHost, ClientHost: r.clientHost}
	row.clearMeasured()
	row.LinkRTTUS = r.linkRTTUS
	row.ClientCeilingRPS = math.NaN()
	return row
}

// runOne measures one cell once, or records why it could not.
func (r *Runner) runOne(ctx context.Context, cell Cell, run int) Row {
	row := r.baseRow(cell, run)
	if why := r.host.wontFit(cell, r.workers); why != "" {
		row.Status, row.Note = StatusSkipped, why
		return row
	}
	err := r.measure(ctx, cell, &row)
	if err != nil && row.Status == "" {
		row.Status = StatusFailed
	}
	if err != nil {
		row.Note = joinNote(row.Note, err.Error())
	}
	if row.Status == "" {
		row.Status = StatusOK
	}
	return row
}

func joinNote(a, b string) string {
	b = strings.Join(strings.Fields(b), " ")
	if a == "" {
		return b
	}
	if b == "" {
		return a
	}
	return a + "; " + b
}

// server is one running `sockbench serve`.
type server struct {
	cmd    *exec.Cmd
	pid    int
	addr   string
	stderr *tailBuffer
	exited chan struct{}
	err    error // Wait's result, valid after exited is closed
}

// startServer starts `sockbench serve` for cell on the server host and
// waits for its ready line.
func (r *Runner) startServer(ctx context.Context, cell Cell) (serverProc, error) {
	grace := r.opts.Profile.Grace
	args := []string{"serve", "--model", cell.Model, "--net", cell.Net, "--addr", r.host.addr(cell),
		"--mode", cell.Mode, "--workers", strconv.Itoa(r.workers), "--grace", grace.String()}
	if cell.Work > 0 {
		args = append(args, "--work", cell.Work.String())
	}
	if cell.Block > 0 {
		args = append(args, "--block", cell.Block.String())
	}
	args = append(args, r.opts.ServerArgs...)
	return r.host.start(ctx, args, r.opts.ServerCPUs, r.opts.ReadyTimeout)
}

// startServe starts binary with args (a `serve` command line) pinned to
// cpus and waits up to readyTimeout for its ready line. The orchestrator
// calls it for a local server, the remote agent for one on its host.
func startServe(ctx context.Context, binary string, args []string, cpus []int, readyTimeout time.Duration) (*server, error) {
	cmd := exec.Command(binary, args...)
	cmd.SysProcAttr = childAttr()
	s := &server{cmd: cmd, stderr: newTail(4096), exited: make(chan struct{})}
	cmd.Stderr = s.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := startPinned(cmd, cpus); err != nil {
		return nil, fmt.Errorf("starting server: %w", err)
	}
	s.pid = cmd.Process.Pid
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			if !sent && strings.HasPrefix(sc.Text(), "ready ") {
				ready <- sc.Text()
				sent = true
			}
		}
		// Keep draining until EOF so the server never blocks on stdout.
		io.Copy(io.Discard, stdout)
		if !sent {
			close(ready)
		}
	}()
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case line, ok := <-ready:
		if !ok {
			<-s.exited
			return nil, fmt.Errorf("server exited before it was ready (%v): %s", s.err, s.stderr.String())
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			s.kill()
			return nil, fmt.Errorf("server printed a malformed ready line %q", line)
		}
		s.addr = f[2]
		return s, nil
	case <-timer.C:
		s.kill()
		return nil, fmt.Errorf("server not ready within %v: %s", readyTimeout, s.stderr.String())
	case <-ctx.Done():
		s.stop(2 * time.Second)
		return nil, ctx.Err()
	}
}

// address is where the server listens (the ready line's address).
func (s *server) address() string { return s.addr }

// sample reads the CPU time and peak RSS of the server's process tree.
func (s *server) sample() (cpuS float64, rssKB int64, procs int, err error) {
	return sampleTree(s.pid)
}

// kill SIGKILLs the server's whole process group and waits for the parent.
func (s *server) kill() {
	syscall.Kill(-s.pid, syscall.SIGKILL)
	<-s.exited
}

// stop sends SIGTERM and waits up to grace for a clean exit; then it
// SIGKILLs the group. It returns nil only for exit status 0 within grace
// with no process of the group left behind.
func (s *server) stop(grace time.Duration) error {
	syscall.Kill(s.pid, syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	var err error
	select {
	case <-s.exited:
		if s.err != nil {
			err = fmt.Errorf("server exited with %v after SIGTERM: %s", s.err, s.stderr.String())
		}
	case <-timer.C:
		syscall.Kill(-s.pid, syscall.SIGKILL)
		<-s.exited
		err = fmt.Errorf("server did not exit within %v of SIGTERM; killed: %s", grace, s.stderr.String())
	}
	// Anything left in the server's process group (a prefork worker that
	// outlived its parent) is an orphan: sweep it and say so.
	if syscall.Kill(-s.pid, 0) == nil {
		syscall.Kill(-s.pid, syscall.SIGKILL)
		if err == nil {
			err = errors.New("server left processes behind after exiting; killed them")
		}
	}
	return err
}

// measure runs one cell: server up, warmup, measured load, samples, stop.
func (r *Runner) measure(ctx context.Context, cell Cell, row *Row) error {
	srv, err := r.startServer(ctx, cell)
	if err != nil {
		return err
	}
	grace := r.opts.Profile.Grace + 2*time.Second
	stopped := false
	defer func() {
		if !stopped {
			srv.stop(grace)
		}
	}()
	if cell.Warmup > 0 {
		rep, err := r.runLoad(ctx, cell, srv.address(), cell.Warmup)
		if err != nil {
			return fmt.Errorf("warmup: %w", err)
		}
		if rep.Failure != "" {
			return fmt.Errorf("warmup: load failed: %s", rep.Failure)
		}
	}
	cpu0, _, _, err := srv.sample()
	if err != nil {
		return err
	}
	rep, err := r.runLoad(ctx, cell, srv.address(), cell.Duration)
	if err != nil {
		return err
	}
	cpu1, rss, procs, serr := srv.sample()
	stopped = true
	stopErr := srv.stop(grace)
	if rep.Failure != "" {
		return fmt.Errorf("load failed: %s", rep.Failure)
	}
	if rep.Interrupted {
		return errors.New("load run was interrupted")
	}
	row.DurationS = rep.DurationS
	row.Requests, row.Errors, row.Lost = rep.Requests, rep.Errors, rep.Lost
	row.RPS, row.MBps = rep.RPS, rep.MBps
	l := rep.Latency
	row.P50US, row.P90US, row.P99US, row.P999US, row.P9999US, row.MaxUS = l.P50, l.P90, l.P99, l.P999, l.P9999, l.Max
	row.ClientCPUSeconds, row.ClientSaturated = rep.ClientCPUSeconds, rep.ClientSaturated
	if rep.SendLag != nil {
		row.SendLagP50US, row.SendLagP99US = rep.SendLag.P50, rep.SendLag.P99
	}
	r.label(cell, row)
	if serr == nil {
		row.ServerCPUSeconds = cpu1 - cpu0
		if rep.Requests > 0 {
			row.CPUUSPerReq = row.ServerCPUSeconds * 1e6 / float64(rep.Requests)
		}
		row.ServerRSSKB = rss
	} else {
		row.Note = joinNote(row.Note, "server CPU and RSS not sampled: "+serr.Error())
	}
	if cell.Model == "prefork" && procs < 2 && serr == nil {
		row.Note = joinNote(row.Note, fmt.Sprintf("only %d server process seen", procs))
	}
	if rep.Errors > 0 {
		row.Note = joinNote(row.Note, fmt.Sprintf("%d errors %v", rep.Errors, rep.ErrorsByKind))
	}
	for _, w := range rep.Warnings {
		row.Note = joinNote(row.Note, w)
	}
	if stopErr != nil {
		row.Status = StatusUncleanExit
		return stopErr
	}
	return nil
}

// runLoad runs `sockbench load` against addr for d and parses its JSON.
// The load generator's own warmup is off: the orchestrator runs warmup as
// a separate load run, so that the server's CPU time can be sampled
// exactly around the measured one (no load process is running at either
// sample).
func (r *Runner) runLoad(ctx context.Context, cell Cell, addr string, d time.Duration) (*loadgen.Report, error) {
	return r.loadProcess(ctx, cell, d, r.opts.ClientCPUs, "--target", cell.Net+"://"+addr, "--warmup", "0")
}

// loadProcess runs `sockbench load` for cell's shape with the extra
// arguments, pinned to cpus, and parses its JSON.
func (r *Runner) loadProcess(ctx context.Context, cell Cell, d time.Duration, cpus []int, extra ...string) (*loadgen.Report, error) {
	args := append([]string{"load", "--mode", cell.Mode,
		"-c", strconv.Itoa(cell.Conns), "-p", strconv.Itoa(cell.Pipeline), "-s", strconv.Itoa(cell.Size),
		"-d", d.String(), "--format", "json"}, extra...)
	if cell.Rate > 0 {
		args = append(args, "--rate", strconv.FormatFloat(cell.Rate, 'f', -1, 64))
	}
	if r.opts.Profile.Timeout > 0 {
		args = append(args, "--timeout", r.opts.Profile.Timeout.String())
	}
	lctx, cancel := context.WithTimeout(ctx, d+loadSlack+time.Duration(cell.Conns)*time.Millisecond)
	defer cancel()
	cmd := exec.CommandContext(lctx, r.opts.Binary, args...)
	cmd.SysProcAttr = childAttr()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 3 * time.Second
	var stdout bytes.Buffer
	stderr := newTail(4096)
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := startPinned(cmd, cpus); err != nil {
		return nil, fmt.Errorf("starting load generator: %w", err)
	}
	werr := cmd.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if lctx.Err() != nil {
		return nil, fmt.Errorf("load generator did not finish within %v; stopped: %s", d+loadSlack, stderr.String())
	}
	var rep loadgen.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		if werr != nil {
			return nil, fmt.Errorf("load generator failed (%v): %s", werr, stderr.String())
		}
		return nil, fmt.Errorf("load generator printed no JSON report (%v): %s", err, stderr.String())
	}
	if werr != nil && rep.Failure == "" && rep.Errors == 0 {
		return nil, fmt.Errorf("load generator exited with %v: %s", werr, stderr.String())
	}
	return &rep, nil
}

// tailBuffer keeps the last n bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	n   int
	buf []byte
}

func newTail(n int) *tailBuffer { return &tailBuffer{n: n} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.n {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-t.n:]...)
	}
	return len(p), nil
}

// String is the tail, trimmed, on one line; "(no stderr)" when empty.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.TrimSpace(string(t.buf))
	if s == "" {
		return "(no stderr)"
	}
	if lines := strings.Split(s, "\n"); len(lines) > 5 {
		s = strings.Join(lines[len(lines)-5:], "\n")
	}
	return "stderr: " + strings.ReplaceAll(s, "\n", " | ")
}

// fillEnv completes the machine description.
func fillEnv(e *Env) {
	if e.Host == "" {
		e.Host, _ = os.Hostname()
	}
	if e.OS == "" {
		e.OS = goos
	}
	if e.Arch == "" {
		e.Arch = goarch
	}
	if e.CPUModel == "" {
		e.CPUModel = cpuModel()
	}
	if e.Cores == 0 {
		e.Cores = numCPU()
	}
	if e.GoVersion == "" {
		e.GoVersion = goVersion()
	}
}

// CheckCPUs checks that every CPU in cpus is one this process may use.
func CheckCPUs(cpus []int) error {
	if len(cpus) == 0 {
		return nil
	}
	if !pinningSupported {
		return errors.New("CPU pinning is not supported on " + goos)
	}
	ok := map[int]bool{}
	for _, c := range allowedCPUs() {
		ok[c] = true
	}
	for _, c := range cpus {
		if !ok[c] {
			return fmt.Errorf("CPU %d is not available here (available: %s)", c, formatCPUs(allowedCPUs()))
		}
	}
	return nil
}
