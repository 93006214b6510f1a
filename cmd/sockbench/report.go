package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sockbench/sockbench/bench"
)

// newReportCmd builds `sockbench report`.
func newReportCmd() *cobra.Command {
	var out, title string
	cmd := &cobra.Command{
		Use:   "report RESULTS.csv... [-o report.html]",
		Short: "Draw results as an HTML report that opens offline; several files are overlaid",
		Long: `report draws one or more results files (CSV or .txt) in one self-contained
HTML page: throughput per model and transport, latency percentile curves,
server CPU per request and memory per connection. Several files (two machines,
two versions) are drawn side by side in the same charts. No scripts, no CDN.`,
		Example: `  sockbench report results/20261201T190723Z-vm.csv -o report.html
  sockbench report results/baseline/*.csv pi-results/*.csv -o pi-vs-workstation.html
  sockbench report base/ new.txt --title "before and after" -o both.html`,
		Args: argsError(cobra.MinimumNArgs(1), "one or more results CSV files"),
		RunE: func(cmd *cobra.Command, args []string) error {
			rep := &bench.Report{Title: title}
			for _, a := range args {
				rows, err := bench.ReadResults(a)
				if err != nil {
					return usageError{err}
				}
				rep.Sets = append(rep.Sets, bench.ResultSet{Name: filepath.Base(a), Rows: rows})
			}
			if rep.Title == "" {
				rep.Title = "sockbench report"
			}
			f, err := os.Create(out)
			if err != nil {
				return err
			}
			if err := rep.WriteHTML(f); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintln(os.Stderr, "wrote", out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "report.html", "HTML file to write")
	cmd.Flags().StringVar(&title, "title", "", "page title")
	return cmd
}
