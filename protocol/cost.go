package protocol

import (
	"context"
	"sync/atomic"
	"time"
)

// Cost is the per-request handler cost that shows where each model wins:
// Work burns CPU, Block waits as a blocking call (a disk read, a database
// round trip) would.
type Cost struct {
	Work  time.Duration
	Block time.Duration
}

// Zero reports whether the handler does nothing beyond the transform.
func (c Cost) Zero() bool { return c.Work <= 0 && c.Block <= 0 }

// Blocks reports whether requests wait; an event loop must hand such
// requests off instead of running them on the loop.
func (c Cost) Blocks() bool { return c.Block > 0 }

// Pay spends the cost on the calling goroutine: Work as a busy loop, then
// Block as a sleep that ends early when ctx is done.
func (c Cost) Pay(ctx context.Context) {
	if c.Work > 0 {
		Burn(c.Work)
	}
	if c.Block > 0 {
		t := time.NewTimer(c.Block)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}

// sink keeps the compiler from removing Burn's loop; atomic because Burn
// runs on many goroutines at once.
var sink atomic.Uint64

// Burn keeps the CPU busy for about d of wall time on the calling goroutine.
// It checks the clock every few hundred iterations, so its own overhead is
// small and it never sleeps.
func Burn(d time.Duration) {
	if d <= 0 {
		return
	}
	deadline := time.Now().Add(d)
	x := sink.Load() | 1
	for {
		for i := 0; i < 256; i++ {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
		}
		if !time.Now().Before(deadline) {
			break
		}
	}
	sink.Store(x)
}
