package models

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// recorder is a slog.Handler that keeps every record.
type recorder struct {
	mu   sync.Mutex
	recs []slog.Record
	ch   chan struct{} // signalled on every record
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 1000)} }

func (h *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	h.ch <- struct{}{}
	return nil
}
func (h *recorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recorder) WithGroup(string) slog.Handler      { return h }

func (h *recorder) records() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]slog.Record(nil), h.recs...)
}

// more returns the LogMoreKey attribute of r, or -1.
func more(r slog.Record) int64 {
	n := int64(-1)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == LogMoreKey {
			n = a.Value.Int64()
			return false
		}
		return true
	})
	return n
}

// TestRateLogSummarizes: a flood of one message is one full line, then a
// summary at the end of the window that counts the rest exactly, without
// another occurrence to carry it; another message has its own window;
// disabled levels are neither logged nor counted; a quiet window later
// the next line is logged in full again.
func TestRateLogSummarizes(t *testing.T) {
	h := newRecorder()
	log := slog.New(h)
	r := &RateLog{Every: 200 * time.Millisecond}
	for i := range 1000 {
		r.Warn(log, "line too long", "conn", i)
	}
	r.Warn(log, "reset", "conn", 1)
	r.Debug(log, "line too long") // below the handler's level: not counted
	if got := len(h.records()); got != 2 {
		t.Fatalf("%d records right after the flood, want 2 (one per message)", got)
	}
	deadline := time.After(5 * time.Second)
	for len(h.records()) < 3 {
		select {
		case <-h.ch:
		case <-deadline:
			t.Fatalf("no summary line within 5s of a 200ms window: %v", h.records())
		}
	}
	recs := h.records()
	if len(recs) != 3 || recs[2].Message != "line too long" || more(recs[2]) != 999 {
		t.Fatalf("records %v, want the summary of 999 more 'line too long'", recs)
	}
	if more(recs[0]) != -1 {
		t.Errorf("the first line carries a count: %v", recs[0])
	}
	// A window with nothing left out ends quietly; after it the next line
	// is logged in full.
	time.Sleep(2 * r.Every)
	r.Warn(log, "line too long", "conn", 5000)
	recs = h.records()
	if len(recs) != 4 || more(recs[3]) != -1 {
		t.Fatalf("after a quiet window: %v, want one more full line", recs)
	}
}

// TestRateLogFlush: Flush writes the pending summaries at once.
func TestRateLogFlush(t *testing.T) {
	h := newRecorder()
	log := slog.New(h)
	r := &RateLog{} // the default window: 10s
	for range 50 {
		r.Warn(log, "a")
	}
	for range 7 {
		r.Warn(log, "b")
	}
	r.Flush()
	counts := map[string]int64{}
	for _, rec := range h.records() {
		if n := more(rec); n >= 0 {
			counts[rec.Message] += n
		}
	}
	if counts["a"] != 49 || counts["b"] != 6 {
		t.Fatalf("summaries after Flush: %v, want a=49 b=6", counts)
	}
	r.Flush() // nothing pending: nothing written
	if n := len(h.records()); n != 4 {
		t.Fatalf("%d records, want 4 (two full lines, two summaries)", n)
	}
}

// TestNilRateLog: a nil *RateLog logs every line, at its level, and
// Flush does nothing.
func TestNilRateLog(t *testing.T) {
	h := newRecorder()
	log := slog.New(h)
	var r *RateLog
	for range 3 {
		r.Warn(log, "same message")
	}
	r.Debug(log, "below the recorder's level")
	r.Flush()
	recs := h.records()
	if len(recs) != 3 {
		t.Fatalf("%d records, want the 3 warnings", len(recs))
	}
	for _, rec := range recs {
		if rec.Message != "same message" || rec.Level != slog.LevelWarn || more(rec) != -1 {
			t.Errorf("record %q at %v (more=%d), want the warning itself", rec.Message, rec.Level, more(rec))
		}
	}
}
