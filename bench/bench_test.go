package bench

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/perf/benchfmt"
	"golang.org/x/perf/benchproc"
)

func TestBuiltinProfiles(t *testing.T) {
	names := ProfileNames()
	if strings.Join(names, ",") != "full,pi,quick" {
		t.Fatalf("profiles = %v", names)
	}
	for _, n := range names {
		p, err := LoadProfile(n)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		cells, err := p.Cells()
		if err != nil || len(cells) == 0 {
			t.Fatalf("%s: %d cells, %v", n, len(cells), err)
		}
		if p.Count < MinRunsForAlpha(0.05) {
			t.Errorf("%s: count %d is too few for compare to judge", n, p.Count)
		}
		// The machine's limit is measured beside every cell, so every
		// model reads as a fraction of it.
		has := map[Key]bool{}
		for _, c := range cells {
			has[c.Key()] = true
		}
		for _, c := range cells {
			k := c.Key()
			k.Model = "bare"
			if !has[k] {
				t.Errorf("%s: cell %s has no bare counterpart", n, c.Key())
			}
		}
	}
	q, _ := LoadProfile("quick")
	cells, _ := q.Cells()
	seen := map[string]bool{}
	conns := map[int]bool{}
	for _, c := range cells {
		seen[c.Model+"/"+c.Net+"/"+c.Mode] = true
		conns[c.Conns] = true
	}
	for _, m := range []string{"threaded", "eventloop", "prefork", "bare"} {
		for _, n := range []string{"tcp", "udp", "unix"} {
			for _, mode := range []string{"echo", "upper"} {
				if !seen[m+"/"+n+"/"+mode] {
					t.Errorf("quick lacks %s/%s/%s", m, n, mode)
				}
			}
		}
	}
	if len(conns) < 2 {
		t.Errorf("quick has %d connection counts, want >= 2", len(conns))
	}
	f, _ := LoadProfile("full")
	fc, _ := f.Cells()
	var maxConns, maxSize int
	var work, block, open bool
	for _, c := range fc {
		maxConns, maxSize = max(maxConns, c.Conns), max(maxSize, c.Size)
		work = work || c.Work > 0
		block = block || c.Block > 0
		open = open || c.Rate > 0
	}
	if maxConns < 10000 || maxSize < 64<<10 || !work || !block || !open {
		t.Errorf("full: max conns %d, max size %d, work %v block %v open %v", maxConns, maxSize, work, block, open)
	}
	// The bare server's estimate is its own, and smaller.
	if c := (Cell{Model: "bare", Net: "tcp", Conns: 1000, Size: 64, Pipeline: 1}); NeedMemory(c, 1) >= NeedMemory(Cell{Model: "threaded", Net: "tcp", Conns: 1000, Size: 64, Pipeline: 1}, 1) {
		t.Errorf("bare needs %d bytes at 1000 connections, no less than threaded", NeedMemory(c, 1))
	}
	// The Pi profile must fit 512 MB by our own estimate, with prefork at 4 workers.
	pi, _ := LoadProfile("pi")
	pc, _ := pi.Cells()
	for _, c := range pc {
		if need := NeedMemory(c, 4); need > 300<<20 {
			t.Errorf("pi cell %s needs ~%d MiB", c, need>>20)
		}
	}
}

func TestProfileErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"matrix: []", "empty matrix"},
		{"matrix:\n  - nets: [sctp]", "unknown net"},
		{"matrix:\n  - modes: [lower]", "unknown mode"},
		{"matrix:\n  - conns: [0]", "at least 1"},
		{"matrix:\n  - sizes: [0]", "bad size"},
		{"matrix:\n  - sizes: [4QiB]", "bad size"},
		{"matrix:\n  - netz: [tcp]", "not found"},
		{"count: -1\nmatrix:\n  - nets: [tcp]", "negative"},
		{"duration: soon\nmatrix:\n  - nets: [tcp]", "time.Duration"},
	} {
		_, err := ParseProfile("t", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.yaml, err, tc.want)
		}
	}
	// Every transport serve and load speak is a net a profile may ask for,
	// and the runner gives each a server address of its own kind.
	p6, err := ParseProfile("t", []byte("matrix:\n  - nets: [tcp, tcp4, tcp6, udp, udp4, udp6, unix, unixgram]\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{sockDir: "/tmp/sbX"}
	want := map[string]string{"tcp": "127.0.0.1:0", "tcp4": "127.0.0.1:0", "tcp6": "[::1]:0", "udp": "127.0.0.1:0",
		"udp4": "127.0.0.1:0", "udp6": "[::1]:0", "unix": "/tmp/sbX/s.sock", "unixgram": "/tmp/sbX/s.sock"}
	cells6, _ := p6.Cells()
	for _, c := range cells6 {
		if got := (localHost{r}).addr(c); got != want[c.Net] {
			t.Errorf("%s: server address %q, want %q", c.Net, got, want[c.Net])
		}
	}
	if len(cells6) != len(want) {
		t.Errorf("%d cells, want %d", len(cells6), len(want))
	}
	if _, err := LoadProfile("nosuch"); err == nil || !strings.Contains(err.Error(), "quick") {
		t.Errorf("unknown profile: %v", err)
	}
	p, err := ParseProfile("t", []byte("duration: 300ms\nmatrix:\n  - models: [a, b]\n    sizes: [64, 4KiB]\n    work: [50us]\n  - models: [a]\n    sizes: [64]\n    work: [50us]\n"))
	if err != nil {
		t.Fatal(err)
	}
	cells, _ := p.Cells()
	if len(cells) != 4 || cells[1].Size != 4096 || cells[0].Work != 50*time.Microsecond || cells[0].Duration != 300*time.Millisecond {
		t.Fatalf("cells = %+v", cells)
	}
}

func TestInterleave(t *testing.T) {
	p, err := ParseProfile("t", []byte("matrix:\n  - models: [threaded, eventloop, prefork]\n    nets: [tcp, udp]\n"))
	if err != nil {
		t.Fatal(err)
	}
	cells, _ := p.Cells()
	got := interleave(cells)
	var order []string
	for _, c := range got {
		order = append(order, c.Model+"/"+c.Net)
	}
	want := "threaded/tcp eventloop/tcp prefork/tcp threaded/udp eventloop/udp prefork/udp"
	if strings.Join(order, " ") != want {
		t.Fatalf("order = %v", order)
	}
}

func TestParseCPUs(t *testing.T) {
	c, err := ParseCPUs("0,2-4, 7")
	if err != nil || formatCPUs(c) != "0,2-4,7" {
		t.Fatalf("%v %v", c, err)
	}
	for _, bad := range []string{"", "a", "3-1", "-1", "1-"} {
		if _, err := ParseCPUs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestFitCheck(t *testing.T) {
	c := Cell{Model: "prefork", Net: "tcp", Conns: 10000, Size: 64 << 10, Pipeline: 1}
	fds := func(n uint64) func() (uint64, error) { return func() (uint64, error) { return n, nil } }
	mem := func(n int64) func() (int64, error) { return func() (int64, error) { return n, nil } }
	if why := fitCheck(c, 2, fds(1024), mem(512<<20)); !strings.Contains(why, "file descriptors") || !strings.Contains(why, "MiB of memory") {
		t.Errorf("10k conns on a Pi: %q", why)
	}
	small := Cell{Model: "threaded", Net: "tcp", Conns: 16, Size: 64, Pipeline: 1}
	if why := fitCheck(small, 1, fds(1024), mem(400<<20)); why != "" {
		t.Errorf("small cell on a Pi: %q", why)
	}
	unknown := func() (int64, error) { return 0, errors.ErrUnsupported }
	if why := fitCheck(small, 1, fds(1<<20), unknown); why != "" {
		t.Errorf("unknown memory must not skip: %q", why)
	}
	if NeedMemory(c, 2) <= NeedMemory(small, 2) {
		t.Error("memory estimate not monotonic")
	}
	// The real machine: the fd limit and MemAvailable are readable here.
	if lim, err := fdLimit(); err != nil || lim == 0 {
		t.Errorf("fdLimit: %d %v", lim, err)
	}
	if goos == "linux" {
		if m, err := memAvailable(); err != nil || m <= 0 {
			t.Errorf("memAvailable: %d %v", m, err)
		}
	}
}

// synthRows makes test rows for one cell: n runs around rps with noise.
// They are test data, never shown as results.
func synthRows(k Key, n int, rps, noise float64, rng *rand.Rand) []Row {
	var rows []Row
	for i := 0; i < n; i++ {
		v := rps * (1 + noise*(rng.Float64()*2-1))
		rows = append(rows, Row{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Key: k, Run: i + 1,
			Env:       Env{Host: "testhost", OS: "linux", Arch: "amd64", CPUModel: "Test CPU", Cores: 2, GoVersion: "go1.26", Commit: "abc"},
			DurationS: 0.4, Requests: int64(v * 0.4), RPS: v, MBps: v * 64 / 1e6,
			P50US: 1e6 / v, P90US: 1.5e6 / v, P99US: 3e6 / v, P999US: 5e6 / v, P9999US: 8e6 / v, MaxUS: 9e6 / v,
			ServerCPUSeconds: 0.3, CPUUSPerReq: 0.3e6 / (v * 0.4), ServerRSSKB: 12000, ClientCPUSeconds: 0.35, Status: StatusOK,
			ServerCPUList: "0", ClientCPUList: "1", Workers: 1})
	}
	return rows
}

func key(model, net string, conns int) Key {
	return Key{Model: model, Net: net, Mode: "echo", Conns: conns, Pipeline: 1, Size: 64}
}

func TestCSVRoundTripAndCompleteRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	rows := synthRows(key("threaded", "tcp", 1), 3, 20000, 0.02, rng)
	rows = append(rows, Row{Key: key("prefork", "tcp", 10000), Run: 1, Status: StatusSkipped, Note: "needs about 3000 MiB, 400 MiB available"})
	path := filepath.Join(t.TempDir(), "r.csv")
	w, err := CreateCSV(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		if err := w.Write(&rows[i]); err != nil {
			t.Fatal(err)
		}
		// Every write is a complete line on disk before the next one.
		b, _ := os.ReadFile(path)
		if !bytes.HasSuffix(b, []byte("\n")) || bytes.Count(b, []byte("\n")) != i+2 {
			t.Fatalf("after row %d the file is not whole lines: %q", i, b)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	header := strings.SplitN(string(b), "\n", 2)[0]
	wantDesign := "time,suite_version,commit,host,os,arch,cpu_model,cores,go_version,model,net,mode,conns,pipeline,size,rate,work_us,block_us,run,duration_s,requests,errors,lost,rps,mbps,p50_us,p90_us,p99_us,p999_us,p9999_us,max_us,server_cpu_s,cpu_us_per_req,server_rss_kb,client_cpu_s,client_saturated"
	if !strings.HasPrefix(header, wantDesign+",") {
		t.Fatalf("header does not start with DESIGN.md's columns:\n%s", header)
	}
	got, err := ReadCSVFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0].RPS != math.Round(rows[0].RPS*10)/10 || got[0].Key != rows[0].Key || !got[0].OK() {
		t.Fatalf("read back %+v", got[0])
	}
	if got[3].Status != StatusSkipped || !math.IsNaN(got[3].RPS) || got[3].Note == "" {
		t.Fatalf("skipped row read back as %+v", got[3])
	}
	// A truncated last row (a kill mid-write by something else) is reported, not misread.
	if err := os.WriteFile(path, b[:len(b)-40], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCSVFile(path); err == nil {
		t.Error("a truncated row was accepted")
	}
	if _, err := ReadCSV(strings.NewReader("a,b\n1,2\n")); err == nil {
		t.Error("a CSV that is not ours was accepted")
	}
}

func TestBenchfmtReadable(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	rows := append(synthRows(key("threaded", "tcp", 1), 5, 20000, 0.02, rng), synthRows(key("eventloop", "udp", 32), 5, 50000, 0.02, rng)...)
	rows = append(rows, Row{Key: key("prefork", "tcp", 10000), Status: StatusSkipped})
	var buf bytes.Buffer
	if err := WriteBenchfmt(&buf, rows, map[string]string{"profile": "quick"}); err != nil {
		t.Fatal(err)
	}
	br := benchfmt.NewReader(bytes.NewReader(buf.Bytes()), "x.txt")
	n := 0
	for br.Scan() {
		switch rec := br.Result().(type) {
		case *benchfmt.SyntaxError:
			t.Fatalf("syntax error: %v\n%s", rec, buf.String())
		case *benchfmt.Result:
			n++
			if rec.GetConfig("goos") != "linux" || rec.GetConfig("profile") != "quick" || rec.GetConfig("cpu") != "Test CPU" {
				t.Errorf("config: %v", rec.Config)
			}
			if _, ok := rec.Value("req/s"); !ok {
				t.Errorf("no req/s in %s", rec.Name)
			}
		}
	}
	if n != 10 {
		t.Fatalf("%d results, want 10:\n%s", n, buf.String())
	}
	if u := br.Units().Get("req/s", "better"); u == nil || u.Value != "higher" {
		t.Errorf("Unit req/s better=higher missing")
	}
	if !strings.Contains(buf.String(), "BenchmarkEcho/model=threaded/net=tcp/conns=1/pipeline=1/size=64 ") {
		t.Errorf("name format:\n%s", buf.String())
	}
	// The .txt reads back for compare.
	back, err := ReadBenchfmt(bytes.NewReader(buf.Bytes()), "x.txt")
	if err != nil || len(back) != 10 || back[0].Key != rows[0].Key || math.Abs(back[0].P99US-rows[0].P99US) > 1e-6*rows[0].P99US {
		t.Fatalf("read back: %v %+v", err, back)
	}
}

// TestBenchfmtTwoBuildsShareTables: benchstat splits results into tables
// by every file config key (its default -table .config) and compares
// files only within a table. Two builds (other commit, suite version, Go,
// server flags) on one machine must land in the same table, or
// `benchstat old.txt new.txt` prints them apart and compares nothing.
func TestBenchfmtTwoBuildsShareTables(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	k := key("threaded", "tcp", 1)
	a := synthRows(k, 3, 20000, 0.02, rng)
	b := synthRows(k, 3, 15000, 0.02, rng)
	for i := range b {
		b[i].Commit, b[i].SuiteVersion, b[i].GoVersion, b[i].ServerArgs = "def-dirty", "v2", "go1.27", "--work=300us"
	}
	filter, err := benchproc.NewFilter("*")
	if err != nil {
		t.Fatal(err)
	}
	var parser benchproc.ProjectionParser
	tableBy, err := parser.Parse(".config", filter)
	if err != nil {
		t.Fatal(err)
	}
	tables := map[benchproc.Key]int{}
	for i, rows := range [][]Row{a, b} {
		var buf bytes.Buffer
		if err := WriteBenchfmt(&buf, rows, map[string]string{"profile": "quick"}); err != nil {
			t.Fatal(err)
		}
		br := benchfmt.NewReader(bytes.NewReader(buf.Bytes()), "f.txt")
		for br.Scan() {
			if res, ok := br.Result().(*benchfmt.Result); ok {
				tables[tableBy.Project(res)]++
			}
		}
		back, err := ReadBenchfmt(bytes.NewReader(buf.Bytes()), "f.txt")
		if err != nil || len(back) != 3 {
			t.Fatalf("read back: %v %d", err, len(back))
		}
		if got := back[0]; got.Commit != rows[0].Commit || got.GoVersion != rows[0].GoVersion ||
			got.SuiteVersion != rows[0].SuiteVersion || got.ServerArgs != rows[0].ServerArgs || got.Host != "testhost" {
			t.Errorf("file %d: build identity read back as %q %q %q %q", i, got.Commit, got.GoVersion, got.SuiteVersion, got.ServerArgs)
		}
	}
	if len(tables) != 1 {
		t.Errorf("two builds fall into %d benchstat tables, want 1: %v", len(tables), tables)
	}
}

func TestCompareStatistics(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	cells := []Key{key("threaded", "tcp", 1), key("eventloop", "tcp", 1), key("prefork", "unix", 32)}
	var base, same, slower []Row
	for _, k := range cells {
		base = append(base, synthRows(k, 5, 20000, 0.03, rng)...)
		same = append(same, synthRows(k, 5, 20000, 0.03, rng)...)
		f := 1.0
		if k.Model == "eventloop" {
			f = 0.8 // 20% slower
		}
		slower = append(slower, synthRows(k, 5, 20000*f, 0.03, rng)...)
	}
	opts := CompareOptions{Threshold: 0.05}
	c, err := Compare(base, same, opts)
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Failed(); len(f) != 0 {
		t.Fatalf("same distribution flagged: %+v", f)
	}
	c, _ = Compare(base, slower, opts)
	f := c.Failed()
	// By default both throughput and CPU per request gate: the synthetic
	// runs cost more CPU per request as they slow down.
	if len(f) != 2 || f[0].Key.Model != "eventloop" || f[0].Verdict != VerdictWorse || f[0].Delta > -0.1 ||
		f[1].Metric.Name != "cpu_us_per_req" || f[1].Verdict != VerdictWorse || !f[1].Ratio.Excludes(1) {
		t.Fatalf("failed = %+v", f)
	}
	var out bytes.Buffer
	c.WriteText(&out)
	if !strings.Contains(out.String(), "FAIL") || !strings.Contains(out.String(), "model=eventloop") {
		t.Errorf("text:\n%s", out.String())
	}
	// Improvements fail too unless only regressions are asked for.
	c, _ = Compare(slower, base, opts)
	if len(c.Failed()) != 2 || c.Failed()[0].Verdict != VerdictBetter {
		t.Errorf("improvement: %+v", c.Failed())
	}
	opts.RegressionsOnly = true
	c, _ = Compare(slower, base, opts)
	if len(c.Failed()) != 0 {
		t.Errorf("regressions-only still fails on an improvement")
	}
	// A 3% change is below a 5% threshold even when significant.
	var small []Row
	for _, k := range cells {
		small = append(small, synthRows(k, 8, 20000*0.97, 0.001, rng)...)
	}
	var tight []Row
	for _, k := range cells {
		tight = append(tight, synthRows(k, 8, 20000, 0.001, rng)...)
	}
	c, _ = Compare(tight, small, CompareOptions{Threshold: 0.05})
	if len(c.Failed()) != 0 {
		t.Errorf("3%% change failed a 5%% threshold")
	}
	c, _ = Compare(tight, small, CompareOptions{Threshold: 0.01, Gate: []string{"rps"}})
	if len(c.Failed()) != 3 {
		t.Errorf("3%% change past a 1%% threshold: %d failures", len(c.Failed()))
	}
	// Too few runs: said so, never judged, even for a huge change.
	few := synthRows(cells[0], 3, 20000, 0.01, rng)
	fewSlow := synthRows(cells[0], 3, 5000, 0.01, rng)
	c, _ = Compare(few, fewSlow, CompareOptions{Threshold: 0.05})
	out.Reset()
	c.WriteText(&out)
	if len(c.Failed()) != 0 || c.TooFew() != 2 || !strings.Contains(out.String(), "CANNOT JUDGE") || !strings.Contains(out.String(), ">= 4") {
		t.Errorf("too few runs:\n%s", out.String())
	}
	// Cells present on one side only are listed.
	c, _ = Compare(base, synthRows(key("threaded", "udp", 1), 5, 1, 0, rng), CompareOptions{Threshold: 0.05})
	out.Reset()
	c.WriteText(&out)
	if !strings.Contains(out.String(), VerdictOnlyBase) || !strings.Contains(out.String(), VerdictOnlyNew) {
		t.Errorf("one-sided cells:\n%s", out.String())
	}
	// Nothing in common is not "no change".
	c, _ = Compare(synthRows(key("threaded", "tcp", 1), 5, 1, 0, rng), synthRows(key("threaded", "udp", 1), 5, 1, 0, rng), CompareOptions{Threshold: 0.05})
	out.Reset()
	c.WriteText(&out)
	if strings.Contains(out.String(), "ok:") || !strings.Contains(out.String(), "CANNOT JUDGE: no cell") {
		t.Errorf("disjoint sets:\n%s", out.String())
	}
	if _, err := Compare(base, same, CompareOptions{Gate: []string{"speed"}}); err == nil {
		t.Error("unknown metric accepted")
	}
	if MinRunsForAlpha(0.05) != 4 || MinRunsForAlpha(0.01) != 5 {
		t.Errorf("MinRunsForAlpha = %d, %d", MinRunsForAlpha(0.05), MinRunsForAlpha(0.01))
	}
}

// quickKeys are the quick profile's 36 cells.
func quickKeys() []Key {
	var ks []Key
	for _, m := range []string{"threaded", "eventloop", "prefork"} {
		for _, n := range []string{"tcp", "udp", "unix"} {
			for _, mode := range []string{"echo", "upper"} {
				for _, c := range []int{1, 32} {
					k := key(m, n, c)
					k.Mode = mode
					ks = append(ks, k)
				}
			}
		}
	}
	return ks
}

// TestCompareManyCellsNoFalseAlarms: two sets drawn from the same
// distribution over the quick profile's 36 cells, 6 runs a side with
// ±25% run-to-run noise (what 0.3 s runs on a shared 2-core machine
// show). Judged cell by cell at alpha 0.05, most such comparisons flag
// some cell; adjusted together they flag about alpha of them. A real
// slowdown of every cell by 20% is still found with the same runs.
func TestCompareManyCellsNoFalseAlarms(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	cells := quickKeys()
	draw := func(f float64) []Row {
		var rows []Row
		for _, k := range cells {
			rows = append(rows, synthRows(k, 6, 20000*f, 0.25, rng)...)
		}
		return rows
	}
	const trials = 200
	corrected, uncorrected := 0, 0
	for i := 0; i < trials; i++ {
		a, b := draw(1), draw(1)
		c, err := Compare(a, b, CompareOptions{Threshold: 0.05})
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Failed()) > 0 {
			corrected++
		}
		if c.Tests != 2*len(cells) || c.LoneRuns != 7 {
			t.Fatalf("tests %d, lone runs %d", c.Tests, c.LoneRuns)
		}
		u, _ := Compare(a, b, CompareOptions{Threshold: 0.05, NoCorrection: true})
		if len(u.Failed()) > 0 {
			uncorrected++
		}
	}
	t.Logf("same distribution, %d trials: %d failed corrected, %d uncorrected", trials, corrected, uncorrected)
	// Expected: about 5% (10 of 200) corrected; binomial 99.9% bound ~22.
	if corrected > 22 {
		t.Errorf("corrected: %d of %d same-distribution comparisons failed", corrected, trials)
	}
	if uncorrected < trials/2 {
		t.Errorf("uncorrected: only %d of %d failed; the test no longer shows why correction is on", uncorrected, trials)
	}
	found := 0
	for i := 0; i < 20; i++ {
		c, _ := Compare(draw(1), draw(0.8), CompareOptions{Threshold: 0.05})
		if len(c.Failed()) > 0 {
			found++
		}
	}
	if found < 18 {
		t.Errorf("a 20%% slowdown of every cell was found in only %d of 20 comparisons", found)
	}
}

func TestParseThreshold(t *testing.T) {
	for in, want := range map[string]float64{"5%": 0.05, "5": 0.05, "0.05": 0.05, "12.5%": 0.125, "0%": 0} {
		got, err := ParseThreshold(in)
		if err != nil || math.Abs(got-want) > 1e-12 {
			t.Errorf("%q = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "x", "-5%", "NaN"} {
		if _, err := ParseThreshold(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestReportRenders(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var a, b []Row
	for _, m := range []string{"threaded", "eventloop", "prefork"} {
		for _, n := range []string{"tcp", "udp", "unix"} {
			for _, c := range []int{1, 32} {
				a = append(a, synthRows(key(m, n, c), 5, 20000*float64(c), 0.05, rng)...)
				b = append(b, synthRows(key(m, n, c), 5, 15000*float64(c), 0.05, rng)...)
			}
		}
	}
	a[0].ClientSaturated = true
	a = append(a, Row{Key: key("prefork", "tcp", 10000), Status: StatusSkipped, Note: "needs about 3000 MiB"})
	var buf bytes.Buffer
	rep := &Report{Title: "t <x>", Sets: []ResultSet{{Name: "a.csv", Rows: a}, {Name: "b.csv", Rows: b}}}
	if err := rep.WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	s := buf.String()
	for _, want := range []string{"<svg", "Throughput — tcp", "Throughput — udp", "Throughput — unix", "Latency percentiles",
		"Server CPU per request", "Server peak memory", "Memory per connection — tcp", "threaded · b.csv", "t &lt;x&gt;", "needs about 3000 MiB", "saturated",
		"Findings — a.csv", "Findings — b.csv", "Changes: b.csv against a.csv", "Verdicts in numbers"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// No memory per connection for a datagram server; the findings and
	// what changed come before any table of numbers or chart.
	if strings.Contains(s, "Memory per connection — udp") {
		t.Error("report draws memory per connection for UDP")
	}
	if f, diff, sets := strings.Index(s, "Findings — a.csv"), strings.Index(s, "Changes: b.csv"), strings.Index(s, "Result sets"); !(diff < f && f < sets) || strings.Index(s, "<svg") < sets {
		t.Errorf("order: changes at %d, findings at %d, sets table at %d, first chart at %d", diff, f, sets, strings.Index(s, "<svg"))
	}
	for _, bad := range []string{"<script", "http://", "https://", "NaN"} {
		if strings.Contains(strings.ReplaceAll(s, `xmlns="http://www.w3.org/2000/svg"`, ""), bad) {
			t.Errorf("report contains %q", bad)
		}
	}
	if n := strings.Count(s, "<svg"); n != 3+6+3+3+2 {
		t.Errorf("%d charts, want %d", n, 3+6+3+3+2)
	}
	// A negative memory slope (noise) is no bar, not a bar of 0.
	lo, hi := synthRows(key("threaded", "tcp", 1), 3, 20000, 0, rng), synthRows(key("threaded", "tcp", 32), 3, 20000, 0, rng)
	for i := range hi {
		hi[i].ServerRSSKB = lo[i].ServerRSSKB - 500
	}
	buf.Reset()
	if err := (&Report{Sets: []ResultSet{{Name: "n", Rows: append(lo, hi...)}}}).WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "c=1→32: 0 KiB/conn") || !strings.Contains(buf.String(), "Memory per connection — tcp") {
		t.Errorf("negative memory slope drawn as a measured 0")
	}
	// No clean runs: a page that says so.
	buf.Reset()
	if err := (&Report{Sets: []ResultSet{{Name: "x", Rows: a[len(a)-1:]}}}).WriteHTML(&buf); err != nil || !strings.Contains(buf.String(), "No clean runs") {
		t.Errorf("empty report: %v", err)
	}
}

func TestSummary(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	rows := synthRows(key("threaded", "tcp", 1), 5, 20000, 0.05, rng)
	rows[2].ClientSaturated = true
	rows[2].Bound = BoundClient
	rows[3].Errors = 7
	for i := range rows {
		rows[i].ClientCPUList = "1"
		if rows[i].Bound == "" {
			rows[i].Bound = BoundServer
		}
	}
	server := synthRows(key("eventloop", "udp", 32), 3, 50000, 0.05, rng)
	for i := range server {
		server[i].Bound = BoundServer
	}
	rows = append(rows, server...)
	rows = append(rows, Row{Key: key("prefork", "tcp", 10000), Status: StatusSkipped, Note: "needs about 3000 MiB"})
	rows = append(rows, Row{Key: key("eventloop", "tcp", 1), Status: StatusFailed, Note: "server exited"})
	var buf bytes.Buffer
	WriteSummary(&buf, rows)
	s := buf.String()
	for _, want := range []string{"threaded", "Skipped 1 cell", "needs about 3000 MiB", "FAILURES", "LOAD GENERATOR WAS THE BOTTLENECK in 1 of 8 runs",
		"7 failed requests", "CLIENT-BOUND: 1 of 2 cells could not be server-bound with 1 CPU for the load generator", "client 1/5", ">=", "server"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "eventloop/net=udp") && strings.Contains(s[strings.Index(s, "CLIENT-BOUND"):], "eventloop") {
		t.Errorf("a server-bound cell is listed as client-bound:\n%s", s)
	}
	// The report's table of cells labels them the same way.
	buf.Reset()
	if err := (&Report{Sets: []ResultSet{{Name: "s", Rows: rows}}}).WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	h := buf.String()
	for _, want := range []string{"<th>bound</th>", "<td>client 1/5</td>", "<td>server</td>", "<td>&gt;="} {
		if !strings.Contains(h, want) {
			t.Errorf("the report's cells table lacks %q", want)
		}
	}
}

// TestClientShare: the default pinning gives the load generator the CPUs
// it needs to stay below its saturation mark while the server keeps the
// rest busy (to the nearest CPU), and follows the costs: a generator half
// as costly gets a third of the CPUs.
func TestClientShare(t *testing.T) {
	for _, c := range []struct {
		server, client float64
		want           map[int]int
	}{
		{serverCostUS, clientCostUS, map[int]int{2: 1, 3: 2, 4: 2, 8: 4, 16: 8}},
		{8, 3.6, map[int]int{2: 1, 3: 1, 4: 1, 8: 3, 16: 5}},
		{4, 10, map[int]int{2: 1, 4: 3, 8: 6}},
	} {
		for n, want := range c.want {
			got := clientShare(n, c.server, c.client)
			if got != want {
				t.Errorf("server %v µs, client %v µs, %d CPUs: client %d, want %d", c.server, c.client, n, got, want)
			}
			// To the nearest CPU: one fewer would leave the generator
			// short of the server by more than half a CPU's worth.
			drives := func(cpus int) float64 { return float64(cpus) / c.client * clientBusyMark * c.server }
			if n > 2 && (drives(got)+drives(1)/2 < float64(n-got)) {
				t.Errorf("%d CPUs, %d for the client: it drives %.2f server CPUs of %d", n, got, drives(got), n-got)
			}
		}
	}
}
