package bench

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sockbench/sockbench/bench/internal/svg"
	"github.com/sockbench/sockbench/internal/human"
	"github.com/sockbench/sockbench/protocol"
)

// ResultSet is one results file drawn in a report.
type ResultSet struct {
	Name string
	Rows []Row
}

// Report draws one or more result sets as a self-contained HTML page:
// inline SVG charts and tables, no scripts, no fonts or styles from
// anywhere else, so it opens offline and can be attached to a CI run.
//
// The page is html/template (templates/*.tmpl, embedded): page.tmpl is the
// document, and each part of it is a section, a {{define}} of its own
// laid out from data prepared here (sections lists them in order). A new
// part of the report is a new template and an entry in sections.
type Report struct {
	Title string
	Sets  []ResultSet
}

//go:embed templates/*.tmpl
var reportFS embed.FS

var reportTmpl = template.Must(template.New("report").ParseFS(reportFS, "templates/*.tmpl"))

// page is what page.tmpl lays out: the title and the sections, rendered.
type page struct {
	Title    string
	Sections []template.HTML
}

// section is one part of the page: the template that lays it out and its data.
type section struct {
	Template string
	Data     any
}

// WriteHTML writes the report.
func (rep *Report) WriteHTML(w io.Writer) error {
	p := page{Title: rep.Title}
	if p.Title == "" {
		p.Title = "sockbench report"
	}
	secs, err := rep.sections()
	if err != nil {
		return err
	}
	for _, s := range secs {
		var b bytes.Buffer
		if err := reportTmpl.ExecuteTemplate(&b, s.Template, s.Data); err != nil {
			return fmt.Errorf("bench: report section %s: %w", s.Template, err)
		}
		p.Sections = append(p.Sections, template.HTML(b.String())) // html/template escaped it
	}
	var b bytes.Buffer
	if err := reportTmpl.ExecuteTemplate(&b, "page", p); err != nil {
		return fmt.Errorf("bench: report: %w", err)
	}
	_, err = w.Write(b.Bytes())
	return err
}

// setsData is the "sets" section: one line per result set.
type setsData struct{ Sets []setLine }

type setLine struct {
	Name, Host, CPU, OSArch, Go, Commit, Pinning, First, Partial string
	Cores, OK, Skipped, Failed                                   int
}

// warningsData is the "warnings" section: the first few in view, the rest folded.
type warningsData struct{ Shown, More []string }

// chartsData is a section of charts under one heading.
type chartsData struct {
	Heading, Note string
	Charts        []template.HTML
	Empty         string // said instead when there are no charts
}

// cellsData is the "cells" section: the table of every cell.
type cellsData struct{ Rows []cellLine }

type cellLine struct {
	Set, Cell                                             string
	Runs                                                  int
	RPS, RPSMin, RPSMax, P50, P99, P999, CPUPerReq, RSSKB string
	Errors, Lost                                          int64
	Saturated                                             int
	Bound                                                 string // CellStats.BoundShort
}

// shownWarnings is how many warnings show before the rest fold: a long
// list (every saturated cell of a 2-core run) would push the charts off
// the first screen.
const shownWarnings = 5

// modelColors gives each model a colour; sets beyond the first are drawn
// lighter (bars) and dashed (lines).
var modelColors = map[string]string{"threaded": "#1f77b4", "eventloop": "#d62728", "prefork": "#2ca02c", "bare": "#444444"}

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
	svg.Series
	set   int
	model string
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

// key is the workload's cell for one model and net.
func (w workload) key(model, net string) Key {
	return Key{model, net, w.Mode, w.Conns, w.Pipeline, w.Size, w.Rate, w.WorkUS, w.BlockUS}
}

func (w workload) label() string {
	s := fmt.Sprintf("%s c=%d", w.Mode, w.Conns)
	if w.Pipeline > 1 {
		s += fmt.Sprintf(" p=%d", w.Pipeline)
	}
	if w.Size != DefaultSize {
		s += " " + protocol.Size(w.Size).String()
	}
	if w.Rate > 0 {
		s += " " + human.Number(w.Rate) + "/s"
	}
	if w.WorkUS > 0 {
		s += fmt.Sprintf(" work=%dµs", w.WorkUS)
	}
	if w.BlockUS > 0 {
		s += fmt.Sprintf(" block=%dµs", w.BlockUS)
	}
	return s
}

func (w workload) less(o workload) bool { return w.key("", "").Less(o.key("", "")) }

// reportData is what the charts are drawn from: per set, the summary of
// each cell, and what is in them.
type reportData struct {
	per      []map[Key]CellStats
	nets     []string              // transports with a clean run, in protocol.Transports order
	works    map[string][]workload // per net, sorted
	ser      []series
	warnings []string
}

// collect summarises every set and notes what a reader must know.
func (rep *Report) collect() *reportData {
	d := &reportData{per: make([]map[Key]CellStats, len(rep.Sets)), works: map[string][]workload{}}
	var models []string
	nets := map[string]bool{}
	seenWork := map[string]map[workload]bool{}
	for i, s := range rep.Sets {
		d.per[i] = map[Key]CellStats{}
		for _, cs := range Summarise(s.Rows) {
			switch {
			case cs.Skipped != "" && cs.Runs == 0:
				d.warnings = append(d.warnings, fmt.Sprintf("%s: %s skipped: %s", s.Name, cs.Key, cs.Skipped))
				continue
			case cs.Runs == 0:
				d.warnings = append(d.warnings, fmt.Sprintf("%s: %s: no clean run", s.Name, cs.Key))
				continue
			case cs.ClientRuns > 0 || cs.Saturated > 0:
				d.warnings = append(d.warnings, fmt.Sprintf("%s: %s: client-bound in %d of %d runs (the load generator was saturated in %d, or came within 10%% of its calibrated ceiling); throughput is the generator's, a lower bound of the server's", s.Name, cs.Key, max(cs.ClientRuns, cs.Saturated), cs.Runs, cs.Saturated))
			}
			d.per[i][cs.Key] = cs
			nets[cs.Key.Net] = true
			if !slices.Contains(models, cs.Key.Model) {
				models = append(models, cs.Key.Model)
			}
			if seenWork[cs.Key.Net] == nil {
				seenWork[cs.Key.Net] = map[workload]bool{}
			}
			if wl := workloadOf(cs.Key); !seenWork[cs.Key.Net][wl] {
				seenWork[cs.Key.Net][wl] = true
				d.works[cs.Key.Net] = append(d.works[cs.Key.Net], wl)
			}
		}
	}
	for _, ws := range d.works {
		sort.Slice(ws, func(i, j int) bool { return ws[i].less(ws[j]) })
	}
	sortModels(models)
	for _, t := range protocol.Transports() {
		if nets[t.String()] {
			d.nets = append(d.nets, t.String())
			delete(nets, t.String())
		}
	}
	var other []string
	for n := range nets {
		other = append(other, n)
	}
	sort.Strings(other)
	d.nets = append(d.nets, other...)
	colors := map[string]string{}
	for si, s := range rep.Sets {
		for _, m := range models {
			label := m
			if len(rep.Sets) > 1 {
				label = m + " · " + s.Name
			}
			d.ser = append(d.ser, series{svg.Series{Label: label, Color: colorFor(m, colors), Faded: si > 0}, si, m})
		}
	}
	return d
}

// sections prepares every part of the page, in order: first what a
// reader must know (a partial set), then the findings in plain words
// (and, for several sets, what changed), and only then the tables and
// charts they come from.
func (rep *Report) sections() ([]section, error) {
	d := rep.collect()
	var secs []section
	for _, s := range rep.Sets {
		if p, ok := PartialOf(s.Rows); ok {
			secs = append(secs, section{"partial", partialData{Set: s.Name, Partial: p.String()}})
		}
	}
	var verdicts []*Verdicts
	for i, s := range rep.Sets {
		v := ComputeVerdicts(s.Rows, 0)
		verdicts = append(verdicts, v)
		if i > 0 {
			diff, err := diffData(rep.Sets[0], s)
			if err != nil {
				return nil, err
			}
			secs = append(secs, section{"diff", diff})
		}
	}
	for i, v := range verdicts {
		if len(v.Cells) > 0 {
			secs = append(secs, section{"findings", findingsOf(v, rep.Sets[i].Name, len(rep.Sets) > 1)})
		}
	}
	secs = append(secs, section{"sets", rep.setsData()})
	if len(d.warnings) > 0 {
		w := warningsData{Shown: d.warnings}
		if len(w.Shown) > shownWarnings {
			w.Shown, w.More = d.warnings[:shownWarnings], d.warnings[shownWarnings:]
		}
		secs = append(secs, section{"warnings", w})
	}
	if len(d.nets) == 0 {
		return append(secs, section{"empty", nil}), nil
	}
	charts := []func() (chartsData, error){
		func() (chartsData, error) {
			return d.bars("Throughput", "Requests per second answered and validated, per model and transport (higher is better).", "req/s",
				func(cs CellStats) svg.Bar { return svg.Bar{Med: cs.RPS, Lo: cs.RPSMin, Hi: cs.RPSMax} })
		},
		d.latency,
		func() (chartsData, error) {
			return d.bars("Server CPU per request", "Server CPU time (user+system, every process of the server) during the measured window divided by the requests answered, in µs (lower is better).", "µs/req",
				func(cs CellStats) svg.Bar { return svg.Bar{Med: cs.CPUPerReq, Lo: math.NaN(), Hi: math.NaN()} })
		},
		func() (chartsData, error) {
			return d.bars("Server peak memory", "Peak resident memory of the server (VmHWM summed over all its processes: prefork counts every worker), in MiB.", "MiB",
				func(cs CellStats) svg.Bar { return svg.Bar{Med: cs.RSSKB / 1024, Lo: math.NaN(), Hi: math.NaN()} })
		},
		d.memoryPerConn,
	}
	for _, build := range charts {
		c, err := build()
		if err != nil {
			return nil, err
		}
		secs = append(secs, section{"charts", c})
	}
	for i, v := range verdicts {
		if len(v.Cells) > 0 {
			secs = append(secs, section{"verdicts", verdictTable(v, rep.Sets[i].Name, len(rep.Sets) > 1)})
		}
	}
	return append(secs, section{"cells", rep.cellsData()}), nil
}

// setsData describes each set: machine, build, pinning, runs.
func (rep *Report) setsData() setsData {
	var out setsData
	for _, s := range rep.Sets {
		var first time.Time
		var e Env
		var pin string
		l := setLine{Name: s.Name}
		for _, r := range s.Rows {
			if first.IsZero() || (!r.Time.IsZero() && r.Time.Before(first)) {
				first = r.Time
			}
			if e.Host == "" {
				e = r.Env
				pin = r.ServerCPUList + " | " + r.ClientCPUList
				if r.ServerCPUList == "" {
					pin = "none"
				}
			}
			switch {
			case r.Status == StatusPartial:
				l.Partial = r.Note
			case r.Status == StatusSkipped:
				l.Skipped++
			case r.OK():
				l.OK++
			default:
				l.Failed++
			}
		}
		l.Host, l.CPU, l.Cores, l.OSArch, l.Go, l.Commit, l.Pinning = e.Host, e.CPUModel, e.Cores, e.OS+"/"+e.Arch, e.GoVersion, e.Commit, pin
		l.First = first.UTC().Format("2006-01-02 15:04:05")
		out.Sets = append(out.Sets, l)
	}
	return out
}

// render lays out charts as HTML.
func render(charts ...*svg.Chart) ([]template.HTML, error) {
	var out []template.HTML
	for _, c := range charts {
		h, err := c.HTML()
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

func (d *reportData) seriesOf() []svg.Series {
	out := make([]svg.Series, len(d.ser))
	for i, s := range d.ser {
		out[i] = s.Series
	}
	return out
}

// bars is a section of one bar chart per transport, a group of bars per
// workload, a bar per series, valued by val.
func (d *reportData) bars(heading, note, unit string, val func(cs CellStats) svg.Bar) (chartsData, error) {
	var charts []*svg.Chart
	for _, n := range d.nets {
		ws := d.works[n]
		groups := make([]string, len(ws))
		vals := make([][]svg.Bar, len(ws))
		for gi, wl := range ws {
			groups[gi] = wl.label()
			vals[gi] = make([]svg.Bar, len(d.ser))
			for si, s := range d.ser {
				vals[gi][si] = svg.Missing
				if cs, ok := d.per[s.set][wl.key(s.model, n)]; ok {
					vals[gi][si] = val(cs)
				}
			}
		}
		charts = append(charts, svg.BarChart(heading+" — "+n, unit, groups, d.seriesOf(), vals, human.Number))
	}
	html, err := render(charts...)
	return chartsData{Heading: heading, Note: note, Charts: html}, err
}

// latency is the percentile curves, one small chart per transport and workload.
func (d *reportData) latency() (chartsData, error) {
	pcts := []func(cs CellStats) float64{
		func(cs CellStats) float64 { return cs.P50 }, func(cs CellStats) float64 { return cs.P90 },
		func(cs CellStats) float64 { return cs.P99 }, func(cs CellStats) float64 { return cs.P999 },
		func(cs CellStats) float64 { return cs.P9999 }, func(cs CellStats) float64 { return cs.Max },
	}
	labels := []string{"50", "90", "99", "99.9", "99.99", "max"}
	var charts []*svg.Chart
	for _, n := range d.nets {
		for _, wl := range d.works[n] {
			lines := make([][]float64, len(d.ser))
			for si, s := range d.ser {
				cs, ok := d.per[s.set][wl.key(s.model, n)]
				lines[si] = make([]float64, len(pcts))
				for pi, p := range pcts {
					lines[si][pi] = math.NaN()
					if ok {
						lines[si][pi] = p(cs)
					}
				}
			}
			charts = append(charts, svg.LineChart(n+" "+wl.label(), "percentile", labels, d.seriesOf(), lines, human.Micros))
		}
	}
	html, err := render(charts...)
	return chartsData{Heading: "Latency percentiles", Charts: html,
		Note: "Median over runs of each percentile, log scale (lower is better). Closed loop: from send; open loop: from when the request was due."}, err
}

// memoryPerConn is the slope of peak RSS between consecutive connection
// counts of the same workload, so a process's fixed size does not
// masquerade as per-connection cost.
func (d *reportData) memoryPerConn() (chartsData, error) {
	var charts []*svg.Chart
	for _, n := range d.nets {
		// A datagram server holds one socket however many the client
		// opens: no connections, no memory per connection.
		if tr, err := protocol.ParseTransport(n); err == nil && tr.IsDatagram() {
			continue
		}
		type step struct {
			w      workload // with Conns = the higher count
			lo, hi int
		}
		var steps []step
		byRest := map[workload][]int{}
		var rests []workload
		for _, wl := range d.works[n] {
			rest := wl
			rest.Conns = 0
			if byRest[rest] == nil {
				rests = append(rests, rest)
			}
			byRest[rest] = append(byRest[rest], wl.Conns)
		}
		for _, rest := range rests {
			cs := byRest[rest]
			sort.Ints(cs)
			for i := 1; i < len(cs); i++ {
				w := rest
				w.Conns = cs[i]
				steps = append(steps, step{w, cs[i-1], cs[i]})
			}
		}
		if len(steps) == 0 {
			continue
		}
		sort.Slice(steps, func(i, j int) bool { return steps[i].w.less(steps[j].w) })
		groups := make([]string, len(steps))
		vals := make([][]svg.Bar, len(steps))
		for gi, st := range steps {
			groups[gi] = strings.Replace(st.w.label(), fmt.Sprintf("c=%d", st.hi), fmt.Sprintf("c=%d→%d", st.lo, st.hi), 1)
			vals[gi] = make([]svg.Bar, len(d.ser))
			for si, s := range d.ser {
				lw := st.w
				lw.Conns = st.lo
				hi, ok1 := d.per[s.set][st.w.key(s.model, n)]
				lo, ok2 := d.per[s.set][lw.key(s.model, n)]
				vals[gi][si] = svg.Missing
				// A slope below zero means the runs' own spread hides
				// the per-connection cost: no bar, rather than a 0 that
				// reads as measured.
				if slope := (hi.RSSKB - lo.RSSKB) / float64(st.hi-st.lo); ok1 && ok2 && slope >= 0 {
					vals[gi][si].Med = slope
				}
			}
		}
		charts = append(charts, svg.BarChart("Memory per connection — "+n, "KiB/conn", groups, d.seriesOf(), vals, human.Number))
	}
	html, err := render(charts...)
	return chartsData{Heading: "Server memory per connection", Charts: html, Empty: "No workload ran at two connection counts.",
		Note: "Extra peak RSS per extra connection, in KiB: (RSS at the higher count - RSS at the lower) / (difference in connections), " +
			"between consecutive connection counts of the same workload. Drawn only where a workload ran at two or more counts, " +
			"and not for datagram transports (their server holds one socket whatever the client opens); " +
			"a slope below zero (RSS noise larger than the cost) is left out."}, err
}

// cellsData is every cell of every set with a clean run, as numbers.
func (rep *Report) cellsData() cellsData {
	var out cellsData
	for _, s := range rep.Sets {
		for _, cs := range Summarise(s.Rows) {
			if cs.Runs == 0 {
				continue
			}
			out.Rows = append(out.Rows, cellLine{Set: s.Name, Cell: cs.Key.String(), Runs: cs.Runs,
				RPS: cs.RPSText(), RPSMin: human.Number(cs.RPSMin), RPSMax: human.Number(cs.RPSMax),
				P50: human.Number(cs.P50), P99: human.Number(cs.P99), P999: human.Number(cs.P999),
				CPUPerReq: human.Number(cs.CPUPerReq), RSSKB: human.Number(cs.RSSKB),
				Errors: cs.Errors, Lost: cs.Lost, Saturated: cs.Saturated, Bound: cs.BoundShort()})
		}
	}
	return out
}
