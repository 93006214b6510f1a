package models

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// ErrReplyDropped is wrapped by the error of a datagram reply that was not
// sent because the socket could not take it without waiting.
var ErrReplyDropped = errors.New("models: datagram reply dropped, the socket cannot take it now")

// DgramSocketBuffer is the receive and send buffer a datagram server asks
// for. The Linux default (about 208 KiB) holds only a few dozen 4 KiB
// datagrams, so a burst from many clients is dropped by the kernel before
// any reader sees it; and on unixgram every reply not yet read by its
// client is charged to the server's send buffer (see SendUnixgram). The
// kernel caps both at net.core.rmem_max and wmem_max (twice those, in
// fact), so this is best effort.
const DgramSocketBuffer = 4 << 20

// SendUnixgram sends one reply datagram b to the unixgram client at to, on
// the socket behind rc, without ever waiting: when the socket cannot take
// it now the reply is dropped and the error wraps ErrReplyDropped.
//
// Subtleness ahead. A blocking send (net.UnixConn.WriteTo) waits while it
// cannot send, and Go lets one write at a time into a socket, so one
// client that sends and never reads would stop every reader of the server
// after a few hundred replies: the other clients then get no reply and,
// once the server's receive queue is full, cannot even send. Linux charges
// every datagram a client has not read to the *sender's* send buffer
// (SO_SNDBUF), and a client connected to the server is exempt from the
// receive queue limit (net.unix.max_dgram_qlen) that bounds one that is
// not; so such a client can take the server's whole send buffer, and then
// every reply, to anyone, fails with EAGAIN until it reads or closes. No
// send call can tell whose unread replies fill the buffer. What a server
// can do, it does here: it never waits (the readers keep reading, every
// request is answered or counted as dropped, shutdown stays prompt), and
// servers ask for a DgramSocketBuffer-sized send buffer, so that a client
// must leave thousands of replies unread, not a few hundred, before the
// others notice.
//
// rc.Control does not take the socket's write lock, so concurrent readers
// never serialise behind a send.
func SendUnixgram(rc syscall.RawConn, b []byte, to *net.UnixAddr) error {
	sa := &syscall.SockaddrUnix{Name: to.Name}
	var err error
	cerr := rc.Control(func(fd uintptr) {
		for {
			err = syscall.Sendto(int(fd), b, syscall.MSG_DONTWAIT, sa)
			if err != syscall.EINTR {
				return
			}
		}
	})
	if cerr != nil {
		return cerr
	}
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.ENOBUFS) {
		return fmt.Errorf("%w: %v", ErrReplyDropped, err)
	}
	if err != nil {
		return &net.OpError{Op: "write", Net: "unixgram", Addr: to, Err: err}
	}
	return nil
}
