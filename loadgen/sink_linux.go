package loadgen

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sockbench/sockbench/protocol"
)

// sinkLoop is one of the sink's event loops. Every loop watches the shared
// listening (or datagram) socket with EPOLLEXCLUSIVE, so the kernel wakes
// one loop per new connection or datagram; a connection stays with the
// loop that accepted it.
type sinkLoop struct {
	mode   protocol.Mode
	cpu    int
	lfd    int  // listening socket (stream) or the datagram socket
	stream bool // lfd listens
	ep     int
	file   *os.File
	rc     syscall.RawConn
	body   func(uintptr) bool
	stop   *atomic.Bool
	conns  []*sinkConn // by epoll data; nil slots are free
	free   []int32
	buf    []byte
	evs    []unix.EpollEvent
}

type sinkConn struct {
	fd  int
	out []byte // what the socket did not take; reading waits until it did
}

// serveSink takes the descriptor of ln or pc, closes them, and serves it
// with one loop per CPU of cpus (one unpinned loop when cpus is empty).
func serveSink(ln net.Listener, pc net.PacketConn, mode protocol.Mode, cpus []int) (func(), error) {
	var sc syscall.Conn
	if ln != nil {
		if ul, ok := ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false) // the path stays for the duplicate; Close removes its directory
		}
		sc, _ = ln.(syscall.Conn)
	} else {
		sc, _ = pc.(syscall.Conn)
	}
	lfd, err := dupConn(sc)
	if ln != nil {
		ln.Close()
	} else {
		pc.Close()
	}
	if err != nil {
		return nil, err
	}
	if len(cpus) == 0 {
		cpus = []int{-1}
	}
	stop := &atomic.Bool{}
	var loops []*sinkLoop
	cleanup := func() {
		for _, l := range loops {
			l.file.Close()
		}
		unix.Close(lfd)
	}
	for _, cpu := range cpus {
		l := &sinkLoop{mode: mode, cpu: cpu, lfd: lfd, stream: ln != nil, stop: stop,
			buf: make([]byte, max(64<<10, protocol.MaxDatagram)), evs: make([]unix.EpollEvent, 256)}
		if l.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
			cleanup()
			return nil, err
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: -1}
		if err = unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, lfd, &ev); err == nil {
			err = unix.SetNonblock(l.ep, true)
		}
		l.file = os.NewFile(uintptr(l.ep), "loadgen-sink-epoll")
		loops = append(loops, l)
		if err == nil {
			l.rc, err = l.file.SyscallConn()
		}
		if err != nil {
			cleanup()
			return nil, err
		}
		l.body = l.step
	}
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run()
		}()
	}
	return func() {
		stop.Store(true)
		for _, l := range loops {
			l.file.SetReadDeadline(time.Unix(1, 0))
		}
		wg.Wait()
		for _, l := range loops {
			for _, c := range l.conns {
				if c != nil {
					unix.Close(c.fd)
				}
			}
		}
		cleanup()
	}, nil
}

func (l *sinkLoop) run() {
	pinThread(l.cpu)
	for !l.stop.Load() {
		if err := l.rc.Read(l.body); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
	}
}

// step serves every ready event, then parks (returns false) when none is
// left.
func (l *sinkLoop) step(uintptr) bool {
	for !l.stop.Load() {
		k := rawEpollWait(l.ep, l.evs)
		if k <= 0 {
			return false
		}
		for i := range l.evs[:k] {
			ev := &l.evs[i]
			switch {
			case ev.Fd >= 0:
				l.serveConn(ev.Fd, ev.Events)
			case l.stream:
				l.accept()
			default:
				l.serveDatagrams()
			}
		}
	}
	return true
}

func (l *sinkLoop) accept() {
	for {
		fd, _, err := unix.Accept4(l.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN: another loop took it, or none is left
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1) // fails harmlessly on Unix sockets
		var idx int32
		if n := len(l.free); n > 0 {
			idx, l.free = l.free[n-1], l.free[:n-1]
		} else {
			idx = int32(len(l.conns))
			l.conns = append(l.conns, nil)
		}
		if unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: idx}) != nil {
			unix.Close(fd)
			l.free = append(l.free, idx)
			continue
		}
		l.conns[idx] = &sinkConn{fd: fd}
	}
}

func (l *sinkLoop) serveConn(idx int32, events uint32) {
	c := l.conns[idx]
	if c == nil {
		return
	}
	if len(c.out) > 0 {
		if events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) == 0 {
			return
		}
		n, errno := rawWrite(c.fd, c.out)
		switch {
		case errno == unix.EAGAIN || errno == unix.EINTR:
			return
		case errno != 0:
			l.drop(idx)
			return
		case n < len(c.out):
			c.out = c.out[:copy(c.out, c.out[n:])]
			return
		}
		c.out = c.out[:0]
		if unix.EpollCtl(l.ep, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: idx}) != nil {
			l.drop(idx)
		}
		return
	}
	k, errno := rawRead(c.fd, l.buf)
	switch {
	case errno == unix.EAGAIN || errno == unix.EINTR:
		return
	case errno != 0 || k == 0:
		l.drop(idx)
		return
	}
	b := l.buf[:k]
	l.mode.Apply(b)
	n, errno := rawWrite(c.fd, b)
	switch {
	case errno == unix.EAGAIN:
		n = 0
	case errno != 0:
		l.drop(idx)
		return
	}
	if n < k { // the client is not reading: hold the rest and stop reading until it goes out
		c.out = append(c.out[:0], b[n:]...)
		if unix.EpollCtl(l.ep, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: unix.EPOLLOUT, Fd: idx}) != nil {
			l.drop(idx)
		}
	}
}

func (l *sinkLoop) drop(idx int32) {
	unix.Close(l.conns[idx].fd)
	l.conns[idx] = nil
	l.free = append(l.free, idx)
}

// serveDatagrams answers the datagrams waiting (a bounded batch, so the
// loops share them); a reply the socket cannot take is dropped, as UDP
// would.
func (l *sinkLoop) serveDatagrams() {
	var sa [128]byte // large enough for sockaddr_in6 and sockaddr_un
	for range 64 {
		salen := uint32(len(sa))
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(l.lfd), uintptr(unsafe.Pointer(&l.buf[0])), uintptr(len(l.buf)),
			0, uintptr(unsafe.Pointer(&sa[0])), uintptr(unsafe.Pointer(&salen)))
		if errno != 0 {
			return
		}
		b := l.buf[:n]
		l.mode.Apply(b)
		var p unsafe.Pointer
		if len(b) > 0 {
			p = unsafe.Pointer(&b[0])
		}
		unix.RawSyscall6(unix.SYS_SENDTO, uintptr(l.lfd), uintptr(p), uintptr(len(b)), 0, uintptr(unsafe.Pointer(&sa[0])), uintptr(salen))
	}
}
