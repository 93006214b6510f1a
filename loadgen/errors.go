package loadgen

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/sockbench/sockbench/protocol"
)

// errKind classifies a failed request or connection for Report.ErrorsByKind.
type errKind uint8

const (
	kindConnect  errKind = iota // could not connect (or, UDP, no first reply)
	kindTimeout                 // no reply within --timeout (stream)
	kindClosed                  // the server closed the connection
	kindReset                   // connection reset or broken pipe
	kindRefused                 // connection refused (UDP: port unreachable)
	kindProtocol                // a reply the protocol does not allow (too long, unsolicited)
	kindMismatch                // a reply that differed from the expected bytes
	kindIO                      // any other I/O error
	numKinds
)

var kindNames = [numKinds]string{"connect", "timeout", "closed", "reset", "refused", "protocol", "mismatch", "io"}

func (k errKind) String() string { return kindNames[k] }

// classify maps an I/O error to its kind.
func classify(err error) errKind {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return kindClosed
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return kindTimeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return kindReset
	case errors.Is(err, syscall.ECONNREFUSED):
		return kindRefused
	case errors.Is(err, protocol.ErrLineTooLong):
		return kindProtocol
	}
	return kindIO
}
