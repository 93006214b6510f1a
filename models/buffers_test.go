package models

import (
	"fmt"
	"log/slog"
	"maps"
	"sync/atomic"
	"testing"
)

// TestBuffers: Set reports growth past the bound, not a shrink or a
// repeat; Release gives a hold back once and freezes it; Largest finds the
// biggest hold; a nil account (no bound) costs nothing and reports 0.
func TestBuffers(t *testing.T) {
	if NewBuffers(0) != nil || NewBuffers(-5) != nil {
		t.Fatal("no bound must give a nil account")
	}
	var nilb *Buffers
	if nilb.Mine() != 0 {
		t.Error("nil account: Mine != 0")
	}
	b := NewBuffers(100)
	var h1, h2, h3 Hold
	if b.Set(&h1, 60) || b.Set(&h2, 30) {
		t.Fatal("over before the bound")
	}
	if !b.Set(&h3, 20) {
		t.Fatal("110 of 100: not over")
	}
	if b.Set(&h3, 20) {
		t.Error("a Set that does not grow reported over")
	}
	if b.Set(&h3, 15) {
		t.Error("a shrink reported over")
	}
	if b.Total() != 105 || b.Mine() != 105 {
		t.Errorf("total %d, mine %d; want 105", b.Total(), b.Mine())
	}
	holds := map[*testConn]bool{{"h1", &h1}: true, {"h2", &h2}: true, {"h3", &h3}: true}
	big, ok := Largest(maps.Keys(holds))
	if !ok || big.name != "h1" {
		t.Fatalf("Largest = %v, %v; want h1", big, ok)
	}
	if !b.Release(&h1) || b.Release(&h1) {
		t.Fatal("Release must succeed once")
	}
	if b.Set(&h1, 500) || h1.Held() != 0 || b.Total() != 45 {
		t.Errorf("a released hold changed: held %d, total %d", h1.Held(), b.Total())
	}
	if _, ok := Largest(maps.Keys(map[*testConn]bool{})); ok {
		t.Error("Largest of nothing found something")
	}

	// Shared cells: each process writes its own, every Set sums them.
	cells := make([]atomic.Int64, 3)
	p0, p1 := SharedBuffers(100, cells, 0), SharedBuffers(100, cells, 1)
	var a, c Hold
	p0.Set(&a, 70)
	if !p1.Set(&c, 40) {
		t.Error("110 across two processes: not over")
	}
	if p0.Mine() != 70 || p1.Mine() != 40 || p0.Total() != 110 {
		t.Errorf("mine %d and %d, total %d", p0.Mine(), p1.Mine(), p0.Total())
	}
}

// testConn is a Holder for the tests.
type testConn struct {
	name string
	h    *Hold
}

func (c *testConn) Hold() *Hold    { return c.h }
func (c *testConn) Remote() string { return c.name }

// TestShed: past the bound the largest holders are closed, counted and
// logged until the server is within it; the one that grew is reported,
// not closed by the model; the rest stay.
func TestShed(t *testing.T) {
	b := NewBuffers(100)
	conns := map[*testConn]bool{}
	var cs []*testConn
	for i, n := range []int{10, 40, 30, 45} {
		c := &testConn{name: fmt.Sprint("c", i), h: new(Hold)}
		conns[c] = true
		cs = append(cs, c)
		b.Set(c.h, n)
	}
	var closed []string
	var ctr Counters
	h := newRecorder()
	largest := func() (*testConn, bool) {
		c, ok := Largest(maps.Keys(conns))
		delete(conns, c)
		return c, ok
	}
	self := cs[3] // grew to 45 and took the server to 125
	if !Shed(b, self, largest, func(c *testConn) { closed = append(closed, c.name) }, &ctr, &RateLog{}, slog.New(h)) {
		t.Error("the connection that grew held the most, but Shed did not report it")
	}
	if b.Total() > 100 || ctr.OverBuffered.Load() != 1 || len(closed) != 0 || len(h.records()) != 1 {
		t.Errorf("total %d, over_buffered %d, closed by the model %v, log %d lines; want <= 100, 1, none, 1",
			b.Total(), ctr.OverBuffered.Load(), closed, len(h.records()))
	}
	b.Set(cs[0].h, 35) // 10+40+30 -> 35+40+30 = 105: c1 holds the most
	if Shed(b, cs[0], largest, func(c *testConn) { closed = append(closed, c.name) }, &ctr, &RateLog{}, slog.New(h)) {
		t.Error("reported self, but self held less than another")
	}
	if b.Total() != 65 || len(closed) != 1 || closed[0] != "c1" || ctr.OverBuffered.Load() != 2 {
		t.Errorf("after the second growth: total %d, closed %v, over_buffered %d; want 65, [c1], 2",
			b.Total(), closed, ctr.OverBuffered.Load())
	}
}
