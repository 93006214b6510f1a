package eventloop

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"testing"

	"github.com/panjf2000/gnet/v2"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/models/modeltest"
	"github.com/sockbench/sockbench/protocol"
)

// BenchmarkEventloop measures requests per second and allocations per
// request in process over loopback, for every transport and mode, on the
// same matrix as the other models' benchmarks:
//
//	go test -run xxx -bench . -benchmem ./models/...
//
// Read conns=1 with care. Its client is a goroutine in the same process,
// one request at a time, so the figure is a round trip's latency. The
// threaded model's server goroutines share the Go scheduler with the
// client, whose netpoller and spinning threads hand a ready goroutine over
// without putting a thread to sleep (about 0.02 context switches per
// request, perf stat). gnet's loops block in their own epoll_wait, outside
// that netpoller, so every request sleeps and wakes a thread on each side
// (about 3 context switches per request) and costs some 3 times as much
// CPU. BenchmarkGnetBare, gnet with no model around it, is as slow: the
// cost is gnet's, not this model's. Across processes, as bench measures,
// both pay the wakeups and the gap is small.
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

// BenchmarkGnetBare is the baseline for BenchmarkEventloop on tcp: the
// least a gnet server can be (gnet.Run; Next, transform, Write), with the
// same client. What the model costs beyond gnet is the difference.
func BenchmarkGnetBare(b *testing.B) {
	for _, mode := range protocol.Modes {
		for _, c := range []struct{ conns, size int }{{1, 64}, {64, 64}, {64, 4096}} {
			name := fmt.Sprintf("net=tcp/mode=%s/conns=%d/size=%d", mode, c.conns, c.size)
			b.Run(name, func(b *testing.B) {
				modeltest.Benchmark(b, bareName, "tcp", mode, c.conns, c.size)
			})
		}
	}
}

// bareName registers bareServer, in this package's tests only.
const bareName = "gnet-bare"

func init() {
	models.Register(bareName, func(cfg models.Config) (models.Server, error) {
		if cfg.Net != "tcp" {
			return nil, fmt.Errorf("%s: tcp only", bareName)
		}
		return &bareServer{cfg: cfg, booted: make(chan struct{}), done: make(chan error, 1)}, nil
	})
}

// bareServer is a gnet server with nothing around it: no idle timeouts,
// no line limit, no backpressure, no graceful drain. A benchmark baseline,
// not a model.
type bareServer struct {
	gnet.BuiltinEventEngine
	cfg    models.Config
	addr   string
	eng    gnet.Engine
	booted chan struct{}
	done   chan error // gnet.Run's result
}

func (s *bareServer) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Addr) // choose the port for gnet
	if err != nil {
		return err
	}
	s.addr = ln.Addr().String()
	ln.Close()
	go func() {
		s.done <- gnet.Run(s, "tcp://"+s.addr,
			gnet.WithNumEventLoop(s.cfg.Workers), gnet.WithMulticore(s.cfg.Workers > 1),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay), gnet.WithLogger(gnetLogger{slog.New(slog.DiscardHandler), new(models.RateLog)}))
	}()
	select {
	case <-s.booted: // gnet has bound the listener; its loops start next
		return nil
	case err := <-s.done:
		return fmt.Errorf("%s: %v", bareName, err)
	}
}

func (s *bareServer) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	close(s.booted)
	return gnet.None
}

func (s *bareServer) OnTraffic(c gnet.Conn) gnet.Action {
	b, _ := c.Next(-1)
	s.cfg.Mode.Apply(b)
	c.Write(b)
	return gnet.None
}

func (s *bareServer) Addr() string        { return s.addr }
func (s *bareServer) Stats() models.Stats { return models.Stats{} }

func (s *bareServer) Shutdown(ctx context.Context) error {
	err := s.eng.Stop(ctx)
	if runErr := <-s.done; err == nil {
		err = runErr
	}
	return err
}
