package loadgen

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sockbench/sockbench/protocol"
)

// TestParseTargetTransports: a target's scheme is any protocol.Transport,
// as serve --net takes them (tcp6:// was refused while serve --net tcp6
// served), and a socket path is held to protocol.MaxUnixPath.
func TestParseTargetTransports(t *testing.T) {
	long := "/tmp/" + strings.Repeat("p", protocol.MaxUnixPath)
	for _, c := range []struct {
		target, network, addr, err string
	}{
		{"tcp://127.0.0.1:7000", "tcp", "127.0.0.1:7000", ""},
		{"tcp4://127.0.0.1:7000", "tcp4", "127.0.0.1:7000", ""},
		{"tcp6://[::1]:7000", "tcp6", "[::1]:7000", ""},
		{"udp4://127.0.0.1:1", "udp4", "127.0.0.1:1", ""},
		{"udp6://[::1]:65535", "udp6", "[::1]:65535", ""},
		{"unix:///tmp/s.sock", "unix", "/tmp/s.sock", ""},
		{"unixgram://" + long[:protocol.MaxUnixPath], "unixgram", long[:protocol.MaxUnixPath], ""},
		{"unix://" + long[:protocol.MaxUnixPath+1], "", "", "longer than the 103"},
		{"unix://relative.sock", "", "", "absolute"},
		{"tcp6://[::1]", "", "", "not host:port"},
		{"tcp://:7000", "", "", "missing host (e.g. tcp://127.0.0.1:7000)"},
		{"tcp6://:7000", "", "", "missing host (e.g. tcp6://[::1]:7000)"},
		{"udp://127.0.0.1:0", "", "", "port 0"},
		{"tcp://127.0.0.1:65536", "", "", "not a number"},
		{"sctp://127.0.0.1:1", "", "", `unknown scheme "sctp"`},
		{"127.0.0.1:1", "", "", "want tcp://host:port"},
	} {
		network, addr, err := ParseTarget(c.target)
		if c.err == "" && (err != nil || network != c.network || addr != c.addr) {
			t.Errorf("ParseTarget(%.30q) = %q, %q, %v", c.target, network, addr, err)
		}
		if c.err != "" && (err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("ParseTarget(%.30q): err %v, want ErrConfig saying %q", c.target, err, c.err)
		}
	}
	// A datagram transport of either IP version gets the datagram rules
	// (the sequence tag needs 16 bytes).
	for _, target := range []string{"udp6://[::1]:7", "udp4://127.0.0.1:7"} {
		c := Config{Target: target, SizeMin: 8}
		if err := c.Normalize(); err == nil || !strings.Contains(err.Error(), "sequence tag") {
			t.Errorf("%s with 8-byte requests: %v", target, err)
		}
	}
}

// TestLoadOverIPv6: tcp6:// and udp6:// targets are loaded for real.
func TestLoadOverIPv6(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	s := &streamServer{ln: ln, mode: protocol.Upper, conns: map[net.Conn]bool{}}
	go s.serve()
	t.Cleanup(s.close)
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &udpServer{pc: pc, mode: protocol.Upper, done: make(chan struct{})}
	go u.serve()
	t.Cleanup(func() { pc.Close(); <-u.done })
	for _, target := range []string{"tcp6://" + ln.Addr().String(), "udp6://" + pc.LocalAddr().String()} {
		rep := mustRun(t, Config{Target: target, Mode: protocol.Upper, Conns: 2, SizeMin: 16, SizeMax: 200,
			Duration: 200 * time.Millisecond, Warmup: 20 * time.Millisecond})
		if rep.Requests < 10 || rep.Errors != 0 || rep.Lost != 0 || rep.Net != strings.Split(target, ":")[0] {
			t.Errorf("%s: net %s, %d requests, %d errors, %d lost", target, rep.Net, rep.Requests, rep.Errors, rep.Lost)
		}
	}
}
