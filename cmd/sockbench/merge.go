package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/sockbench/sockbench/loadgen"
)

func newMergeCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "merge FILE...",
		Short: "Merge HdrHistogram logs of several load runs into one summary",
		Long: `merge reads HdrHistogram logs written by 'sockbench load --hdr-out' (for
instance one per load machine, run at the same time against one server) and
prints one summary: histograms merged exactly, requests and errors added,
throughputs added, durations the longest. Logs from other HdrHistogram tools
work too; only their latency histograms are merged.`,
		Example: `  sockbench merge a.hlog b.hlog c.hlog
  sockbench merge --format json *.hlog`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("merge needs at least one log file (written by 'sockbench load --hdr-out FILE')")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if !validFormat(format) {
				return usagef("--format %q: want text, json or csv", format)
			}
			readers := make([]io.Reader, 0, len(args))
			for _, name := range args {
				f, err := os.Open(name)
				if err != nil {
					return err
				}
				defer f.Close()
				readers = append(readers, f)
			}
			rep, err := loadgen.MergeLogs(args, readers)
			if err != nil {
				return err
			}
			if err := loadgen.WriteReport(cmd.OutOrStdout(), rep, format); err != nil {
				return err
			}
			if rep.Failure != "" {
				return fmt.Errorf("merged runs had failures: %s", rep.Failure)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "output: text, json or csv")
	completeValues(cmd, "format", func() []string { return loadgen.Formats }, cobra.ShellCompDirectiveNoFileComp)
	return cmd
}
