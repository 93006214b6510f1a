package bench

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Column is one column of the results CSV: its name, its unit and what it
// means, how a Row writes it and how it is read back. Columns, the table
// of them, is the one source of the schema: the header CreateCSV writes,
// Row.Record, ReadCSV and the reference docs/results-csv.md (written by
// WriteColumnsDoc; a test keeps the file in step) all come from it.
type Column struct {
	Name    string
	Unit    string // "" where the value is a name, a word or a count of things named in Meaning
	Meaning string
	// Old lists earlier names of the column; ReadCSV reads them, so files
	// written before a rename still read.
	Old []string
	// Design marks DESIGN.md's 36 columns, which come first and in its
	// order; the rest are appended after them, newest last.
	Design bool
	// Measured columns are empty in a row whose run never measured
	// anything (status skipped or failed): nothing may plot or average a
	// run that did not happen. ReadCSV gives them NaN (floats) or 0.
	Measured bool

	format func(r *Row) string
	parse  func(r *Row, v string) error
	clear  func(r *Row)
}

// field builds a Column over one Row field of type T, written by enc and
// read by dec; an empty CSV field reads as empty (NaN for measured floats).
func field[T any](name, unit, meaning string, get func(r *Row) *T, enc func(T) string, dec func(string) (T, error), empty T) Column {
	return Column{Name: name, Unit: unit, Meaning: meaning,
		format: func(r *Row) string { return enc(*get(r)) },
		parse: func(r *Row, v string) error {
			if v == "" {
				*get(r) = empty
				return nil
			}
			x, err := dec(v)
			if err != nil {
				return fmt.Errorf("bad value %q", v)
			}
			*get(r) = x
			return nil
		},
		clear: func(r *Row) { *get(r) = empty },
	}
}

func text(name, meaning string, get func(r *Row) *string) Column {
	return field(name, "", meaning, get, func(s string) string { return s }, func(s string) (string, error) { return s, nil }, "")
}

func whole[T int | int64](name, unit, meaning string, get func(r *Row) *T) Column {
	return field(name, unit, meaning, get, func(n T) string { return strconv.FormatInt(int64(n), 10) },
		func(s string) (T, error) { n, err := strconv.ParseInt(s, 10, 64); return T(n), err }, 0)
}

// real writes a measured float with prec decimals, and NaN (not measured)
// as an empty field.
func real(name, unit, meaning string, prec int, get func(r *Row) *float64) Column {
	return field(name, unit, meaning, get, func(f float64) string {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return ""
		}
		return strconv.FormatFloat(f, 'f', prec, 64)
	}, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }, math.NaN())
}

func measured(c Column) Column { c.Measured = true; return c }

// Columns is the results CSV schema, in file order: DESIGN.md's 36
// columns, then the appended ones.
var Columns = append(designed(
	timeColumn("time", "UTC time the run began, RFC 3339", func(r *Row) *time.Time { return &r.Time }),
	text("suite_version", "version of the sockbench binary that ran the bench (its --version)", func(r *Row) *string { return &r.SuiteVersion }),
	text("commit", "VCS commit of the code measured (\"\" when unknown)", func(r *Row) *string { return &r.Commit }),
	text("host", "host name of the machine", func(r *Row) *string { return &r.Host }),
	text("os", "operating system (GOOS)", func(r *Row) *string { return &r.OS }),
	text("arch", "CPU architecture (GOARCH)", func(r *Row) *string { return &r.Arch }),
	text("cpu_model", "CPU model (on a Raspberry Pi, the board)", func(r *Row) *string { return &r.CPUModel }),
	whole("cores", "CPUs", "CPUs the machine has", func(r *Row) *int { return &r.Cores }),
	text("go_version", "Go toolchain that built the binary", func(r *Row) *string { return &r.GoVersion }),
	text("model", "server model: threaded, eventloop, prefork, bare (the machine's limit)", func(r *Row) *string { return &r.Model }),
	text("net", "transport: tcp, udp, unix, unixgram (or tcp4, tcp6, udp4, udp6)", func(r *Row) *string { return &r.Net }),
	text("mode", "what the server does to each request: echo or upper", func(r *Row) *string { return &r.Mode }),
	whole("conns", "connections", "connections of the load generator (UDP: sockets)", func(r *Row) *int { return &r.Conns }),
	whole("pipeline", "requests", "requests in flight per connection", func(r *Row) *int { return &r.Pipeline }),
	whole("size", "bytes", "request size, the '\\n' included on stream transports", func(r *Row) *int { return &r.Size }),
	field("rate", "req/s", "open loop: requests due per second over all connections; 0 is the closed loop",
		func(r *Row) *float64 { return &r.Rate }, func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) },
		func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }, 0),
	whole("work_us", "µs", "CPU time the handler burns per request (serve --work)", func(r *Row) *int64 { return &r.WorkUS }),
	whole("block_us", "µs", "time the handler waits per request, as a blocking call would (serve --block)", func(r *Row) *int64 { return &r.BlockUS }),
	whole("run", "", "which run of the cell this is, from 1 to the profile's count", func(r *Row) *int { return &r.Run }),
	measured(real("duration_s", "s", "length of the measured window", 3, func(r *Row) *float64 { return &r.DurationS })),
	measured(whole("requests", "requests", "replies that arrived and matched the expected bytes", func(r *Row) *int64 { return &r.Requests })),
	measured(whole("errors", "requests", "failed requests and connections (wrong, missing or refused replies; UDP loss is apart)", func(r *Row) *int64 { return &r.Errors })),
	measured(whole("lost", "datagrams", "datagrams never answered within the load generator's --timeout", func(r *Row) *int64 { return &r.Lost })),
	measured(real("rps", "req/s", "requests / duration_s: validated replies per second", 1, func(r *Row) *float64 { return &r.RPS })),
	measured(real("mbps", "MB/s", "bytes of validated replies per second / 10^6, one direction", 3, func(r *Row) *float64 { return &r.MBps })),
	measured(real("p50_us", "µs", "median latency (closed loop: from send; open loop: from when the request was due)", 1, func(r *Row) *float64 { return &r.P50US })),
	measured(real("p90_us", "µs", "90th percentile latency", 1, func(r *Row) *float64 { return &r.P90US })),
	measured(real("p99_us", "µs", "99th percentile latency", 1, func(r *Row) *float64 { return &r.P99US })),
	measured(real("p999_us", "µs", "99.9th percentile latency", 1, func(r *Row) *float64 { return &r.P999US })),
	measured(real("p9999_us", "µs", "99.99th percentile latency", 1, func(r *Row) *float64 { return &r.P9999US })),
	measured(real("max_us", "µs", "largest latency", 1, func(r *Row) *float64 { return &r.MaxUS })),
	measured(real("server_cpu_s", "s", "server CPU time (user+system, every process of the server) in the measured window", 4, func(r *Row) *float64 { return &r.ServerCPUSeconds })),
	measured(real("cpu_us_per_req", "µs", "server_cpu_s / requests: server CPU per request", 3, func(r *Row) *float64 { return &r.CPUUSPerReq })),
	measured(whole("server_rss_kb", "KiB", "server peak resident memory (VmHWM summed over its processes)", func(r *Row) *int64 { return &r.ServerRSSKB })),
	measured(real("client_cpu_s", "s", "load generator CPU time (user+system) in the measured window", 4, func(r *Row) *float64 { return &r.ClientCPUSeconds })),
	measured(field("client_saturated", "", "true when the load generator used >= 90% of its CPUs: the cell measured the client as much as the server",
		func(r *Row) *bool { return &r.ClientSaturated }, strconv.FormatBool, func(s string) (bool, error) { return s == "true", nil }, false)),
),
	text("status", "ok: measured; skipped: would not fit the machine (note says why); failed: could not be measured; unclean-exit: measured, but the server did not exit 0 within its grace; partial: not a run but the last row of a set that was cut short, its cell columns empty and its note saying why and how far it got (\"interrupted: 37 of 288 runs\"); compare refuses such a set unless given --allow-partial", func(r *Row) *string { return &r.Status }),
	text("note", "why a run was skipped or failed, and warnings of a measured one", func(r *Row) *string { return &r.Note }),
	renamed(text("server_cpu_list", "CPUs the server was pinned to, such as 0 or 0-3,6 (\"\" unpinned)", func(r *Row) *string { return &r.ServerCPUList }), "server_cpus"),
	renamed(text("client_cpu_list", "CPUs the load generator was pinned to (\"\" unpinned)", func(r *Row) *string { return &r.ClientCPUList }), "client_cpus"),
	whole("workers", "", "the server's --workers: event loops, worker processes or UDP readers", func(r *Row) *int { return &r.Workers }),
	text("server_args", "extra flags given to every server (bench --server-args); not part of the cell's identity", func(r *Row) *string { return &r.ServerArgs }),
	text("server_host", "machine the server ran on (bench --server-host puts it on another; then host, os, arch, cpu_model and cores describe that machine)", func(r *Row) *string { return &r.ServerHost }),
	text("client_host", "machine the load generator ran on (the same as server_host on one machine)", func(r *Row) *string { return &r.ClientHost }),
	real("link_rtt_us", "µs", "median round trip between the two machines, from a one-connection load of 16-byte echoes once per run; empty on one machine", 1, func(r *Row) *float64 { return &r.LinkRTTUS }),
	measured(real("send_lag_p50_us", "µs", "open loop: median of how late the load generator sent a request after it was due (part of the latency); empty for the closed loop", 1, func(r *Row) *float64 { return &r.SendLagP50US })),
	measured(real("send_lag_p99_us", "µs", "open loop: 99th percentile of the send lag; empty for the closed loop", 1, func(r *Row) *float64 { return &r.SendLagP99US })),
	real("client_ceiling_rps", "req/s", "the load generator's calibrated ceiling for the cell's shape of load (bench's calibration against a sink that costs nothing); empty when not calibrated", 0, func(r *Row) *float64 { return &r.ClientCeilingRPS }),
	measured(text("bound", "server-bound: the generator had headroom (not saturated, below 90% of its ceiling), so rps is the server's; client-bound: the generator was the bottleneck, rps is a lower bound of the server's; unknown: no ceiling was calibrated", func(r *Row) *string { return &r.Bound })),
)

// timeColumn writes a time as RFC 3339 in UTC; empty reads as the zero time.
func timeColumn(name, meaning string, get func(r *Row) *time.Time) Column {
	return field(name, "UTC", meaning, get, func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		func(s string) (time.Time, error) { return time.Parse(time.RFC3339, s) }, time.Time{})
}

func designed(cs ...Column) []Column {
	for i := range cs {
		cs[i].Design = true
	}
	return cs
}

func renamed(c Column, old ...string) Column { c.Old = old; return c }

// clearMeasured empties every Measured field of r (NaN or 0): a run that
// has not measured anything yet, or never will.
func (r *Row) clearMeasured() {
	for i := range Columns {
		if Columns[i].Measured {
			Columns[i].clear(r)
		}
	}
}

// ColumnNames is the CSV header: the names of Columns in order.
func ColumnNames() []string {
	names := make([]string, len(Columns))
	for i, c := range Columns {
		names[i] = c.Name
	}
	return names
}

// columnIndex is the index of the named column in Columns; it panics for
// a name that is not there (a typo in this package).
func columnIndex(name string) int {
	for i, c := range Columns {
		if c.Name == name {
			return i
		}
	}
	panic("bench: no column " + name)
}

// WriteColumnsDoc writes docs/results-csv.md, the reference of the
// results CSV, from Columns. `go generate ./bench` rewrites the file, and
// TestColumnsDoc fails when it is out of step.
func WriteColumnsDoc(w io.Writer) error {
	var b strings.Builder
	b.WriteString(`# The results CSV

<!-- Generated from bench.Columns by WriteColumnsDoc: edit bench/columns.go, then run go generate ./bench. -->

` + "`sockbench bench`" + ` writes ` + "`results/<UTC time>-<host>.csv`" + `: a header, then one row per run,
each row written whole as soon as its run ends (an interrupted bench leaves
only complete rows). Every cell the profile asked for has its rows, also
when it was skipped or failed: then ` + "`status`" + ` says so, ` + "`note`" + ` says why,
and the measured columns are empty, not zero.

Columns 1 to 36 are the schema of the design (docs/DESIGN.md), in its
order; the columns after them were appended later, newest last, and new
ones are only ever appended. Readers (` + "`sockbench compare`" + `, ` + "`report`" + `) find
columns by name, so files with fewer columns still read, and so do the
earlier names listed under "formerly".

| # | column | unit | measured | meaning | formerly |
|---|---|---|---|---|---|
`)
	for i, c := range Columns {
		unit, meas, old := c.Unit, "", strings.Join(c.Old, ", ")
		if c.Measured {
			meas = "yes"
		}
		if old != "" {
			old = "`" + strings.ReplaceAll(old, ", ", "`, `") + "`"
		}
		fmt.Fprintf(&b, "| %d | `%s` | %s | %s | %s | %s |\n", i+1, c.Name, unit, meas, strings.ReplaceAll(c.Meaning, "|", "\\|"), old)
	}
	b.WriteString(`
"measured": empty in rows with status skipped, failed or partial. The same runs are
also written in Go benchmark format (` + "`.txt`" + `, for benchstat); there the
pinning keeps its former names, config lines ` + "`server_cpus`" + ` and ` + "`client_cpus`" + `, as
benchstat compares only files whose config keys agree.
`)
	_, err := io.WriteString(w, b.String())
	return err
}
