package models

import "time"

// Bounds of a zero Backoff: those net/http's Serve uses after a temporary
// Accept error.
const (
	MinBackoff = 5 * time.Millisecond
	MaxBackoff = time.Second
)

// Backoff is the wait between tries of something that keeps failing for a
// reason that lasts a while: an accept or a read while the process is out
// of descriptors (EMFILE), a process start that finds no memory, a worker
// that dies as it starts. Retrying at once would spin on the error and
// starve the work that still goes on; giving up would stop serving. So,
// as net/http's Serve does, the first failure waits Min, each failure in
// a row twice as long up to Max, and a success (Reset) starts over.
//
// The zero value backs off from MinBackoff to MaxBackoff. A Backoff is
// used by one goroutine at a time.
type Backoff struct {
	// Min is the first wait, Max the longest; 0 means MinBackoff and
	// MaxBackoff.
	Min, Max time.Duration
	cur      time.Duration
}

// Next records a failure and returns how long to wait before the next
// try: Min after the first failure in a row, then twice the last wait, at
// most Max.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = MinBackoff
	}
	if hi <= 0 {
		hi = MaxBackoff
	}
	b.cur = min(max(2*b.cur, lo), hi)
	return b.cur
}

// Reset records a success: the next failure waits Min again.
func (b *Backoff) Reset() { b.cur = 0 }

// Sleep waits d, or less when stop is closed first; it reports whether it
// waited all of d (false: stop it). A server's retry loops sleep through
// it, so a shutdown never waits for a backoff to run out.
func Sleep(d time.Duration, stop <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}
