package loadgen

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockbench/sockbench/protocol"
)

// contractKeys are the top-level JSON keys the bench orchestrator relies on.
var contractKeys = []string{"target", "net", "mode", "conns", "pipeline", "size", "rate", "duration_s",
	"requests", "errors", "errors_by_kind", "mismatches", "lost", "duplicated", "reordered", "timeouts",
	"rps", "mbps", "latency_us", "service_us", "connect_us", "client_cpu_s", "client_cpu_count",
	"client_saturated", "rate_held", "warnings"}

var summaryKeys = []string{"p50", "p90", "p99", "p999", "p9999", "max", "mean", "stddev"}

// runSmall runs a short open-loop load against an in-test server.
func runSmall(t *testing.T, rate float64) *Report {
	t.Helper()
	return mustRun(t, smallConfig(t, rate, time.Time{}))
}

// smallConfig is runSmall's load, measured from start (--start-at; zero:
// now), against a server of its own.
func smallConfig(t *testing.T, rate float64, start time.Time) Config {
	t.Helper()
	target := startStream(t, "tcp", &streamServer{mode: protocol.Upper})
	return Config{Target: target, Mode: protocol.Upper, Conns: 2, Rate: rate,
		Requests: 400, Warmup: 20 * time.Millisecond, SizeMin: 10, SizeMax: 90, StartAt: start}
}

func TestJSONContract(t *testing.T) {
	for _, rate := range []float64{0, 4000} {
		rep := runSmall(t, rate)
		var buf bytes.Buffer
		if err := WriteReport(&buf, rep, "json"); err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range contractKeys {
			if _, ok := m[k]; !ok {
				t.Errorf("rate %v: JSON lacks %q", rate, k)
			}
		}
		for _, k := range []string{"latency_us", "connect_us"} {
			sub, _ := m[k].(map[string]any)
			for _, s := range summaryKeys {
				if _, ok := sub[s].(float64); !ok {
					t.Errorf("%s lacks %s", k, s)
				}
			}
		}
		if rate == 0 && (m["service_us"] != nil || m["send_lag_us"] != nil) {
			t.Errorf("closed loop service_us = %v, send_lag_us = %v, want null", m["service_us"], m["send_lag_us"])
		}
		if lag, _ := m["send_lag_us"].(map[string]any); rate > 0 && lag["p50"].(float64) >= sub(m, "latency_us")["p50"].(float64)+1 {
			t.Errorf("send lag %v is more than the latency %v it is part of", lag, m["latency_us"])
		}
		if rate > 0 {
			sub, _ := m["service_us"].(map[string]any)
			if sub["p50"].(float64) <= 0 {
				t.Errorf("open loop service_us = %v", m["service_us"])
			}
		}
		if w, ok := m["warnings"].([]any); !ok || w == nil {
			t.Errorf("warnings = %v, want a list", m["warnings"])
		}
		// The JSON reads back into a Report with the same numbers.
		var back Report
		if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
			t.Fatal(err)
		}
		if back.Requests != 400 || back.Latency != rep.Latency || back.RPS != rep.RPS {
			t.Errorf("round trip: %+v", back)
		}
	}
}

func sub(m map[string]any, k string) map[string]any {
	v, _ := m[k].(map[string]any)
	return v
}

func TestCSV(t *testing.T) {
	rep := runSmall(t, 0)
	var buf bytes.Buffer
	if err := WriteReport(&buf, rep, "csv"); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(rows) != 2 || len(rows[0]) != len(rows[1]) {
		t.Fatalf("rows %q, err %v", rows, err)
	}
	col := map[string]string{}
	for i, h := range rows[0] {
		col[h] = rows[1][i]
	}
	// Names shared with the results CSV of DESIGN.md.
	for _, k := range []string{"conns", "pipeline", "size", "rate", "duration_s", "requests", "errors", "lost",
		"rps", "mbps", "p50_us", "p90_us", "p99_us", "p999_us", "p9999_us", "max_us", "client_cpu_s", "client_saturated"} {
		if _, ok := col[k]; !ok {
			t.Errorf("CSV lacks column %q", k)
		}
	}
	if col["requests"] != "400" || col["conns"] != "2" || col["client_saturated"] == "" {
		t.Errorf("row %v", col)
	}
}

func TestText(t *testing.T) {
	rep := runSmall(t, 4000)
	var buf bytes.Buffer
	if err := WriteText(&buf, rep); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"Target", "open loop at 4,000 req/s", "400 ok", "p99.99", "Latency", "Service", "Connect", "Client", "CPU-seconds"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	if WriteReport(io.Discard, rep, "xml") == nil {
		t.Error("unknown format accepted")
	}
}

func TestHdrLogRoundTripAndMerge(t *testing.T) {
	// Both runs measure the same window, as merge requires.
	start := time.Now().Add(200 * time.Millisecond)
	ca, cb := smallConfig(t, 0, start), smallConfig(t, 4000, start)
	var a, b *Report
	var errA, errB error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a, errA = Run(context.Background(), ca) }()
	go func() { defer wg.Done(); b, errB = Run(context.Background(), cb) }()
	wg.Wait()
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	var la, lb bytes.Buffer
	if err := WriteHdrLog(&la, a); err != nil {
		t.Fatal(err)
	}
	if err := WriteHdrLog(&lb, b); err != nil {
		t.Fatal(err)
	}
	hs, meta, err := ReadHdrLog(bytes.NewReader(la.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !hs.Latency.Equals(a.LatencyHist) || hs.Service != nil || hs.SendLag != nil || hs.Connect.TotalCount() != 2 || meta.Requests != 400 {
		t.Fatalf("round trip: latency equal %v, service %v, send lag %v, connect %d, meta requests %d",
			hs.Latency.Equals(a.LatencyHist), hs.Service, hs.SendLag, hs.Connect.TotalCount(), meta.Requests)
	}
	m, err := MergeLogs([]string{"a", "b"}, []io.Reader{&la, &lb})
	if err != nil {
		t.Fatal(err)
	}
	if m.Requests != 800 || m.Latency.Count != 800 || m.Connect.Count != 4 || m.Conns != 4 || m.Sources != 2 {
		t.Fatalf("merged: requests %d latency count %d connect count %d conns %d sources %d",
			m.Requests, m.Latency.Count, m.Connect.Count, m.Conns, m.Sources)
	}
	if m.Service == nil || m.Service.Count != 400 || m.SendLag == nil || m.SendLag.Count != 400 {
		t.Fatalf("merged service %+v, send lag %+v", m.Service, m.SendLag)
	}
	if math.Abs(m.RPS-(a.RPS+b.RPS)) > 1e-6 || m.Latency.Max != math.Max(a.Latency.Max, b.Latency.Max) {
		t.Fatalf("merged rps %v (want %v), max %v", m.RPS, a.RPS+b.RPS, m.Latency.Max)
	}
	if _, err := MergeLogs([]string{"x"}, []io.Reader{strings.NewReader("not a log\n")}); err == nil {
		t.Fatal("merging garbage succeeded")
	}
}

func TestContent(t *testing.T) {
	for _, mode := range protocol.Modes {
		c := newContent(42, mode, tagLen, 2000)
		lower, sizes := 0, map[int]bool{}
		for seq := range uint64(500) {
			line := c.line(nil, 3, seq)
			if i := bytes.IndexByte(line, '\n'); i != len(line)-1 {
				t.Fatalf("newline at %d of %d", i, len(line))
			}
			for _, ch := range line {
				if ch >= 'a' && ch <= 'z' {
					lower++
				}
			}
			sizes[len(line)] = true
			reply := mode.AppendReply(nil, line)
			if ok, n := c.checkLine(reply, 3, seq); !ok || n != len(line) {
				t.Fatalf("reply to %d not accepted", seq)
			}
			if ok, _ := c.checkLine(reply, 4, seq); ok && len(line) > 8 {
				t.Fatalf("reply accepted for another connection")
			}
			dg := c.datagram(nil, 3, seq)
			if got, ok := parseTag(mode.AppendReply(nil, dg)); !ok || got != seq {
				t.Fatalf("tag %q -> %d, %v", dg[:tagLen], got, ok)
			}
			if !c.checkDatagram(mode.AppendReply(nil, dg), 3, seq) || c.checkDatagram(dg[:len(dg)-1], 3, seq) {
				t.Fatal("datagram check")
			}
		}
		if lower < 500*1000/3 || len(sizes) < 200 {
			t.Fatalf("%d lower-case letters, %d distinct sizes", lower, len(sizes))
		}
		// Same seed, same requests.
		if !bytes.Equal(newContent(42, mode, tagLen, 2000).line(nil, 1, 7), c.line(nil, 1, 7)) {
			t.Fatal("not reproducible")
		}
	}
}

func TestPacer(t *testing.T) {
	// 1000 req/s from 0; warmup until 10.5 ms; window ends at 100 ms.
	p := newConstantPacer(1000, 0, 10_500_000, 100_000_000, 0)
	var dues []int64
	counted := 0
	for {
		d, c, ok := p.Claim(0)
		if !ok {
			break
		}
		dues = append(dues, d)
		if c {
			counted++
			if d < 10_500_000 {
				t.Fatalf("due %d counted in warmup", d)
			}
		}
	}
	if len(dues) != 100 || counted != 89 || !slices.IsSorted(dues) || dues[1] != 1_000_000 {
		t.Fatalf("%d slots, %d counted: %v", len(dues), counted, dues[:3])
	}
	p = newConstantPacer(1000, 0, 10_500_000, math.MaxInt64, 5)
	n := 0
	for _, c, ok := p.Claim(0); ok; _, c, ok = p.Claim(0) {
		if c {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("-n 5 gave %d measured slots", n)
	}
	// Behind at the end of warmup: the backlog is dropped, the measurement
	// starts on schedule.
	p = newConstantPacer(1000, 0, 10_500_000, math.MaxInt64, 0)
	p.Claim(0)
	if d, c, ok := p.Claim(10_600_000); !ok || !c || d != 11_000_000 {
		t.Fatalf("claim after warmup = %d, %v, %v; want the first measured slot", d, c, ok)
	}
}

func TestLiveHist(t *testing.T) {
	var h liveHist
	for v := int64(1); v <= 1000; v++ {
		h.record(v * 1000)
	}
	p99, n := h.quantile(0.99)
	if n != 1000 || p99 < 990_000 || p99 > 990_000*1.13 {
		t.Fatalf("p99 %d of %d values", p99, n)
	}
	// Cumulative: a second quantile sees the same values, and new ones.
	h.record(5_000_000)
	if p100, n := h.quantile(1); n != 1001 || p100 < 5_000_000 || p100 > 5_000_000*1.13 {
		t.Fatalf("max %d of %d values, want 5ms of 1001", p100, n)
	}
	if _, n := new(liveHist).quantile(0.5); n != 0 {
		t.Fatal("empty histogram has values")
	}
	for i := range 400 {
		if v := liveUpper(i); liveIndex(v) != i || liveIndex(v+1) != i+1 {
			t.Fatalf("bucket %d upper %d", i, v)
		}
	}
}

func TestFormatting(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 0.5: "500ns", 17.3: "17.3µs", 999.7: "1ms", 2107.4: "2.11ms", 3.2e6: "3.2s"} {
		if got := fmtDur(in); got != want {
			t.Errorf("fmtDur(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567.4: "1,234,567", -1234: "-1,234"} {
		if got := fmtCount(in); got != want {
			t.Errorf("fmtCount(%v) = %q, want %q", in, got, want)
		}
	}
}

// TestSaturationVerdict: client_saturated follows the CPU the generator
// used against the CPUs it had.
func TestSaturationVerdict(t *testing.T) {
	for _, c := range []struct {
		busy float64 // fraction of all CPUs used
		want bool
	}{{0.5, false}, {0.89, false}, {0.9, true}, {1.0, true}} {
		r := &run{cfg: &Config{Target: "tcp://127.0.0.1:1", MaxExamples: 5}}
		if err := r.cfg.Normalize(); err != nil {
			t.Fatal(err)
		}
		rep := r.newReport()
		rep.ConnectHist = newHist()
		cpus := float64(rep.ClientCPUCount)
		r.fill(rep, 10*time.Second, time.Duration(c.busy*cpus*10*float64(time.Second)), 0, time.Now())
		if rep.ClientSaturated != c.want || (len(rep.Warnings) > 0) != c.want {
			t.Errorf("busy %.0f%%: saturated %v, warnings %q", 100*c.busy, rep.ClientSaturated, rep.Warnings)
		}
	}
	// A window shorter than the kernel's CPU accounting is not judged: one
	// 10 ms tick in a 1 ms window would read as 1000%.
	r := &run{cfg: &Config{Target: "tcp://127.0.0.1:1", MaxExamples: 5}}
	if err := r.cfg.Normalize(); err != nil {
		t.Fatal(err)
	}
	rep := r.newReport()
	rep.ConnectHist = newHist()
	r.fill(rep, time.Millisecond, 10*time.Millisecond, 0, time.Now())
	if rep.ClientSaturated {
		t.Errorf("1 ms window with a 10 ms CPU tick judged saturated: %q", rep.Warnings)
	}
}

func TestProgressLine(t *testing.T) {
	target := startStream(t, "tcp", &streamServer{mode: protocol.Echo})
	var buf bytes.Buffer // written by Run's own goroutine only, read after it returns
	mustRun(t, Config{Target: target, Conns: 2, Duration: time.Second, Warmup: 1200 * time.Millisecond, Progress: &buf})
	out := buf.String()
	if !strings.Contains(out, "\rwarming up") || !strings.Contains(out, "req/s  p99 so far ") || !strings.HasSuffix(out, "\r") {
		t.Fatalf("progress output %q", out)
	}
}

// TestReportReadsOldJSON: a report written before client_cpus became
// client_cpu_count (a merge of old --hdr-out logs, a bench of an older
// binary) still gives its CPU count; the new key wins where both are.
func TestReportReadsOldJSON(t *testing.T) {
	var old, both Report
	if err := json.Unmarshal([]byte(`{"requests": 7, "client_cpu_s": 1.5, "client_cpus": 3}`), &old); err != nil {
		t.Fatal(err)
	}
	if old.ClientCPUCount != 3 || old.ClientCPUSeconds != 1.5 || old.Requests != 7 {
		t.Fatalf("old JSON read as %+v", old)
	}
	if err := json.Unmarshal([]byte(`{"client_cpus": 3, "client_cpu_count": 2}`), &both); err != nil || both.ClientCPUCount != 2 {
		t.Fatalf("client_cpu_count %d (%v), want 2", both.ClientCPUCount, err)
	}
}
