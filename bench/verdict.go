package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/sockbench/sockbench/internal/human"
	"github.com/sockbench/sockbench/protocol"
)

// LimitModel is the model that is the machine's limit: every other model
// also reads as a fraction of it.
const LimitModel = "bare"

// VerdictConfidence is the confidence of every interval the verdicts and
// compare print.
const VerdictConfidence = 0.95

// Verdicts are the findings of one result set: for every cell (transport
// x mode x connections x size, and pipeline, rate, work and block where
// set), the models ranked on throughput, on server CPU per request and,
// on stream transports, on memory per connection, each against the best
// model of its cell. Every comparison is a Mann-Whitney U test over the
// repeated runs, and all of them in the set are adjusted together
// (Benjamini-Hochberg), as compare adjusts its cells: a model differs
// from the best only where q <= Alpha. Ratios and their intervals are
// Hodges-Lehmann estimates with Moses' intervals (ratioShift): the
// median of all run-by-run ratios, and the range of those ratios that
// the same U test would not reject.
//
// A client-bound cell (the load generator, not the server, was the
// bottleneck for some model) is never ranked on throughput: its req/s
// are the generator's. It is ranked on CPU per request alone.
type Verdicts struct {
	Cells []CellVerdict
	// Tests is how many comparisons were adjusted together.
	Tests int
	Alpha float64
	// Limit is, per model other than LimitModel, its median fraction of
	// the limit over the cells where both ran (Shares ordered by model).
	Limit []LimitShare
}

// LimitShare is one model's fraction of the limit over the cells of a set.
type LimitShare struct {
	Model       string
	Median      float64
	Min, Max    float64
	Cells       int
	ServerBound float64 // median throughput fraction over the server-bound cells; NaN when none
}

// CellVerdict is the findings of one cell: every model of it ranked.
type CellVerdict struct {
	// Key is the cell's workload; its Model is "".
	Key Key
	// ClientBound lists the models whose runs here were client-bound.
	ClientBound []string
	Rankings    []Ranking
	// Limit is each model's fraction of the limit in this cell: the
	// requests it serves per CPU-second over those LimitModel serves
	// (LimitModel's CPU per request over its own), with its interval.
	Limit map[string]Shift
	// Title names the cell in plain words ("udp echo, 32 conns").
	Title string
}

// Metrics of a Ranking.
const (
	RankThroughput = "rps"
	RankCPU        = "cpu_us_per_req"
	RankMemory     = "mem_kib_per_conn"
)

// Ranking is the models of one cell ordered on one metric, the best first.
// On throughput only the server-bound models are ranked; the Note names
// the client-bound ones.
type Ranking struct {
	Metric string // RankThroughput, RankCPU or RankMemory
	Higher bool   // higher is better
	// FromConns is, for memory per connection, the lower connection
	// count the slope starts from (the cell's Conns is the higher).
	FromConns int
	Best      string
	Standings []Standing
	// Note says why the models were not compared, when they were not.
	Note string
	// pairs are the U tests of every pair of models: all of them go into
	// the set's Benjamini-Hochberg family, not only those against the
	// best. Testing only the best against the rest would pick the pairs
	// after seeing the data (the best of four identical models is the
	// luckiest), and their p-values would be too small.
	pairs []pairTest
}

// pairTest is one U test between two models of a ranking.
type pairTest struct {
	a, b string
	p, q float64
}

// Standing is one model in a Ranking.
type Standing struct {
	Model  string
	Runs   int
	Median float64
	// Vs is the model against the best: a ratio (throughput, CPU) or a
	// difference in KiB per connection (memory), with its interval; the
	// best's own is 1 (or 0).
	Vs Shift
	// P and Q are the U test's two-sided p-value against the best and
	// its adjusted value; NaN for the best and where not tested.
	P, Q float64
	// Differs is Q <= Alpha: significantly worse than the best.
	Differs bool
}

// rankMetric describes how one ranked metric is read and worded.
type rankMetric struct {
	name, label, best string
	higher, diff      bool
}

var rankMetrics = map[string]rankMetric{
	RankThroughput: {RankThroughput, "throughput", "fastest", true, false},
	RankCPU:        {RankCPU, "CPU/request", "cheapest", false, false},
	RankMemory:     {RankMemory, "memory/conn", "least", false, true},
}

// ComputeVerdicts judges the clean runs of one result set at alpha (0
// means 0.05).
func ComputeVerdicts(rows []Row, alpha float64) *Verdicts {
	if alpha == 0 {
		alpha = 0.05
	}
	v := &Verdicts{Alpha: alpha}
	byKey := map[Key][]*Row{}
	for i := range rows {
		if r := &rows[i]; r.OK() && r.Model != "" {
			byKey[r.Key] = append(byKey[r.Key], r)
		}
	}
	// Cells: keys without the model, and the models each has.
	models := map[Key][]string{}
	for k := range byKey {
		c := k
		c.Model = ""
		models[c] = append(models[c], k.Model)
	}
	cells := make([]Key, 0, len(models))
	for c := range models {
		cells = append(cells, c)
		sortModels(models[c])
	}
	sort.Slice(cells, func(i, j int) bool { return cellLess(cells[i], cells[j]) })
	sizes := map[int]bool{}
	for _, c := range cells {
		sizes[c.Size] = true
	}
	runs := func(c Key, model string) []*Row { c.Model = model; return byKey[c] }
	for _, c := range cells {
		cv := CellVerdict{Key: c, Limit: map[string]Shift{}, Title: cellTitle(c, len(sizes) > 1)}
		ms := models[c]
		if len(ms) < 2 {
			continue // one model: nothing to rank
		}
		for _, m := range ms {
			for _, r := range runs(c, m) {
				if r.Bound == BoundClient || r.ClientSaturated {
					cv.ClientBound = append(cv.ClientBound, m)
					break
				}
			}
		}
		get := func(metric string) map[string][]float64 {
			vals := map[string][]float64{}
			for _, m := range ms {
				for _, r := range runs(c, m) {
					x := r.RPS
					if metric == RankCPU {
						x = r.CPUUSPerReq
					}
					if !math.IsNaN(x) && !math.IsInf(x, 0) && x > 0 {
						vals[m] = append(vals[m], x)
					}
				}
			}
			return vals
		}
		// Throughput ranks the server-bound models only: a client-bound
		// model's req/s are the generator's, a lower bound of its own.
		var free []string
		for _, m := range ms {
			if !slices.Contains(cv.ClientBound, m) {
				free = append(free, m)
			}
		}
		tput := rank(RankThroughput, free, get(RankThroughput))
		if len(cv.ClientBound) > 0 {
			why := fmt.Sprintf("client-bound (%s): req/s are the load generator's, not ranked", strings.Join(cv.ClientBound, ", "))
			if tput.Best == "" {
				tput = Ranking{Metric: RankThroughput, Higher: true, Note: why}
			} else {
				tput.Note = joinNote(why, tput.Note)
			}
		}
		cpu := get(RankCPU)
		cv.Rankings = append(cv.Rankings, tput, rank(RankCPU, ms, cpu))
		if lo, slopes := memorySlopes(c, ms, cells, byKey); lo > 0 {
			r := rank(RankMemory, ms, slopes)
			r.FromConns = lo
			cv.Rankings = append(cv.Rankings, r)
		}
		if base := cpu[LimitModel]; len(base) > 0 {
			for _, m := range ms {
				if m != LimitModel && len(cpu[m]) > 0 {
					cv.Limit[m] = ratioShift(base, cpu[m], VerdictConfidence)
				}
			}
		}
		v.Cells = append(v.Cells, cv)
	}
	v.adjust()
	v.limitShares(byKey)
	return v
}

// rank orders the models of one cell on one metric and tests each
// against the best (the best median). Q is set later, over the whole set.
func rank(metric string, models []string, vals map[string][]float64) Ranking {
	rm := rankMetrics[metric]
	r := Ranking{Metric: metric, Higher: rm.higher}
	var have []string
	for _, m := range models {
		if len(vals[m]) > 0 {
			have = append(have, m)
		}
	}
	if len(have) < 2 {
		r.Note = "fewer than two models measured"
		return r
	}
	med := map[string]float64{}
	for _, m := range have {
		s := slices.Clone(vals[m])
		sort.Float64s(s)
		med[m] = median(s)
	}
	better := func(a, b string) bool {
		if rm.higher {
			return med[a] > med[b]
		}
		return med[a] < med[b]
	}
	r.Best = have[0]
	for _, m := range have[1:] {
		if better(m, r.Best) {
			r.Best = m
		}
	}
	minRuns := MinRunsForAlpha(0.05)
	tooFew := false
	for i, a := range have {
		for _, b := range have[i+1:] {
			if len(vals[a]) >= minRuns && len(vals[b]) >= minRuns {
				r.pairs = append(r.pairs, pairTest{a, b, uTest(vals[a], vals[b]), math.NaN()})
			} else {
				tooFew = true
			}
		}
	}
	for _, m := range have {
		s := Standing{Model: m, Runs: len(vals[m]), Median: med[m], P: math.NaN(), Q: math.NaN()}
		switch {
		case m == r.Best && rm.diff:
			s.Vs = Shift{0, 0, 0}
		case m == r.Best:
			s.Vs = Shift{1, 1, 1}
		case rm.diff:
			s.Vs = diffShift(vals[m], vals[r.Best], VerdictConfidence)
		default:
			s.Vs = ratioShift(vals[m], vals[r.Best], VerdictConfidence)
		}
		r.Standings = append(r.Standings, s)
	}
	if tooFew {
		r.Note = fmt.Sprintf("too few runs to test (need >= %d a model)", minRuns)
	}
	sort.SliceStable(r.Standings, func(i, j int) bool {
		a, b := r.Standings[i], r.Standings[j]
		if (a.Model == r.Best) != (b.Model == r.Best) {
			return a.Model == r.Best
		}
		return better(a.Model, b.Model)
	})
	return r
}

// memorySlopes is, for a stream cell with a lower connection count of the
// same workload, each model's memory per connection run by run: the peak
// RSS at this count less that at the next lower one, over the
// connections added. The runs of the two counts are paired in time
// order (bench interleaves them round by round). Datagram cells have
// none: their server holds one socket however many the client opens.
func memorySlopes(c Key, models []string, cells []Key, byKey map[Key][]*Row) (int, map[string][]float64) {
	if tr, err := protocol.ParseTransport(c.Net); err != nil || !tr.IsStream() {
		return 0, nil
	}
	lo := 0
	for _, o := range cells {
		same := o
		same.Conns = c.Conns
		if same == c && o.Conns < c.Conns && o.Conns > lo {
			lo = o.Conns
		}
	}
	if lo == 0 {
		return 0, nil
	}
	out := map[string][]float64{}
	for _, m := range models {
		hk, lk := c, c
		hk.Model, lk.Model, lk.Conns = m, m, lo
		hi, low := byTime(byKey[hk]), byTime(byKey[lk])
		for i := 0; i < len(hi) && i < len(low); i++ {
			if hi[i].ServerRSSKB > 0 && low[i].ServerRSSKB > 0 {
				out[m] = append(out[m], float64(hi[i].ServerRSSKB-low[i].ServerRSSKB)/float64(c.Conns-lo))
			}
		}
	}
	return lo, out
}

func byTime(rows []*Row) []*Row {
	s := slices.Clone(rows)
	sort.SliceStable(s, func(i, j int) bool { return s[i].Time.Before(s[j].Time) })
	return s
}

// adjust adjusts the p-values of every pair tested in the set together,
// then gives each standing the test of its model against the best.
func (v *Verdicts) adjust() {
	var ps []float64
	var at []*pairTest
	for ci := range v.Cells {
		for ri := range v.Cells[ci].Rankings {
			r := &v.Cells[ci].Rankings[ri]
			for pi := range r.pairs {
				ps = append(ps, r.pairs[pi].p)
				at = append(at, &r.pairs[pi])
			}
		}
	}
	v.Tests = len(ps)
	for i, q := range benjaminiHochberg(ps) {
		at[i].q = q
	}
	for ci := range v.Cells {
		for ri := range v.Cells[ci].Rankings {
			r := &v.Cells[ci].Rankings[ri]
			for si := range r.Standings {
				s := &r.Standings[si]
				for _, pt := range r.pairs {
					if (pt.a == s.Model && pt.b == r.Best) || (pt.b == s.Model && pt.a == r.Best) {
						s.P, s.Q, s.Differs = pt.p, pt.q, pt.q <= v.Alpha
					}
				}
			}
		}
	}
}

// limitShares sums up each model's fraction of the limit over the cells.
func (v *Verdicts) limitShares(byKey map[Key][]*Row) {
	per := map[string][]float64{}
	tput := map[string][]float64{}
	for _, c := range v.Cells {
		for m, s := range c.Limit {
			if !math.IsNaN(s.Est) {
				per[m] = append(per[m], s.Est)
			}
		}
		if len(c.ClientBound) > 0 {
			continue
		}
		lk := c.Key
		lk.Model = LimitModel
		base := values(byKey[lk], Metric{Get: func(r *Row) float64 { return r.RPS }})
		if len(base) == 0 {
			continue
		}
		for m := range c.Limit {
			k := c.Key
			k.Model = m
			if mv := values(byKey[k], Metric{Get: func(r *Row) float64 { return r.RPS }}); len(mv) > 0 {
				tput[m] = append(tput[m], ratioShift(mv, base, VerdictConfidence).Est)
			}
		}
	}
	names := make([]string, 0, len(per))
	for m := range per {
		names = append(names, m)
	}
	sortModels(names)
	for _, m := range names {
		s := slices.Clone(per[m])
		sort.Float64s(s)
		ls := LimitShare{Model: m, Median: median(s), Min: s[0], Max: s[len(s)-1], Cells: len(s), ServerBound: math.NaN()}
		if t := slices.Clone(tput[m]); len(t) > 0 {
			sort.Float64s(t)
			ls.ServerBound = median(t)
		}
		v.Limit = append(v.Limit, ls)
	}
}

// modelOrder is the order models are listed in: the three models, then
// the limit, then any other.
var modelOrder = map[string]int{"threaded": 0, "eventloop": 1, "prefork": 2, LimitModel: 3}

func sortModels(ms []string) {
	sort.SliceStable(ms, func(i, j int) bool {
		oi, iok := modelOrder[ms[i]]
		oj, jok := modelOrder[ms[j]]
		if iok && jok {
			return oi < oj
		}
		if iok != jok {
			return iok
		}
		return ms[i] < ms[j]
	})
}

// cellLess orders cells by transport (protocol.Transports order), then
// mode, connections and the rest.
func cellLess(a, b Key) bool {
	if a.Net != b.Net {
		ta, ea := protocol.ParseTransport(a.Net)
		tb, eb := protocol.ParseTransport(b.Net)
		if ea == nil && eb == nil {
			return ta < tb
		}
		return a.Net < b.Net
	}
	return a.Less(b)
}

// cellTitle names a cell in plain words: "udp echo, 32 conns", with the
// pipeline, size (when the set has several or it is not the default),
// rate, work and block where they are set.
func cellTitle(k Key, sizes bool) string {
	conns := "conns"
	if k.Conns == 1 {
		conns = "conn"
	}
	s := fmt.Sprintf("%s %s, %d %s", k.Net, k.Mode, k.Conns, conns)
	if k.Pipeline > 1 {
		s += fmt.Sprintf(" x %d in flight", k.Pipeline)
	}
	if sizes || k.Size != DefaultSize {
		s += ", " + protocol.Size(k.Size).String()
	}
	if k.Rate > 0 {
		s += ", " + human.Rate(k.Rate) + " req/s open loop"
	}
	if k.WorkUS > 0 {
		s += ", work " + human.Micros(float64(k.WorkUS))
	}
	if k.BlockUS > 0 {
		s += ", block " + human.Micros(float64(k.BlockUS))
	}
	return s
}

// fmtQ formats a q-value with two significant digits.
func fmtQ(q float64) string {
	switch {
	case math.IsNaN(q):
		return "-"
	case q < 0.001:
		return "< 0.001"
	case q >= 0.1:
		return strconv.FormatFloat(q, 'f', 2, 64)
	}
	return strconv.FormatFloat(q, 'g', 2, 64)
}

// fmtShift formats a standing against the best: "0.83× [0.80, 0.86]" or
// "+7.9 KiB [5.1, 10.2]".
func fmtShift(s Shift, diff bool) string {
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }
	if diff {
		f = func(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }
	}
	est := f(s.Est) + "×"
	if diff {
		est = fmt.Sprintf("%+.1f KiB", s.Est)
	}
	if !s.OK() {
		return est
	}
	return fmt.Sprintf("%s [%s, %s]", est, f(s.Lo), f(s.Hi))
}

// Sentence says a ranking in plain words: "bare fastest; eventloop 0.83×
// [0.80, 0.86] (q 0.004); no significant difference: prefork".
func (r *Ranking) Sentence() string {
	rm := rankMetrics[r.Metric]
	if r.Best == "" {
		return r.Note
	}
	var differ, same []string
	for _, s := range r.Standings[1:] {
		if s.Differs {
			differ = append(differ, fmt.Sprintf("%s %s (q %s)", s.Model, fmtShift(s.Vs, rm.diff), fmtQ(s.Q)))
		} else {
			same = append(same, s.Model)
		}
	}
	if len(differ) == 0 {
		all := []string{r.Best}
		all = append(all, same...)
		s := "no significant difference between " + strings.Join(all, ", ")
		if r.Note != "" {
			s += " (" + r.Note + ")"
		}
		return s
	}
	s := r.Best + " " + rm.best + "; " + strings.Join(differ, ", ")
	if len(same) > 0 {
		s += "; no significant difference from " + r.Best + ": " + strings.Join(same, ", ")
	}
	if r.Note != "" {
		s += " (" + r.Note + ")"
	}
	return s
}

// Label names the ranked metric: "throughput", "CPU/request" or
// "memory/conn (1→32)".
func (r *Ranking) Label() string {
	l := rankMetrics[r.Metric].label
	if r.FromConns > 0 {
		l += fmt.Sprintf(" (from %d)", r.FromConns)
	}
	return l
}

// LimitLine says each model's fraction of the limit, or "" without one.
func (v *Verdicts) LimitLine() string {
	if len(v.Limit) == 0 {
		return ""
	}
	var parts []string
	for _, l := range v.Limit {
		p := fmt.Sprintf("%s %.2f", l.Model, l.Median)
		if l.Cells > 1 {
			p += fmt.Sprintf(" (%.2f to %.2f)", l.Min, l.Max)
		}
		parts = append(parts, p)
	}
	return fmt.Sprintf("Of the limit (%s = 1: the requests a model serves per CPU-second, as a fraction of %s's; the median over the cells, and its range): %s.",
		LimitModel, LimitModel, strings.Join(parts, ", "))
}

// Legend explains how to read the verdicts, in one or two lines.
func (v *Verdicts) Legend() string {
	return fmt.Sprintf("Each model against the best of its cell: ratio = Hodges-Lehmann estimate over the runs [%.0f%% interval]; "+
		"q = Mann-Whitney p adjusted over all %d pairs of models tested in the set (Benjamini-Hochberg); a model differs only where q <= %v.",
		VerdictConfidence*100, v.Tests, v.Alpha)
}

// WriteText prints the verdicts: the limit line, then each cell's
// rankings in plain words.
func (v *Verdicts) WriteText(w io.Writer) {
	if len(v.Cells) == 0 {
		return
	}
	fmt.Fprintln(w, "FINDINGS")
	if l := v.LimitLine(); l != "" {
		fmt.Fprintln(w, wrap(l, 110, ""))
	}
	fmt.Fprintln(w, wrap(v.Legend(), 110, ""))
	width := 0
	for _, c := range v.Cells {
		for _, r := range c.Rankings {
			width = max(width, len([]rune(r.Label())))
		}
	}
	for _, c := range v.Cells {
		fmt.Fprintf(w, "\n%s\n", c.Title)
		for _, r := range c.Rankings {
			label := r.Label()
			pad := strings.Repeat(" ", width-len([]rune(label)))
			fmt.Fprintf(w, "%s\n", wrap(fmt.Sprintf("  %s%s  %s", label, pad, r.Sentence()), 110, strings.Repeat(" ", width+4)))
		}
		if lim := c.limitText(); lim != "" {
			label := "of the limit"
			fmt.Fprintf(w, "  %s%s  %s\n", label, strings.Repeat(" ", max(0, width-len(label))), lim)
		}
	}
}

// limitText is the cell's fractions of the limit: "eventloop 0.78, threaded 0.71".
func (c *CellVerdict) limitText() string {
	ms := make([]string, 0, len(c.Limit))
	for m := range c.Limit {
		ms = append(ms, m)
	}
	sortModels(ms)
	var parts []string
	for _, m := range ms {
		s := c.Limit[m]
		p := fmt.Sprintf("%s %.2f", m, s.Est)
		if s.OK() {
			p += fmt.Sprintf(" [%.2f, %.2f]", s.Lo, s.Hi)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// wrap breaks s into lines of at most width runes at spaces, indenting
// the continuation lines.
func wrap(s string, width int, indent string) string {
	words := strings.Split(s, " ")
	var b strings.Builder
	line := 0
	for i, w := range words {
		n := len([]rune(w))
		if i > 0 {
			if line+1+n > width && line > len(indent) {
				b.WriteString("\n" + indent)
				line = len(indent)
			} else {
				b.WriteByte(' ')
				line++
			}
		}
		b.WriteString(w)
		line += n
	}
	return b.String()
}
