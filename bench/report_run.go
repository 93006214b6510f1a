package bench

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strconv"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/sockbench/sockbench/bench/internal/svg"
	"github.com/sockbench/sockbench/internal/human"
	"github.com/sockbench/sockbench/loadgen"
)

// RunReport draws one `sockbench load` run as a self-contained page
// (`load --report run.html`): the run in figures, throughput and p50, p99
// and max per interval over time, from the run's interval histograms (the
// HdrHistogram interval log load writes with --hdr-out, kept in
// Report.Intervals), so warm-up, GC pauses and stalls show; and the
// latency spectrum, the whole percentile distribution (HdrHistogram's
// percentile plot, x in nines).
type RunReport struct {
	Title string
	Rep   *loadgen.Report
	// Checks are lines shown under the figures (load --slo's results).
	Checks []string
}

// runData is the "run" section.
type runData struct {
	Target, Load, Requests, Errors, Failure string
	Warnings, Checks                        []string
	Percentiles                             []runPct
	Intervals                               string
}

type runPct struct{ Name, Latency, Service string }

// WriteHTML writes the page.
func (rr *RunReport) WriteHTML(w io.Writer) error {
	rep := rr.Rep
	title := rr.Title
	if title == "" {
		title = "sockbench load: " + rep.Target
	}
	d := runData{Target: fmt.Sprintf("%s (%s)", rep.Target, rep.Mode), Failure: rep.Failure, Warnings: rep.Warnings, Checks: rr.Checks,
		Requests: fmt.Sprintf("%s ok: %s req/s over %.2f s", human.Count(float64(rep.Requests)), human.Number(rep.RPS), rep.DurationS)}
	d.Load = fmt.Sprintf("%s loop, %d conns x %d in flight, %d-byte requests", rep.Loop, rep.Conns, rep.Pipeline, rep.Size)
	if rep.Rate > 0 {
		d.Load = fmt.Sprintf("open loop at %s req/s, %d conns (at most %d in flight each), %d-byte requests", human.Rate(rep.Rate), rep.Conns, rep.Pipeline, rep.Size)
	}
	d.Errors = "none"
	if rep.Errors > 0 {
		d.Errors = fmt.Sprintf("%s (%s)", human.Count(float64(rep.Errors)), kinds(rep.ErrorsByKind))
	}
	pct := func(s *loadgen.Summary, f func(s *loadgen.Summary) float64) string {
		if s == nil || s.Count == 0 {
			return ""
		}
		return human.Micros(f(s))
	}
	for _, p := range []struct {
		name string
		f    func(s *loadgen.Summary) float64
	}{
		{"p50", func(s *loadgen.Summary) float64 { return s.P50 }}, {"p90", func(s *loadgen.Summary) float64 { return s.P90 }},
		{"p99", func(s *loadgen.Summary) float64 { return s.P99 }}, {"p99.9", func(s *loadgen.Summary) float64 { return s.P999 }},
		{"p99.99", func(s *loadgen.Summary) float64 { return s.P9999 }}, {"max", func(s *loadgen.Summary) float64 { return s.Max }},
	} {
		d.Percentiles = append(d.Percentiles, runPct{p.name, pct(&rep.Latency, p.f), pct(rep.Service, p.f)})
	}
	var charts []*svg.Chart
	if n := len(rep.Intervals); n > 0 {
		t0 := rep.Intervals[0].StartTimeMs()
		xs := make([]float64, n)
		rps, p50, p99, mx := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
		// Replies that came in after the window are in an interval of
		// their own: their latency counts, but not as throughput.
		winEnd := t0 + int64(rep.DurationS*1e3)
		for i, h := range rep.Intervals {
			secs := float64(h.EndTimeMs()-h.StartTimeMs()) / 1e3
			xs[i] = float64(h.EndTimeMs()-t0) / 1e3
			rps[i] = math.NaN()
			if secs > 0 && h.StartTimeMs() < winEnd {
				rps[i] = float64(h.TotalCount()) / secs
			}
			p50[i], p99[i], mx[i] = us(h.ValueAtPercentile(50)), us(h.ValueAtPercentile(99)), us(h.Max())
		}
		d.Intervals = fmt.Sprintf("%d intervals of %s", n, time.Duration(rep.Intervals[0].EndTimeMs()-rep.Intervals[0].StartTimeMs())*time.Millisecond)
		secs := svg.Axis{Name: "seconds into the measurement (end of each interval)", Tick: func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }}
		charts = append(charts,
			svg.XYChart("Throughput per interval", secs, svg.Axis{Name: "req/s", Tick: human.Number},
				[]svg.Series{{Label: "req/s", Color: "#1f77b4"}}, [][]float64{xs}, [][]float64{rps}),
			svg.XYChart("Latency per interval", secs, svg.Axis{Name: "latency", Scale: svg.ScaleLog, Tick: human.Micros},
				[]svg.Series{{Label: "p50", Color: "#2ca02c"}, {Label: "p99", Color: "#ff7f0e"}, {Label: "max", Color: "#d62728"}},
				[][]float64{xs, xs, xs}, [][]float64{p50, p99, mx}))
	}
	ser := []svg.Series{{Label: "latency", Color: "#1f77b4"}}
	px, py := spectrum(rep.LatencyHist)
	xs, ys := [][]float64{px}, [][]float64{py}
	if rep.ServiceHist != nil {
		sx, sy := spectrum(rep.ServiceHist)
		ser = append(ser, svg.Series{Label: "service time", Color: "#9467bd"})
		xs, ys = append(xs, sx), append(ys, sy)
	}
	charts = append(charts, svg.XYChart("Latency spectrum (percentile distribution)",
		svg.Axis{Name: "percentile", Scale: svg.ScaleNines, Tick: func(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) + "%" }},
		svg.Axis{Name: "latency", Scale: svg.ScaleLog, Tick: human.Micros}, ser, xs, ys))
	html, err := render(charts...)
	if err != nil {
		return err
	}
	p := page{Title: title}
	for _, s := range []section{{"run", d}, {"charts", chartsData{Heading: "The run", Charts: html,
		Note: "Throughput and latency per interval of the run's HdrHistogram interval log (" + orNone(d.Intervals) + "); " +
			"the spectrum is the whole distribution: each percentile's latency, x spread by nines (90%, 99%, 99.9%...). " +
			"Open loop: latency from when each request was due, service time from when it was sent."}}} {
		var b bytes.Buffer
		if err := reportTmpl.ExecuteTemplate(&b, s.Template, s.Data); err != nil {
			return fmt.Errorf("bench: run report section %s: %w", s.Template, err)
		}
		p.Sections = append(p.Sections, template.HTML(b.String())) // html/template escaped it
	}
	var b bytes.Buffer
	if err := reportTmpl.ExecuteTemplate(&b, "page", p); err != nil {
		return fmt.Errorf("bench: run report: %w", err)
	}
	_, err = w.Write(b.Bytes())
	return err
}

func orNone(s string) string {
	if s == "" {
		return "none recorded"
	}
	return s
}

func us(ns int64) float64 { return float64(ns) / 1e3 }

// spectrum samples a histogram's percentile distribution: four points a
// nine, as far as its count resolves (a run of 10^5 requests has five
// nines to show), and the maximum.
func spectrum(h *hdrhistogram.Histogram) (pcts, vals []float64) {
	if h == nil || h.TotalCount() == 0 {
		return nil, nil
	}
	maxNines := math.Ceil(math.Log10(float64(h.TotalCount())))
	for k := 0.0; k/4 < maxNines; k++ {
		p := 100 * (1 - math.Pow(10, -k/4))
		pcts = append(pcts, p)
		vals = append(vals, us(h.ValueAtPercentile(p)))
	}
	pcts = append(pcts, 100*(1-math.Pow(10, -maxNines)))
	vals = append(vals, us(h.Max()))
	return pcts, vals
}

func kinds(m map[string]int64) string {
	var b bytes.Buffer
	first := true
	for _, k := range sortedKeys(m) {
		if !first {
			b.WriteString(", ")
		}
		first = false
		fmt.Fprintf(&b, "%s %s", k, human.Count(float64(m[k])))
	}
	return b.String()
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
