package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sockbench/sockbench/bench"
)

func init() {
	var (
		profile    string
		count      int
		outDir     string
		binary     string
		serverCPUs string
		clientCPUs string
		noPin      bool
		workers    int
		serverArgs []string
		dryRun     bool
	)
	cmd := &cobra.Command{
		Use:   "bench [--profile quick|full|pi|FILE.yaml]",
		Short: "Run a benchmark matrix: every cell a real server process driven by the load generator",
		Long: `bench runs a profile's matrix (model x net x mode x conns x size x closed|rate).
For each cell it starts 'sockbench serve' as its own process (pinned apart from
the load generator when there are CPUs enough), waits for its ready line, runs
a warmup and a measured 'sockbench load', samples the server's CPU time and
peak RSS over all its processes, and stops it with SIGTERM, checking it exits
cleanly. Runs repeat --count times, interleaved across models.

Writes results/<UTC time>-<host>.csv (one complete row per run), the same runs
in Go benchmark format (.txt, for benchstat) and an HTML report (.html).
Built-in profiles: ` + strings.Join(bench.ProfileNames(), ", ") + `.`,
		Args: argsError(cobra.NoArgs, "no arguments (flags start with --)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := bench.LoadProfile(profile)
			if err != nil {
				return usageError{err}
			}
			if count < 0 {
				return usagef("--count must not be negative")
			}
			if workers < 0 {
				return usagef("--workers must not be negative")
			}
			if binary == "" {
				binary, err = os.Executable()
				if err != nil {
					return fmt.Errorf("cannot find my own executable (give --binary): %w", err)
				}
			}
			scpus, ccpus := bench.DefaultPinning()
			if noPin {
				scpus, ccpus = nil, nil
			}
			if (serverCPUs != "" || clientCPUs != "") && noPin {
				return usagef("--no-pin contradicts --server-cpus/--client-cpus")
			}
			if serverCPUs != "" {
				if scpus, err = bench.ParseCPUs(serverCPUs); err != nil {
					return usagef("--server-cpus: %v", err)
				}
			}
			if clientCPUs != "" {
				if ccpus, err = bench.ParseCPUs(clientCPUs); err != nil {
					return usagef("--client-cpus: %v", err)
				}
			}
			if (serverCPUs == "") != (clientCPUs == "") {
				return usagef("give both --server-cpus and --client-cpus, or neither")
			}
			if err := bench.CheckCPUs(scpus); err != nil {
				return usagef("--server-cpus: %v", err)
			}
			if err := bench.CheckCPUs(ccpus); err != nil {
				return usagef("--client-cpus: %v", err)
			}
			rev := bench.BuildCommit()
			if rev == "" {
				rev = stampedCommit()
			}
			tty := term.IsTerminal(int(os.Stderr.Fd()))
			r, err := bench.NewRunner(bench.Options{
				Binary: binary, Profile: p, Count: count, OutDir: outDir,
				ServerCPUs: scpus, ClientCPUs: ccpus, Workers: workers, ServerArgs: serverArgs,
				Env:      bench.Env{SuiteVersion: version, Commit: rev},
				Progress: os.Stderr, TTY: tty,
			})
			if err != nil {
				return err
			}
			if dryRun {
				for i, c := range r.Cells() {
					fmt.Printf("%3d  %s  (%v + %v warmup)\n", i+1, c, c.Duration, c.Warmup)
				}
				fmt.Printf("%d cells x %d runs, about %v\n", len(r.Cells()), r.Total()/max(1, len(r.Cells())), r.Estimate().Round(time.Second))
				return nil
			}
			pin := "none"
			if len(scpus) > 0 {
				pin = fmt.Sprintf("server on CPUs %v, load generator on CPUs %v", scpus, ccpus)
			}
			fmt.Fprintf(os.Stderr, "sockbench: profile %s, pinning: %s\n", p.Name, pin)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out, err := r.Run(ctx)
			if out != nil && len(out.Rows) > 0 {
				fmt.Println()
				bench.WriteSummary(os.Stdout, out.Rows)
				fmt.Printf("\n%d runs in %v\nresults: %s\n         %s (benchstat)\n         %s\n",
					len(out.Rows), out.Elapsed.Round(time.Second), out.CSV, out.TXT, out.HTML)
				if out.SkippedNote != "" {
					fmt.Printf("skipped: %s\n", out.SkippedNote)
				}
			}
			if err != nil {
				return err
			}
			if out.Interrupted {
				return exitError{130, errors.New("interrupted; the CSV holds the runs finished so far")}
			}
			if n := out.Failures(); n > 0 {
				return exitError{exitFailure, fmt.Errorf("%d run(s) failed or left an unclean server exit (see the note column)", n)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&profile, "profile", "quick", "built-in profile name or path to a YAML profile")
	f.IntVar(&count, "count", 0, "runs per cell (0: the profile's count)")
	f.StringVarP(&outDir, "out", "o", "results", "directory for the CSV, .txt and .html")
	f.StringVar(&binary, "binary", "", "sockbench binary to run as serve and load (default: this one)")
	f.StringVar(&serverCPUs, "server-cpus", "", "CPUs for the server, e.g. 0 or 0-3 (default: the first CPUs, all but the load generator's)")
	f.StringVar(&clientCPUs, "client-cpus", "", "CPUs for the load generator (default: the last ones, as many as the measured per-request costs say it needs to saturate the server: 1 of 2, 2 of 4, 4 of 8)")
	f.BoolVar(&noPin, "no-pin", false, "do not pin server and load generator to CPUs")
	f.IntVar(&workers, "workers", 0, "server --workers (default: number of server CPUs)")
	f.StringArrayVar(&serverArgs, "server-args", nil, "extra flag for every server, e.g. --server-args=--work=50us (repeatable; recorded, not part of the cell)")
	f.BoolVar(&dryRun, "dry-run", false, "list the cells in run order and exit")
	rootCmd.AddCommand(cmd)
}

// stampedCommit is the commit make stamped into the binary, else the
// commit of the checkout bench runs in, else "".
func stampedCommit() string {
	if commit != "" {
		return commit
	}
	return bench.RepoCommit()
}
