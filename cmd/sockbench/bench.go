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
	"github.com/sockbench/sockbench/models"
)

// newBenchCmd builds `sockbench bench`.
func newBenchCmd() *cobra.Command {
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
		serverHost string
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

With --server-host ssh://[user@]host[:port] (or server_host: in the profile)
every server runs on that machine and the load here: bench connects once with
the system ssh client (keys, agent, ~/.ssh/config and ProxyJump as usual;
SOCKBENCH_SSH_COMMAND replaces 'ssh' as GIT_SSH_COMMAND does for git), copies a
sockbench binary for the host's OS and CPU into a temporary directory there
(dist/ from 'make release', else built now when Go and the source are here),
and removes it, and every process it started there, at the end, or when the run
is interrupted or the connection drops. The load reaches the server at the
address ssh reached the host at. --server-cpus then names the server host's
CPUs; nothing is pinned unless asked. The CSV's server_host, client_host and
link_rtt_us record both machines and the round trip between them.

Writes results/<UTC time>-<host>.csv (one complete row per run), the same runs
in Go benchmark format (.txt, for benchstat) and an HTML report (.html).
Built-in profiles: ` + strings.Join(bench.ProfileNames(), ", ") + `.`,
		Example: `  sockbench bench                                # the quick profile, pinned apart, into results/
  sockbench bench --profile full --count 8       # more cells, enough runs to judge one cell alone
  sockbench bench --profile my.yaml --dry-run    # list a profile's cells and its time, run nothing
  sockbench bench --server-cpus 0-3 --client-cpus 4-7 --workers 4
  sockbench bench --server-args=--work=50us -o slow/   # every server burns 50us a request`,
		Args: argsError(cobra.NoArgs, "no arguments (flags start with --)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := bench.LoadProfile(profile)
			if err != nil {
				return usageError{err}
			}
			if err := p.CheckModels(models.Names()); err != nil {
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
			if serverHost == "" {
				serverHost = p.ServerHost
			}
			if serverHost != "" {
				if _, err := bench.ParseServerHost(serverHost); err != nil {
					return usagef("--server-host: %v", err)
				}
			}
			scpus, ccpus := bench.DefaultPinning()
			if serverHost != "" {
				scpus, ccpus = nil, nil // two machines: pin only what is asked
			}
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
			if (serverCPUs == "") != (clientCPUs == "") && serverHost == "" {
				return usagef("give both --server-cpus and --client-cpus, or neither")
			}
			if serverHost == "" { // a remote host's CPUs are checked once connected
				if err := bench.CheckCPUs(scpus); err != nil {
					return usagef("--server-cpus: %v", err)
				}
			}
			if err := bench.CheckCPUs(ccpus); err != nil {
				return usagef("--client-cpus: %v", err)
			}
			tty := term.IsTerminal(int(os.Stderr.Fd()))
			r, err := bench.NewRunner(bench.Options{
				Binary: binary, Profile: p, Count: count, OutDir: outDir,
				ServerCPUs: scpus, ClientCPUs: ccpus, Workers: workers, ServerArgs: serverArgs,
				Env:      benchEnv(),
				Progress: os.Stderr, TTY: tty, ServerHost: serverHost,
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
			if len(scpus) > 0 || len(ccpus) > 0 {
				pin = fmt.Sprintf("server on CPUs %v, load generator on CPUs %v", scpus, ccpus)
			}
			if serverHost != "" {
				pin += "; server on " + serverHost
			}
			fmt.Fprintf(os.Stderr, "sockbench: profile %s, pinning: %s\n", p.Name, pin)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out, err := r.Run(ctx)
			if out != nil && len(out.Rows) > 0 {
				fmt.Println()
				bench.WriteSummary(os.Stdout, out.Rows)
				runs := fmt.Sprintf("%d runs", out.Runs())
				if p, ok := bench.PartialOf(out.Rows); ok {
					runs += fmt.Sprintf(" (%s)", p)
				}
				fmt.Printf("\n%s in %v\nresults: %s\n         %s (benchstat)\n         %s\n",
					runs, out.Elapsed.Round(time.Second), out.CSV, out.TXT, out.HTML)
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
	f.StringVar(&serverHost, "server-host", "", "run the servers on this machine over ssh: ssh://[user@]host[:port] (default: the profile's server_host, else here)")
	completeValues(cmd, "profile", bench.ProfileNames, cobra.ShellCompDirectiveDefault) // or a FILE.yaml
	return cmd
}

// newAgentCmd is `sockbench agent`, which bench --server-host runs over
// ssh on the server's host (bench.RunAgent). Not for people: hidden.
func newAgentCmd() *cobra.Command {
	var dir string
	var idle time.Duration
	cmd := &cobra.Command{
		Use:    "agent",
		Short:  "Run servers for a remote 'sockbench bench' (started by bench over ssh)",
		Hidden: true,
		Args:   argsError(cobra.NoArgs, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer stop()
			v := currentVersion() // not benchEnv: no git on a server host to ask
			return bench.RunAgent(ctx, os.Stdin, os.Stdout, bench.AgentOptions{Dir: dir, Idle: idle, Version: v.Version, Commit: v.Commit})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "run directory to remove on exit (named sockbench.*)")
	cmd.Flags().DurationVar(&idle, "idle", 0, "exit when no request came for this long (0: never)")
	return cmd
}
