//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package bare

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// poller is the loop's kqueue and the pipe that wakes it from other
// goroutines (a pipe rather than EVFILT_USER, which OpenBSD lacks).
// Filters are level-triggered, as epoll is in poll_epoll.go; interest is
// changed by enabling and disabling each filter.
type poller struct {
	fd     int
	wakeR  int
	wakeW  int
	evs    [maxEvents]unix.Kevent_t
	change [2]unix.Kevent_t
}

func newPoller() (*poller, error) {
	fd, err := unix.Kqueue() // not inherited across fork
	if err != nil {
		return nil, err
	}
	var pp [2]int
	syscall.ForkLock.RLock()
	err = unix.Pipe(pp[:])
	if err == nil {
		unix.CloseOnExec(pp[0])
		unix.CloseOnExec(pp[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	p := &poller{fd: fd, wakeR: pp[0], wakeW: pp[1]}
	for _, w := range pp {
		if err := unix.SetNonblock(w, true); err != nil {
			p.close()
			return nil, err
		}
	}
	// The pipe's read end gets a read filter only.
	unix.SetKevent(&p.change[0], p.wakeR, unix.EVFILT_READ, unix.EV_ADD)
	if _, err := unix.Kevent(p.fd, p.change[:1], nil, nil); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// mod sets fd's interest, adding its filters the first time: EV_ADD
// changes a filter that exists and makes one that does not.
func (p *poller) mod(fd, want int) error {
	flags := func(on bool) int {
		if on {
			return unix.EV_ADD | unix.EV_ENABLE
		}
		return unix.EV_ADD | unix.EV_DISABLE
	}
	unix.SetKevent(&p.change[0], fd, unix.EVFILT_READ, flags(want&wantRead != 0))
	unix.SetKevent(&p.change[1], fd, unix.EVFILT_WRITE, flags(want&wantWrite != 0))
	_, err := unix.Kevent(p.fd, p.change[:], nil, nil)
	return err
}

// add registers fd with the interest want.
func (p *poller) add(fd, want int) error { return p.mod(fd, want) }

// wait returns how many events are ready, waiting up to msec
// milliseconds (-1: until one is).
func (p *poller) wait(msec int) (int, error) {
	var ts *unix.Timespec
	if msec >= 0 {
		t := unix.NsecToTimespec(int64(time.Duration(msec) * time.Millisecond))
		ts = &t
	}
	return unix.Kevent(p.fd, nil, p.evs[:], ts)
}

// event returns the descriptor of the i-th event of the last wait and
// whether it is readable, writable, or in error. EV_EOF is not an error:
// the read that follows returns the end of the stream or the error.
func (p *poller) event(i int) (fd int, r, w, bad bool) {
	ev := &p.evs[i]
	fd = int(ev.Ident)
	bad = ev.Flags&unix.EV_ERROR != 0
	switch ev.Filter {
	case unix.EVFILT_READ:
		r = true
	case unix.EVFILT_WRITE:
		w = true
	}
	return fd, r, w, bad
}

// wake makes a wait in progress (or the next one) return. Safe from any
// goroutine while the poller is open.
func (p *poller) wake() {
	unix.Write(p.wakeW, []byte{1})
}

// drainWake resets the wake-up after the loop saw it.
func (p *poller) drainWake() {
	var b [64]byte
	for {
		if n, err := unix.Read(p.wakeR, b[:]); n <= 0 || err != nil {
			return
		}
	}
}

func (p *poller) close() {
	unix.Close(p.wakeR)
	unix.Close(p.wakeW)
	unix.Close(p.fd)
}

// wakeFD is the descriptor whose events are wake-ups.
func (p *poller) wakeFD() int { return p.wakeR }
