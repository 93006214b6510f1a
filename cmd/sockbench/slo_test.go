package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockbench/sockbench/bench"
	"github.com/sockbench/sockbench/loadgen"
)

// TestParseSLO: the --slo grammar, and one clear error for each way an
// expression can be wrong.
func TestParseSLO(t *testing.T) {
	ts, err := parseSLO("p99<1ms, errors=0,rps>=50k, p(99.5) <= 250us,error_rate<0.1%,mean<1.5ms,max!=0s,mbps>2M")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		metric, op string
		value      float64
	}{{"p99", "<", 1000}, {"errors", "==", 0}, {"rps", ">=", 50000}, {"p(99.5)", "<=", 250}, {"error_rate", "<", 0.001},
		{"mean", "<", 1500}, {"max", "!=", 0}, {"mbps", ">", 2e6}}
	if len(ts) != len(want) {
		t.Fatalf("%d thresholds", len(ts))
	}
	for i, w := range want {
		if ts[i].metric != w.metric || ts[i].op != w.op || math.Abs(ts[i].value-w.value) > 1e-9 {
			t.Errorf("threshold %d = %+v, want %+v", i, ts[i], w)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"", "empty"},
		{"p99", "no comparison"},
		{"p99<", "no value"},
		{"p99<1", "has no unit"},
		{"p99<<1ms", "bad comparison"},
		{"p99=>1ms", "bad comparison"},
		{"latency<1ms", `unknown metric "latency"`},
		{"p(101)<1ms", "0 < N <= 100"},
		{"errors<0.5", "whole number"},
		{"error_rate<2", "more than 100%"},
		{"rps>=lots", "want a number"},
		{"p99<1ms,,rps>1", "empty threshold"},
	} {
		if _, err := parseSLO(c.in); err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want one line saying %q", c.in, err, c.want)
		}
	}
	rep := &loadgen.Report{RPS: 60000, Counts: loadgen.Counts{Requests: 1000, Errors: 1}}
	rep.Latency.Mean = 900
	res := judge([]threshold{ts[2], ts[1], ts[5]}, rep)
	if !res[0].ok || res[1].ok || !res[2].ok || !strings.Contains(res[1].String(), "slo errors=0: FAILED (errors 1)") {
		t.Errorf("judged %v", res)
	}
}

// TestLoadSLOExitCodes: load --slo exits 0 when every threshold holds, 3
// when one fails (saying which), 2 for a malformed expression before any
// load is sent, and 1 when the target cannot be reached.
func TestLoadSLOExitCodes(t *testing.T) {
	target := upperServer(t)
	run := func(slo string, extra ...string) (int, string, string) {
		args := append([]string{"load", "--target", target, "--mode", "upper", "-c", "2", "-d", "300ms", "--warmup", "50ms", "--slo", slo}, extra...)
		return runBin(t, 30*time.Second, args...)
	}
	if code, _, stderr := run("p99<10s,errors=0,rps>=1"); code != 0 || strings.Count(stderr, ": ok (") != 3 {
		t.Errorf("thresholds that hold: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr := run("p99<10s,rps>=1000000000")
	if code != exitSLO || !strings.Contains(stderr, "slo rps>=1000000000: FAILED (rps ") || !strings.Contains(stderr, "1 of 2 --slo thresholds failed: rps>=1000000000") {
		t.Errorf("a threshold that fails: exit %d, stderr %q", code, stderr)
	}
	start := time.Now()
	if code, stdout, stderr := run("p99<1"); code != 2 || stdout != "" || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || time.Since(start) > 5*time.Second {
		t.Errorf("malformed: exit %d after %v, stdout %q, stderr %q", code, time.Since(start), stdout, stderr)
	}
	if code, _, stderr := runBin(t, 30*time.Second, "load", "--target", "tcp://127.0.0.1:1", "-d", "200ms", "--slo", "errors=0"); code != 1 {
		t.Errorf("unreachable: exit %d, stderr %q", code, stderr)
	}
}

// TestLoadReportAndReadBack: load --report draws the run over time and
// its spectrum; its JSON and CSV outputs (with --label) read into report
// and compare as runs of the labelled server.
func TestLoadReportAndReadBack(t *testing.T) {
	target := upperServer(t)
	dir := shortTempDir(t)
	html := filepath.Join(dir, "run.html")
	base, news := filepath.Join(dir, "base"), filepath.Join(dir, "new")
	os.Mkdir(base, 0o755)
	os.Mkdir(news, 0o755)
	for i := 0; i < 4; i++ {
		args := []string{"load", "--target", target, "--mode", "upper", "-c", "2", "-d", "300ms", "--warmup", "50ms", "--label", "mine"}
		if i == 0 {
			args = append(args, "--report", html)
		}
		code, stdout, stderr := runBin(t, 30*time.Second, append(args, "--format", "json", "-o", filepath.Join(base, fmt.Sprintf("r%d.json", i)))...)
		if code != 0 {
			t.Fatalf("load: exit %d, %s %s", code, stdout, stderr)
		}
		code, stdout, stderr = runBin(t, 30*time.Second, append(args[:len(args)-2*boolInt(i == 0)], "--format", "csv", "-o", filepath.Join(news, fmt.Sprintf("r%d.csv", i)))...)
		if code != 0 {
			t.Fatalf("load: exit %d, %s %s", code, stdout, stderr)
		}
	}
	b, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Throughput per interval", "Latency per interval", "Latency spectrum", "intervals of 10ms", "<svg"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("run report lacks %q", want)
		}
	}
	rows, err := bench.ReadResults(base)
	if err != nil || len(rows) != 4 || rows[0].Model != "mine" || rows[0].Net != "tcp" || rows[0].Mode != "upper" || rows[0].Conns != 2 || !(rows[0].RPS > 0) || rows[0].Host == "" {
		t.Fatalf("read back: %v %+v", err, rows)
	}
	code, stdout, stderr := runBin(t, 30*time.Second, "compare", base, news)
	if code == 2 || !strings.Contains(stdout, "Upper/model=mine/net=tcp/conns=2") {
		t.Errorf("compare of load runs: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, _, stderr := runBin(t, 30*time.Second, "report", base, news, "-o", filepath.Join(dir, "both.html")); code != 0 {
		t.Errorf("report of load runs: exit %d, %s", code, stderr)
	}
	// One JSON report after another in one file reads as two runs.
	j, _ := os.ReadFile(filepath.Join(base, "r1.json"))
	both := filepath.Join(dir, "two.json")
	os.WriteFile(both, append(append([]byte{}, j...), j...), 0o644)
	if rows, err := bench.ReadResults(both); err != nil || len(rows) != 2 {
		t.Errorf("appended JSON: %v, %d rows", err, len(rows))
	}
	var rep loadgen.Report
	if json.Unmarshal(j, &rep) != nil || rep.Label != "mine" {
		t.Errorf("label not in the JSON")
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestCompareAcrossHosts: `sockbench compare` of a workstation's set and
// a slower machine's exits 0 when every model moved alike (it compares
// ratios to the limit server, and says so), and 1 when one model fell
// behind the others.
func TestCompareAcrossHosts(t *testing.T) {
	dir := t.TempDir()
	write := func(name, host string, factor float64, slow string, seed uint64) string {
		rng := rand.New(rand.NewPCG(seed, 1))
		path := filepath.Join(dir, name)
		w, err := bench.CreateCSV(path)
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
		i := 0
		for run := 1; run <= 6; run++ {
			for _, conns := range []int{1, 32} {
				for _, m := range []string{"threaded", "eventloop", "prefork", "bare"} {
					f := factor
					if m == slow {
						f *= 1.3
					}
					noise := math.Exp(0.05 * rng.NormFloat64())
					rps := 20000 * float64(conns) / f * noise
					i++
					row := bench.Row{Time: t0.Add(time.Duration(i) * time.Second), Env: bench.Env{Host: host, CPUModel: host + " CPU", Cores: 2},
						Key: bench.Key{Model: m, Net: "tcp", Mode: "echo", Conns: conns, Pipeline: 1, Size: 64}, Run: run,
						DurationS: 0.3, Requests: int64(rps * 0.3), RPS: rps, CPUUSPerReq: 10 * f / noise, ServerRSSKB: 9000,
						P50US: 50, P99US: 200, Status: bench.StatusOK, Bound: bench.BoundServer,
						LinkRTTUS: math.NaN(), SendLagP50US: math.NaN(), SendLagP99US: math.NaN(), ClientCeilingRPS: math.NaN()}
					if err := w.Write(&row); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		w.Close()
		return path
	}
	ws := write("ws.csv", "workstation", 1, "", 1)
	pi := write("pi.csv", "raspberrypi", 3, "", 2)
	code, stdout, _ := runBin(t, 30*time.Second, "compare", ws, pi)
	if code != 0 || !strings.Contains(stdout, "basis: base ran on workstation (workstation CPU), new on raspberrypi (raspberrypi CPU): comparing each model's ratio to the limit server (bare)") {
		t.Errorf("uniform shift: exit %d\n%s", code, stdout)
	}
	slow := write("pi-slow.csv", "raspberrypi", 3, "eventloop", 3)
	code, stdout, _ = runBin(t, 30*time.Second, "compare", ws, slow)
	if code != 1 || !strings.Contains(stdout, "FAIL") || !strings.Contains(stdout, "model=eventloop") || strings.Contains(stdout[strings.Index(stdout, "FAIL"):], "model=threaded") {
		t.Errorf("one model behind: exit %d\n%s", code, stdout)
	}
	// Absolute, as asked: the machine's difference fails it.
	if code, stdout, _ := runBin(t, 30*time.Second, "compare", ws, pi, "--basis", "absolute"); code != 1 {
		t.Errorf("--basis absolute: exit %d\n%s", code, stdout)
	}
	if code, _, stderr := runBin(t, 30*time.Second, "compare", ws, pi, "--basis", "relative"); code != 2 || !strings.Contains(stderr, "--basis") {
		t.Errorf("bad --basis: exit %d, %s", code, stderr)
	}
}
