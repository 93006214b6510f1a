//go:build (linux && !(amd64 || arm64 || arm || riscv64 || loong64 || ppc64 || ppc64le)) || darwin || dragonfly || freebsd || netbsd || openbsd

package bare

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// The loop's socket calls through golang.org/x/sys/unix's wrappers, for
// systems where sys_linux.go's raw calls are not used: the same calls,
// with the scheduler's bookkeeping and a Sockaddr made per datagram.

// sockaddr is a datagram peer's address.
type sockaddr struct{ sa unix.Sockaddr }

// named reports whether the peer has an address a reply can go to (an
// unbound unixgram client has none).
func (a *sockaddr) named() bool {
	switch sa := a.sa.(type) {
	case nil:
		return false
	case *unix.SockaddrUnix:
		return sa.Name != ""
	}
	return true
}

func errno(err error) unix.Errno {
	if err == nil {
		return 0
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return e
	}
	return unix.EIO
}

func sysRead(fd int, b []byte) (int, unix.Errno) {
	n, err := unix.Read(fd, b)
	return n, errno(err)
}

func sysWrite(fd int, b []byte) (int, unix.Errno) {
	n, err := unix.Write(fd, b)
	return n, errno(err)
}

func recvFrom(fd int, b []byte, from *sockaddr) (int, unix.Errno) {
	n, sa, err := unix.Recvfrom(fd, b, 0)
	from.sa = sa
	return n, errno(err)
}

// sendTo sends one datagram without waiting (MSG_DONTWAIT where the
// system has it; the socket is non-blocking anyway).
func sendTo(fd int, b []byte, to *sockaddr) unix.Errno {
	return errno(unix.Sendto(fd, b, unix.MSG_DONTWAIT, to.sa))
}

// acceptConn accepts one connection and makes it non-blocking and
// close-on-exec, under the fork lock so that no process started meanwhile
// inherits it.
func acceptConn(fd int) (int, unix.Errno) {
	syscall.ForkLock.RLock()
	nfd, _, err := unix.Accept(fd)
	if err == nil {
		unix.CloseOnExec(nfd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return -1, errno(err)
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return -1, errno(err)
	}
	return nfd, 0
}
