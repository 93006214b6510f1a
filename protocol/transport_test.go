package protocol

import (
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
)

// TestTransportRules pins every answer of every transport: the table is
// the contract models, loadgen, serve and bench share.
func TestTransportRules(t *testing.T) {
	for _, c := range []struct {
		name                    string
		stream, dgram, unix, v6 bool
		loopback                string
	}{
		{"tcp", true, false, false, false, "127.0.0.1:7"},
		{"tcp4", true, false, false, false, "127.0.0.1:7"},
		{"tcp6", true, false, false, true, "[::1]:7"},
		{"udp", false, true, false, false, "127.0.0.1:7"},
		{"udp4", false, true, false, false, "127.0.0.1:7"},
		{"udp6", false, true, false, true, "[::1]:7"},
		{"unix", true, false, true, false, ""},
		{"unixgram", false, true, true, false, ""},
	} {
		tr, err := ParseTransport(c.name)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !tr.IsValid() || tr.String() != c.name || tr.Network() != c.name {
			t.Errorf("%s: valid %v, String %q, Network %q", c.name, tr.IsValid(), tr, tr.Network())
		}
		if tr.IsStream() != c.stream || tr.IsDatagram() != c.dgram || tr.IsUnix() != c.unix || tr.IsIP() == c.unix || tr.Is6() != c.v6 {
			t.Errorf("%s: stream %v dgram %v unix %v ip %v v6 %v", c.name, tr.IsStream(), tr.IsDatagram(), tr.IsUnix(), tr.IsIP(), tr.Is6())
		}
		if got := tr.Loopback("7"); got != c.loopback {
			t.Errorf("%s: Loopback = %q, want %q", c.name, got, c.loopback)
		}
		b, err := json.Marshal(tr)
		var back Transport
		if err != nil || json.Unmarshal(b, &back) != nil || back != tr {
			t.Errorf("%s: JSON round trip %s -> %v (%v)", c.name, b, back, err)
		}
	}
	if got := strings.Join(TransportNames(), " "); got != "tcp tcp4 tcp6 udp udp4 udp6 unix unixgram" {
		t.Errorf("TransportNames = %s", got)
	}
	for _, bad := range []string{"", "sctp", "TCP", " tcp", "unixpacket", "ip4"} {
		if tr, err := ParseTransport(bad); err == nil || !errors.Is(err, ErrUnknownTransport) || tr.IsValid() {
			t.Errorf("ParseTransport(%q) = %v, %v", bad, tr, err)
		}
	}
	var zero Transport
	if zero.IsValid() || zero.IsStream() || zero.IsDatagram() || zero.IsUnix() || zero.IsIP() || zero.Network() != "" || zero.Loopback("0") != "" {
		t.Errorf("the zero Transport answers like a real one")
	}
	if _, err := json.Marshal(zero); err == nil {
		t.Errorf("the zero Transport marshals")
	}
}

// TestTransportAddresses: one rule for host:port and for socket paths.
func TestTransportAddresses(t *testing.T) {
	for _, c := range []struct {
		tr   Transport
		addr string
		host string
		port uint16
		err  string
	}{
		{TCP, "127.0.0.1:7000", "127.0.0.1", 7000, ""},
		{TCP6, "[::1]:0", "::1", 0, ""},
		{UDP, ":65535", "", 65535, ""},
		{TCP, "127.0.0.1:99999", "", 0, `port "99999" is not a number`},
		{TCP, "h:x", "", 0, `port "x" is not a number`},
		{UDP, "127.0.0.1", "", 0, "is not host:port (missing port in address)"},
		{Unix, "/tmp/s.sock", "", 0, "socket paths, not host:port"},
	} {
		host, port, err := c.tr.SplitHostPort(c.addr)
		if c.err == "" && (err != nil || host != c.host || port != c.port) {
			t.Errorf("%s %q: %q %d %v", c.tr, c.addr, host, port, err)
		}
		if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s %q: err %v, want %q", c.tr, c.addr, err, c.err)
		}
	}
	long := "/tmp/" + strings.Repeat("p", MaxUnixPath)
	for _, c := range []struct {
		tr   Transport
		path string
		err  string
	}{
		{Unix, "/tmp/s.sock", ""},
		{Unixgram, "rel.sock", ""},
		{Unix, long[:MaxUnixPath], ""},
		{Unix, long[:MaxUnixPath+1], "longer than the 103"},
		{Unixgram, "", "empty"},
		{Unix, "/tmp/a\x00b", "NUL"},
		{TCP, "/tmp/s.sock", "host:port, not socket paths"},
	} {
		err := c.tr.CheckPath(c.path)
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s CheckPath(%.20q): %v, want %q", c.tr, c.path, err, c.err)
		}
	}
}

// TestTransportLoopbackListens: the loopback address of every IP transport
// is one its own network binds (where the machine has that IP version).
func TestTransportLoopbackListens(t *testing.T) {
	for _, tr := range Transports() {
		if !tr.IsIP() {
			continue
		}
		var err error
		if tr.IsStream() {
			var ln net.Listener
			if ln, err = net.Listen(tr.Network(), tr.Loopback("0")); err == nil {
				ln.Close()
			}
		} else {
			var pc net.PacketConn
			if pc, err = net.ListenPacket(tr.Network(), tr.Loopback("0")); err == nil {
				pc.Close()
			}
		}
		if err != nil && tr.Is6() {
			t.Logf("%s: no IPv6 loopback here: %v", tr, err)
			continue
		}
		if err != nil {
			t.Errorf("%s on %s: %v", tr, tr.Loopback("0"), err)
		}
	}
}
