package loadgen

import (
	"fmt"
	"io"
	"math/bits"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// liveHist is a coarse, lock-free latency histogram for the progress line
// only: log-linear buckets with 8 steps per power of two (12.5% resolution).
// Connections add to it with one atomic increment; the progress line reads
// it without resetting, so it shows the p99 so far. The exact figures of the
// report come from the per-connection HdrHistograms.
type liveHist struct {
	b [512]atomic.Uint64
}

func liveIndex(v int64) int {
	if v < 16 {
		return int(max(v, 0))
	}
	l := bits.Len64(uint64(v)) // >= 5
	m := int(uint64(v)>>(l-4)) - 8
	return 16 + (l-5)*8 + m
}

// liveUpper returns the upper bound of bucket i.
func liveUpper(i int) int64 {
	if i < 16 {
		return int64(i)
	}
	l := (i-16)/8 + 5
	m := int64((i-16)%8 + 8)
	return (m+1)<<(l-4) - 1
}

func (h *liveHist) record(v int64) { h.b[liveIndex(v)].Add(1) }

// quantile returns the q-quantile (0..1) of everything recorded so far,
// and the count.
func (h *liveHist) quantile(q float64) (int64, uint64) {
	var counts [512]uint64
	var total uint64
	for i := range h.b {
		counts[i] = h.b[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return 0, 0
	}
	rank := max(uint64(q*float64(total)+0.5), 1)
	var acc uint64
	for i, c := range counts {
		acc += c
		if acc >= rank && c > 0 {
			return liveUpper(i), total
		}
	}
	return liveUpper(len(counts) - 1), total
}

// progress prints the live status line.
type progress struct {
	r        *run
	lastDone int64
	lastAt   int64
	width    int
}

func (p *progress) print(w io.Writer) {
	r := p.r
	now := r.now()
	var done int64
	for _, wk := range r.workers {
		done += wk.done.Load()
	}
	p99 := func(h *liveHist) string {
		if ns, n := h.quantile(0.99); n > 0 {
			return fmtDur(float64(ns) / 1e3)
		}
		return "-"
	}
	var line string
	if now < r.measureStart {
		line = fmt.Sprintf("warming up (%v left)  p99 so far %s", time.Duration(r.measureStart-now).Round(time.Second), p99(r.warm))
	} else {
		// The rate over the last tick, or over the part of it after the
		// warmup; "-" while that part is too short to mean anything.
		from := max(p.lastAt, r.measureStart)
		rate := "-"
		if now-from >= int64(200*time.Millisecond) {
			rate = fmtCount(float64(done-p.lastDone) / (float64(now-from) / 1e9))
		}
		elapsed := time.Duration(now - r.measureStart).Round(time.Second)
		total := ""
		if r.cfg.Duration > 0 {
			total = "/" + r.cfg.Duration.String()
		}
		line = fmt.Sprintf("%v%s  %s req/s  p99 so far %s  %s replies", elapsed, total, rate, p99(r.live), fmtCount(float64(done)))
	}
	p.lastDone, p.lastAt = done, now
	n := utf8.RuneCountInString(line) // columns: "µs" is one rune, two bytes
	pad := max(p.width-n, 0)
	p.width = n
	fmt.Fprintf(w, "\r%s%*s", line, pad, "")
}

func (p *progress) clear(w io.Writer) {
	if p.width > 0 {
		fmt.Fprintf(w, "\r%*s\r", p.width, "")
	}
}
