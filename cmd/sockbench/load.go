package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sockbench/sockbench/bench"
	"github.com/sockbench/sockbench/loadgen"
	"github.com/sockbench/sockbench/protocol"
)

// loadFlags are the flags of `sockbench load`.
type loadFlags struct {
	cfg         loadgen.Config
	size        string
	seed        uint64
	format      string
	hdrOut      string
	output      string
	startAt     string
	shard       string
	hdrInterval time.Duration
	calibrate   string
	sinkCPUs    string
	label       string
	report      string
	slo         string
}

func newLoadCmd() *cobra.Command {
	f := &loadFlags{}
	cmd := &cobra.Command{
		Use:   "load --target URL",
		Short: "Drive a server with load and report validated throughput and latency",
		Long: `load opens connections to a running server, sends requests for the duration (or
count) asked, checks every reply byte for byte, and prints throughput, latency
percentiles (HdrHistogram: p50 p90 p99 p99.9 p99.99 max) and errors.

Closed loop (default): each connection keeps -p requests in flight.
Open loop (--rate R): requests are due at R per second on one schedule shared
by all connections, and latency counts from when a request was due, not when
it went out (coordinated omission corrected, as wrk2 does); service time is
shown beside it, and a warning says when the rate could not be held.

Requests are random bytes (never '\n', half of them lower-case letters, so
upper is really checked); datagrams start with a 16-digit sequence tag, so
lost, duplicated and reordered replies are counted. -s is the line length
including '\n' on tcp and unix, the datagram size on udp and unixgram.

--calibrate NET measures the generator itself instead: it loads a built-in
sink on NET (tcp, udp, unix or unixgram) that transforms each byte and
sends it straight back, pinned to its own CPU (--sink-cpus; by default the
last one this process may use) while the generator runs on the others, and
reports the most this generator drives there: its ceiling. A bench cell
near that ceiling measures the client, not the server.

While it runs, a progress line (req/s, p99) is shown on stderr if that is a
terminal. The exit status is 0 when every request succeeded, 1 when the
target was unreachable, connections were lost or any request failed (partial
results are still printed), 2 for bad flags. UDP loss is reported but is not
a failure.

--report run.html draws the run on one page that opens offline: throughput
and p50, p99 and max per interval over time (the interval histograms of
--hdr-out: 1 s, or a twentieth of a shorter run, at least 10 ms; set
--hdr-interval to choose), so warm-up, GC pauses and stalls show, and the
latency spectrum (every percentile).

--slo 'p99<1ms,errors=0,rps>=50000' judges the run against thresholds, as
k6 thresholds do: each METRIC OP VALUE, separated by commas. Metrics: p50,
p90, p95, p99, p99.9, p99.99, max, mean and p(N) for any percentile N
(latency; the value needs a unit: ns, us, µs, ms, s), rps and mbps (a
number, 50k and 2M allowed), errors and lost (counts), error_rate and
loss_rate (a fraction, or a percentage: 0.1%). OP: < <= > >= == (or =) !=.
Each threshold's result goes to stderr ("slo p99<1ms: FAILED (p99 1.42ms)").
A malformed expression is refused before any load is sent (exit 2).

--label NAME names the server under test in the JSON and CSV output, so
that 'sockbench report' and 'compare', which read those files (one run per
file, or appended), show it as the model; the generator's host is recorded
too.

Exit status: 0 when the run succeeded (and every --slo threshold held);
1 when the target was unreachable, connections were lost or requests
failed (with --slo naming errors or error_rate, failed requests count only
through those thresholds); 2 for bad flags or a malformed --slo; 3 when the
run completed but an --slo threshold failed; 130 when interrupted.

Several generators, one result: give each the same whole-run flags plus
--shard i/N (its share of -c, -n and --rate) and the same --start-at (the
measurement starts then on every one, the warmup just before), write each
one's --hdr-out log, and 'sockbench merge' them.`,
		Example: `  sockbench load --target tcp://127.0.0.1:7000
  sockbench load --target unix:///tmp/sb.sock --mode upper -c 64 -p 8 -s 16:4096 -d 30s
  sockbench load --target udp://127.0.0.1:7000 --rate 20000 --format json
  sockbench load --target tcp://127.0.0.1:7000 -n 100000 --hdr-out run1.hlog
  sockbench load --target tcp://10.0.0.5:7000 -c 64 -d 30s --shard 0/2 --start-at 2026-12-01T12:00:00Z --hdr-out shard0.hlog
  taskset -c 0,1 sockbench load --calibrate tcp --sink-cpus 0 -c 64 -d 3s
  sockbench load --target tcp://10.0.0.5:7000 -c 64 -d 60s --report run.html --slo 'p99<2ms,errors=0,rps>=40k'
  sockbench load --target tcp://10.0.0.5:7000 -c 64 -d 10s --label v2 --format json -o after/run1.json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("load takes no arguments, got %q (the target goes in --target)", strings.Join(args, " "))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLoad(cmd, f)
		},
	}
	fl := cmd.Flags()
	c := &f.cfg
	fl.StringVar(&c.Target, "target", "", "server to load: tcp://host:port, udp://host:port, unix:///path.sock or unixgram:///path.sock; tcp4, tcp6, udp4, udp6 fix the IP version (required)")
	fl.Var(&c.Mode, "mode", "what the server does to each request: echo or upper")
	fl.IntVarP(&c.Conns, "conns", "c", loadgen.DefaultConns, "connections (UDP: sockets)")
	fl.IntVarP(&c.Pipeline, "pipeline", "p", loadgen.DefaultPipeline, "requests in flight per connection")
	fl.StringVarP(&f.size, "size", "s", fmt.Sprint(loadgen.DefaultSize), "request size in bytes (64, 4KiB), or MIN:MAX for uniformly random sizes (16:4KiB)")
	fl.Uint64Var(&f.seed, "seed", loadgen.DefaultSeed, "seed of request contents and sizes (same seed, same requests)")
	fl.DurationVarP(&c.Duration, "duration", "d", 0, "how long to measure (default 10s unless -n is given)")
	fl.Int64VarP(&c.Requests, "requests", "n", 0, "measure this many requests instead of a duration")
	fl.DurationVar(&c.Warmup, "warmup", loadgen.DefaultWarmup, "load before measuring, not counted")
	fl.DurationVar(&c.Timeout, "timeout", loadgen.DefaultTimeout, "limit on each connection attempt and each reply")
	fl.Float64Var(&c.Rate, "rate", 0, "open loop: requests per second over all connections, at most -c x -p in flight (0: closed loop)")
	fl.IntVar(&c.MaxLine, "max-line", 0, "the server's --max-line: the longest request allowed (default 65536)")
	fl.StringVar(&f.format, "format", "text", "output: text, json or csv")
	fl.StringVar(&f.hdrOut, "hdr-out", "", "also write the latency histograms as an HdrHistogram log to this file (see 'sockbench merge')")
	fl.StringVarP(&f.output, "output", "o", "", "write the report to this file instead of stdout")
	fl.StringVar(&f.startAt, "start-at", "", "start measuring at this UTC time (RFC 3339, e.g. 2026-12-01T12:00:00Z), so several generators measure the same window; the warmup runs just before")
	fl.StringVar(&f.shard, "shard", "", "i/N: this generator's share (0-based index i of N) of -c, -n and --rate, which then count the whole run")
	fl.DurationVar(&f.hdrInterval, "hdr-interval", time.Second, "interval of the --hdr-out log's histograms (0: one for the whole measurement)")
	completeValues(cmd, "mode", modeNames, cobra.ShellCompDirectiveNoFileComp)
	completeValues(cmd, "format", func() []string { return loadgen.Formats }, cobra.ShellCompDirectiveNoFileComp)
	completeValues(cmd, "target", targetSchemes, cobra.ShellCompDirectiveNoSpace|cobra.ShellCompDirectiveNoFileComp)
	fl.StringVar(&f.calibrate, "calibrate", "", "measure this generator's own ceiling against a built-in sink on NET (tcp, udp, unix or unixgram) instead of a --target")
	fl.StringVar(&f.label, "label", "", "name of the server under test, recorded in the JSON and CSV output (report and compare show it as the model)")
	fl.StringVar(&f.report, "report", "", "also draw the run as an HTML page: throughput and p50/p99/max per interval over time, and the latency spectrum")
	fl.StringVar(&f.slo, "slo", "", "thresholds the run must meet, e.g. 'p99<1ms,errors=0,rps>=50000'; exit 3 when one fails")
	fl.StringVar(&f.sinkCPUs, "sink-cpus", "", "with --calibrate: CPUs for the sink, e.g. 0 or 0-1 (default: the last CPU this process may use; the generator gets the others)")
	return cmd
}

// runLoad validates the flags, runs the load and prints the report.
func runLoad(cmd *cobra.Command, f *loadFlags) error {
	c := f.cfg
	var sinkCPUs []int
	switch {
	case f.calibrate != "":
		if c.Target != "" {
			return usagef("--calibrate brings its own sink: give no --target")
		}
		if c.Rate != 0 {
			return usagef("--calibrate measures the most the generator drives, a closed loop: give no --rate")
		}
		switch f.calibrate {
		case "tcp", "udp":
			c.Target = f.calibrate + "://127.0.0.1:1" // validated now; the sink's own address replaces it
		case "unix", "unixgram":
			c.Target = f.calibrate + ":///calibrate.sock"
		default:
			return usagef("--calibrate %q: want tcp, udp, unix or unixgram", f.calibrate)
		}
		if f.sinkCPUs != "" {
			var err error
			if sinkCPUs, err = bench.ParseCPUs(f.sinkCPUs); err != nil {
				return usagef("--sink-cpus: %v", err)
			}
		}
	case f.sinkCPUs != "":
		return usagef("--sink-cpus goes with --calibrate")
	case c.Target == "":
		return usagef("load needs --target, e.g. --target tcp://127.0.0.1:7000")
	}
	if !validFormat(f.format) {
		return usagef("--format %q: want text, json or csv", f.format)
	}
	var slo []threshold
	if cmd.Flags().Changed("slo") {
		var err error
		if slo, err = parseSLO(f.slo); err != nil {
			return usageError{err}
		}
	}
	fl := cmd.Flags()
	if fl.Changed("duration") && fl.Changed("requests") {
		return usagef("give -d (duration) or -n (requests), not both")
	}
	if fl.Changed("duration") && c.Duration <= 0 {
		return usagef("-d %v: want a positive duration", c.Duration)
	}
	if fl.Changed("requests") && c.Requests <= 0 {
		return usagef("-n %d: want a positive number of requests", c.Requests)
	}
	if c.Conns <= 0 {
		return usagef("-c %d: want at least 1 connection", c.Conns)
	}
	if c.Pipeline <= 0 {
		return usagef("-p %d: want at least 1 request in flight", c.Pipeline)
	}
	if fl.Changed("timeout") && c.Timeout <= 0 {
		return usagef("--timeout %v: want a positive duration", c.Timeout)
	}
	if fl.Changed("seed") && f.seed == 0 {
		return usagef("--seed 0: want a non-zero seed")
	}
	lo, hi, err := protocol.ParseSizeRange(f.size)
	if se := (*protocol.SizeError)(nil); errors.As(err, &se) {
		return usagef("-s %q: %s", se.Input, se.Problem)
	} else if err != nil {
		return usageError{err}
	}
	c.SizeMin, c.SizeMax = int(lo), int(hi)
	c.Seed = f.seed
	if f.startAt != "" {
		t, err := time.Parse(time.RFC3339Nano, f.startAt)
		if err != nil {
			return usagef("--start-at %q: want an RFC 3339 time such as 2026-12-01T12:00:00Z", f.startAt)
		}
		if ago := time.Since(t); ago > 0 {
			return usagef("--start-at %s is %v in the past", f.startAt, ago.Round(time.Millisecond))
		}
		c.StartAt = t
	}
	if f.shard != "" {
		sh, err := loadgen.ParseShard(f.shard)
		if err == nil {
			err = sh.Apply(&c)
		}
		if err != nil {
			return usagef("%s", plainError(err))
		}
	}
	if f.hdrInterval < 0 {
		return usagef("--hdr-interval %v: want a positive duration, or 0", f.hdrInterval)
	}
	if f.hdrOut != "" {
		c.Interval = f.hdrInterval
	}
	if f.report != "" && !fl.Changed("hdr-interval") {
		c.Interval = reportInterval(c.Duration)
	} else if f.report != "" {
		c.Interval = f.hdrInterval
	}
	if err := c.Normalize(); err != nil {
		return usagef("%s", plainError(err))
	}

	out := io.Writer(os.Stdout)
	var outFile *os.File
	if f.output != "" {
		if outFile, err = os.Create(f.output); err != nil {
			return fmt.Errorf("--output: %w", err)
		}
		defer outFile.Close()
		out = outFile
	}
	var hdrFile *os.File
	if f.hdrOut != "" {
		// Create it now: a typo in the path should not cost a whole run.
		if hdrFile, err = os.Create(f.hdrOut); err != nil {
			return fmt.Errorf("--hdr-out: %w", err)
		}
		defer hdrFile.Close()
	}
	var reportFile *os.File
	if f.report != "" {
		if reportFile, err = os.Create(f.report); err != nil {
			return fmt.Errorf("--report: %w", err)
		}
		defer reportFile.Close()
	}
	if term.IsTerminal(int(os.Stderr.Fd())) {
		c.Progress = os.Stderr
	}

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var rep *loadgen.Report
	var runErr error
	if f.calibrate != "" {
		rep, runErr = loadgen.Calibrate(ctx, c, f.calibrate, sinkCPUs)
	} else {
		rep, runErr = loadgen.Run(ctx, c)
	}
	if rep == nil {
		// Nothing was sent (the file limit, say): leave no empty files.
		for _, f := range []*os.File{outFile, hdrFile, reportFile} {
			if f != nil {
				f.Close()
				os.Remove(f.Name())
			}
		}
		if errors.Is(runErr, loadgen.ErrConfig) {
			return usagef("%s", plainError(runErr))
		}
		return errors.New(plainError(runErr))
	}
	rep.Label = f.label
	rep.Host, _ = os.Hostname()
	var results []sloResult
	if slo != nil {
		results = judge(slo, rep)
	}
	if reportFile != nil {
		var checks []string
		for _, r := range results {
			checks = append(checks, r.String())
		}
		if err := (&bench.RunReport{Rep: rep, Checks: checks}).WriteHTML(reportFile); err != nil {
			return fmt.Errorf("--report: %w", err)
		}
		if err := reportFile.Close(); err != nil {
			return fmt.Errorf("--report: %w", err)
		}
	}
	// Nothing connected: on a terminal the one-line error says it all; a
	// program reading JSON or CSV, or a report file asked for with -o,
	// gets the report with its failure.
	if rep.ConnsOK > 0 || f.format != "text" || outFile != nil {
		if err := loadgen.WriteReport(out, rep, f.format); err != nil {
			return err
		}
	}
	if hdrFile != nil {
		if err := loadgen.WriteHdrLog(hdrFile, rep); err != nil {
			return fmt.Errorf("--hdr-out: %w", err)
		}
		if err := hdrFile.Close(); err != nil {
			return fmt.Errorf("--hdr-out: %w", err)
		}
	}
	if outFile != nil {
		if err := outFile.Close(); err != nil {
			return fmt.Errorf("--output: %w", err)
		}
	}
	switch {
	case runErr != nil:
		return errors.New(plainError(runErr))
	case slo != nil && !rep.Interrupted:
		return sloOutcome(results, rep, namesErrors(slo))
	case rep.Errors > 0:
		return fmt.Errorf("%d errors (%s) beside %d good replies", rep.Errors, kindsLine(rep.ErrorsByKind), rep.Requests)
	case rep.Interrupted:
		return exitError{code: 130, err: errors.New("interrupted")}
	}
	return nil
}

// validFormat reports whether s is one of loadgen.Formats.
func validFormat(s string) bool {
	for _, f := range loadgen.Formats {
		if s == f {
			return true
		}
	}
	return false
}

// plainError is a loadgen error as one plain line for the user: its
// Detail without the kind's prefix ("cannot reach" before an unreachable
// target's).
func plainError(err error) string {
	var le *loadgen.Error
	if !errors.As(err, &le) {
		return err.Error()
	}
	if le.Kind == loadgen.ErrUnreachable {
		return "cannot reach " + le.Detail
	}
	return le.Detail
}

// kindsLine formats errors by kind as "timeout 3, closed 1".
func kindsLine(m map[string]int64) string {
	parts := make([]string, 0, len(m))
	for k, n := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// reportInterval is the interval of --report's charts: 1 s, or for a run
// shorter than 20 s a twentieth of it (at least 10 ms), so a short run
// still shows its course.
func reportInterval(d time.Duration) time.Duration {
	if d <= 0 || d >= 20*time.Second {
		return time.Second
	}
	return max(10*time.Millisecond, (d / 20).Truncate(10*time.Millisecond))
}

// sloOutcome prints every threshold's result to stderr and returns the
// exit: exitSLO when one failed; else an error for failed requests the
// thresholds did not judge; else none.
func sloOutcome(results []sloResult, rep *loadgen.Report, errorsJudged bool) error {
	var failed []string
	for _, r := range results {
		fmt.Fprintln(os.Stderr, r.String())
		if !r.ok {
			failed = append(failed, r.t.text)
		}
	}
	if len(failed) > 0 {
		return exitError{exitSLO, fmt.Errorf("%d of %d --slo thresholds failed: %s", len(failed), len(results), strings.Join(failed, ", "))}
	}
	if rep.Errors > 0 && !errorsJudged {
		return fmt.Errorf("%d errors (%s) beside %d good replies", rep.Errors, kindsLine(rep.ErrorsByKind), rep.Requests)
	}
	return nil
}
