package loadgen

import (
	"context"
	"testing"
	"time"

	"github.com/sockbench/sockbench/protocol"
)

// TestSink: the sink answers every transport in both modes, checked byte
// for byte by the generator.
func TestSink(t *testing.T) {
	checkLeaks(t)
	for _, network := range []string{"tcp", "udp", "unix", "unixgram"} {
		for _, mode := range protocol.Modes {
			t.Run(network+"/"+mode.String(), func(t *testing.T) {
				s, err := StartSink(network, mode, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				rep := mustRun(t, Config{Target: s.Target, Mode: mode, Conns: 3, Pipeline: 4, SizeMin: 16, SizeMax: 2000,
					Requests: 2000, Timeout: 5 * time.Second})
				if rep.Requests != 2000 || rep.Errors != 0 || rep.Lost != 0 {
					t.Fatalf("requests %d errors %d (%v) lost %d", rep.Requests, rep.Errors, rep.ErrorsByKind, rep.Lost)
				}
			})
		}
	}
}

// TestCalibrate: the ceiling is measured, never below what was driven,
// and says where the sink ran.
func TestCalibrate(t *testing.T) {
	checkLeaks(t)
	rep, err := Calibrate(context.Background(), Config{Mode: protocol.Upper, Conns: 4, Duration: 300 * time.Millisecond,
		Warmup: 50 * time.Millisecond}, "tcp", nil)
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Calibration
	if c == nil || rep.Requests == 0 || c.CeilingRPS < rep.RPS || c.ClientBusy <= 0 {
		t.Fatalf("calibration %+v for %d requests at %.0f req/s", c, rep.Requests, rep.RPS)
	}
	if c.Extrapolated != (c.ClientBusy < saturatedShare) {
		t.Fatalf("extrapolated %v with the generator %.0f%% busy", c.Extrapolated, 100*c.ClientBusy)
	}
	if cpus := allowedCPUs(); len(cpus) >= 2 && (c.Shared || c.SinkCPUList == "" || c.ClientCPUList == "") {
		t.Fatalf("on %d CPUs the sink and the generator shared: %+v", len(cpus), c)
	}
	t.Logf("%s", c.describe())
	if _, err := Calibrate(context.Background(), Config{Conns: 1, Requests: 10}, "tcp", []int{4096}); err == nil {
		t.Fatal("a sink CPU this process may not use was accepted")
	}
}
