package models

import (
	"log/slog"
	"sync"
	"time"
)

// RateLog logs a recurring problem (out of fds, resets, failed spawns) at
// most once every Every, and says how many occurrences it left out, so a
// flood of bad input cannot turn into a flood of log lines. The zero value
// logs at most once a second.
type RateLog struct {
	Every time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// Warn logs msg at warning level unless one was logged less than Every ago.
func (r *RateLog) Warn(log *slog.Logger, msg string, args ...any) {
	every := r.Every
	if every <= 0 {
		every = time.Second
	}
	r.mu.Lock()
	now := time.Now()
	if now.Sub(r.last) < every {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Warn(msg, args...)
}
