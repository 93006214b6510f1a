package models

import (
	"slices"
	"testing"
	"time"
)

// TestBackoff: the zero value waits 5 ms after a first failure, doubles
// up to 1 s and stays there; Reset starts over; Min and Max are kept.
func TestBackoff(t *testing.T) {
	ms := time.Millisecond
	var b Backoff
	var got []time.Duration
	for range 10 {
		got = append(got, b.Next())
	}
	want := []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second, time.Second}
	if !slices.Equal(got, want) {
		t.Errorf("zero Backoff: %v, want %v", got, want)
	}
	b.Reset()
	if d := b.Next(); d != MinBackoff {
		t.Errorf("after Reset: %v, want %v", d, MinBackoff)
	}

	r := Backoff{Min: 100 * ms, Max: 300 * ms}
	got = got[:0]
	for range 4 {
		got = append(got, r.Next())
	}
	if want := []time.Duration{100 * ms, 200 * ms, 300 * ms, 300 * ms}; !slices.Equal(got, want) {
		t.Errorf("Backoff{100ms, 300ms}: %v, want %v", got, want)
	}
}

// TestSleep: Sleep waits its whole time, and returns false at once when
// stop is closed.
func TestSleep(t *testing.T) {
	start := time.Now()
	if !Sleep(20*time.Millisecond, nil) {
		t.Error("Sleep with no stop reported false")
	}
	if took := time.Since(start); took < 20*time.Millisecond {
		t.Errorf("Sleep(20ms) returned after %v", took)
	}
	stop := make(chan struct{})
	close(stop)
	start = time.Now()
	if Sleep(time.Hour, stop) {
		t.Error("Sleep with stop closed reported true")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Sleep with stop closed took %v", took)
	}
}
