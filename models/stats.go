package models

import (
	"fmt"
	"sync/atomic"
)

// Stats is a snapshot of a server's counters. It is plain data so it can be
// summed across processes (prefork) and printed as JSON.
type Stats struct {
	Accepted uint64 `json:"accepted"` // stream connections accepted
	Active   int64  `json:"active"`   // stream connections open now
	Buffered int64  `json:"buffered"` // bytes held for clients now (counted only with max-buffered)
	Requests uint64 `json:"requests"` // requests answered (lines or datagrams)
	BytesIn  uint64 `json:"bytes_in"`
	BytesOut uint64 `json:"bytes_out"`

	// Errors by kind.
	Rejected      uint64 `json:"rejected"`       // connections closed at once: max-conns
	LineTooLong   uint64 `json:"line_too_long"`  // connections closed for a line over max-line
	IdleTimeouts  uint64 `json:"idle_timeouts"`  // connections closed by idle-timeout
	LineTimeouts  uint64 `json:"line_timeouts"`  // connections closed by line-timeout (a line too slow to complete)
	WriteTimeouts uint64 `json:"write_timeouts"` // connections closed by write-timeout (replies left untaken)
	OverBuffered  uint64 `json:"over_buffered"`  // connections closed for holding the most when the server held over max-buffered
	ReadErrors    uint64 `json:"read_errors"`    // resets and other read failures (not EOF)
	WriteErrors   uint64 `json:"write_errors"`   // replies that could not be written
	AcceptErrors  uint64 `json:"accept_errors"`  // failed accepts (EMFILE and the like)
	BadDatagrams  uint64 `json:"bad_datagrams"`  // datagrams dropped: truncated or unanswerable
}

// Errors sums every error counter.
func (s Stats) Errors() uint64 {
	return s.Rejected + s.LineTooLong + s.IdleTimeouts + s.LineTimeouts + s.WriteTimeouts + s.OverBuffered +
		s.ReadErrors + s.WriteErrors + s.AcceptErrors + s.BadDatagrams
}

// Add returns the sum of s and o, field by field.
func (s Stats) Add(o Stats) Stats {
	return Stats{
		Accepted: s.Accepted + o.Accepted, Active: s.Active + o.Active, Buffered: s.Buffered + o.Buffered,
		Requests: s.Requests + o.Requests, BytesIn: s.BytesIn + o.BytesIn, BytesOut: s.BytesOut + o.BytesOut,
		Rejected: s.Rejected + o.Rejected, LineTooLong: s.LineTooLong + o.LineTooLong,
		IdleTimeouts: s.IdleTimeouts + o.IdleTimeouts, LineTimeouts: s.LineTimeouts + o.LineTimeouts,
		WriteTimeouts: s.WriteTimeouts + o.WriteTimeouts,
		OverBuffered:  s.OverBuffered + o.OverBuffered, ReadErrors: s.ReadErrors + o.ReadErrors,
		WriteErrors: s.WriteErrors + o.WriteErrors, AcceptErrors: s.AcceptErrors + o.AcceptErrors,
		BadDatagrams: s.BadDatagrams + o.BadDatagrams,
	}
}

// String is the one-line summary a server logs on exit.
func (s Stats) String() string {
	return fmt.Sprintf("accepted=%d active=%d buffered=%d requests=%d bytes_in=%d bytes_out=%d errors=%d "+
		"(rejected=%d line_too_long=%d idle_timeouts=%d line_timeouts=%d write_timeouts=%d over_buffered=%d read=%d write=%d accept=%d bad_datagrams=%d)",
		s.Accepted, s.Active, s.Buffered, s.Requests, s.BytesIn, s.BytesOut, s.Errors(),
		s.Rejected, s.LineTooLong, s.IdleTimeouts, s.LineTimeouts, s.WriteTimeouts, s.OverBuffered,
		s.ReadErrors, s.WriteErrors, s.AcceptErrors, s.BadDatagrams)
}

// Counters are the live, lock-free counters a model updates on its hot
// path. Embed one in a server and return Snapshot from Stats.
type Counters struct {
	Accepted, Requests, BytesIn, BytesOut            atomic.Uint64
	Active                                           atomic.Int64
	Rejected, LineTooLong, IdleTimeouts              atomic.Uint64
	LineTimeouts, WriteTimeouts, OverBuffered        atomic.Uint64
	ReadErrors, WriteErrors, AcceptErrors, BadDgrams atomic.Uint64
}

// Snapshot reads every counter once (Buffered is not one of them: see
// Buffers.Mine).
func (c *Counters) Snapshot() Stats {
	return Stats{
		Accepted: c.Accepted.Load(), Active: c.Active.Load(), Requests: c.Requests.Load(),
		BytesIn: c.BytesIn.Load(), BytesOut: c.BytesOut.Load(),
		Rejected: c.Rejected.Load(), LineTooLong: c.LineTooLong.Load(), IdleTimeouts: c.IdleTimeouts.Load(),
		LineTimeouts: c.LineTimeouts.Load(), WriteTimeouts: c.WriteTimeouts.Load(), OverBuffered: c.OverBuffered.Load(),
		ReadErrors: c.ReadErrors.Load(), WriteErrors: c.WriteErrors.Load(), AcceptErrors: c.AcceptErrors.Load(),
		BadDatagrams: c.BadDgrams.Load(),
	}
}

// Admit takes a place for a stream connection just accepted, when fewer
// than maxConns are open (0: no bound): it adds one to Active and reports
// true. When every place is taken it counts the connection in Rejected
// and reports false, and the caller closes it at once. The caller counts
// Accepted once it keeps the connection, and gives the place back with
// Active.Add(-1) when the connection is gone.
//
// It is safe from any number of goroutines (eventloop admits on every
// event loop): a place is taken by compare-and-swap, so Active never
// passes maxConns, however the admissions interleave.
func (c *Counters) Admit(maxConns int) bool {
	for {
		n := c.Active.Load()
		if maxConns > 0 && n >= int64(maxConns) {
			c.Rejected.Add(1)
			return false
		}
		if c.Active.CompareAndSwap(n, n+1) {
			return true
		}
	}
}
