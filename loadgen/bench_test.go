package loadgen

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/sockbench/sockbench/protocol"
)

// BenchmarkRequest measures the generator's cost per request against an
// in-test server on loopback, for each engine: ns/op is the round trip,
// allocs/op should be 0 (the setup of a run is spread over b.N requests;
// steady-allocs/req isolates the per-request part; proc-cpu-ns/req is the
// CPU of the whole test process, generator and in-test server together).
// Run with -benchtime=100000x or more.
func BenchmarkRequest(b *testing.B) {
	for _, engine := range engines() {
		b.Run(engine, func(b *testing.B) { benchmarkRequest(b, engine) })
	}
}

func benchmarkRequest(b *testing.B, engine string) {
	for _, c := range []struct {
		name     string
		network  string
		pipeline int
		rate     float64
	}{
		{"tcp/p1", "tcp", 1, 0},
		{"tcp/p16", "tcp", 16, 0},
		{"unix/p16", "unix", 16, 0},
		{"udp/p16", "udp", 16, 0},
		{"tcp/p16/open", "tcp", 16, 1e7},
		{"udp/p16/open", "udp", 16, 1e7},
	} {
		b.Run(c.name, func(b *testing.B) {
			var target string
			if c.network == "udp" {
				target = startUDP(b, &udpServer{mode: protocol.Upper})
			} else {
				target = startStream(b, c.network, &streamServer{mode: protocol.Upper})
			}
			cfg := Config{engine: engine, Target: target, Mode: protocol.Upper, Conns: 1, Pipeline: c.pipeline,
				SizeMin: 64, SizeMax: 64, Rate: c.rate, Warmup: time.Nanosecond}
			steady := steadyAllocs(b, cfg)
			cfg.Requests = int64(b.N)
			b.ReportAllocs()
			b.ResetTimer()
			rep, err := Run(context.Background(), cfg)
			b.StopTimer()
			if err != nil || rep.Requests != int64(b.N) {
				b.Fatalf("requests %d of %d: %v", rep.Requests, b.N, err)
			}
			b.ReportMetric(steady, "steady-allocs/req")
			b.ReportMetric(rep.ClientCPUSeconds*1e9/float64(b.N), "proc-cpu-ns/req")
		})
	}
}

// steadyAllocs returns allocations per request in steady state: the
// difference between two runs of different lengths, divided by the extra
// requests, so the fixed cost of setting a run up cancels out.
func steadyAllocs(b *testing.B, cfg Config) float64 {
	b.Helper()
	mallocs := func(n int64) uint64 {
		cfg.Requests = n
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		if _, err := Run(context.Background(), cfg); err != nil {
			b.Fatal(err)
		}
		runtime.ReadMemStats(&m1)
		return m1.Mallocs - m0.Mallocs
	}
	mallocs(2000) // warm up the server's buffers
	short, long := mallocs(2000), mallocs(22000)
	if long < short {
		return 0
	}
	return float64(long-short) / 20000
}
