package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sockbench/sockbench/bench"
)

// newCompareCmd builds `sockbench compare`.
func newCompareCmd() *cobra.Command {
	var (
		threshold       string
		alpha           float64
		gate            []string
		show            []string
		regressionsOnly bool
		noCorrection    bool
	)
	cmd := &cobra.Command{
		Use:   "compare BASE NEW",
		Short: "Compare two result sets cell by cell; exit 1 on a significant change past the threshold",
		Long: `compare reads two results files (CSV, or the Go benchmark format .txt, or
directories of CSVs, merged) and compares each cell's runs with a Mann-Whitney
U test (golang.org/x/perf benchmath, no assumption about the distribution).
For every cell it shows the median and the farthest run on both sides, the
change, the p-value and q, the p-value adjusted for all gated cells together
(Benjamini-Hochberg: a profile of 36 cells would otherwise flag one of them by
chance in most comparisons of a build with itself). It exits 1 when a gated
metric (--metrics, default rps) changed by more than --threshold AND q <=
--alpha; it says so, instead of guessing, when a cell has too few runs to
judge (4 a side at 0.05).`,
		Example: `  sockbench compare results/baseline results/20261201T190723Z-vm.csv
  sockbench compare old.txt new.txt --threshold 2% --regressions-only
  sockbench compare base/ new/ --metrics rps,p99_us --show cpu_us_per_req   # directories: their CSVs merged`,
		Args: argsError(cobra.ExactArgs(2), "BASE and NEW results (CSV or .txt files, or directories)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			thr, err := bench.ParseThreshold(threshold)
			if err != nil {
				return usagef("--threshold: %v", err)
			}
			if alpha <= 0 || alpha >= 1 {
				return usagef("--alpha must be between 0 and 1")
			}
			base, err := bench.ReadResults(args[0])
			if err != nil {
				return usageError{err}
			}
			nw, err := bench.ReadResults(args[1])
			if err != nil {
				return usageError{err}
			}
			c, err := bench.Compare(base, nw, bench.CompareOptions{Threshold: thr, Alpha: alpha,
				Gate: splitList(gate), Show: splitList(show), RegressionsOnly: regressionsOnly,
				NoCorrection: noCorrection})
			if err != nil {
				return usageError{err}
			}
			if err := c.WriteText(os.Stdout); err != nil {
				return err
			}
			if failed := c.Failed(); len(failed) > 0 {
				// The cells are named in the table's FAIL list above.
				return exitError{exitFailure, fmt.Errorf("%d significant change(s) past %s", len(failed), threshold)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&threshold, "threshold", "5%", "smallest change of a median that fails, e.g. 5%")
	f.Float64Var(&alpha, "alpha", 0.05, "significance level of the U test")
	f.StringSliceVar(&gate, "metrics", []string{"rps"}, "metrics whose changes fail the comparison: rps, mbps, p50_us, p99_us, p999_us, cpu_us_per_req, server_rss_kb")
	f.StringSliceVar(&show, "show", []string{"p99_us", "cpu_us_per_req"}, "further metrics shown for context, not gated")
	f.BoolVar(&regressionsOnly, "regressions-only", false, "fail only on changes for the worse")
	f.BoolVar(&noCorrection, "no-correction", false, "judge each cell's p-value alone (expect alpha x cells false alarms)")
	for _, name := range []string{"metrics", "show"} {
		completeValues(cmd, name, metricNames, cobra.ShellCompDirectiveNoFileComp)
	}
	return cmd
}

// metricNames are the metrics compare knows, for completion.
func metricNames() []string {
	var names []string
	for _, m := range bench.Metrics {
		names = append(names, m.Name)
	}
	return names
}

func splitList(v []string) []string {
	var out []string
	for _, s := range v {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
