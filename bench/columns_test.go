package bench

import (
	"bytes"
	"encoding/csv"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateDocs = flag.Bool("update", false, "rewrite docs/results-csv.md from Columns")

//go:generate go test -run TestColumnsDoc -update .

// TestColumnsDoc: docs/results-csv.md is what WriteColumnsDoc writes from
// Columns; `go generate ./bench` rewrites it.
func TestColumnsDoc(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteColumnsDoc(&buf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "docs", "results-csv.md")
	if *updateDocs {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, buf.Bytes()) {
		t.Fatalf("%s is out of step with bench.Columns (%v): run go generate ./bench", path, err)
	}
	for _, c := range Columns {
		if !strings.Contains(string(got), "| `"+c.Name+"` |") || c.Meaning == "" {
			t.Errorf("column %s is not documented", c.Name)
		}
	}
}

// TestColumnsSchema: DESIGN.md's 36 columns come first, in its order and
// with its names; every column has a name once.
func TestColumnsSchema(t *testing.T) {
	design := "time,suite_version,commit,host,os,arch,cpu_model,cores,go_version,model,net,mode,conns,pipeline,size,rate,work_us,block_us,run,duration_s,requests,errors,lost,rps,mbps,p50_us,p90_us,p99_us,p999_us,p9999_us,max_us,server_cpu_s,cpu_us_per_req,server_rss_kb,client_cpu_s,client_saturated"
	names := ColumnNames()
	if got := strings.Join(names[:36], ","); got != design {
		t.Fatalf("the first 36 columns are not DESIGN.md's:\n%s", got)
	}
	appended := "status,note,server_cpu_list,client_cpu_list,workers,server_args,server_host,client_host,link_rtt_us,send_lag_p50_us,send_lag_p99_us,client_ceiling_rps,bound"
	if got := strings.Join(names[36:], ","); got != appended {
		t.Errorf("appended columns %s, want %s (new ones go at the end)", got, appended)
	}
	// A run that never measured anything has empty measured fields, not 0.
	skipped := Row{Key: key("threaded", "tcp", 1), Run: 1, Status: StatusSkipped, Note: "too big"}
	for i, v := range skipped.Record() {
		if Columns[i].Measured && v != "" {
			t.Errorf("skipped row: %s = %q, want empty", Columns[i].Name, v)
		}
	}
	seen := map[string]bool{}
	for i, c := range Columns {
		if c.Design != (i < 36) {
			t.Errorf("%s: Design %v", c.Name, c.Design)
		}
		for _, n := range append([]string{c.Name}, c.Old...) {
			if seen[n] {
				t.Errorf("name %s used twice", n)
			}
			seen[n] = true
		}
	}
}

// TestReadOldColumnNames: a CSV written before the pinned CPU lists were
// renamed (server_cpus, client_cpus) reads into the new fields, as does
// the committed baseline.
func TestReadOldColumnNames(t *testing.T) {
	old := "time,model,net,mode,conns,rps,status,server_cpus,client_cpus\n" +
		"2026-12-01T19:07:23Z,threaded,tcp,echo,1,13050.0,ok,0,1\n"
	rows, err := ReadCSV(strings.NewReader(old))
	if err != nil || len(rows) != 1 || rows[0].ServerCPUList != "0" || rows[0].ClientCPUList != "1" || rows[0].RPS != 13050 || !math.IsNaN(rows[0].P99US) {
		t.Fatalf("old names: %v %+v", err, rows)
	}
	files, _ := filepath.Glob(filepath.Join("..", "results", "baseline", "*.csv"))
	if len(files) == 0 {
		t.Fatal("no committed baseline CSV")
	}
	for _, f := range files {
		rows, err := ReadResults(f)
		if err != nil || len(rows) == 0 {
			t.Fatalf("%s: %v", f, err)
		}
		for _, r := range rows {
			if r.OK() && (r.ServerCPUList == "" || r.ClientCPUList == "" || !(r.ServerCPUSeconds > 0) || !(r.P99US > 0)) {
				t.Fatalf("%s: row read as %+v", f, r)
			}
		}
		// Written again, every row is the line it was read from: the
		// table writes what the hand-written writer wrote.
		b, _ := os.ReadFile(f)
		all := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		lines := all[1:]
		// Columns the file predates are written as empty fields at the end.
		missing := strings.Repeat(",", len(Columns)-len(strings.Split(all[0], ",")))
		for i := range rows {
			var out bytes.Buffer
			w := csv.NewWriter(&out)
			w.Write(rows[i].Record())
			w.Flush()
			if got := strings.TrimSuffix(out.String(), "\n"); got != lines[i]+missing {
				t.Fatalf("%s line %d written back as\n%s\nnot\n%s", f, i+2, got, lines[i])
			}
		}
	}
}
