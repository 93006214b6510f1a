package eventloop

import (
	"fmt"
	"testing"

	"github.com/sockbench/sockbench/models/modeltest"
	"github.com/sockbench/sockbench/protocol"
)

// BenchmarkEventloop measures requests per second and allocations per
// request in process over loopback, for every transport and mode, on the
// same matrix as the other models' benchmarks:
//
//	go test -run xxx -bench . -benchmem ./models/...
func BenchmarkEventloop(b *testing.B) {
	for _, network := range []string{"tcp", "udp", "unix"} {
		for _, mode := range protocol.Modes {
			for _, c := range []struct{ conns, size int }{{1, 64}, {64, 64}, {64, 4096}} {
				name := fmt.Sprintf("net=%s/mode=%s/conns=%d/size=%d", network, mode, c.conns, c.size)
				b.Run(name, func(b *testing.B) {
					modeltest.Benchmark(b, Name, network, mode, c.conns, c.size)
				})
			}
		}
	}
}
