package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"sort"
	"strings"
	"time"
)

// ResultSet is one results file drawn in a report.
type ResultSet struct {
	Name string
	Rows []Row
}

// Report draws one or more result sets as a self-contained HTML page:
// inline SVG charts and tables, no scripts, no fonts or styles from
// anywhere else, so it opens offline and can be attached to a CI run.
type Report struct {
	Title string
	Sets  []ResultSet
}

// modelColors gives each model a colour; sets beyond the first are drawn
// lighter (bars) and dashed (lines).
var modelColors = map[string]string{"threaded": "#1f77b4", "eventloop": "#d62728", "prefork": "#2ca02c"}

var extraColors = []string{"#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

func colorFor(model string, seen map[string]string) string {
	if c, ok := modelColors[model]; ok {
		return c
	}
	if c, ok := seen[model]; ok {
		return c
	}
	c := extraColors[len(seen)%len(extraColors)]
	seen[model] = c
	return c
}

// series is one model of one result set.
type series struct {
	label, color string
	set          int
	model        string
}

// workload is a cell's key without model and net: what a chart group shows.
type workload struct {
	Mode     string
	Conns    int
	Pipeline int
	Size     int
	Rate     float64
	WorkUS   int64
	BlockUS  int64
}

func workloadOf(k Key) workload {
	return workload{k.Mode, k.Conns, k.Pipeline, k.Size, k.Rate, k.WorkUS, k.BlockUS}
}

func (w workload) label() string {
	s := fmt.Sprintf("%s c=%d", w.Mode, w.Conns)
	if w.Pipeline > 1 {
		s += fmt.Sprintf(" p=%d", w.Pipeline)
	}
	if w.Size != DefaultSize {
		s += " " + sizeLabel(w.Size)
	}
	if w.Rate > 0 {
		s += " " + human(w.Rate) + "/s"
	}
	if w.WorkUS > 0 {
		s += fmt.Sprintf(" work=%dµs", w.WorkUS)
	}
	if w.BlockUS > 0 {
		s += fmt.Sprintf(" block=%dµs", w.BlockUS)
	}
	return s
}

func sizeLabel(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	default:
		return fmt.Sprintf("%dB", n)
	}
}

func (w workload) less(o workload) bool {
	a, b := Key{Mode: w.Mode, Conns: w.Conns, Pipeline: w.Pipeline, Size: w.Size, Rate: w.Rate, WorkUS: w.WorkUS, BlockUS: w.BlockUS},
		Key{Mode: o.Mode, Conns: o.Conns, Pipeline: o.Pipeline, Size: o.Size, Rate: o.Rate, WorkUS: o.WorkUS, BlockUS: o.BlockUS}
	return a.Less(b)
}

// stat is a median with the spread of the runs (min and max).
type stat struct{ med, lo, hi float64 }

// WriteHTML writes the report.
func (rep *Report) WriteHTML(w io.Writer) error {
	var b strings.Builder
	title := rep.Title
	if title == "" {
		title = "sockbench report"
	}
	fmt.Fprintf(&b, `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>%s</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}h3{font-size:15px;margin:8px 0}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.grid{display:flex;flex-wrap:wrap;gap:16px}
.warn{background:#fff3cd;border:1px solid #e0c060;padding:8px;margin:8px 0}.note{color:#555;font-size:12px}
svg text{font-family:system-ui,sans-serif}
</style></head><body>
<h1>%s</h1>
`, esc(title), esc(title))
	seenColors := map[string]string{}
	// Sets, machines and how the runs were made.
	b.WriteString("<table><tr><th class=l>set</th><th class=l>host</th><th class=l>cpu</th><th>cores</th><th class=l>os/arch</th><th class=l>go</th><th class=l>commit</th><th class=l>pinning (server | client)</th><th class=l>first run (UTC)</th><th>runs</th><th>skipped</th><th>failed</th></tr>\n")
	for _, s := range rep.Sets {
		var first time.Time
		var e Env
		var pin string
		ok, skipped, failed := 0, 0, 0
		for _, r := range s.Rows {
			if first.IsZero() || (!r.Time.IsZero() && r.Time.Before(first)) {
				first = r.Time
			}
			if e.Host == "" {
				e = r.Env
				pin = r.ServerCPUs + " | " + r.ClientCPUs
				if r.ServerCPUs == "" {
					pin = "none"
				}
			}
			switch {
			case r.Status == StatusSkipped:
				skipped++
			case r.OK():
				ok++
			default:
				failed++
			}
		}
		fmt.Fprintf(&b, "<tr><td class=l>%s</td><td class=l>%s</td><td class=l>%s</td><td>%d</td><td class=l>%s/%s</td><td class=l>%s</td><td class=l>%s</td><td class=l>%s</td><td class=l>%s</td><td>%d</td><td>%d</td><td>%d</td></tr>\n",
			esc(s.Name), esc(e.Host), esc(e.CPUModel), e.Cores, esc(e.OS), esc(e.Arch), esc(e.GoVersion), esc(e.Commit), esc(pin),
			first.UTC().Format("2006-01-02 15:04:05"), ok, skipped, failed)
	}
	b.WriteString("</table>\n")
	b.WriteString(`<p class=note>Bars and points are medians over repeated runs; whiskers span the fastest and slowest run. ` +
		`Every number comes from a measured run in the CSV named above; cells with no clean run are absent from the charts and listed below.</p>`)

	// Collect medians per set and key.
	type keyed map[Key]CellStats
	per := make([]keyed, len(rep.Sets))
	nets := map[string]bool{}
	models := []string{}
	seenModel := map[string]bool{}
	works := map[string]map[workload]bool{}
	var warnings []string
	for i, s := range rep.Sets {
		per[i] = keyed{}
		for _, cs := range Summarise(s.Rows) {
			if cs.Skipped != "" && cs.Runs == 0 {
				warnings = append(warnings, fmt.Sprintf("%s: %s skipped: %s", s.Name, cs.Key, cs.Skipped))
				continue
			}
			if cs.Runs == 0 {
				warnings = append(warnings, fmt.Sprintf("%s: %s: no clean run", s.Name, cs.Key))
				continue
			}
			if cs.ClientRuns > 0 || cs.Saturated > 0 {
				warnings = append(warnings, fmt.Sprintf("%s: %s: client-bound in %d of %d runs (the load generator was saturated in %d, or came within 10%% of its calibrated ceiling); throughput is the generator's, a lower bound of the server's", s.Name, cs.Key, max(cs.ClientRuns, cs.Saturated), cs.Runs, cs.Saturated))
			}
			per[i][cs.Key] = cs
			nets[cs.Key.Net] = true
			if !seenModel[cs.Key.Model] {
				seenModel[cs.Key.Model] = true
				models = append(models, cs.Key.Model)
			}
			if works[cs.Key.Net] == nil {
				works[cs.Key.Net] = map[workload]bool{}
			}
			works[cs.Key.Net][workloadOf(cs.Key)] = true
		}
	}
	order := map[string]int{"threaded": 0, "eventloop": 1, "prefork": 2}
	sort.SliceStable(models, func(i, j int) bool {
		oi, iok := order[models[i]]
		oj, jok := order[models[j]]
		if iok && jok {
			return oi < oj
		}
		if iok != jok {
			return iok
		}
		return models[i] < models[j]
	})
	var netList []string
	for _, n := range []string{"tcp", "udp", "unix", "unixgram"} {
		if nets[n] {
			netList = append(netList, n)
		}
	}
	for n := range nets {
		if n != "tcp" && n != "udp" && n != "unix" && n != "unixgram" {
			netList = append(netList, n)
		}
	}
	var ser []series
	for si, s := range rep.Sets {
		for _, m := range models {
			label := m
			if len(rep.Sets) > 1 {
				label = m + " · " + s.Name
			}
			ser = append(ser, series{label: label, color: colorFor(m, seenColors), set: si, model: m})
		}
	}
	if len(warnings) > 0 {
		// A long list (every saturated cell of a 2-core run) would push
		// the charts off the first screen: past a few, it folds.
		const shown = 5
		b.WriteString("<div class=warn><b>Read with care:</b><ul>")
		for i, w := range warnings {
			if i == shown {
				fmt.Fprintf(&b, "</ul><details><summary>%d more</summary><ul>", len(warnings)-shown)
			}
			fmt.Fprintf(&b, "<li>%s</li>", esc(w))
		}
		if len(warnings) > shown {
			b.WriteString("</ul></details></div>\n")
		} else {
			b.WriteString("</ul></div>\n")
		}
	}
	if len(netList) == 0 {
		b.WriteString("<p><b>No clean runs to draw.</b></p></body></html>\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	sortedWorks := func(n string) []workload {
		var ws []workload
		for wl := range works[n] {
			ws = append(ws, wl)
		}
		sort.Slice(ws, func(i, j int) bool { return ws[i].less(ws[j]) })
		return ws
	}
	barSection := func(heading, note, unit string, val func(cs CellStats) stat) {
		fmt.Fprintf(&b, "<h2>%s</h2><p class=note>%s</p><div class=grid>\n", esc(heading), esc(note))
		for _, n := range netList {
			ws := sortedWorks(n)
			groups := make([]string, len(ws))
			vals := make([][]stat, len(ws))
			for gi, wl := range ws {
				groups[gi] = wl.label()
				vals[gi] = make([]stat, len(ser))
				for si, s := range ser {
					k := Key{s.model, n, wl.Mode, wl.Conns, wl.Pipeline, wl.Size, wl.Rate, wl.WorkUS, wl.BlockUS}
					if cs, ok := per[s.set][k]; ok {
						vals[gi][si] = val(cs)
					} else {
						vals[gi][si] = stat{math.NaN(), math.NaN(), math.NaN()}
					}
				}
			}
			b.WriteString(barChart(heading+" — "+n, unit, groups, ser, vals))
		}
		b.WriteString("</div>\n")
	}
	barSection("Throughput", "Requests per second answered and validated, per model and transport (higher is better).", "req/s",
		func(cs CellStats) stat { return stat{cs.RPS, cs.RPSMin, cs.RPSMax} })
	// Latency percentile curves, one small chart per transport and workload.
	b.WriteString("<h2>Latency percentiles</h2><p class=note>Median over runs of each percentile, log scale (lower is better). Closed loop: from send; open loop: from when the request was due.</p><div class=grid>\n")
	pcts := []string{"p50", "p90", "p99", "p999", "p9999", "max"}
	pctLabels := []string{"50", "90", "99", "99.9", "99.99", "max"}
	for _, n := range netList {
		for _, wl := range sortedWorks(n) {
			lines := make([][]float64, len(ser))
			for si, s := range ser {
				k := Key{s.model, n, wl.Mode, wl.Conns, wl.Pipeline, wl.Size, wl.Rate, wl.WorkUS, wl.BlockUS}
				cs, ok := per[s.set][k]
				lines[si] = make([]float64, len(pcts))
				for pi, p := range pcts {
					lines[si][pi] = math.NaN()
					if ok {
						lines[si][pi] = cs.percentile[p]
					}
				}
			}
			b.WriteString(lineChart(n+" "+wl.label(), "µs", pctLabels, ser, lines))
		}
	}
	b.WriteString("</div>\n")
	barSection("Server CPU per request", "Server CPU time (user+system, every process of the server) during the measured window divided by the requests answered, in µs (lower is better).", "µs/req",
		func(cs CellStats) stat { return stat{cs.CPUPerReq, math.NaN(), math.NaN()} })
	barSection("Server peak memory", "Peak resident memory of the server (VmHWM summed over all its processes: prefork counts every worker), in MiB.", "MiB",
		func(cs CellStats) stat { return stat{cs.RSSKB / 1024, math.NaN(), math.NaN()} })
	// Memory per connection: the slope between consecutive connection
	// counts of the same workload, so a process's fixed size does not
	// masquerade as per-connection cost.
	fmt.Fprintf(&b, "<h2>Server memory per connection</h2><p class=note>%s</p><div class=grid>\n", esc(
		"Extra peak RSS per extra connection, in KiB: (RSS at the higher count - RSS at the lower) / (difference in connections), "+
			"between consecutive connection counts of the same workload. Drawn only where a workload ran at two or more counts; "+
			"a slope below zero (RSS noise larger than the cost) is left out."))
	drawn := 0
	for _, n := range netList {
		type step struct {
			w      workload // with Conns = the higher count
			lo, hi int
		}
		var steps []step
		seenStep := map[step]bool{}
		byRest := map[workload][]int{}
		for wl := range works[n] {
			rest := wl
			rest.Conns = 0
			byRest[rest] = append(byRest[rest], wl.Conns)
		}
		for rest, cs := range byRest {
			sort.Ints(cs)
			for i := 1; i < len(cs); i++ {
				w := rest
				w.Conns = cs[i]
				st := step{w, cs[i-1], cs[i]}
				if !seenStep[st] {
					seenStep[st] = true
					steps = append(steps, st)
				}
			}
		}
		if len(steps) == 0 {
			continue
		}
		sort.Slice(steps, func(i, j int) bool { return steps[i].w.less(steps[j].w) })
		groups := make([]string, len(steps))
		vals := make([][]stat, len(steps))
		for gi, st := range steps {
			lbl := st.w
			lbl.Conns = st.hi
			groups[gi] = strings.Replace(lbl.label(), fmt.Sprintf("c=%d", st.hi), fmt.Sprintf("c=%d→%d", st.lo, st.hi), 1)
			vals[gi] = make([]stat, len(ser))
			for si, s := range ser {
				k := Key{s.model, n, st.w.Mode, st.hi, st.w.Pipeline, st.w.Size, st.w.Rate, st.w.WorkUS, st.w.BlockUS}
				kl := k
				kl.Conns = st.lo
				hi, ok1 := per[s.set][k]
				lo, ok2 := per[s.set][kl]
				vals[gi][si] = stat{math.NaN(), math.NaN(), math.NaN()}
				// A slope below zero means the runs' own spread hides
				// the per-connection cost: no bar, rather than a 0 that
				// reads as measured.
				if d := (hi.RSSKB - lo.RSSKB) / float64(st.hi-st.lo); ok1 && ok2 && d >= 0 {
					vals[gi][si].med = d
				}
			}
		}
		b.WriteString(barChart("Memory per connection — "+n, "KiB/conn", groups, ser, vals))
		drawn++
	}
	if drawn == 0 {
		b.WriteString("<p>No workload ran at two connection counts.</p>")
	}
	b.WriteString("</div>\n")
	// Table of every cell.
	b.WriteString("<h2>All cells</h2><table><tr><th class=l>set</th><th class=l>cell</th><th>runs</th><th>req/s</th><th>min</th><th>max</th><th>p50 µs</th><th>p99 µs</th><th>p99.9 µs</th><th>CPU µs/req</th><th>RSS KiB</th><th>errors</th><th>lost</th><th>saturated</th></tr>\n")
	for _, s := range rep.Sets {
		for _, cs := range Summarise(s.Rows) {
			if cs.Runs == 0 {
				continue
			}
			fmt.Fprintf(&b, "<tr><td class=l>%s</td><td class=l>%s</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>%d</td><td>%d</td></tr>\n",
				esc(s.Name), esc(cs.Key.String()), cs.Runs, human(cs.RPS), human(cs.RPSMin), human(cs.RPSMax), human(cs.P50), human(cs.P99),
				human(cs.P999), human(cs.CPUPerReq), human(cs.RSSKB), cs.Errors, cs.Lost, cs.Saturated)
		}
	}
	b.WriteString("</table>\n<p class=note>Generated by sockbench report.</p></body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func esc(s string) string { return html.EscapeString(s) }

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 || math.IsNaN(v) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// legendWidth fits the longest series label (about 6.5 px a character at
// font-size 11).
func legendWidth(ser []series) float64 {
	n := 0
	for _, s := range ser {
		n = max(n, len([]rune(s.label)))
	}
	return math.Max(120, float64(n)*6.5+24)
}

func legend(b *strings.Builder, ser []series, x, y float64) {
	for i, s := range ser {
		yy := y + float64(i)*16
		op, dash := "1", ""
		if s.set > 0 {
			op, dash = "0.55", ` stroke-dasharray="4 3"`
		}
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="12" height="10" fill="%s" fill-opacity="%s" stroke="%s"%s/>`, x, yy, s.color, op, s.color, dash)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="11">%s</text>`, x+16, yy+9, esc(s.label))
	}
}

// barChart draws grouped bars with min–max whiskers on a linear axis.
func barChart(title, unit string, groups []string, ser []series, vals [][]stat) string {
	const top = 28.0
	// Rotated group labels reach down and to the left of their group;
	// legends are as wide as their longest label.
	longest := 0
	for _, g := range groups {
		longest = max(longest, len([]rune(g)))
	}
	left := math.Max(64, float64(longest)*6*0.82-10)
	bottom := math.Max(50, float64(longest)*6*0.57+24)
	legendW := legendWidth(ser)
	barW := 14.0
	groupW := float64(len(ser))*barW + 14
	plotW := math.Max(220, groupW*float64(len(groups)))
	plotH := 220.0
	W, H := left+plotW+legendW+10, top+plotH+bottom
	maxV := 0.0
	for _, g := range vals {
		for _, v := range g {
			for _, x := range []float64{v.med, v.hi} {
				if !math.IsNaN(x) && x > maxV {
					maxV = x
				}
			}
		}
	}
	top2 := niceMax(maxV)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s">`, W, H, W, H, esc(title))
	fmt.Fprintf(&b, `<text x="%.1f" y="16" font-size="13" font-weight="bold">%s</text>`, left, esc(title))
	y := func(v float64) float64 { return top + plotH - v/top2*plotH }
	for i := 0; i <= 4; i++ {
		v := top2 * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#e5e5e5"/>`, left, left+plotW, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="end">%s</text>`, left-4, y(v)+3, human(v))
	}
	fmt.Fprintf(&b, `<text x="12" y="%.1f" font-size="11" transform="rotate(-90 12 %.1f)" text-anchor="middle">%s</text>`, top+plotH/2, top+plotH/2, esc(unit))
	for gi, g := range groups {
		gx := left + float64(gi)*groupW + 7
		for si, s := range ser {
			v := vals[gi][si]
			if math.IsNaN(v.med) {
				continue
			}
			x := gx + float64(si)*barW
			op := "0.9"
			if s.set > 0 {
				op = "0.45"
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="%s" stroke="%s" stroke-width="0.5"><title>%s %s: %s %s</title></rect>`,
				x, y(v.med), barW-2, math.Max(0, top+plotH-y(v.med)), s.color, op, s.color, esc(s.label), esc(g), human(v.med), esc(unit))
			if !math.IsNaN(v.lo) && !math.IsNaN(v.hi) && v.hi > v.lo {
				cx := x + (barW-2)/2
				fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#222" stroke-width="1"/>`, cx, cx, y(v.lo), y(v.hi))
				fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#222"/><line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#222"/>`,
					cx-3, cx+3, y(v.lo), y(v.lo), cx-3, cx+3, y(v.hi), y(v.hi))
			}
		}
		lx := gx + float64(len(ser))*barW/2
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="end" transform="rotate(-35 %.1f %.1f)">%s</text>`,
			lx, top+plotH+14, lx, top+plotH+14, esc(g))
	}
	fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#333"/>`, left, left+plotW, top+plotH, top+plotH)
	legend(&b, ser, left+plotW+12, top)
	b.WriteString("</svg>\n")
	return b.String()
}

// lineChart draws one line per series over categorical x, log-scale y.
func lineChart(title, unit string, xs []string, ser []series, lines [][]float64) string {
	const left, top, bottom, plotW, plotH = 56.0, 28.0, 36.0, 260.0, 180.0
	legendW := legendWidth(ser)
	W, H := left+plotW+legendW+10, top+plotH+bottom
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, l := range lines {
		for _, v := range l {
			if !math.IsNaN(v) && v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s">`, W, H, W, H, esc(title))
	fmt.Fprintf(&b, `<text x="%.1f" y="16" font-size="12" font-weight="bold">%s</text>`, left, esc(title))
	if math.IsInf(lo, 0) {
		b.WriteString(`<text x="60" y="100" font-size="11">no data</text></svg>`)
		return b.String()
	}
	d0, d1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if d1 <= d0 {
		d1 = d0 + 1
	}
	y := func(v float64) float64 { return top + plotH - (math.Log10(v)-d0)/(d1-d0)*plotH }
	x := func(i int) float64 { return left + 10 + float64(i)*(plotW-20)/float64(max(1, len(xs)-1)) }
	for d := d0; d <= d1; d++ {
		v := math.Pow(10, d)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#e5e5e5"/>`, left, left+plotW, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="end">%s</text>`, left-4, y(v)+3, fmtUS(v))
	}
	for i, l := range xs {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle">%s</text>`, x(i), top+plotH+14, esc(l))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle">percentile</text>`, left+plotW/2, top+plotH+30)
	for si, s := range ser {
		var pts []string
		for i, v := range lines[si] {
			if !math.IsNaN(v) && v > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(v)))
			}
		}
		if len(pts) == 0 {
			continue
		}
		dash := ""
		if s.set > 0 {
			dash = ` stroke-dasharray="5 3"`
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`, strings.Join(pts, " "), s.color, dash)
		for i, v := range lines[si] {
			if !math.IsNaN(v) && v > 0 {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"><title>%s p%s: %s</title></circle>`, x(i), y(v), s.color, esc(s.label), esc(xs[i]), fmtUS(v))
			}
		}
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`, left, top, plotW, plotH)
	legend(&b, ser, left+plotW+12, top)
	b.WriteString("</svg>\n")
	return b.String()
}
