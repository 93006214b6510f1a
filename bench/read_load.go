package bench

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/sockbench/sockbench/loadgen"
)

// LoadModel is the model name of a `sockbench load` run without a
// --label: the server under test, whatever it is.
const LoadModel = "server"

// LoadRow is one `sockbench load` run as a results row, so that report
// and compare read a user's own runs as they read bench's: the model is
// the run's --label (LoadModel without one), the cell its transport, mode,
// connections, pipeline, size and rate, the host the generator's. What
// only bench measures is empty: server CPU and memory (load cannot see
// the server), and the calibrated ceiling; the run is client-bound when
// the generator saturated its CPUs, unknown otherwise. A run that failed
// or was interrupted has status failed, with why in the note.
func LoadRow(rep *loadgen.Report, run int) Row {
	row := Row{Run: run, Env: Env{Host: rep.Host}, Status: StatusOK}
	row.clearMeasured()
	row.ClientCeilingRPS, row.LinkRTTUS = math.NaN(), math.NaN()
	row.Time, _ = time.Parse(time.RFC3339Nano, rep.Start)
	row.Key = Key{Model: rep.Label, Net: rep.Net, Mode: rep.Mode, Conns: rep.Conns, Pipeline: rep.Pipeline,
		Size: rep.Size, Rate: rep.Rate}
	if row.Model == "" {
		row.Model = LoadModel
	}
	row.Note = strings.Join(rep.Warnings, "; ")
	switch {
	case rep.Failure != "":
		row.Status, row.Note = StatusFailed, joinNote(rep.Failure, row.Note)
		return row
	case rep.Interrupted:
		row.Status, row.Note = StatusFailed, joinNote("interrupted", row.Note)
		return row
	}
	l := rep.Latency
	row.DurationS, row.Requests, row.Errors, row.Lost = rep.DurationS, rep.Requests, rep.Errors, rep.Lost
	row.RPS, row.MBps = rep.RPS, rep.MBps
	row.P50US, row.P90US, row.P99US, row.P999US, row.P9999US, row.MaxUS = l.P50, l.P90, l.P99, l.P999, l.P9999, l.Max
	row.ClientCPUSeconds, row.ClientSaturated = rep.ClientCPUSeconds, rep.ClientSaturated
	if rep.SendLag != nil && rep.SendLag.Count > 0 {
		row.SendLagP50US, row.SendLagP99US = rep.SendLag.P50, rep.SendLag.P99
	}
	row.Bound = BoundUnknown
	if rep.ClientSaturated {
		row.Bound = BoundClient
	}
	return row
}

// ReadLoad reads what `sockbench load` writes: JSON reports (one object,
// or several one after another, as `--format json >> runs.json` leaves
// them) or its CSV (a header and rows; a header repeated by appending
// runs to one file is skipped). Each run is one row (LoadRow).
func ReadLoad(r io.Reader) ([]Row, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var reps []*loadgen.Report
	if t := bytes.TrimLeft(data, " \t\r\n\ufeff"); bytes.HasPrefix(t, []byte("{")) {
		dec := json.NewDecoder(bytes.NewReader(t))
		for {
			var rep loadgen.Report
			err := dec.Decode(&rep)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("load report %d: %w", len(reps)+1, err)
			}
			if rep.Net == "" || rep.Mode == "" {
				return nil, fmt.Errorf("load report %d: not a sockbench load report (no net or mode)", len(reps)+1)
			}
			reps = append(reps, &rep)
		}
	} else if reps, err = readLoadCSV(t); err != nil {
		return nil, err
	}
	if len(reps) == 0 {
		return nil, errors.New("no load runs in the file")
	}
	rows := make([]Row, len(reps))
	for i, rep := range reps {
		rows[i] = LoadRow(rep, i+1)
	}
	return rows, nil
}

// readLoadCSV reads load's CSV rows back into reports, by column name.
func readLoadCSV(data []byte) ([]*loadgen.Report, error) {
	cr := csv.NewReader(bytes.NewReader(data))
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return nil, err
	}
	at := map[string]int{}
	for i, h := range header {
		at[strings.TrimSpace(h)] = i
	}
	for _, need := range []string{"net", "mode", "conns", "rps"} {
		if _, ok := at[need]; !ok {
			return nil, fmt.Errorf("not a sockbench load CSV: no %q column", need)
		}
	}
	var reps []*loadgen.Report
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
		if len(rec) > 0 && rec[0] == header[0] {
			continue // the header again: runs appended to one file
		}
		if len(rec) < len(header) {
			return nil, fmt.Errorf("line %d: %d fields, the header has %d (truncated row?)", line, len(rec), len(header))
		}
		get := func(name string) string {
			if i, ok := at[name]; ok {
				return strings.TrimSpace(rec[i])
			}
			return ""
		}
		var bad error
		num := func(name string) float64 {
			s := get(name)
			if s == "" {
				return 0
			}
			f, err := strconv.ParseFloat(s, 64)
			if err != nil && bad == nil {
				bad = fmt.Errorf("line %d: column %s: bad value %q", line, name, s)
			}
			return f
		}
		n := func(name string) int64 { return int64(num(name)) }
		rep := &loadgen.Report{Net: get("net"), Mode: get("mode"), Loop: get("loop"), Target: get("target"),
			Conns: int(n("conns")), Pipeline: int(n("pipeline")), Size: int(n("size")), SizeMin: int(n("size_min")),
			SizeMax: int(n("size_max")), Rate: num("rate"), DurationS: num("duration_s"), RPS: num("rps"), MBps: num("mbps"),
			ClientCPUSeconds: num("client_cpu_s"), ClientSaturated: get("client_saturated") == "true",
			Failure: get("failure"), Engine: get("engine"), Label: get("label"), Host: get("host"), Start: get("start")}
		rep.Requests, rep.Errors, rep.Lost = n("requests"), n("errors"), n("lost")
		rep.Latency = loadgen.Summary{P50: num("p50_us"), P90: num("p90_us"), P99: num("p99_us"), P999: num("p999_us"),
			P9999: num("p9999_us"), Max: num("max_us"), Mean: num("mean_us"), Stddev: num("stddev_us"), Count: rep.Requests}
		if get("send_lag_p50_us") != "" {
			rep.SendLag = &loadgen.Summary{P50: num("send_lag_p50_us"), P99: num("send_lag_p99_us"), Count: rep.Requests}
		}
		if bad != nil {
			return nil, bad
		}
		reps = append(reps, rep)
	}
	return reps, nil
}
