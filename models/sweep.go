package models

import "time"

// A List is an intrusive doubly linked list: what a model that owns its
// connections on one goroutine (an event loop: eventloop, bare) keeps
// them on, in order of a deadline (the last read, for the idle timeout;
// when a partial line began, for the line timeout; when a lingering close
// gives up). Touching a connection moves it to the back, so each list
// stays in deadline order and a periodic sweep looks only at its expired
// head: no timer per connection, let alone per byte.
//
// An element embeds one Link per list it can be on, with Elem pointing
// back at it, so putting it on a list, moving it and taking it off
// allocate nothing. A List and its Links are used by one goroutine.
type List[T any] struct {
	head, tail *Link[T]
}

// A Link is an element's place on a List. Elem is the element; the model
// sets it once, when it makes the element.
type Link[T any] struct {
	prev, next *Link[T]
	list       *List[T]
	Elem       T
}

// Front is the first link of l (the earliest deadline), or nil.
func (l *List[T]) Front() *Link[T] { return l.head }

// Empty reports whether l holds nothing.
func (l *List[T]) Empty() bool { return l.head == nil }

// Next is the link after x on its list, or nil. Read it before x is
// moved or removed when walking a list that way.
func (x *Link[T]) Next() *Link[T] { return x.next }

// Listed reports whether x is on a list.
func (x *Link[T]) Listed() bool { return x.list != nil }

// On reports whether x is on l.
func (x *Link[T]) On(l *List[T]) bool { return x.list == l }

// PushBack puts x at the back of l, taking it off the list it was on
// first (l included).
func (l *List[T]) PushBack(x *Link[T]) {
	x.Remove()
	x.list, x.prev = l, l.tail
	if l.tail != nil {
		l.tail.next = x
	} else {
		l.head = x
	}
	l.tail = x
}

// MoveToBack moves x to the back of l when x is on l; otherwise it does
// nothing.
func (l *List[T]) MoveToBack(x *Link[T]) {
	if x.list != l || l.tail == x {
		return
	}
	x.Remove()
	l.PushBack(x)
}

// Remove takes x off the list it is on, if any.
func (x *Link[T]) Remove() {
	l := x.list
	if l == nil {
		return
	}
	if x.prev != nil {
		x.prev.next = x.next
	} else {
		l.head = x.next
	}
	if x.next != nil {
		x.next.prev = x.prev
	} else {
		l.tail = x.prev
	}
	x.prev, x.next, x.list = nil, nil, nil
}

// SweepInterval is how often a model that keeps its connections on Lists
// sweeps them: every longest, or every quarter of the shortest of
// timeouts when that is sooner (a millisecond at least), so a deadline is
// acted on within a quarter of its length. A timeout of 0 is none.
func SweepInterval(longest time.Duration, timeouts ...time.Duration) time.Duration {
	tick := longest
	for _, d := range timeouts {
		if q := d / 4; q > 0 && q < tick {
			tick = max(q, time.Millisecond)
		}
	}
	return tick
}
