package models

import (
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
	holds := map[string]*Hold{"h1": &h1, "h2": &h2, "h3": &h3}
	name, ok := Largest(maps.Keys(holds), func(k string) *Hold { return holds[k] })
	if !ok || name != "h1" {
		t.Fatalf("Largest = %q, %v; want h1", name, ok)
	}
	if !b.Release(&h1) || b.Release(&h1) {
		t.Fatal("Release must succeed once")
	}
	if b.Set(&h1, 500) || h1.Held() != 0 || b.Total() != 45 {
		t.Errorf("a released hold changed: held %d, total %d", h1.Held(), b.Total())
	}
	if _, ok := Largest(maps.Keys(map[string]bool{}), func(string) *Hold { return nil }); ok {
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
