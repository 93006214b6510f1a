package loadgen

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/sockbench/sockbench/protocol"
)

// Formats lists the output formats of WriteReport.
var Formats = []string{"text", "json", "csv"}

// WriteReport writes rep in the named format.
func WriteReport(w io.Writer, rep *Report, format string) error {
	switch format {
	case "text", "":
		return WriteText(w, rep)
	case "json":
		return WriteJSON(w, rep)
	case "csv":
		return WriteCSV(w, rep, true)
	}
	return errorf(ErrConfig, "unknown format %q (want text, json or csv)", format)
}

// WriteJSON writes rep as one indented JSON object.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// CSVHeader names the CSV columns; those shared with the results CSV
// (DESIGN.md) carry the same names. client_cpu_count was client_cpus
// (a count, which the results CSV uses for a CPU list). Appended after
// failure: service time and send lag percentiles (open loop; empty in the
// closed loop), the share of client_cpu_s spent yield-spinning for due
// times, the engine, and the generator's ceiling (--calibrate only); then
// the label of the server under test, the generator's host and the UTC
// time the measurement began, so `sockbench report` and `compare` can read
// the row as a run.
var CSVHeader = []string{
	"target", "net", "mode", "loop", "conns", "pipeline", "size", "size_min", "size_max", "rate",
	"duration_s", "requests", "errors", "lost", "duplicated", "reordered", "timeouts", "mismatches",
	"rps", "mbps", "p50_us", "p90_us", "p99_us", "p999_us", "p9999_us", "max_us", "mean_us", "stddev_us",
	"connect_p50_us", "connect_max_us", "client_cpu_s", "client_cpu_count", "client_saturated", "rate_held", "failure",
	"service_p50_us", "service_p99_us", "send_lag_p50_us", "send_lag_p99_us", "client_spin_s", "engine", "ceiling_rps",
	"label", "host", "start",
}

// CSVRecord returns rep's row for CSVHeader.
func CSVRecord(rep *Report) []string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	f3 := func(v float64) string { return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64) }
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	l := rep.Latency
	opt := func(s *Summary, p99 bool) string {
		switch {
		case s == nil || s.Count == 0:
			return ""
		case p99:
			return f3(s.P99)
		}
		return f3(s.P50)
	}
	ceiling := ""
	if rep.Calibration != nil {
		ceiling = f3(rep.Calibration.CeilingRPS)
	}
	return []string{
		rep.Target, rep.Net, rep.Mode, rep.Loop, i(int64(rep.Conns)), i(int64(rep.Pipeline)),
		i(int64(rep.Size)), i(int64(rep.SizeMin)), i(int64(rep.SizeMax)), f(rep.Rate),
		f3(rep.DurationS), i(rep.Requests), i(rep.Errors), i(rep.Lost), i(rep.Duplicated),
		i(rep.Reordered), i(rep.Timeouts), i(rep.Mismatches),
		f3(rep.RPS), f3(rep.MBps), f3(l.P50), f3(l.P90), f3(l.P99), f3(l.P999), f3(l.P9999), f3(l.Max),
		f3(l.Mean), f3(l.Stddev), f3(rep.Connect.P50), f3(rep.Connect.Max),
		f3(rep.ClientCPUSeconds), i(int64(rep.ClientCPUCount)), strconv.FormatBool(rep.ClientSaturated),
		strconv.FormatBool(rep.RateHeld), rep.Failure,
		opt(rep.Service, false), opt(rep.Service, true), opt(rep.SendLag, false), opt(rep.SendLag, true),
		f3(rep.ClientSpinS), rep.Engine, ceiling,
		rep.Label, rep.Host, rep.Start,
	}
}

// WriteCSV writes rep as one CSV row, with the header first when header is set.
func WriteCSV(w io.Writer, rep *Report, header bool) error {
	cw := csv.NewWriter(w)
	if header {
		if err := cw.Write(CSVHeader); err != nil {
			return err
		}
	}
	if err := cw.Write(CSVRecord(rep)); err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

// WriteText writes the summary a person reads at a glance.
func WriteText(w io.Writer, rep *Report) error {
	var b strings.Builder
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-10s %s\n", label, fmt.Sprintf(format, args...))
	}
	sizes := fmt.Sprintf("%d-byte", rep.Size)
	if rep.SizeMin != rep.SizeMax {
		sizes = fmt.Sprintf("%d..%d-byte", rep.SizeMin, rep.SizeMax)
	}
	if rep.Sources > 1 {
		line("Merged", "%d runs", rep.Sources)
	}
	line("Target", "%s (%s)", rep.Target, rep.Mode)
	cnt := func(v int64) string { return fmtCount(float64(v)) }
	conns := cnt(int64(rep.Conns))
	loop := fmt.Sprintf("closed loop, %s conns x %d in flight", conns, rep.Pipeline)
	switch rep.Loop {
	case "open":
		loop = fmt.Sprintf("open loop at %s req/s over %s conns (at most %d in flight each)", fmtRate(rep.Rate), conns, rep.Pipeline)
	case "mixed":
		loop = fmt.Sprintf("closed and open loops, %s conns", conns)
	}
	if rep.ConnsOK != rep.Conns {
		loop += fmt.Sprintf(" (%s connected)", cnt(int64(rep.ConnsOK)))
	}
	line("Load", "%s, %s requests, %.2fs measured after %gs warmup", loop, sizes, rep.DurationS, rep.WarmupS)
	line("Requests", "%s ok: %s req/s, %.2f MB/s each way", cnt(rep.Requests), fmtRate(rep.RPS), rep.MBps)
	switch {
	case rep.Errors > 0:
		line("Errors", "%s (%s)", cnt(rep.Errors), kindList(rep.ErrorsByKind))
	case rep.Failure != "":
		line("Errors", "none counted in the measurement (it failed: see below)")
	default:
		line("Errors", "none (every reply checked byte for byte)")
	}
	for _, e := range rep.Examples {
		line("", "  %s", e)
	}
	if wu := rep.Warmup; wu.Errors > 0 || rep.Failure != "" && rep.Requests == 0 && wu.Requests+wu.Sent > 0 {
		errs := "no errors"
		if wu.Errors > 0 {
			errs = fmt.Sprintf("%s errors (%s)", cnt(wu.Errors), kindList(wu.ErrorsByKind))
		}
		line("Warmup", "%s sent, %s ok, %s (not part of the figures)", cnt(wu.Sent), cnt(wu.Requests), errs)
	}
	if tr, _ := protocol.ParseTransport(rep.Net); tr.IsDatagram() {
		lostPct := 0.0
		if rep.Sent > 0 {
			lostPct = 100 * float64(rep.Lost) / float64(rep.Sent)
		}
		line("Datagrams", "%s sent, %s lost (%.2f%%), %s duplicated, %s reordered, %s late",
			cnt(rep.Sent), cnt(rep.Lost), lostPct, cnt(rep.Duplicated), cnt(rep.Reordered), cnt(rep.Late))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "%-10s %9s %9s %9s %9s %9s %9s %9s %9s\n", "", "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean", "stddev")
	row := func(label string, s Summary) {
		if s.Count == 0 {
			fmt.Fprintf(&b, "%-10s %9s\n", label, "-")
			return
		}
		fmt.Fprintf(&b, "%-10s %9s %9s %9s %9s %9s %9s %9s %9s\n", label,
			fmtDur(s.P50), fmtDur(s.P90), fmtDur(s.P99), fmtDur(s.P999), fmtDur(s.P9999), fmtDur(s.Max), fmtDur(s.Mean), fmtDur(s.Stddev))
	}
	row("Latency", rep.Latency)
	if rep.Service != nil {
		row("Service", *rep.Service)
		if rep.SendLag != nil {
			row("Send lag", *rep.SendLag)
			b.WriteString("           (open loop: latency counts from when each request was due, service time from when it\n")
			b.WriteString("            was sent; send lag, how late it went out, is the generator's or a full pipeline's share)\n")
		} else {
			b.WriteString("           (open loop: latency counts from when each request was due, service time from when it was sent)\n")
		}
	}
	row("Connect", rep.Connect)
	b.WriteString("\n")
	usage := ""
	if rep.DurationS >= minCPUWindow.Seconds() && rep.ClientCPUCount > 0 {
		usage = fmt.Sprintf(" (%.0f%% of %s)", 100*rep.ClientCPUSeconds/rep.DurationS/float64(rep.ClientCPUCount), cpusNoun(rep.ClientCPUCount))
	}
	if rep.ClientSpinS > 0 {
		usage += fmt.Sprintf(", %.2f of them yield-spinning for due times", rep.ClientSpinS)
	}
	perReq := ""
	if rep.Requests > 0 {
		perReq = fmt.Sprintf(", %s a request", fmtDur((rep.ClientCPUSeconds-rep.ClientSpinS)*1e6/float64(rep.Requests)))
	}
	engine := ""
	if rep.Engine != "" {
		engine = " [" + rep.Engine + " engine]"
	}
	line("Client", "%.2f CPU-seconds%s%s%s", rep.ClientCPUSeconds, usage, perReq, engine)
	if c := rep.Calibration; c != nil {
		line("Ceiling", "%s", c.describe())
	}
	for _, wn := range rep.Warnings {
		line("Warning", "%s", wn)
	}
	if rep.Failure != "" {
		line("FAILED", "%s", rep.Failure)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// kindList formats errors by kind as "closed 1, timeout 3".
func kindList(m map[string]int64) string {
	kinds := make([]string, 0, len(m))
	for k, n := range m {
		kinds = append(kinds, k+" "+fmtCount(float64(n)))
	}
	sort.Strings(kinds)
	return strings.Join(kinds, ", ")
}

// cpusNoun returns "1 CPU" or "N CPUs".
func cpusNoun(n int) string {
	if n == 1 {
		return "1 CPU"
	}
	return strconv.Itoa(n) + " CPUs"
}
