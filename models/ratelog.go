package models

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultLogEvery is RateLog's window when its Every is zero.
const DefaultLogEvery = 10 * time.Second

// Attribute keys of the summary line RateLog writes at the end of a window.
const (
	LogMoreKey = "more_like_this" // how many occurrences the window left out
	LogInKey   = "in_last"        // the window's length
)

// RateLog keeps the log lines a client can cause (a line over max-line, a
// reset, a refused connection, a datagram it cannot be answered) from
// turning into a flood an attacker controls: 11,000 identical WARN lines
// in three seconds from one client loop were seen before it existed.
//
// Lines are grouped by their message text (the constant msg argument, so
// the groups are the call sites, never client data). The first line of a
// group is logged at once, with its attributes. Later ones within Every of
// it are only counted; when Every has passed, one summary line repeats the
// message with LogMoreKey=N and LogInKey=Every, and a new window starts.
// A group that stays quiet for a whole window starts afresh: its next line
// is logged in full. So one message costs at most one full line and one
// summary per Every, and Flush writes the pending summaries at once (a
// server calls it on Shutdown), so the counts are in the log before the
// server's last line. The summary comes from one timer per group with
// something left out; nothing runs per line but a map lookup under a
// mutex, and nothing at all for a level the logger does not show. Stats
// keep the exact numbers; the log only samples.
//
// The zero value is ready to use with Every = DefaultLogEvery; a nil
// *RateLog limits nothing (every line is logged), for a caller that
// limits only some of its sources. All methods are safe for concurrent
// use.
type RateLog struct {
	// Every is the window; 0 means DefaultLogEvery.
	Every time.Duration

	mu     sync.Mutex
	groups map[string]*logGroup
}

// logGroup is the state of one message.
type logGroup struct {
	start time.Time    // when the current window began
	left  int          // occurrences left out in it
	log   *slog.Logger // where the summary goes
	level slog.Level
	msg   string      // the summary's text
	timer *time.Timer // pending summary, nil when nothing is left out
}

func (r *RateLog) every() time.Duration {
	if r.Every > 0 {
		return r.Every
	}
	return DefaultLogEvery
}

// Warn logs msg at warning level on log, or counts it for the summary.
func (r *RateLog) Warn(log *slog.Logger, msg string, args ...any) {
	r.Log(log, slog.LevelWarn, msg, args...)
}

// Debug logs msg at debug level on log, or counts it for the summary.
func (r *RateLog) Debug(log *slog.Logger, msg string, args ...any) {
	r.Log(log, slog.LevelDebug, msg, args...)
}

// Log logs msg at level on log, or counts it for the summary (see RateLog).
func (r *RateLog) Log(log *slog.Logger, level slog.Level, msg string, args ...any) {
	r.LogAs(msg, log, level, msg, args...)
}

// LogAs is Log with the group named by key rather than by msg, for a
// message whose text varies (a library's formatted line, grouped by its
// format); the summary repeats the last msg of the group.
func (r *RateLog) LogAs(key string, log *slog.Logger, level slog.Level, msg string, args ...any) {
	if log == nil || !log.Enabled(context.Background(), level) {
		return
	}
	if r == nil {
		log.Log(context.Background(), level, msg, args...)
		return
	}
	every := r.every()
	now := time.Now()
	r.mu.Lock()
	if r.groups == nil {
		r.groups = map[string]*logGroup{}
	}
	g := r.groups[key]
	if g == nil {
		g = &logGroup{}
		r.groups[key] = g
	}
	if g.left == 0 && (g.start.IsZero() || now.Sub(g.start) >= every) {
		g.start = now
		r.mu.Unlock()
		log.Log(context.Background(), level, msg, args...)
		return
	}
	g.left++
	g.log, g.level, g.msg = log, level, msg
	if g.timer == nil {
		g.timer = time.AfterFunc(g.start.Add(every).Sub(now), func() { r.summarize(key, false) })
	}
	r.mu.Unlock()
}

// summarize writes the summary line of group key if something was left
// out, and starts a new window. stop is set by Flush, whose timer has not
// fired.
func (r *RateLog) summarize(key string, stop bool) {
	r.mu.Lock()
	g := r.groups[key]
	if g == nil || g.left == 0 {
		r.mu.Unlock()
		return
	}
	if stop && g.timer != nil {
		g.timer.Stop()
	}
	left, log, level, msg := g.left, g.log, g.level, g.msg
	g.left, g.timer, g.start = 0, nil, time.Now()
	r.mu.Unlock()
	log.Log(context.Background(), level, msg, LogMoreKey, left, LogInKey, r.every())
}

// Flush writes every pending summary now instead of at the end of its
// window.
func (r *RateLog) Flush() {
	if r == nil {
		return
	}
	r.mu.Lock()
	var keys []string
	for key, g := range r.groups {
		if g.left > 0 {
			keys = append(keys, key)
		}
	}
	r.mu.Unlock()
	for _, key := range keys {
		r.summarize(key, true)
	}
}
