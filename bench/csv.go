package bench

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

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

// Row is one measured (or skipped) run: one line of the results CSV. The
// column each field is written to, its unit and meaning are in Columns.
type Row struct {
	Time time.Time
	Env
	Key
	Run              int
	DurationS        float64
	Requests         int64
	Errors           int64
	Lost             int64
	RPS              float64
	MBps             float64
	P50US, P90US     float64
	P99US, P999US    float64
	P9999US, MaxUS   float64
	ServerCPUSeconds float64
	CPUUSPerReq      float64
	ServerRSSKB      int64
	ClientCPUSeconds float64
	ClientSaturated  bool
	Status           string
	Note             string
	ServerCPUList    string
	ClientCPUList    string
	Workers          int
	ServerArgs       string
	ServerHost       string
	ClientHost       string
	LinkRTTUS        float64 // NaN when not measured
	SendLagP50US     float64 // open loop; NaN for the closed loop
	SendLagP99US     float64
	ClientCeilingRPS float64 // NaN when not calibrated
	Bound            string  // BoundServer, BoundClient or BoundUnknown
}

// OK reports whether the row holds a clean measurement.
func (r *Row) OK() bool { return r.Status == StatusOK || r.Status == "" }

// unmeasured reports whether a row with this status never measured
// anything: its measured columns are empty.
func unmeasured(status string) bool {
	return status == StatusSkipped || status == StatusFailed || status == StatusPartial
}

// Record formats the row as CSV fields in Columns order.
func (r *Row) Record() []string {
	unmeasured := unmeasured(r.Status)
	rec := make([]string, len(Columns))
	for i := range Columns {
		if !(unmeasured && Columns[i].Measured) {
			rec[i] = Columns[i].format(r)
		}
	}
	return rec
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
	if err := cw.write(ColumnNames()); err != nil {
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
// missing optional columns still read, and so do the earlier names of
// renamed columns (Column.Old). It needs at least the columns that
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
	byName := map[string]int{}
	for i, h := range header {
		byName[strings.TrimSpace(h)] = i
	}
	// at[i] is the field of Columns[i] in this file's records, or -1.
	at := make([]int, len(Columns))
	for i := range Columns {
		at[i] = -1
		for _, name := range append([]string{Columns[i].Name}, Columns[i].Old...) {
			if j, ok := byName[name]; ok {
				at[i] = j
				break
			}
		}
	}
	for _, need := range []string{"model", "net", "mode", "conns", "rps"} {
		if at[columnIndex(need)] < 0 {
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
		field := func(i int) string {
			if at[i] < 0 {
				return ""
			}
			return strings.TrimSpace(rec[at[i]])
		}
		var row Row
		row.Status = field(columnIndex("status"))
		unmeasured := unmeasured(row.Status)
		if unmeasured {
			row.clearMeasured()
		}
		for i := range Columns {
			c := &Columns[i]
			if unmeasured && c.Measured {
				continue
			}
			if err := c.parse(&row, field(i)); err != nil {
				return nil, fmt.Errorf("line %d: column %s: %w", line, c.Name, err)
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}
