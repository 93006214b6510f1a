//go:build linux && (amd64 || arm64 || arm || riscv64 || loong64 || ppc64 || ppc64le)

package bare

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loop's socket calls. Every socket the loop touches is non-blocking,
// so none of these calls can sleep: they go straight to the kernel with
// RawSyscall, without the scheduler's bookkeeping for a call that might
// block (entersyscall/exitsyscall, about a tenth of a microsecond a call
// on the machine the package doc's figures come from). Errors come back
// as Errno values, which box into an error without allocating.

// sockaddr is a datagram peer's address in the kernel's own form, filled
// by recvFrom and used as is by sendTo: no Sockaddr is built per datagram.
type sockaddr struct {
	raw unix.RawSockaddrAny
	len uint32
}

// named reports whether the peer has an address a reply can go to (an
// unbound unixgram client has none: only the address family).
func (a *sockaddr) named() bool { return a.len > 2 }

func sysRead(fd int, b []byte) (int, unix.Errno) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	return int(r), e
}

func sysWrite(fd int, b []byte) (int, unix.Errno) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	return int(r), e
}

func recvFrom(fd int, b []byte, from *sockaddr) (int, unix.Errno) {
	from.len = unix.SizeofSockaddrAny
	r, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
		0, uintptr(unsafe.Pointer(&from.raw)), uintptr(unsafe.Pointer(&from.len)))
	return int(r), e
}

// sendTo sends one datagram without waiting (MSG_DONTWAIT): a peer whose
// queue is full gets EAGAIN, and the caller drops the reply.
func sendTo(fd int, b []byte, to *sockaddr) unix.Errno {
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
		unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&to.raw)), uintptr(to.len))
	return e
}

// acceptConn accepts one connection, non-blocking and close-on-exec in
// the same call, without asking for the peer's address.
func acceptConn(fd int) (int, unix.Errno) {
	r, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), 0, 0, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	return int(r), e
}
