package threaded_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/models/modeltest"
	_ "github.com/sockbench/sockbench/models/threaded"
	"github.com/sockbench/sockbench/protocol"
)

func TestMain(m *testing.M) {
	models.MaybeRunChild()
	os.Exit(m.Run())
}

// TestConformance runs the shared suite every model must pass, over
// unixgram too, which this model serves.
func TestConformance(t *testing.T) {
	modeltest.Run(t, "threaded", modeltest.Nets("tcp", "udp", "unix", "unixgram"))
}

// BenchmarkThreaded measures the model in process over loopback for every
// transport and mode: one connection (latency-bound) and 64 (throughput),
// 64-byte requests, plus 4 KiB requests on 64 connections.
//
//	go test -run '^$' -bench Threaded -benchtime 2s ./models/threaded/
func BenchmarkThreaded(b *testing.B) {
	for _, network := range []string{"tcp", "udp", "unix"} {
		for _, mode := range protocol.Modes {
			for _, c := range []struct{ conns, size int }{{1, 64}, {64, 64}, {64, 4096}} {
				name := fmt.Sprintf("net=%s/mode=%s/conns=%d/size=%d", network, mode, c.conns, c.size)
				b.Run(name, func(b *testing.B) {
					modeltest.Benchmark(b, "threaded", network, mode, c.conns, c.size)
				})
			}
		}
	}
}
