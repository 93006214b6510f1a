package bench

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/montanaflynn/stats"
	"golang.org/x/perf/benchmath"

	"github.com/sockbench/sockbench/internal/human"
)

// Metric is a per-run number Compare and Report know how to read.
type Metric struct {
	Name   string // CSV column
	Label  string
	Higher bool // true when higher is better
	Get    func(r *Row) float64
}

// Metrics are the metrics compare can judge, by CSV column name.
var Metrics = []Metric{
	{"rps", "req/s", true, func(r *Row) float64 { return r.RPS }},
	{"mbps", "MB/s", true, func(r *Row) float64 { return r.MBps }},
	{"p50_us", "p50 µs", false, func(r *Row) float64 { return r.P50US }},
	{"p99_us", "p99 µs", false, func(r *Row) float64 { return r.P99US }},
	{"p999_us", "p99.9 µs", false, func(r *Row) float64 { return r.P999US }},
	{"cpu_us_per_req", "server CPU µs/req", false, func(r *Row) float64 { return r.CPUUSPerReq }},
	{"server_rss_kb", "server RSS KiB", false, func(r *Row) float64 { return float64(r.ServerRSSKB) }},
}

// MetricByName finds a metric by CSV column name.
func MetricByName(name string) (Metric, bool) {
	for _, m := range Metrics {
		if m.Name == name {
			return m, true
		}
	}
	return Metric{}, false
}

// CompareOptions tunes Compare.
type CompareOptions struct {
	// Threshold is the smallest relative change of a median that counts
	// (0.05 = 5%).
	Threshold float64
	// Alpha is the significance level of the Mann-Whitney U test.
	Alpha float64
	// Gate lists the metrics whose changes fail the comparison (default:
	// rps and cpu_us_per_req, in one Benjamini-Hochberg family).
	// Throughput (rps, mbps) is never gated in a client-bound cell: there
	// it is the load generator's, and only what the server costs tells.
	Gate []string
	// Show lists further metrics printed for context.
	Show []string
	// RegressionsOnly ignores significant improvements when gating.
	RegressionsOnly bool
	// NoCorrection judges every cell's p-value against Alpha on its own.
	// By default the p-values of all gated comparisons are adjusted
	// together (Benjamini-Hochberg): the quick profile tests 96 cells
	// and metrics, and at alpha 0.05 uncorrected tests flag at least one
	// of them in most comparisons of a build with itself.
	NoCorrection bool
	// Basis is what is compared: BasisAuto (the default), BasisAbsolute
	// or BasisRatio. See Compare.
	Basis string
}

// Bases of a comparison.
const (
	// BasisAuto compares absolute numbers when both sets ran on one
	// machine within MaxAbsoluteAge of each other, ratios otherwise.
	BasisAuto = "auto"
	// BasisAbsolute compares each cell's own numbers: req/s, µs.
	BasisAbsolute = "absolute"
	// BasisRatio compares each model's numbers over those of the
	// reference model (the limit, bare) of the same workload, run by
	// run: what a machine changes for every model alike cancels out.
	BasisRatio = "ratio"
)

// MaxAbsoluteAge is how far apart in time two sets may be for BasisAuto
// to compare absolute numbers: a machine's speed drifts from day to day
// (a shared host, a kernel update, thermals), so runs a day apart differ
// by more than code.
const MaxAbsoluteAge = 24 * time.Hour

// Verdicts of one cell and metric.
const (
	VerdictSame     = "~"            // no significant change, or within threshold
	VerdictBetter   = "better"       // significant and past the threshold, improved
	VerdictWorse    = "worse"        // significant and past the threshold, regressed
	VerdictTooFew   = "too few runs" // not enough runs to judge
	VerdictOnlyBase = "only in base"
	VerdictOnlyNew  = "only in new"
)

// Change is one cell's comparison on one metric.
type Change struct {
	Key    Key
	Metric Metric
	Gated  bool
	Base   benchmath.Summary
	New    benchmath.Summary
	NBase  int
	NNew   int
	// BaseSpread and NewSpread are the runs' largest deviation from their
	// median, relative (0.04 = the runs lie within ±4% of the median).
	BaseSpread, NewSpread float64
	// Delta is the relative change, new/base - 1, by the Hodges-Lehmann
	// estimate (the median of all run-by-run ratios new/base); Ratio is
	// that ratio with its 95% interval (Moses', from the same U test).
	Delta float64
	Ratio Shift
	// P is the U test's two-sided p-value; Q is P adjusted for the number
	// of comparisons in its family (the gated ones, or the shown ones),
	// and what the verdict is judged by (Q == P with NoCorrection).
	P, Q    float64
	Verdict string
	Note    string
	// ClientBound is set when the cell was client-bound on either side.
	ClientBound bool
}

// Failing reports whether this change fails the comparison.
func (c *Change) Failing(regressionsOnly bool) bool {
	if !c.Gated {
		return false
	}
	if c.Verdict == VerdictWorse {
		return true
	}
	return c.Verdict == VerdictBetter && !regressionsOnly
}

// Comparison is the outcome of Compare.
type Comparison struct {
	Opts    CompareOptions
	Changes []Change
	// Basis is what was compared: BasisAbsolute or BasisRatio; BasisNote
	// says why, in one line.
	Basis, BasisNote string
	// Notes are warnings about the inputs (failed runs, partial sets).
	Notes []string
	// MinRuns is how many runs a side the U test needs at Alpha.
	MinRuns int
	// Tests is how many gated comparisons were judged together; a change
	// in a single cell among them is significant only at p <= Alpha/Tests,
	// which takes LoneRuns runs a side (changes across many cells need
	// fewer).
	Tests, LoneRuns int
}

// Failed lists the changes that fail the comparison.
func (c *Comparison) Failed() []Change {
	var out []Change
	for _, ch := range c.Changes {
		if ch.Failing(c.Opts.RegressionsOnly) {
			out = append(out, ch)
		}
	}
	return out
}

// TooFew reports how many gated cells could not be judged for lack of runs.
func (c *Comparison) TooFew() int {
	n := 0
	for _, ch := range c.Changes {
		if ch.Gated && ch.Verdict == VerdictTooFew {
			n++
		}
	}
	return n
}

// MinRunsForAlpha is the smallest n such that two samples of n runs can
// give a Mann-Whitney p-value at or below alpha (4 at alpha 0.05: with 3
// runs a side the smallest possible p is 0.1).
func MinRunsForAlpha(alpha float64) int {
	for n := 2; n < 50; n++ {
		// Smallest two-sided p for samples of n and n: 2 / C(2n, n).
		c := 1.0
		for i := 1; i <= n; i++ {
			c = c * float64(n+i) / float64(i)
		}
		if 2/c <= alpha {
			return n
		}
	}
	return 50
}

// DefaultGate is what compare gates on by default: throughput and what
// the server pays for it, judged together.
var DefaultGate = []string{"rps", "cpu_us_per_req"}

// throughputMetric reports whether a metric is what the client managed
// rather than what the server cost: not gated in a client-bound cell.
func throughputMetric(name string) bool { return name == "rps" || name == "mbps" }

// Compare groups the clean runs of base and new by cell and compares every
// metric in opts.Gate and opts.Show with a Mann-Whitney U test (benchmath's
// AssumeNothing). A change fails when it is both significant at Alpha,
// after adjusting the p-values of all gated comparisons together
// (Benjamini-Hochberg, unless NoCorrection), and larger than Threshold.
// Cells with fewer runs than the test needs are reported as such, never
// judged; throughput is not gated where either side was client-bound.
//
// What is compared (opts.Basis): on one machine within a day, each
// cell's absolute numbers. Across machines (host or CPU differ) or days,
// absolute numbers move with the machine for every model alike: then
// each gated metric is compared as a ratio to the limit server of the
// same workload (LimitModel, or the first model both sets ran where it
// is missing), run by run, each run with the reference run nearest to it
// in time; the absolute changes are shown and never gated.
func Compare(base, new []Row, opts CompareOptions) (*Comparison, error) {
	if opts.Alpha == 0 {
		opts.Alpha = 0.05
	}
	if len(opts.Gate) == 0 {
		opts.Gate = DefaultGate
	}
	if opts.Basis == "" {
		opts.Basis = BasisAuto
	}
	cmp := &Comparison{Opts: opts, MinRuns: MinRunsForAlpha(opts.Alpha)}
	type spec struct {
		m     Metric
		gated bool
		ratio bool
	}
	var gates, shows []Metric
	seen := map[string]bool{}
	for _, list := range []struct {
		names []string
		dst   *[]Metric
	}{{opts.Gate, &gates}, {opts.Show, &shows}} {
		for _, name := range list.names {
			m, ok := MetricByName(name)
			if !ok {
				return nil, fmt.Errorf("bench: unknown metric %q (known: %s)", name, metricNames())
			}
			if !seen[name] {
				*list.dst = append(*list.dst, m)
			}
			seen[name] = true
		}
	}
	switch opts.Basis {
	case BasisAuto, BasisAbsolute, BasisRatio:
	default:
		return nil, fmt.Errorf("bench: unknown basis %q (want auto, absolute or ratio)", opts.Basis)
	}
	bg, bnotes := groupRows(base, "base")
	ng, nnotes := groupRows(new, "new")
	cmp.Notes = append(append(cmp.Notes, bnotes...), nnotes...)
	for _, side := range []struct {
		name string
		rows []Row
	}{{"base", base}, {"new", new}} {
		if p, ok := PartialOf(side.rows); ok {
			cmp.Notes = append(cmp.Notes, fmt.Sprintf("%s is a partial set (%s): cells it never reached are missing", side.name, p))
		}
	}
	cmp.Basis, cmp.BasisNote = chooseBasis(opts.Basis, base, new)
	var specs []spec
	for _, m := range gates {
		if cmp.Basis == BasisRatio {
			specs = append(specs, spec{m, true, true}, spec{m, false, false})
		} else {
			specs = append(specs, spec{m, true, false})
		}
	}
	for _, m := range shows {
		specs = append(specs, spec{m, false, false})
	}
	refs := references(bg, ng)
	keys := map[Key]bool{}
	for k := range bg {
		keys[k] = true
	}
	for k := range ng {
		keys[k] = true
	}
	sorted := make([]Key, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Less(sorted[j]) })
	thr := &benchmath.Thresholds{CompareAlpha: opts.Alpha}
	for _, k := range sorted {
		clientBound := anyClientBound(bg[k]) || anyClientBound(ng[k])
		for _, sp := range specs {
			m := sp.m
			var bv, nv []float64
			if sp.ratio {
				w := k
				w.Model = ""
				ref := refs[w]
				if ref == "" || ref == k.Model {
					continue // the reference itself, or nothing to refer to
				}
				rk := k
				rk.Model = ref
				m = Metric{Name: m.Name + "/" + ref, Label: m.Label + " ÷ " + ref, Higher: m.Higher, Get: m.Get}
				bv, nv = ratios(bg[k], bg[rk], sp.m), ratios(ng[k], ng[rk], sp.m)
				clientBound = clientBound || anyClientBound(bg[rk]) || anyClientBound(ng[rk])
			} else {
				bv, nv = values(bg[k], m), values(ng[k], m)
			}
			ch := Change{Key: k, Metric: m, Gated: sp.gated, Delta: math.NaN(), P: math.NaN(), Q: math.NaN(),
				Ratio: Shift{math.NaN(), math.NaN(), math.NaN()}, ClientBound: clientBound}
			if ch.Gated && clientBound && throughputMetric(sp.m.Name) {
				ch.Gated = false
				ch.Note = "client-bound: the generator's throughput, not gated"
			}
			ch.NBase, ch.NNew = len(bv), len(nv)
			switch {
			case len(bv) == 0:
				ch.Verdict = VerdictOnlyNew
			case len(nv) == 0:
				ch.Verdict = VerdictOnlyBase
			}
			if len(bv) > 0 {
				ch.Base = benchmath.AssumeNothing.Summary(benchmath.NewSample(bv, thr), 0.95)
				ch.BaseSpread = spread(bv, ch.Base.Center)
			}
			if len(nv) > 0 {
				ch.New = benchmath.AssumeNothing.Summary(benchmath.NewSample(nv, thr), 0.95)
				ch.NewSpread = spread(nv, ch.New.Center)
			}
			if ch.Verdict != "" {
				cmp.Changes = append(cmp.Changes, ch)
				continue
			}
			ch.Ratio = ratioShift(nv, bv, VerdictConfidence)
			ch.Delta = ch.Ratio.Est - 1
			if len(bv) < cmp.MinRuns || len(nv) < cmp.MinRuns {
				ch.Verdict = VerdictTooFew
				ch.Note = joinNote(ch.Note, fmt.Sprintf("need >= %d runs a side at alpha %v, have %d and %d", cmp.MinRuns, opts.Alpha, len(bv), len(nv)))
				cmp.Changes = append(cmp.Changes, ch)
				continue
			}
			c := benchmath.AssumeNothing.Compare(benchmath.NewSample(bv, thr), benchmath.NewSample(nv, thr))
			ch.P = c.P
			cmp.Changes = append(cmp.Changes, ch)
		}
	}
	// Judge every tested change by its p-value adjusted within its family.
	for _, fam := range []bool{true, false} {
		var idx []int
		for i := range cmp.Changes {
			if cmp.Changes[i].Gated == fam && !math.IsNaN(cmp.Changes[i].P) {
				idx = append(idx, i)
			}
		}
		if fam {
			cmp.Tests = len(idx)
		}
		adjust(cmp.Changes, idx, opts.NoCorrection)
	}
	cmp.LoneRuns = cmp.MinRuns
	if !opts.NoCorrection && cmp.Tests > 1 {
		cmp.LoneRuns = MinRunsForAlpha(opts.Alpha / float64(cmp.Tests))
	}
	for i := range cmp.Changes {
		ch := &cmp.Changes[i]
		if math.IsNaN(ch.Q) {
			continue
		}
		ch.Verdict = VerdictSame
		if ch.Q <= opts.Alpha && !math.IsNaN(ch.Delta) && math.Abs(ch.Delta) > opts.Threshold {
			if (ch.Delta > 0) == ch.Metric.Higher {
				ch.Verdict = VerdictBetter
			} else {
				ch.Verdict = VerdictWorse
			}
		}
	}
	return cmp, nil
}

// chooseBasis decides what to compare and says why in one line.
func chooseBasis(asked string, base, new []Row) (string, string) {
	bh, nh := machines(base), machines(new)
	var why string
	switch {
	case bh != "" && nh != "" && bh != nh:
		why = fmt.Sprintf("base ran on %s, new on %s", bh, nh)
	default:
		b0, b1 := timeSpan(base)
		n0, n1 := timeSpan(new)
		if !b1.IsZero() && !n0.IsZero() {
			gap := n0.Sub(b1)
			if b0.After(n1) {
				gap = b0.Sub(n1)
			}
			if gap > MaxAbsoluteAge {
				why = fmt.Sprintf("base and new ran %s apart", fmtAge(gap))
			}
		}
	}
	switch {
	case asked == BasisRatio:
		return BasisRatio, "comparing each model's ratio to the limit server (" + LimitModel + ") run by run, as asked (--basis ratio); absolute changes are shown, not gated."
	case asked == BasisAbsolute && why != "":
		return BasisAbsolute, why + ": comparing absolute numbers as asked (--basis absolute), so the machine's difference counts as a change."
	case asked == BasisAbsolute, why == "":
		return BasisAbsolute, ""
	}
	return BasisRatio, why + ": comparing each model's ratio to the limit server (" + LimitModel + ") run by run instead of absolute numbers, which move with the machine; absolute changes are shown, never gated."
}

// timeSpan is the earliest and latest run time of a set (zero when the
// set carries none, as a .txt does).
func timeSpan(rows []Row) (first, last time.Time) {
	for _, r := range rows {
		if r.Time.IsZero() {
			continue
		}
		if first.IsZero() || r.Time.Before(first) {
			first = r.Time
		}
		if r.Time.After(last) {
			last = r.Time
		}
	}
	return first, last
}

func fmtAge(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%.0f days", d.Hours()/24)
	}
	return fmt.Sprintf("%.0f hours", d.Hours())
}

// references picks, per workload, the model each other model is divided
// by in a ratio comparison: LimitModel when both sets ran it, else the
// first model (in the usual order) both sets ran.
func references(bg, ng map[Key][]*Row) map[Key]string {
	common := map[Key][]string{}
	for k := range bg {
		if len(ng[k]) == 0 {
			continue
		}
		w := k
		w.Model = ""
		common[w] = append(common[w], k.Model)
	}
	refs := map[Key]string{}
	for w, ms := range common {
		sortModels(ms)
		refs[w] = ms[0]
		if slices.Contains(ms, LimitModel) {
			refs[w] = LimitModel
		}
	}
	return refs
}

// ratios is each run of rows divided by the reference run nearest to it
// in time (the one of the same round: bench runs a workload's models one
// after another), on metric m; by position where the runs carry no time.
func ratios(rows, ref []*Row, m Metric) []float64 {
	if len(rows) == 0 || len(ref) == 0 {
		return nil
	}
	var out []float64
	for i, r := range rows {
		p := ref[i%len(ref)]
		if !r.Time.IsZero() {
			best := time.Duration(math.MaxInt64)
			for _, q := range ref {
				d := r.Time.Sub(q.Time)
				if d < 0 {
					d = -d
				}
				if d < best {
					best, p = d, q
				}
			}
		}
		a, b := m.Get(r), m.Get(p)
		if x := a / b; b > 0 && !math.IsNaN(x) && !math.IsInf(x, 0) {
			out = append(out, x)
		}
	}
	return out
}

// anyClientBound reports whether any of the runs was client-bound (or,
// in a set from before the label, saturated the load generator).
func anyClientBound(rows []*Row) bool {
	for _, r := range rows {
		if r.Bound == BoundClient || r.ClientSaturated {
			return true
		}
	}
	return false
}

// adjust sets Q of the changes at idx: their P adjusted together
// (benjaminiHochberg), or P itself with none.
func adjust(chs []Change, idx []int, none bool) {
	ps := make([]float64, len(idx))
	for j, i := range idx {
		ps[j] = chs[i].P
	}
	qs := ps
	if !none {
		qs = benjaminiHochberg(ps)
	}
	for j, i := range idx {
		chs[i].Q = qs[j]
	}
}

// spread is the largest relative distance of a run from the median: the
// fastest's or the slowest's (github.com/montanaflynn/stats, as the
// summary's medians and ranges).
func spread(v []float64, med float64) float64 {
	lo, err1 := stats.Min(v)
	hi, err2 := stats.Max(v)
	if med == 0 || err1 != nil || err2 != nil {
		return math.NaN()
	}
	return math.Max(math.Abs(lo/med-1), math.Abs(hi/med-1))
}

func fmtSpread(s float64) string {
	if math.IsNaN(s) {
		return "?"
	}
	return fmt.Sprintf("%.0f%%", s*100)
}

func metricNames() string {
	var n []string
	for _, m := range Metrics {
		n = append(n, m.Name)
	}
	return strings.Join(n, ", ")
}

func values(rows []*Row, m Metric) []float64 {
	var v []float64
	for _, r := range rows {
		x := m.Get(r)
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			v = append(v, x)
		}
	}
	return v
}

// groupRows groups the clean runs by cell and notes the others.
func groupRows(rows []Row, side string) (map[Key][]*Row, []string) {
	g := map[Key][]*Row{}
	bad := map[string]int{}
	for i := range rows {
		r := &rows[i]
		if r.Status == StatusPartial {
			continue // Compare's caller refuses or notes a partial set
		}
		if !r.OK() {
			bad[r.Status]++
			continue
		}
		g[r.Key] = append(g[r.Key], r)
	}
	var notes []string
	for st, n := range bad {
		notes = append(notes, fmt.Sprintf("%s: %d run(s) %s, left out", side, n, st))
	}
	sort.Strings(notes)
	return g, notes
}

// machines names the host(s), CPU and architecture of a result set: one
// host running an arm64 build under qemu-user is another machine than the
// same host running its own.
func machines(rows []Row) string {
	set := map[string]bool{}
	for _, r := range rows {
		if r.Host == "" && r.CPUModel == "" {
			continue
		}
		m := fmt.Sprintf("%s (%s)", r.Host, r.CPUModel)
		if r.Arch != "" {
			m = fmt.Sprintf("%s (%s, %s)", r.Host, r.CPUModel, r.Arch)
		}
		set[m] = true
	}
	var s []string
	for k := range set {
		s = append(s, k)
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// WriteText prints the comparison as a table, then a verdict line.
func (c *Comparison) WriteText(w io.Writer) error {
	var buf bytes.Buffer
	if c.BasisNote != "" {
		fmt.Fprintln(&buf, "basis:", c.BasisNote)
	}
	for _, n := range c.Notes {
		fmt.Fprintln(&buf, "note:", n)
	}
	tw := tabwriter.NewWriter(&buf, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "cell\tmetric\tbase median ±spread\tnew median ±spread\tchange [95% interval]\tp\tq\tverdict\t")
	for _, ch := range c.Changes {
		label := ch.Metric.Label
		if ch.Gated {
			label += " *"
		}
		bs, ns := "-", "-"
		if ch.NBase > 0 {
			bs = fmt.Sprintf("%s ±%s (n=%d)", human.Number(ch.Base.Center), fmtSpread(ch.BaseSpread), ch.NBase)
		}
		if ch.NNew > 0 {
			ns = fmt.Sprintf("%s ±%s (n=%d)", human.Number(ch.New.Center), fmtSpread(ch.NewSpread), ch.NNew)
		}
		p, q := "", ""
		if !math.IsNaN(ch.P) {
			p = fmt.Sprintf("%.3f", ch.P)
		}
		if !math.IsNaN(ch.Q) {
			q = fmt.Sprintf("%.3f", ch.Q)
		}
		verdict := ch.Verdict
		if ch.Verdict == VerdictBetter || ch.Verdict == VerdictWorse {
			// Capitals only where the change can fail the comparison.
			if ch.Gated {
				verdict = strings.ToUpper(verdict) + fmt.Sprintf(" (past %s)", pct(c.Opts.Threshold))
			} else if ch.Note == "" {
				verdict += fmt.Sprintf(" (past %s; shown, not gated)", pct(c.Opts.Threshold))
			} else {
				verdict += fmt.Sprintf(" (past %s)", pct(c.Opts.Threshold))
			}
		}
		if ch.Note != "" {
			verdict += ": " + ch.Note
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", ch.Key, label, bs, ns, ch.ChangeText(), p, q, verdict)
	}
	tw.Flush()
	fmt.Fprintf(&buf, "±spread: the farthest run from the median. change: Hodges-Lehmann estimate of new/base (the median of all\n"+
		"run-by-run ratios) and its 95%% interval. p: Mann-Whitney U, two-sided. * gates the result: a change fails when\n"+
		"q <= %v and it is past %s. Throughput is not gated in a client-bound cell (the generator's, not the server's).\n", c.Opts.Alpha, pct(c.Opts.Threshold))
	if c.Opts.NoCorrection {
		fmt.Fprintf(&buf, "q = p, uncorrected: with %d gated tests, expect about %.1f false alarms from noise alone.\n",
			c.Tests, c.Opts.Alpha*float64(c.Tests))
	} else if c.Tests > 1 {
		fmt.Fprintf(&buf, "q: p adjusted for the %d gated tests together (Benjamini-Hochberg), so noise alone fails a\n"+
			"comparison about %v of the time, not in most. A change in one cell alone needs p <= %.2g (>= %d runs a side).\n",
			c.Tests, pct(c.Opts.Alpha), c.Opts.Alpha/float64(c.Tests), c.LoneRuns)
	}
	failed := c.Failed()
	switch {
	case len(failed) > 0:
		fmt.Fprintf(&buf, "FAIL: %d significant change(s) past %s:\n", len(failed), pct(c.Opts.Threshold))
		for _, ch := range failed {
			bound := ""
			if ch.ClientBound {
				bound = ", client-bound"
			}
			fmt.Fprintf(&buf, "  %s %s %s (%s, p=%.3f q=%.3f%s)\n", ch.Key, ch.Metric.Name, ch.ChangeText(), ch.Verdict, ch.P, ch.Q, bound)
		}
	case countGated(c.Changes) == 0:
		fmt.Fprintln(&buf, "CANNOT JUDGE: no cell has clean runs on both sides (different profiles, or every run of one side failed).")
	case c.TooFew() > 0 && c.TooFew() == countGated(c.Changes):
		fmt.Fprintf(&buf, "CANNOT JUDGE: too few runs in every cell (need >= %d a side); run with a higher --count.\n", c.MinRuns)
	default:
		fmt.Fprintf(&buf, "ok: no significant change past %s", pct(c.Opts.Threshold))
		if n := c.TooFew(); n > 0 {
			fmt.Fprintf(&buf, " (%d cell(s) had too few runs to judge)", n)
		}
		fmt.Fprintln(&buf, ".")
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// ChangeText is the change with its interval: "-12.3% [-18.0, -6.1]".
func (ch *Change) ChangeText() string {
	if math.IsNaN(ch.Delta) {
		return ""
	}
	s := fmt.Sprintf("%+.1f%%", ch.Delta*100)
	if ch.Ratio.OK() {
		s += fmt.Sprintf(" [%+.1f, %+.1f]", (ch.Ratio.Lo-1)*100, (ch.Ratio.Hi-1)*100)
	}
	return s
}

func countGated(chs []Change) int {
	n := 0
	for _, ch := range chs {
		if ch.Gated && ch.Verdict != VerdictOnlyBase && ch.Verdict != VerdictOnlyNew {
			n++
		}
	}
	return n
}

func pct(f float64) string { return strconv.FormatFloat(f*100, 'f', -1, 64) + "%" }

// ParseThreshold parses "5%", "5" (percent) or "0.05".
func ParseThreshold(s string) (float64, error) {
	t := strings.TrimSpace(s)
	isPct := strings.HasSuffix(t, "%")
	t = strings.TrimSuffix(t, "%")
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("bad threshold %q (want a percentage such as 5%%)", s)
	}
	if isPct || f >= 1 {
		f /= 100
	}
	return f, nil
}
