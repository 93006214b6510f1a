package bench

import (
	"fmt"
	"math"
	"strings"

	"github.com/sockbench/sockbench/internal/human"
)

// partialData is the "partial" section: a banner over a cut-short set.
type partialData struct{ Set, Partial string }

// findingsData is the "findings" section: the verdicts in plain words.
type findingsData struct {
	Heading, Limit, Legend string
	Cells                  []findingCell
}

type findingCell struct {
	Title, Bound, Limit string
	Lines               []findingLine
}

type findingLine struct {
	Label, Text string
	Differs     bool // some model differs significantly from the best
}

func findingsOf(v *Verdicts, set string, named bool) findingsData {
	f := findingsData{Heading: "Findings", Limit: v.LimitLine(), Legend: v.Legend()}
	if named {
		f.Heading += " — " + set
	}
	for _, c := range v.Cells {
		fc := findingCell{Title: c.Title, Limit: c.limitText()}
		if len(c.ClientBound) > 0 {
			fc.Bound = "client-bound"
		}
		for _, r := range c.Rankings {
			l := findingLine{Label: r.Label(), Text: r.Sentence()}
			for _, s := range r.Standings {
				l.Differs = l.Differs || s.Differs
			}
			fc.Lines = append(fc.Lines, l)
		}
		f.Cells = append(f.Cells, fc)
	}
	return f
}

// verdictsData is the "verdicts" section: every standing in numbers.
type verdictsData struct {
	Heading string
	Rows    []verdictRow
}

type verdictRow struct {
	Cell, Metric, Model, Median, Vs, Q, Verdict string
	Runs                                        int
	Best, Differs                               bool
}

func verdictTable(v *Verdicts, set string, named bool) verdictsData {
	out := verdictsData{Heading: "Verdicts in numbers"}
	if named {
		out.Heading += " — " + set
	}
	for _, c := range v.Cells {
		for _, r := range c.Rankings {
			rm := rankMetrics[r.Metric]
			if r.Best == "" {
				out.Rows = append(out.Rows, verdictRow{Cell: c.Title, Metric: r.Label(), Verdict: r.Note})
				continue
			}
			for _, s := range r.Standings {
				row := verdictRow{Cell: c.Title, Metric: r.Label(), Model: s.Model, Runs: s.Runs,
					Median: human.Number(s.Median), Vs: fmtShift(s.Vs, rm.diff), Q: fmtQ(s.Q),
					Best: s.Model == r.Best, Differs: s.Differs}
				switch {
				case row.Best:
					row.Verdict = rm.best
				case s.Differs:
					row.Verdict = "differs from " + r.Best
				case math.IsNaN(s.Q):
					row.Verdict = "not tested"
				default:
					row.Verdict = "no significant difference"
				}
				out.Rows = append(out.Rows, row)
			}
		}
	}
	return out
}

// diffView is the "diff" section: what changed from the first set to a
// later one, cell by cell, as compare judges it.
type diffView struct {
	Heading, Basis, Summary string
	Notes                   []string
	Rows                    []diffRow
}

type diffRow struct {
	Cell, Metric, Base, New, Change, Q, Verdict string
	Worse, Better                               bool
}

func diffData(base, set ResultSet) (diffView, error) {
	c, err := Compare(base.Rows, set.Rows, CompareOptions{Threshold: 0.05})
	if err != nil {
		return diffView{}, err
	}
	d := diffView{Heading: fmt.Sprintf("Changes: %s against %s", set.Name, base.Name), Basis: c.BasisNote, Notes: c.Notes}
	failed := c.Failed()
	switch {
	case len(failed) > 0:
		var parts []string
		for _, ch := range failed {
			parts = append(parts, fmt.Sprintf("%s %s %s (q %s)", ch.Key, ch.Metric.Label, ch.ChangeText(), fmtQ(ch.Q)))
		}
		d.Summary = fmt.Sprintf("%d significant change(s) past 5%%: %s.", len(failed), strings.Join(parts, "; "))
	case countGated(c.Changes) == 0:
		d.Summary = "Nothing to compare: no cell has clean runs in both sets."
	default:
		d.Summary = "No significant change past 5% in any cell."
	}
	for _, ch := range c.Changes {
		if !ch.Gated && ch.Note == "" {
			continue // context metrics stay in compare's own table
		}
		row := diffRow{Cell: cellTitle(ch.Key, false) + " · " + ch.Key.Model, Metric: ch.Metric.Label,
			Change: ch.ChangeText(), Q: fmtQ(ch.Q), Verdict: ch.Verdict,
			Worse: ch.Verdict == VerdictWorse, Better: ch.Verdict == VerdictBetter}
		if ch.NBase > 0 {
			row.Base = human.Number(ch.Base.Center)
		}
		if ch.NNew > 0 {
			row.New = human.Number(ch.New.Center)
		}
		if ch.Note != "" {
			row.Verdict += ": " + ch.Note
		}
		d.Rows = append(d.Rows, row)
	}
	return d, nil
}
