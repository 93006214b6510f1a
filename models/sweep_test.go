package models

import (
	"slices"
	"testing"
	"time"
)

type listed struct {
	name       string
	link, line Link[*listed]
}

func newListed(name string) *listed {
	x := &listed{name: name}
	x.link.Elem, x.line.Elem = x, x
	return x
}

func names(l *List[*listed]) []string {
	var out []string
	for x := l.Front(); x != nil; x = x.Next() {
		out = append(out, x.Elem.name)
	}
	// Walk back too: the prev links must agree.
	n := 0
	for x := l.tail; x != nil; x = x.prev {
		n++
	}
	if n != len(out) {
		return append(out, "BROKEN")
	}
	return out
}

// TestList: PushBack, MoveToBack and Remove keep both directions of the
// list right, an element can be on two lists through two links, and
// PushBack onto another list takes it off the first.
func TestList(t *testing.T) {
	var open, closing, lines List[*listed]
	a, b, c := newListed("a"), newListed("b"), newListed("c")
	for _, x := range []*listed{a, b, c} {
		open.PushBack(&x.link)
	}
	lines.PushBack(&b.line)
	check := func(l *List[*listed], want ...string) {
		t.Helper()
		if got := names(l); !slices.Equal(got, want) {
			t.Errorf("list %v, want %v", got, want)
		}
	}
	check(&open, "a", "b", "c")
	open.MoveToBack(&a.link)
	check(&open, "b", "c", "a")
	open.MoveToBack(&a.link) // already at the back
	check(&open, "b", "c", "a")
	closing.MoveToBack(&b.link) // not on closing: nothing
	check(&open, "b", "c", "a")
	closing.PushBack(&c.link)
	check(&open, "b", "a")
	check(&closing, "c")
	if !c.link.On(&closing) || c.link.On(&open) {
		t.Error("On does not say which list c is on")
	}
	check(&lines, "b")
	b.link.Remove()
	check(&open, "a")
	check(&lines, "b")
	b.line.Remove()
	b.line.Remove() // twice: nothing
	if b.line.Listed() || !lines.Empty() {
		t.Error("b still listed after Remove")
	}
	a.link.Remove()
	c.link.Remove()
	if !open.Empty() || !closing.Empty() {
		t.Errorf("lists not empty: %v %v", names(&open), names(&closing))
	}
}

func TestSweepInterval(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		timeouts []time.Duration
		want     time.Duration
	}{
		{nil, 50 * ms},
		{[]time.Duration{0, 0}, 50 * ms},
		{[]time.Duration{time.Second}, 50 * ms},
		{[]time.Duration{100 * ms, 0}, 25 * ms},
		{[]time.Duration{time.Second, 40 * ms}, 10 * ms},
		{[]time.Duration{2 * ms}, ms},
	} {
		if got := SweepInterval(50*ms, tc.timeouts...); got != tc.want {
			t.Errorf("SweepInterval(50ms, %v) = %v, want %v", tc.timeouts, got, tc.want)
		}
	}
}
