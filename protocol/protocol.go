// Package protocol holds the request/reply rules every sockbench model and the
// load generator agree on: the transports (Transport: which names, stream or
// datagram, path or host:port, the socket path limit), the two modes (echo
// and upper), line framing for stream transports, datagram limits, request
// sizes, and the per-request handler cost.
//
// It opens no sockets; models, loadgen, bench and the serve command build on it.
package protocol

import (
	"errors"
	"fmt"
	"strings"
)

// Limits and defaults of the wire protocol.
const (
	// DefaultMaxLine is the default bound on one request line, '\n' included.
	DefaultMaxLine = 64 << 10
	// MaxDatagram is the largest UDP payload over IPv4 (65535 - 8 - 20).
	MaxDatagram = 65507
	// Newline ends every request and reply on a stream transport.
	Newline = '\n'
)

// Sentinel errors, wrapped with %w where more context helps.
var (
	// ErrLineTooLong means a request line did not end within the max-line bound.
	ErrLineTooLong = errors.New("protocol: line longer than max-line")
	// ErrUnknownMode is returned by ParseMode for a name that is not a mode.
	ErrUnknownMode = errors.New("protocol: unknown mode")
)

// Mode is what a server does to each request.
type Mode uint8

const (
	// Echo returns the request unchanged.
	Echo Mode = iota
	// Upper maps ASCII 'a'..'z' to 'A'..'Z' and leaves every other byte alone.
	Upper
)

// Modes lists every mode, in a stable order.
var Modes = []Mode{Echo, Upper}

// String returns the mode's flag name.
func (m Mode) String() string {
	switch m {
	case Echo:
		return "echo"
	case Upper:
		return "upper"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// ParseMode turns "echo" or "upper" into a Mode.
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "echo":
		return Echo, nil
	case "upper":
		return Upper, nil
	}
	return 0, fmt.Errorf("%w %q (want echo or upper)", ErrUnknownMode, s)
}

// Set implements flag.Value (and pflag.Value) so a Mode can be a flag.
func (m *Mode) Set(s string) error {
	v, err := ParseMode(s)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Type implements pflag.Value.
func (m *Mode) Type() string { return "mode" }

// Apply transforms b in place according to the mode. Both modes are
// length-preserving, so a reply is always exactly as long as its request.
func (m Mode) Apply(b []byte) {
	if m == Upper {
		UpperInPlace(b)
	}
}

// AppendReply appends the reply to req onto dst and returns the extended slice.
func (m Mode) AppendReply(dst, req []byte) []byte {
	n := len(dst)
	dst = append(dst, req...)
	m.Apply(dst[n:])
	return dst
}

// UpperInPlace maps ASCII lower-case letters in b to upper case. Every other
// byte, including bytes >= 0x80, is left as it is.
func UpperInPlace(b []byte) {
	for i, c := range b {
		if c-'a' < 26 { // unsigned wrap makes this 'a' <= c && c <= 'z'
			b[i] = c - ('a' - 'A')
		}
	}
}

// MarshalText implements encoding.TextMarshaler (JSON, YAML, flags).
func (m Mode) MarshalText() ([]byte, error) {
	if m != Echo && m != Upper {
		return nil, fmt.Errorf("%w %d", ErrUnknownMode, uint8(m))
	}
	return []byte(m.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *Mode) UnmarshalText(b []byte) error { return m.Set(string(b)) }
