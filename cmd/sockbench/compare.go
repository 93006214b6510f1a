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
		basis           string
		allowPartial    bool
	)
	cmd := &cobra.Command{
		Use:   "compare BASE NEW",
		Short: "Compare two result sets cell by cell; exit 1 on a significant change past the threshold",
		Long: `compare reads two result sets (a bench CSV or .txt, what 'sockbench load' writes
as --format json or csv, or a directory of such files, merged) and compares
each cell's runs with a Mann-Whitney U test (golang.org/x/perf benchmath, no
assumption about the distribution). For every cell it shows the median and
the farthest run on both sides, the change with its 95% interval
(Hodges-Lehmann), the p-value and q, the p-value adjusted for all gated
comparisons together (Benjamini-Hochberg: a profile of 48 cells would
otherwise flag one of them by chance in most comparisons of a build with
itself). It exits 1 when a gated metric (--metrics, default rps and
cpu_us_per_req) changed by more than --threshold AND q <= --alpha, 0
otherwise, 2 for bad input; it says so, instead of guessing, when a cell has
too few runs to judge (4 a side at 0.05).

In a client-bound cell (the load generator, not the server, was the
bottleneck) throughput is shown, never gated: only what the server costs
per request tells there.

--basis auto (the default) compares absolute numbers when both sets ran on
one machine (host and CPU) within a day of each other. Otherwise it compares
each model's numbers as a ratio to the limit server (bare) of the same
workload, run by run, says so in one line, and never fails on what moved
for every model alike; the absolute changes are still shown. --basis
absolute or ratio forces one.

A partial set (an interrupted bench) is refused unless --allow-partial.`,
		Example: `  sockbench compare results/baseline results/20261201T190723Z-vm.csv
  sockbench compare old.txt new.txt --threshold 2% --regressions-only
  sockbench compare base/ new/ --metrics rps,p99_us --show server_rss_kb   # directories: their CSVs merged
  sockbench compare workstation.csv pi.csv          # other host: ratios to bare, not req/s
  sockbench compare before/ after/                  # directories of 'sockbench load --format json' runs`,
		Args: argsError(cobra.ExactArgs(2), "BASE and NEW results (CSV or .txt files, or directories)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			thr, err := bench.ParseThreshold(threshold)
			if err != nil {
				return usagef("--threshold: %v", err)
			}
			if alpha <= 0 || alpha >= 1 {
				return usagef("--alpha must be between 0 and 1")
			}
			switch basis {
			case bench.BasisAuto, bench.BasisAbsolute, bench.BasisRatio:
			default:
				return usagef("--basis %q: want auto, absolute or ratio", basis)
			}
			var sets [2][]bench.Row
			for i, a := range args {
				rows, err := bench.ReadResults(a)
				if err != nil {
					return usageError{err}
				}
				if p, ok := bench.PartialOf(rows); ok && !allowPartial {
					return usagef("%s is a partial result set (%s): give --allow-partial to compare what it holds", a, p)
				}
				sets[i] = rows
			}
			c, err := bench.Compare(sets[0], sets[1], bench.CompareOptions{Threshold: thr, Alpha: alpha,
				Gate: splitList(gate), Show: splitList(show), RegressionsOnly: regressionsOnly,
				NoCorrection: noCorrection, Basis: basis})
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
	f.StringSliceVar(&gate, "metrics", bench.DefaultGate, "metrics whose changes fail the comparison, in one Benjamini-Hochberg family: rps, mbps, p50_us, p99_us, p999_us, cpu_us_per_req, server_rss_kb (throughput is not gated in a client-bound cell)")
	f.StringSliceVar(&show, "show", []string{"p99_us"}, "further metrics shown for context, not gated")
	f.StringVar(&basis, "basis", bench.BasisAuto, "what to compare: auto (absolute on one machine within a day, else ratios to the limit server bare), absolute or ratio")
	f.BoolVar(&allowPartial, "allow-partial", false, "compare a partial result set (an interrupted bench) instead of refusing it")
	f.BoolVar(&regressionsOnly, "regressions-only", false, "fail only on changes for the worse")
	f.BoolVar(&noCorrection, "no-correction", false, "judge each cell's p-value alone (expect alpha x cells false alarms)")
	completeValues(cmd, "basis", func() []string { return []string{bench.BasisAuto, bench.BasisAbsolute, bench.BasisRatio} }, cobra.ShellCompDirectiveNoFileComp)
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
