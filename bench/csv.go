package bench

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// Columns is the results CSV header: DESIGN.md's columns in its order,
// then sockbench's appended ones (DESIGN allows appending at the end only).
//
// Appended: status is "ok" for a measured run, "skipped" for a cell that
// would not fit the machine (note says why; its measurement fields are
// empty, not zero, so nothing plots or averages a run that never
// happened), "failed" when the run could not be measured, and
// "unclean-exit" when it was measured but the server did not exit 0 within
// its grace. Rows that are not "ok" keep the matrix complete in the file:
// a reader sees every cell the profile asked for and what became of it.
// server_cpus and client_cpus record the pinning ("" when unpinned);
// workers is the server's --workers; server_args are extra flags given to
// every server (--server-args), which do not change the cell's identity.
var Columns = []string{
	"time", "suite_version", "commit", "host", "os", "arch", "cpu_model", "cores", "go_version",
	"model", "net", "mode", "conns", "pipeline", "size", "rate", "work_us", "block_us", "run",
	"duration_s", "requests", "errors", "lost", "rps", "mbps", "p50_us", "p90_us", "p99_us",
	"p999_us", "p9999_us", "max_us", "server_cpu_s", "cpu_us_per_req", "server_rss_kb",
	"client_cpu_s", "client_saturated",
	// appended
	"status", "note", "server_cpus", "client_cpus", "workers", "server_args",
	"send_lag_p50_us", "send_lag_p99_us", "client_ceiling_rps", "bound",
}

// designColumns is how many of Columns come from DESIGN.md.
const designColumns = 36

// Run statuses in the status column.
const (
	StatusOK          = "ok"
	StatusSkipped     = "skipped"
	StatusFailed      = "failed"
	StatusUncleanExit = "unclean-exit"
)

// Env describes the machine and build a run happened on.
type Env struct {
	SuiteVersion string
	Commit       string
	Host         string
	OS           string
	Arch         string
	CPUModel     string
	Cores        int
	GoVersion    string
}

// Row is one measured (or skipped) run: one line of the results CSV.
type Row struct {
	Time time.Time
	Env
	Key
	Run             int
	DurationS       float64
	Requests        int64
	Errors          int64
	Lost            int64
	RPS             float64
	MBps            float64
	P50, P90, P99   float64 // microseconds
	P999, P9999     float64
	Max             float64
	ServerCPUS      float64
	CPUUSPerReq     float64
	ServerRSSKB     int64
	ClientCPUS      float64
	ClientSaturated bool
	Status          string
	Note            string
	ServerCPUs      string
	ClientCPUs      string
	Workers         int
	ServerArgs      string
	// Appended by the load generator's issue (11).
	SendLagP50, SendLagP99 float64 // microseconds; NaN for the closed loop
	ClientCeilingRPS       float64 // NaN when not calibrated
	Bound                  string
}

// OK reports whether the row holds a clean measurement.
func (r *Row) OK() bool { return r.Status == StatusOK || r.Status == "" }

func ftoa(f float64, prec int) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return ""
	}
	return strconv.FormatFloat(f, 'f', prec, 64)
}

// Record formats the row as CSV fields in Columns order.
func (r *Row) Record() []string {
	rec := []string{
		r.Time.UTC().Format(time.RFC3339), r.SuiteVersion, r.Commit, r.Host, r.OS, r.Arch, r.CPUModel,
		strconv.Itoa(r.Cores), r.GoVersion,
		r.Model, r.Net, r.Mode, strconv.Itoa(r.Conns), strconv.Itoa(r.Pipeline), strconv.Itoa(r.Size),
		strconv.FormatFloat(r.Rate, 'f', -1, 64), strconv.FormatInt(r.WorkUS, 10), strconv.FormatInt(r.BlockUS, 10),
		strconv.Itoa(r.Run),
	}
	if r.Status == StatusSkipped || r.Status == StatusFailed {
		rec = append(rec, make([]string, designColumns-len(rec))...)
	} else {
		rec = append(rec,
			ftoa(r.DurationS, 3), strconv.FormatInt(r.Requests, 10), strconv.FormatInt(r.Errors, 10),
			strconv.FormatInt(r.Lost, 10), ftoa(r.RPS, 1), ftoa(r.MBps, 3),
			ftoa(r.P50, 1), ftoa(r.P90, 1), ftoa(r.P99, 1), ftoa(r.P999, 1), ftoa(r.P9999, 1), ftoa(r.Max, 1),
			ftoa(r.ServerCPUS, 4), ftoa(r.CPUUSPerReq, 3), strconv.FormatInt(r.ServerRSSKB, 10),
			ftoa(r.ClientCPUS, 4), strconv.FormatBool(r.ClientSaturated))
	}
	return append(rec, r.Status, r.Note, r.ServerCPUs, r.ClientCPUs, strconv.Itoa(r.Workers), r.ServerArgs,
		ftoa(r.SendLagP50, 1), ftoa(r.SendLagP99, 1), ftoa(r.ClientCeilingRPS, 0), r.Bound)
}

// CSVWriter writes result rows one complete row at a time: each Write
// flushes and syncs the file, so an interrupted run leaves only whole rows.
type CSVWriter struct {
	f *os.File
}

// CreateCSV creates path and writes the header.
func CreateCSV(path string) (*CSVWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	cw := &CSVWriter{f: f}
	if err := cw.write(Columns); err != nil {
		f.Close()
		return nil, err
	}
	return cw, nil
}

func (c *CSVWriter) write(rec []string) error {
	// Build the whole line first and hand it to the file in one write, so
	// that even a kill between two syscalls cannot leave half a row.
	var b strings.Builder
	w := csv.NewWriter(&b)
	if err := w.Write(rec); err != nil {
		return err
	}
	w.Flush()
	if _, err := c.f.WriteString(b.String()); err != nil {
		return fmt.Errorf("bench: writing results: %w", err)
	}
	return nil
}

// Write appends one row.
func (c *CSVWriter) Write(r *Row) error { return c.write(r.Record()) }

// Close closes the file.
func (c *CSVWriter) Close() error {
	if err := c.f.Sync(); err != nil {
		c.f.Close()
		return err
	}
	return c.f.Close()
}

// ReadCSVFile reads a results CSV.
func ReadCSVFile(path string) ([]Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer f.Close()
	rows, err := ReadCSV(f)
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", path, err)
	}
	return rows, nil
}

// ReadCSV parses results rows by header name, so files with appended or
// missing optional columns still read. It needs at least the columns that
// identify a cell and rps.
func ReadCSV(r io.Reader) ([]Row, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty file, no CSV header")
		}
		return nil, err
	}
	idx := map[string]int{}
	for i, h := range header {
		idx[strings.TrimSpace(h)] = i
	}
	for _, need := range []string{"model", "net", "mode", "conns", "rps"} {
		if _, ok := idx[need]; !ok {
			return nil, fmt.Errorf("not a sockbench results CSV: no %q column", need)
		}
	}
	var rows []Row
	line := 1
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line++
		if err != nil {
			return nil, err
		}
		if len(rec) < len(header) {
			return nil, fmt.Errorf("line %d: %d fields, the header has %d (truncated row?)", line, len(rec), len(header))
		}
		p := rowParser{rec: rec, idx: idx, line: line}
		row := Row{
			Time: p.time("time"),
			Env: Env{SuiteVersion: p.str("suite_version"), Commit: p.str("commit"), Host: p.str("host"),
				OS: p.str("os"), Arch: p.str("arch"), CPUModel: p.str("cpu_model"), Cores: int(p.int("cores")),
				GoVersion: p.str("go_version")},
			Key: Key{Model: p.str("model"), Net: p.str("net"), Mode: p.str("mode"), Conns: int(p.int("conns")),
				Pipeline: int(p.int("pipeline")), Size: int(p.int("size")), Rate: p.zeroFloat("rate"),
				WorkUS: p.int("work_us"), BlockUS: p.int("block_us")},
			Run:    int(p.int("run")),
			Status: p.str("status"), Note: p.str("note"),
			ServerCPUs: p.str("server_cpus"), ClientCPUs: p.str("client_cpus"),
			Workers: int(p.int("workers")), ServerArgs: p.str("server_args"),
			Bound: p.str("bound"), SendLagP50: p.float("send_lag_p50_us"), SendLagP99: p.float("send_lag_p99_us"),
			ClientCeilingRPS: p.float("client_ceiling_rps"),
		}
		if row.Status == StatusSkipped || row.Status == StatusFailed {
			row.DurationS, row.RPS, row.MBps = math.NaN(), math.NaN(), math.NaN()
			row.P50, row.P90, row.P99, row.P999, row.P9999, row.Max = math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()
			row.ServerCPUS, row.CPUUSPerReq, row.ClientCPUS = math.NaN(), math.NaN(), math.NaN()
			rows = append(rows, row)
			continue
		}
		row.DurationS = p.float("duration_s")
		row.Requests = p.int("requests")
		row.Errors = p.int("errors")
		row.Lost = p.int("lost")
		row.RPS = p.float("rps")
		row.MBps = p.float("mbps")
		row.P50, row.P90, row.P99 = p.float("p50_us"), p.float("p90_us"), p.float("p99_us")
		row.P999, row.P9999, row.Max = p.float("p999_us"), p.float("p9999_us"), p.float("max_us")
		row.ServerCPUS = p.float("server_cpu_s")
		row.CPUUSPerReq = p.float("cpu_us_per_req")
		row.ServerRSSKB = p.int("server_rss_kb")
		row.ClientCPUS = p.float("client_cpu_s")
		row.ClientSaturated = p.str("client_saturated") == "true"
		if p.err != nil {
			return nil, p.err
		}
		rows = append(rows, row)
	}
	return rows, nil
}

type rowParser struct {
	rec  []string
	idx  map[string]int
	line int
	err  error
}

func (p *rowParser) str(col string) string {
	i, ok := p.idx[col]
	if !ok || i >= len(p.rec) {
		return ""
	}
	return strings.TrimSpace(p.rec[i])
}

func (p *rowParser) fail(col, v string) {
	if p.err == nil {
		p.err = fmt.Errorf("line %d: column %s: bad number %q", p.line, col, v)
	}
}

func (p *rowParser) int(col string) int64 {
	v := p.str(col)
	if v == "" {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		p.fail(col, v)
	}
	return n
}

func (p *rowParser) float(col string) float64 {
	v := p.str(col)
	if v == "" {
		return math.NaN()
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		p.fail(col, v)
	}
	return f
}

// zeroFloat is float for identity columns, where empty means 0 (NaN
// would never equal itself as a map key).
func (p *rowParser) zeroFloat(col string) float64 {
	if p.str(col) == "" {
		return 0
	}
	return p.float(col)
}

func (p *rowParser) time(col string) time.Time {
	v := p.str(col)
	if v == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("line %d: column %s: bad time %q", p.line, col, v)
	}
	return t
}
