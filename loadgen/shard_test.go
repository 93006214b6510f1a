package loadgen

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockbench/sockbench/protocol"
)

func TestShardSplitsAddUp(t *testing.T) {
	for _, tc := range []struct {
		conns int
		reqs  int64
		rate  float64
		n     int
	}{{10, 0, 1000, 3}, {7, 1001, 0, 7}, {64, 0, 20000, 2}, {5, 9, 300, 4}} {
		var conns int
		var reqs int64
		var rate float64
		for i := range tc.n {
			c := Config{Conns: tc.conns, Requests: tc.reqs, Rate: tc.rate}
			if err := (Shard{i, tc.n}).Apply(&c); err != nil {
				t.Fatal(err)
			}
			if c.Conns < tc.conns/tc.n || c.Conns > tc.conns/tc.n+1 {
				t.Errorf("%+v shard %d: %d conns", tc, i, c.Conns)
			}
			conns, reqs, rate = conns+c.Conns, reqs+c.Requests, rate+c.Rate
		}
		if conns != tc.conns || reqs != tc.reqs || rate < tc.rate*0.999999 || rate > tc.rate*1.000001 {
			t.Errorf("%+v: shards add up to %d conns, %d requests, %g req/s", tc, conns, reqs, rate)
		}
	}
	for _, bad := range []string{"", "1", "2/2", "-1/2", "0/0", "a/b", "1/2/3"} {
		if _, err := ParseShard(bad); err == nil {
			t.Errorf("ParseShard(%q) accepted", bad)
		}
	}
	if err := (Shard{0, 4}).Apply(&Config{Conns: 3}); err == nil {
		t.Error("3 connections split 4 ways accepted")
	}
	if s, err := ParseShard("1/3"); err != nil || s != (Shard{1, 3}) || s.String() != "1/3" {
		t.Errorf("ParseShard(1/3) = %+v, %v", s, err)
	}
}

// TestStartAtAndIntervals: a run given --start-at measures from exactly
// then, and its interval histograms are the whole-run histogram cut in
// pieces: they add up to it, in time order, inside the window.
func TestStartAtAndIntervals(t *testing.T) {
	checkLeaks(t)
	target := startStream(t, "tcp", &streamServer{mode: protocol.Echo})
	start := time.Now().Add(300 * time.Millisecond).Truncate(time.Millisecond)
	rep := mustRun(t, Config{Target: target, Conns: 3, Duration: 450 * time.Millisecond, Warmup: 50 * time.Millisecond,
		StartAt: start, Interval: 100 * time.Millisecond})
	got, err := time.Parse(time.RFC3339Nano, rep.Start)
	if err != nil || got.Sub(start).Abs() > time.Millisecond {
		t.Fatalf("measurement started %v, want %v (%v)", got, start, err)
	}
	if len(rep.Intervals) < 4 || len(rep.Intervals) > 6 {
		t.Fatalf("%d intervals of 100ms in a 450ms window", len(rep.Intervals))
	}
	var sum int64
	prevEnd := start.UnixMilli()
	for i, h := range rep.Intervals {
		sum += h.TotalCount()
		if h.StartTimeMs() < prevEnd || h.EndTimeMs() <= h.StartTimeMs() || h.EndTimeMs()-h.StartTimeMs() > 100 {
			t.Errorf("interval %d: %d..%d after %d", i, h.StartTimeMs(), h.EndTimeMs(), prevEnd)
		}
		prevEnd = h.EndTimeMs()
	}
	if sum != rep.LatencyHist.TotalCount() || sum != rep.Requests {
		t.Fatalf("intervals hold %d latencies, the run %d (requests %d)", sum, rep.LatencyHist.TotalCount(), rep.Requests)
	}
	var log bytes.Buffer
	if err := WriteHdrLog(&log, rep); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(log.String(), "\n") - strings.Count(log.String(), "\n#") - 1; n < len(rep.Intervals) {
		t.Errorf("the log has %d histogram lines for %d intervals", n, len(rep.Intervals))
	}
	hs, _, err := ReadHdrLog(&log)
	if err != nil || !hs.Latency.Equals(rep.LatencyHist) {
		t.Fatalf("the intervals read back do not make the run's histogram (%v)", err)
	}

	// A start time that passes while connecting is an error, not a
	// window silently different from the other generators'.
	_, err = Run(context.Background(), Config{Target: target, Conns: 1, Duration: time.Second, StartAt: time.Now().Add(-time.Second)})
	if err == nil || !strings.Contains(err.Error(), "--start-at") {
		t.Fatalf("a past --start-at: %v", err)
	}
}

// TestMergeShards runs two shards of one run at the same --start-at and
// merges their logs: requests add up, the p99 is that of both shards'
// latencies together. Logs of runs that did not overlap are refused.
func TestMergeShards(t *testing.T) {
	slow := startStream(t, "tcp", &streamServer{mode: protocol.Echo, delay: 2 * time.Millisecond})
	fast := startStream(t, "tcp", &streamServer{mode: protocol.Echo})
	start := time.Now().Add(300 * time.Millisecond)
	reps := make([]*Report, 2)
	var wg sync.WaitGroup
	for i, target := range []string{slow, fast} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := Config{Target: target, Conns: 4, Duration: 400 * time.Millisecond, Warmup: 20 * time.Millisecond,
				StartAt: start, Interval: 100 * time.Millisecond}
			if err := (Shard{i, 2}).Apply(&c); err != nil {
				t.Error(err)
				return
			}
			rep, err := Run(context.Background(), c)
			if err != nil {
				t.Error(err)
			}
			reps[i] = rep
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	logs := make([]io.Reader, 2)
	for i, rep := range reps {
		var b bytes.Buffer
		if err := WriteHdrLog(&b, rep); err != nil {
			t.Fatal(err)
		}
		logs[i] = &b
	}
	m, err := MergeLogs([]string{"shard0", "shard1"}, logs)
	if err != nil {
		t.Fatal(err)
	}
	if m.Requests != reps[0].Requests+reps[1].Requests || m.Latency.Count != m.Requests || m.Conns != 4 {
		t.Fatalf("merged %d requests (%d latencies, %d conns) from %d + %d", m.Requests, m.Latency.Count, m.Conns, reps[0].Requests, reps[1].Requests)
	}
	// The merged p99 is the p99 of both shards' latencies together, and
	// not below the lower of the shards' p99s. It can lie above the
	// higher one: HdrHistogram rounds a percentile's rank to a whole
	// count, and the merged rank can need one value more than the two
	// shards' ranks together (under emulation: 2570.2 µs against 2558.0
	// and 2562.0).
	both := newHist()
	both.Merge(reps[0].LatencyHist)
	both.Merge(reps[1].LatencyHist)
	if want := Summarize(both).P99; m.Latency.P99 != want {
		t.Errorf("merged p99 %v, want %v, the p99 of both shards' latencies", m.Latency.P99, want)
	}
	if lo := min(reps[0].Latency.P99, reps[1].Latency.P99); m.Latency.P99 < lo {
		t.Errorf("merged p99 %v below the lower of the shards' p99s, %v", m.Latency.P99, lo)
	}
	for _, w := range m.Warnings {
		if strings.Contains(w, "shard") || strings.Contains(w, "share only") {
			t.Errorf("warning for two whole shards at one start: %s", w)
		}
	}

	// One shard twice, the other missing: merged, with a warning.
	var a, b bytes.Buffer
	WriteHdrLog(&a, reps[0])
	WriteHdrLog(&b, reps[0])
	m, err = MergeLogs([]string{"a", "b"}, []io.Reader{&a, &b})
	if err != nil || !strings.Contains(strings.Join(m.Warnings, "\n"), "shards 1 of 2 are missing") {
		t.Fatalf("shard 0 twice: %v %q", err, m.Warnings)
	}

	// A run measured after the others finished: refused.
	later := runSmall(t, 0)
	a.Reset()
	WriteHdrLog(&a, reps[1])
	var c bytes.Buffer
	WriteHdrLog(&c, later)
	_, err = MergeLogs([]string{"early.hlog", "late.hlog"}, []io.Reader{&a, &c})
	if err == nil || !strings.Contains(err.Error(), "do not overlap") || !strings.Contains(err.Error(), "late.hlog") {
		t.Fatalf("merging windows that do not overlap: %v", err)
	}
}
