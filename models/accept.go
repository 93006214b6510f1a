package models

import (
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
)

// An Acceptor accepts a server's stream connections the way net/http's
// Serve does: an accept that fails (EMFILE, ENFILE, ENOBUFS: the process
// or the system out of something that comes back) is counted, logged
// through a RateLog and tried again after a Backoff, 5 ms doubling to
// 1 s, reset by the next success. So a server out of descriptors neither
// spins on the error nor stops accepting for good, and goes on serving
// the connections it has. (bare's loop, which never blocks in accept,
// turns its listener off for the same Backoff instead.)
//
// Set the fields before the first Accept; one goroutine calls it.
type Acceptor struct {
	Listener net.Listener
	// Stop is closed when the server stops; Accept then returns, from a
	// backoff too.
	Stop <-chan struct{}
	// Failed counts failed accepts: a server's Counters.AcceptErrors.
	Failed *atomic.Uint64
	// Logs limits the line each failure logs on Log.
	Logs *RateLog
	Log  *slog.Logger

	backoff Backoff
}

// Accept returns the next connection. It returns an error only for good:
// the listener's once it is closed (net.ErrClosed), or ErrServerClosed
// when Stop was closed during a backoff.
func (a *Acceptor) Accept() (net.Conn, error) {
	for {
		c, err := a.Listener.Accept()
		if err == nil {
			a.backoff.Reset()
			return c, nil
		}
		if errors.Is(err, net.ErrClosed) || Closed(a.Stop) {
			return nil, err
		}
		a.Failed.Add(1)
		d := a.backoff.Next()
		a.Logs.Warn(a.Log, "accept failed; retrying", "err", err, "backoff", d)
		if !Sleep(d, a.Stop) {
			return nil, ErrServerClosed
		}
	}
}

// Closed reports whether ch is closed (never, for a nil ch): whether a
// server's stop signal has gone out.
func Closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
