package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/montanaflynn/stats"
	"golang.org/x/perf/benchfmt"
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
	// Gate lists the metrics whose changes fail the comparison.
	Gate []string
	// Show lists further metrics printed for context.
	Show []string
	// RegressionsOnly ignores significant improvements when gating.
	RegressionsOnly bool
	// NoCorrection judges every cell's p-value against Alpha on its own.
	// By default the p-values of all gated comparisons are adjusted
	// together (Benjamini-Hochberg): the quick profile tests 36 cells,
	// and at alpha 0.05 uncorrected tests flag at least one of them in
	// most comparisons of a build with itself.
	NoCorrection bool
}

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
	Delta                 float64 // relative change of the median, new/base - 1
	// P is the U test's two-sided p-value; Q is P adjusted for the number
	// of comparisons in its family (the gated ones, or the shown ones),
	// and what the verdict is judged by (Q == P with NoCorrection).
	P, Q    float64
	Verdict string
	Note    string
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
	// Notes are warnings about the inputs (different machines, failed runs).
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

// Compare groups the clean runs of base and new by cell and compares every
// metric in opts.Gate and opts.Show with a Mann-Whitney U test (benchmath's
// AssumeNothing). A change fails when it is both significant at Alpha,
// after adjusting the p-values of all gated comparisons together
// (Benjamini-Hochberg, unless NoCorrection), and larger than Threshold.
// Cells with fewer runs than the test needs are reported as such, never
// judged.
func Compare(base, new []Row, opts CompareOptions) (*Comparison, error) {
	if opts.Alpha == 0 {
		opts.Alpha = 0.05
	}
	if len(opts.Gate) == 0 {
		opts.Gate = []string{"rps"}
	}
	cmp := &Comparison{Opts: opts, MinRuns: MinRunsForAlpha(opts.Alpha)}
	var metrics []Metric
	gated := map[string]bool{}
	for _, name := range opts.Gate {
		m, ok := MetricByName(name)
		if !ok {
			return nil, fmt.Errorf("bench: unknown metric %q (known: %s)", name, metricNames())
		}
		if !gated[name] {
			metrics = append(metrics, m)
		}
		gated[name] = true
	}
	for _, name := range opts.Show {
		m, ok := MetricByName(name)
		if !ok {
			return nil, fmt.Errorf("bench: unknown metric %q (known: %s)", name, metricNames())
		}
		if !gated[name] {
			metrics = append(metrics, m)
			gated[name] = false
		}
	}
	bg, bnotes := groupRows(base, "base")
	ng, nnotes := groupRows(new, "new")
	cmp.Notes = append(append(cmp.Notes, bnotes...), nnotes...)
	if bh, nh := machines(base), machines(new); bh != "" && nh != "" && bh != nh {
		cmp.Notes = append(cmp.Notes, fmt.Sprintf("base ran on %s, new on %s: differences include the hardware, not only the code", bh, nh))
	}
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
		for _, m := range metrics {
			ch := Change{Key: k, Metric: m, Gated: gated[m.Name], Delta: math.NaN(), P: math.NaN(), Q: math.NaN()}
			bv, nv := values(bg[k], m), values(ng[k], m)
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
			if ch.Base.Center != 0 {
				ch.Delta = ch.New.Center/ch.Base.Center - 1
			}
			if len(bv) < cmp.MinRuns || len(nv) < cmp.MinRuns {
				ch.Verdict = VerdictTooFew
				ch.Note = fmt.Sprintf("need >= %d runs a side at alpha %v, have %d and %d", cmp.MinRuns, opts.Alpha, len(bv), len(nv))
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

// adjust sets Q of the changes at idx: their P adjusted by the
// Benjamini-Hochberg step-up procedure (q of the i-th smallest of m
// p-values is min over j >= i of p_j*m/j), or P itself with none. When
// no change is real, BH keeps the chance of flagging any at alpha; when
// many cells moved, it still finds them with few runs, where Bonferroni
// would need p <= alpha/m of each.
func adjust(chs []Change, idx []int, none bool) {
	if none {
		for _, i := range idx {
			chs[i].Q = chs[i].P
		}
		return
	}
	sort.SliceStable(idx, func(a, b int) bool { return chs[idx[a]].P < chs[idx[b]].P })
	m := float64(len(idx))
	q := 1.0
	for r := len(idx) - 1; r >= 0; r-- {
		q = math.Min(q, chs[idx[r]].P*m/float64(r+1))
		chs[idx[r]].Q = q
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

// machines names the host(s) and CPU of a result set.
func machines(rows []Row) string {
	set := map[string]bool{}
	for _, r := range rows {
		if r.Host != "" || r.CPUModel != "" {
			set[fmt.Sprintf("%s (%s)", r.Host, r.CPUModel)] = true
		}
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
	for _, n := range c.Notes {
		fmt.Fprintln(&buf, "note:", n)
	}
	tw := tabwriter.NewWriter(&buf, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "cell\tmetric\tbase median ±spread\tnew median ±spread\tchange\tp\tq\tverdict\t")
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
		delta, p, q := "", "", ""
		if !math.IsNaN(ch.Delta) {
			delta = fmt.Sprintf("%+.1f%%", ch.Delta*100)
		}
		if !math.IsNaN(ch.P) {
			p = fmt.Sprintf("%.3f", ch.P)
		}
		if !math.IsNaN(ch.Q) {
			q = fmt.Sprintf("%.3f", ch.Q)
		}
		verdict := ch.Verdict
		if ch.Verdict == VerdictBetter || ch.Verdict == VerdictWorse {
			verdict = strings.ToUpper(verdict) + fmt.Sprintf(" (past %s)", pct(c.Opts.Threshold))
		}
		if ch.Note != "" {
			verdict += ": " + ch.Note
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", ch.Key, label, bs, ns, delta, p, q, verdict)
	}
	tw.Flush()
	fmt.Fprintf(&buf, "±spread: the farthest run from the median. p: Mann-Whitney U, two-sided. * gates the result:\n"+
		"a change fails when q <= %v and the median moved more than %s.\n", c.Opts.Alpha, pct(c.Opts.Threshold))
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
			fmt.Fprintf(&buf, "  %s %s %+.1f%% (%s, p=%.3f q=%.3f)\n", ch.Key, ch.Metric.Name, ch.Delta*100, ch.Verdict, ch.P, ch.Q)
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

// ReadResults reads a results file: a CSV, or Go benchmark format (.txt)
// as WriteBenchfmt writes it. A directory means every *.csv in it, merged
// (runs of one build made in several sittings, e.g. interleaved in CI).
func ReadResults(path string) ([]Row, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		files, _ := filepath.Glob(filepath.Join(path, "*.csv"))
		if len(files) == 0 {
			return nil, fmt.Errorf("bench: no *.csv in directory %s", path)
		}
		sort.Strings(files)
		var all []Row
		for _, f := range files {
			rows, err := ReadCSVFile(f)
			if err != nil {
				return nil, err
			}
			all = append(all, rows...)
		}
		return all, nil
	}
	if strings.HasSuffix(path, ".csv") {
		return ReadCSVFile(path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer f.Close()
	var head [512]byte
	n, _ := io.ReadFull(f, head[:])
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if bytes.HasPrefix(head[:n], []byte("time,")) {
		return ReadCSV(f)
	}
	rows, err := ReadBenchfmt(f, path)
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %w", path, err)
	}
	return rows, nil
}

// ReadBenchfmt reads runs written by WriteBenchfmt back into rows (only
// the fields the format carries).
func ReadBenchfmt(r io.Reader, name string) ([]Row, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	// The build's identity is in "# key: value" comment lines (see
	// WriteBenchfmt); as config lines they apply to the results below them.
	lines := bytes.Split(data, []byte("\n"))
	for i, l := range lines {
		if rest, ok := bytes.CutPrefix(l, []byte(buildKeyPrefix)); ok {
			for _, k := range []string{"go_version:", "suite_version:", "commit:", "server_args:"} {
				if bytes.HasPrefix(rest, []byte(k)) {
					lines[i] = rest
				}
			}
		}
	}
	br := benchfmt.NewReader(bytes.NewReader(bytes.Join(lines, []byte("\n"))), name)
	var rows []Row
	for br.Scan() {
		res, ok := br.Result().(*benchfmt.Result)
		if !ok {
			if se, isErr := br.Result().(*benchfmt.SyntaxError); isErr {
				return nil, se
			}
			continue
		}
		k, err := parseBenchName(string(res.Name))
		if err != nil {
			continue // somebody else's benchmark in the same file
		}
		row := Row{Key: k, Status: StatusOK, Requests: int64(res.Iters)}
		row.Host, row.OS, row.Arch = res.GetConfig("host"), res.GetConfig("goos"), res.GetConfig("goarch")
		row.CPUModel, row.Commit = res.GetConfig("cpu"), res.GetConfig("commit")
		row.GoVersion, row.SuiteVersion = res.GetConfig("go_version"), res.GetConfig("suite_version")
		row.Cores, _ = strconv.Atoi(res.GetConfig("cores"))
		row.ServerArgs, row.ServerCPUList, row.ClientCPUList = res.GetConfig("server_args"), res.GetConfig("server_cpus"), res.GetConfig("client_cpus")
		get := func(unit string, scale float64) float64 {
			for _, v := range res.Values {
				if v.OrigUnit == unit || (v.OrigUnit == "" && v.Unit == unit) {
					if v.OrigUnit != "" {
						return v.OrigValue * scale
					}
					return v.Value * scale
				}
			}
			return math.NaN()
		}
		row.RPS = get("req/s", 1)
		row.MBps = get("MB/s", 1)
		row.P50US, row.P90US, row.P99US = get("p50-ns", 1e-3), get("p90-ns", 1e-3), get("p99-ns", 1e-3)
		row.P999US, row.MaxUS = get("p99.9-ns", 1e-3), get("max-ns", 1e-3)
		row.P9999US = math.NaN()
		row.CPUUSPerReq = get("server-cpu-ns/req", 1e-3)
		row.ServerRSSKB = int64(get("server-peak-rss-B", 1.0/1024))
		rows = append(rows, row)
	}
	if err := br.Err(); err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, errors.New("no sockbench benchmark lines found")
	}
	return rows, nil
}

// parseBenchName parses "Echo/model=threaded/net=tcp/conns=1/..." (the
// leading "Benchmark" already stripped by benchfmt).
func parseBenchName(name string) (Key, error) {
	parts := strings.Split(name, "/")
	k := Key{Mode: strings.ToLower(parts[0]), Pipeline: 1}
	if k.Mode != "echo" && k.Mode != "upper" {
		return k, errors.New("not a sockbench benchmark")
	}
	for _, p := range parts[1:] {
		key, val, ok := strings.Cut(p, "=")
		if !ok {
			return k, errors.New("bad name part " + p)
		}
		var err error
		switch key {
		case "model":
			k.Model = val
		case "net":
			k.Net = val
		case "conns":
			k.Conns, err = strconv.Atoi(val)
		case "pipeline":
			k.Pipeline, err = strconv.Atoi(val)
		case "size":
			k.Size, err = strconv.Atoi(val)
		case "rate":
			k.Rate, err = strconv.ParseFloat(val, 64)
		case "work":
			k.WorkUS, err = strconv.ParseInt(strings.TrimSuffix(val, "us"), 10, 64)
		case "block":
			k.BlockUS, err = strconv.ParseInt(strings.TrimSuffix(val, "us"), 10, 64)
		}
		if err != nil {
			return k, err
		}
	}
	if k.Model == "" || k.Net == "" {
		return k, errors.New("not a sockbench benchmark")
	}
	return k, nil
}
