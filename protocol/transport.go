package protocol

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// MaxUnixPath is the longest Unix socket path sockbench binds or dials:
// sun_path is 108 bytes on Linux and 104 on the BSDs and macOS, NUL
// included, so 103 bytes fit everywhere.
const MaxUnixPath = 103

// ErrUnknownTransport is returned by ParseTransport for a name that is not
// a transport sockbench speaks (the empty name included).
var ErrUnknownTransport = errors.New("protocol: unknown transport")

// Transport is a network sockbench speaks. It is the one place that knows
// the rules of each: which names are accepted, which transports are
// streams (requests framed in lines) and which datagrams, which address a
// filesystem path and which a host:port, and how long a socket path may
// be. Like netip.Addr it is a small comparable value with methods for
// every question; parse a name once with ParseTransport and ask it. The
// zero Transport is invalid.
type Transport uint8

// The transports, by their Go network names.
const (
	TCP      Transport = iota + 1 // TCP over IPv4 or IPv6
	TCP4                          // TCP over IPv4 only
	TCP6                          // TCP over IPv6 only
	UDP                           // UDP over IPv4 or IPv6
	UDP4                          // UDP over IPv4 only
	UDP6                          // UDP over IPv6 only
	Unix                          // a Unix domain stream socket
	Unixgram                      // a Unix domain datagram socket
)

// transportNames are the accepted spellings, indexed by Transport.
var transportNames = [...]string{
	TCP: "tcp", TCP4: "tcp4", TCP6: "tcp6",
	UDP: "udp", UDP4: "udp4", UDP6: "udp6",
	Unix: "unix", Unixgram: "unixgram",
}

// Transports lists every transport in a stable order: tcp, tcp4, tcp6,
// udp, udp4, udp6, unix, unixgram.
func Transports() []Transport {
	out := make([]Transport, 0, len(transportNames)-1)
	for t := TCP; t <= Unixgram; t++ {
		out = append(out, t)
	}
	return out
}

// TransportNames lists the accepted spellings, in the order of Transports.
func TransportNames() []string {
	ts := Transports()
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.String()
	}
	return out
}

// TransportsWanted names the accepted transports for help texts and
// error messages ("want " + TransportsWanted).
const TransportsWanted = "tcp, udp, unix or unixgram; tcp4, tcp6, udp4 and udp6 fix the IP version"

// ParseTransport returns the transport with the Go network name s: tcp,
// tcp4, tcp6, udp, udp4, udp6, unix or unixgram, exactly as net.Dial and
// net.Listen spell them. Anything else, the empty string included, is an
// error wrapping ErrUnknownTransport.
func ParseTransport(s string) (Transport, error) {
	for t := TCP; t <= Unixgram; t++ {
		if transportNames[t] == s {
			return t, nil
		}
	}
	return 0, fmt.Errorf("%w %q (want %s)", ErrUnknownTransport, s, TransportsWanted)
}

// IsValid reports whether t is one of the transports (not the zero value).
func (t Transport) IsValid() bool { return t >= TCP && t <= Unixgram }

// String returns the transport's name, which is also its Go network name.
func (t Transport) String() string {
	if t.IsValid() {
		return transportNames[t]
	}
	return "Transport(" + strconv.Itoa(int(t)) + ")"
}

// Network returns the network name for net.Dial, net.Listen and
// net.ListenPacket ("" for the zero Transport).
func (t Transport) Network() string {
	if t.IsValid() {
		return transportNames[t]
	}
	return ""
}

// IsStream reports whether t is a byte stream (tcp, tcp4, tcp6, unix):
// requests are lines ending in '\n', and replies come back in order.
func (t Transport) IsStream() bool {
	switch t {
	case TCP, TCP4, TCP6, Unix:
		return true
	}
	return false
}

// IsDatagram reports whether t carries datagrams (udp, udp4, udp6,
// unixgram): one datagram is one request, and its reply one datagram.
func (t Transport) IsDatagram() bool {
	switch t {
	case UDP, UDP4, UDP6, Unixgram:
		return true
	}
	return false
}

// IsUnix reports whether t's address is a filesystem path (unix,
// unixgram) rather than host:port.
func (t Transport) IsUnix() bool { return t == Unix || t == Unixgram }

// IsIP reports whether t's address is host:port (tcp and udp in all their
// IP versions).
func (t Transport) IsIP() bool { return t.IsValid() && !t.IsUnix() }

// Is6 reports whether t speaks IPv6 only (tcp6, udp6), so its loopback
// address is ::1 rather than 127.0.0.1.
func (t Transport) Is6() bool { return t == TCP6 || t == UDP6 }

// Loopback returns the loopback address with the given port for an IP
// transport: 127.0.0.1:port, or [::1]:port for tcp6 and udp6. It returns
// "" for a Unix transport, whose addresses are paths.
func (t Transport) Loopback(port string) string {
	switch {
	case !t.IsIP():
		return ""
	case t.Is6():
		return net.JoinHostPort("::1", port)
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// SplitHostPort splits the host:port address of an IP transport and checks
// that the port is a number from 0 to 65535. The host may be empty (every
// interface); whether it may be, and whether port 0 is meaningful, is the
// caller's to decide (a listener takes both, a dialer neither). For a
// Unix transport it is an error: its address is a path.
func (t Transport) SplitHostPort(addr string) (host string, port uint16, err error) {
	if !t.IsIP() {
		return "", 0, fmt.Errorf("protocol: %s addresses are socket paths, not host:port", t)
	}
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return "", 0, fmt.Errorf("%q is not host:port (%s)", addr, ae.Err)
		}
		return "", 0, fmt.Errorf("%q is not host:port (%v)", addr, err)
	}
	p, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, ps)
	}
	return host, uint16(p), nil
}

// CheckPath checks a socket path of a Unix transport: not empty, no NUL
// byte, and at most MaxUnixPath bytes (longer paths do not fit sun_path).
// It does not touch the filesystem.
func (t Transport) CheckPath(path string) error {
	switch {
	case !t.IsUnix():
		return fmt.Errorf("protocol: %s addresses are host:port, not socket paths", t)
	case path == "":
		return errors.New("empty unix socket path")
	case strings.IndexByte(path, 0) >= 0:
		return fmt.Errorf("unix socket path %q contains a NUL byte", path)
	case len(path) > MaxUnixPath:
		return fmt.Errorf("unix socket path is %d bytes, longer than the %d the kernel allows: %s", len(path), MaxUnixPath, path)
	}
	return nil
}

// MarshalText implements encoding.TextMarshaler (JSON, YAML).
func (t Transport) MarshalText() ([]byte, error) {
	if !t.IsValid() {
		return nil, fmt.Errorf("%w %d", ErrUnknownTransport, uint8(t))
	}
	return []byte(t.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *Transport) UnmarshalText(b []byte) error {
	v, err := ParseTransport(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}
