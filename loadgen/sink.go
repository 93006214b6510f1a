package loadgen

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/sockbench/sockbench/protocol"
)

// Sink is the cheapest server of the wire protocol this package can write,
// for Calibrate: it transforms every byte it reads (echo or upper, both
// byte for byte and length-preserving, so it needs no framing) and writes
// it straight back. On Linux it is an event loop on raw non-blocking
// sockets per CPU, like the epoll engine; elsewhere a goroutine per
// connection.
type Sink struct {
	// Target is the loadgen target that reaches the sink.
	Target string

	dir  string // private directory of a Unix socket, removed by Close
	stop func()
}

// StartSink starts a sink on loopback (127.0.0.1:0, or a socket in a new
// temporary directory) for network tcp, udp, unix or unixgram. On Linux
// its loops are pinned one to each of cpus (none: one unpinned loop);
// elsewhere cpus must be empty.
func StartSink(network string, mode protocol.Mode, cpus []int) (*Sink, error) {
	s := &Sink{}
	var addr string
	switch network {
	case "tcp", "udp":
		addr = "127.0.0.1:0"
	case "unix", "unixgram":
		dir, err := os.MkdirTemp("", "sbsink")
		if err != nil {
			return nil, fmt.Errorf("sink: %w", err)
		}
		s.dir = dir
		addr = filepath.Join(dir, "s.sock")
	default:
		return nil, errorf(ErrConfig, "sink: unknown network %q (want tcp, udp, unix or unixgram)", network)
	}
	var (
		ln  net.Listener
		pc  net.PacketConn
		err error
	)
	if network == "tcp" || network == "unix" {
		ln, err = net.Listen(network, addr)
		if err == nil {
			addr = ln.Addr().String()
		}
	} else {
		pc, err = net.ListenPacket(network, addr)
		if err == nil {
			addr = pc.LocalAddr().String()
		}
	}
	if err == nil {
		s.stop, err = serveSink(ln, pc, mode, cpus)
	}
	if err != nil {
		if s.dir != "" {
			os.RemoveAll(s.dir)
		}
		return nil, fmt.Errorf("sink: %w", err)
	}
	s.Target = network + "://" + addr
	return s, nil
}

// Close stops the sink and removes its socket file.
func (s *Sink) Close() {
	s.stop()
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}
