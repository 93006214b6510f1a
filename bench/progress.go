package bench

import (
	"fmt"
	"io"
	"math"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/sockbench/sockbench/internal/human"
)

// progress shows how far a run is: a bar with ETA on a terminal, one plain
// line per run otherwise (CI logs, pipes).
type progress struct {
	w     io.Writer
	bar   *progressbar.ProgressBar
	total int
	i     int
	began time.Time
	est   time.Duration
	cur   string
}

func newProgress(w io.Writer, tty bool, total int, est time.Duration) *progress {
	p := &progress{w: w, total: total, began: time.Now(), est: est}
	fmt.Fprintf(w, "sockbench: %d runs, about %s\n", total, est.Round(time.Second))
	if tty {
		p.bar = progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionFullWidth(),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetRenderBlankState(true),
		)
	}
	return p
}

func (p *progress) start(i int, c Cell, run, count int) {
	p.i = i
	p.cur = fmt.Sprintf("%s %s %s c=%d run %d/%d", c.Model, c.Net, c.Mode, c.Conns, run, count)
	if p.bar != nil {
		p.bar.Describe(p.cur)
	}
}

func (p *progress) eta() time.Duration {
	el := time.Since(p.began)
	if p.i == 0 {
		return p.est
	}
	return time.Duration(float64(el) / float64(p.i) * float64(p.total-p.i)).Round(time.Second)
}

func (p *progress) done(r *Row) {
	if p.bar != nil {
		p.bar.Add(1)
		return
	}
	var res string
	switch {
	case r.Status == StatusSkipped:
		res = "skipped: " + r.Note
	case r.Status == StatusFailed:
		res = "FAILED: " + r.Note
	default:
		res = fmt.Sprintf("%s req/s, p50 %s p99 %s", human.Number(r.RPS), human.Micros(r.P50US), human.Micros(r.P99US))
		if !math.IsNaN(r.CPUUSPerReq) {
			res += fmt.Sprintf(", server %.1f µs CPU/req", r.CPUUSPerReq)
		}
		if r.ClientSaturated {
			res += " [load generator saturated]"
		}
		if r.Status == StatusUncleanExit {
			res += " [UNCLEAN SERVER EXIT: " + r.Note + "]"
		}
	}
	fmt.Fprintf(p.w, "[%d/%d] %s: %s (eta %s)\n", p.i, p.total, p.cur, res, p.eta())
}

func (p *progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
		fmt.Fprintln(p.w)
	}
}
