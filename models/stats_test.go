package models

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestAdmit: however many goroutines admit at once, no more than
// maxConns places are taken, every other connection counts as Rejected,
// and a place given back is taken again; 0 means no bound.
func TestAdmit(t *testing.T) {
	const maxConns, tries = 7, 200
	var c Counters
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.Admit(maxConns) {
				admitted.Add(1)
			}
		}()
	}
	wg.Wait()
	if n, a, r := admitted.Load(), c.Active.Load(), c.Rejected.Load(); n != maxConns || a != maxConns || r != tries-maxConns {
		t.Fatalf("%d admitted, active=%d rejected=%d; want %d, %d, %d", n, a, r, maxConns, maxConns, tries-maxConns)
	}
	c.Active.Add(-1)
	if !c.Admit(maxConns) {
		t.Error("a place given back was not taken again")
	}
	if c.Accepted.Load() != 0 {
		t.Errorf("Admit counted Accepted (%d): that is the caller's", c.Accepted.Load())
	}
	var free Counters
	for range tries {
		if !free.Admit(0) {
			t.Fatal("Admit(0) refused a connection: 0 means no bound")
		}
	}
}
