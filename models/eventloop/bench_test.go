package eventloop

import (
	"fmt"
	"testing"

	"github.com/sockbench/sockbench/models/modeltest"
	"github.com/sockbench/sockbench/protocol"
)

// BenchmarkEventloop measures requests per second and allocations per
// request in process over loopback, for every transport and mode:
//
//	go test -run xxx -bench . -benchmem ./models/eventloop/
func BenchmarkEventloop(b *testing.B) {
	for _, network := range []string{"tcp", "udp", "unix"} {
		for _, mode := range protocol.Modes {
			for _, size := range []int{64, 4096} {
				const conns = 16
				b.Run(fmt.Sprintf("net=%s/mode=%s/conns=%d/size=%d", network, mode, conns, size), func(b *testing.B) {
					modeltest.Benchmark(b, Name, network, mode, conns, size)
				})
			}
		}
	}
}
