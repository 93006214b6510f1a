//go:build linux

package bare

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// poller is the loop's epoll instance and the eventfd that wakes it from
// other goroutines. Level-triggered: a connection that was not read to
// EAGAIN is reported again by the next wait, so one read per event is
// enough and the interest set changes only when a connection's output
// backs up (epoll_ctl is off the common path).
type poller struct {
	fd  int
	wfd int
	evs [maxEvents]unix.EpollEvent
}

func newPoller() (*poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	p := &poller{fd: fd, wfd: wfd}
	if err := p.add(wfd, wantRead); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func epollEvents(want int) uint32 {
	var ev uint32
	if want&wantRead != 0 {
		ev |= unix.EPOLLIN
	}
	if want&wantWrite != 0 {
		ev |= unix.EPOLLOUT
	}
	return ev
}

func (p *poller) ctl(op, fd, want int) error {
	ev := unix.EpollEvent{Events: epollEvents(want), Fd: int32(fd)}
	return unix.EpollCtl(p.fd, op, fd, &ev)
}

// add registers fd with the interest want.
func (p *poller) add(fd, want int) error { return p.ctl(unix.EPOLL_CTL_ADD, fd, want) }

// mod changes fd's interest; 0 leaves only errors and hang-ups reported.
func (p *poller) mod(fd, want int) error { return p.ctl(unix.EPOLL_CTL_MOD, fd, want) }

// wait returns how many events are ready, waiting up to msec
// milliseconds (-1: until one is).
func (p *poller) wait(msec int) (int, error) {
	return unix.EpollWait(p.fd, p.evs[:], msec)
}

// event returns the descriptor of the i-th event of the last wait and
// whether it is readable, writable, or in error or hung up.
func (p *poller) event(i int) (fd int, r, w, bad bool) {
	ev := &p.evs[i]
	return int(ev.Fd), ev.Events&unix.EPOLLIN != 0, ev.Events&unix.EPOLLOUT != 0,
		ev.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0
}

// wake makes a wait in progress (or the next one) return. Safe from any
// goroutine while the poller is open.
func (p *poller) wake() {
	one := uint64(1)
	unix.Write(p.wfd, (*[8]byte)(unsafe.Pointer(&one))[:])
}

// drainWake resets the wake-up after the loop saw it.
func (p *poller) drainWake() {
	var b [8]byte
	unix.Read(p.wfd, b[:])
}

func (p *poller) close() {
	unix.Close(p.wfd)
	unix.Close(p.fd)
}

// wakeFD is the descriptor whose events are wake-ups.
func (p *poller) wakeFD() int { return p.wfd }
