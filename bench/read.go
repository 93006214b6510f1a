package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/perf/benchfmt"
)

// ReadResults reads a result set: a bench CSV, Go benchmark format
// (.txt) as WriteBenchfmt writes it, or what `sockbench load` writes with
// --format json or csv (ReadLoad: one run per JSON object or CSV row,
// several appended to one file are several runs). A directory means every
// *.csv and *.json in it, merged (runs of one build made in several
// sittings, e.g. interleaved in CI, or one load run per file).
func ReadResults(path string) ([]Row, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		csvs, _ := filepath.Glob(filepath.Join(path, "*.csv"))
		jsons, _ := filepath.Glob(filepath.Join(path, "*.json"))
		files := append(csvs, jsons...)
		if len(files) == 0 {
			return nil, fmt.Errorf("bench: no *.csv or *.json in directory %s", path)
		}
		sort.Strings(files)
		var all []Row
		for _, f := range files {
			rows, err := readResultsFile(f)
			if err != nil {
				return nil, err
			}
			all = append(all, rows...)
		}
		return all, nil
	}
	return readResultsFile(path)
}

// readResultsFile reads one file, telling the formats apart by content.
func readResultsFile(path string) ([]Row, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	head := bytes.TrimLeft(data, " \t\r\n\ufeff")
	var rows []Row
	switch {
	case bytes.HasPrefix(head, []byte("{")), bytes.HasPrefix(head, []byte("target,")):
		rows, err = ReadLoad(bytes.NewReader(data))
	case bytes.HasPrefix(head, []byte("time,")), strings.HasSuffix(path, ".csv"):
		rows, err = ReadCSV(bytes.NewReader(data))
	default:
		rows, err = ReadBenchfmt(bytes.NewReader(data), path)
	}
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", path, err)
	}
	return rows, nil
}

// ReadBenchfmt reads runs written by WriteBenchfmt back into rows (only
// the fields the format carries).
func ReadBenchfmt(r io.Reader, name string) ([]Row, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	// The build's identity is in "# key: value" comment lines (see
	// WriteBenchfmt); as config lines they apply to the results below them.
	lines := bytes.Split(data, []byte("\n"))
	var partial []Row
	for _, l := range lines {
		if note, ok := bytes.CutPrefix(l, []byte(partialPrefix)); ok {
			row := Row{Status: StatusPartial, Note: string(note)}
			row.clearMeasured()
			partial = append(partial, row)
		}
	}
	for i, l := range lines {
		if rest, ok := bytes.CutPrefix(l, []byte(buildKeyPrefix)); ok {
			for _, k := range []string{"go_version:", "suite_version:", "commit:", "server_args:"} {
				if bytes.HasPrefix(rest, []byte(k)) {
					lines[i] = rest
				}
			}
		}
	}
	br := benchfmt.NewReader(bytes.NewReader(bytes.Join(lines, []byte("\n"))), name)
	var rows []Row
	for br.Scan() {
		res, ok := br.Result().(*benchfmt.Result)
		if !ok {
			if se, isErr := br.Result().(*benchfmt.SyntaxError); isErr {
				return nil, se
			}
			continue
		}
		k, err := parseBenchName(string(res.Name))
		if err != nil {
			continue // somebody else's benchmark in the same file
		}
		row := Row{Key: k, Status: StatusOK, Requests: int64(res.Iters)}
		row.Host, row.OS, row.Arch = res.GetConfig("host"), res.GetConfig("goos"), res.GetConfig("goarch")
		row.CPUModel, row.Commit = res.GetConfig("cpu"), res.GetConfig("commit")
		row.GoVersion, row.SuiteVersion = res.GetConfig("go_version"), res.GetConfig("suite_version")
		row.Cores, _ = strconv.Atoi(res.GetConfig("cores"))
		row.ServerArgs, row.ServerCPUList, row.ClientCPUList = res.GetConfig("server_args"), res.GetConfig("server_cpus"), res.GetConfig("client_cpus")
		get := func(unit string, scale float64) float64 {
			for _, v := range res.Values {
				if v.OrigUnit == unit || (v.OrigUnit == "" && v.Unit == unit) {
					if v.OrigUnit != "" {
						return v.OrigValue * scale
					}
					return v.Value * scale
				}
			}
			return math.NaN()
		}
		row.RPS = get("req/s", 1)
		row.MBps = get("MB/s", 1)
		row.P50US, row.P90US, row.P99US = get("p50-ns", 1e-3), get("p90-ns", 1e-3), get("p99-ns", 1e-3)
		row.P999US, row.MaxUS = get("p99.9-ns", 1e-3), get("max-ns", 1e-3)
		row.P9999US = math.NaN()
		row.CPUUSPerReq = get("server-cpu-ns/req", 1e-3)
		row.ServerRSSKB = int64(get("server-peak-rss-B", 1.0/1024))
		rows = append(rows, row)
	}
	if err := br.Err(); err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, errors.New("no sockbench benchmark lines found")
	}
	return append(rows, partial...), nil
}

// parseBenchName parses "Echo/model=threaded/net=tcp/conns=1/..." (the
// leading "Benchmark" already stripped by benchfmt).
func parseBenchName(name string) (Key, error) {
	parts := strings.Split(name, "/")
	k := Key{Mode: strings.ToLower(parts[0]), Pipeline: 1}
	if k.Mode != "echo" && k.Mode != "upper" {
		return k, errors.New("not a sockbench benchmark")
	}
	for _, p := range parts[1:] {
		key, val, ok := strings.Cut(p, "=")
		if !ok {
			return k, errors.New("bad name part " + p)
		}
		var err error
		switch key {
		case "model":
			k.Model = val
		case "net":
			k.Net = val
		case "conns":
			k.Conns, err = strconv.Atoi(val)
		case "pipeline":
			k.Pipeline, err = strconv.Atoi(val)
		case "size":
			k.Size, err = strconv.Atoi(val)
		case "rate":
			k.Rate, err = strconv.ParseFloat(val, 64)
		case "work":
			k.WorkUS, err = strconv.ParseInt(strings.TrimSuffix(val, "us"), 10, 64)
		case "block":
			k.BlockUS, err = strconv.ParseInt(strings.TrimSuffix(val, "us"), 10, 64)
		}
		if err != nil {
			return k, err
		}
	}
	if k.Model == "" || k.Net == "" {
		return k, errors.New("not a sockbench benchmark")
	}
	return k, nil
}
