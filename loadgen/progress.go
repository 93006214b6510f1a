package loadgen

import (
	"fmt"
	"io"
	"math/bits"
	"sync/atomic"
	"time"
)

// liveHist is a coarse, lock-free latency histogram for the progress line
// only: log-linear buckets with 8 steps per power of two (12.5% resolution).
// Connections add to it with one atomic increment; the progress line swaps
// the buckets to zero each second, so it shows the last second's p99. The
// exact figures of the report come from the per-connection HdrHistograms.
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

// drainQuantile empties the histogram and returns its q-quantile (0..1)
// and count.
func (h *liveHist) drainQuantile(q float64) (int64, uint64) {
	var counts [512]uint64
	var total uint64
	for i := range h.b {
		counts[i] = h.b[i].Swap(0)
		total += counts[i]
	}
	if total == 0 {
		return 0, 0
	}
	rank := uint64(q*float64(total) + 0.5)
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
	p99ns, n := r.live.drainQuantile(0.99)
	p99 := "-"
	if n > 0 {
		p99 = fmtDur(float64(p99ns) / 1e3)
	}
	var line string
	if now < r.measureStart {
		line = fmt.Sprintf("warming up (%v left)  p99 %s", time.Duration(r.measureStart-now).Round(time.Second), p99)
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
		line = fmt.Sprintf("%v%s  %s req/s  p99 %s  %s replies", elapsed, total, rate, p99, fmtCount(float64(done)))
	}
	p.lastDone, p.lastAt = done, now
	pad := max(p.width-len(line), 0)
	p.width = len(line)
	fmt.Fprintf(w, "\r%s%*s", line, pad, "")
}

func (p *progress) clear(w io.Writer) {
	if p.width > 0 {
		fmt.Fprintf(w, "\r%*s\r", p.width, "")
	}
}
