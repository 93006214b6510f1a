package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sockbench/sockbench/protocol"
)

// serverHost is where a run's servers live: this machine (localHost) or
// another one reached over ssh (remoteHost). The runner starts, samples
// and stops servers only through it, so both share every other line of
// the measurement.
type serverHost interface {
	// addr is the --addr a server of cell binds.
	addr(cell Cell) string
	// start runs a `serve` command line pinned to cpus and waits for its
	// ready line.
	start(ctx context.Context, args []string, cpus []int, readyTimeout time.Duration) (serverProc, error)
	// wontFit says why cell would not fit the server's host (and this
	// one, which runs the load), or "".
	wontFit(cell Cell, workers int) string
	// broken is not nil once the host can no longer be used (its ssh
	// connection dropped): the run stops there.
	broken() error
	// close stops whatever still runs on the host and removes what the
	// run left there.
	close() error
}

// serverProc is one running server.
type serverProc interface {
	// address is the address from its ready line, to load.
	address() string
	// sample returns the CPU seconds used so far by the server and every
	// process it started, the sum of their peak RSS in KiB, and how many
	// processes that was.
	sample() (cpuS float64, rssKB int64, procs int, err error)
	// stop sends SIGTERM and waits up to grace for a clean exit (status
	// 0, nothing of it left behind); then it kills what is left.
	stop(grace time.Duration) error
}

// localHost runs servers on this machine.
type localHost struct{ r *Runner }

func (h localHost) addr(cell Cell) string {
	// The profile's nets were checked by Profile.Cells.
	tr, _ := protocol.ParseTransport(cell.Net)
	if tr.IsUnix() {
		return filepath.Join(h.r.sockDir, "s.sock")
	}
	return tr.Loopback("0")
}

func (h localHost) start(ctx context.Context, args []string, cpus []int, readyTimeout time.Duration) (serverProc, error) {
	s, err := startServe(ctx, h.r.opts.Binary, args, cpus, readyTimeout)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return s, nil
}

func (h localHost) wontFit(cell Cell, _ int) string { return h.r.wontFit(cell) }
func (h localHost) broken() error                   { return nil }
func (h localHost) close() error                    { return nil }

// linkProbe is the load that measures the link's round trip: one
// connection, one 16-byte echo in flight, for linkProbeTime.
const linkProbeTime = 300 * time.Millisecond

// openHost sets up where the servers run. For a remote host it connects,
// makes Env describe the server's machine, checks --server-cpus against
// its CPUs and measures the link's round trip.
func (r *Runner) openHost(ctx context.Context) error {
	if r.target == nil {
		r.host = localHost{r}
		return nil
	}
	h, err := connectRemote(ctx, r, *r.target)
	if err != nil {
		return err
	}
	r.host = h
	hello := h.hello
	if len(r.opts.ServerCPUs) > 0 {
		ok := map[int]bool{}
		for _, c := range hello.CPUs {
			ok[c] = true
		}
		for _, c := range r.opts.ServerCPUs {
			if !ok[c] {
				return fmt.Errorf("bench: --server-cpus: CPU %d is not available on %s (available: %s)", c, hello.Host, formatCPUs(hello.CPUs))
			}
		}
	}
	if r.opts.Workers == 0 && len(r.opts.ServerCPUs) == 0 {
		r.workers = max(len(hello.CPUs), 1)
	}
	e := &r.opts.Env
	e.Host, e.OS, e.Arch, e.Cores, e.GoVersion = hello.Host, hello.OS, hello.Arch, hello.Cores, hello.GoVersion
	e.CPUModel = ""
	if files, err := h.read("/proc/cpuinfo"); err == nil {
		e.CPUModel = parseCPUInfo(string(files["/proc/cpuinfo"]))
	}
	if hello.Commit != "" && e.Commit != "" && hello.Commit != e.Commit {
		fmt.Fprintf(r.opts.Progress, "sockbench: warning: the server binary on %s is commit %s, this one %s (rebuild dist/ with make release?)\n",
			hello.Host, hello.Commit, e.Commit)
	}
	r.serverHost = hello.Host
	r.clientHost, _ = os.Hostname()
	rtt, err := r.measureLink(ctx)
	if err != nil {
		return fmt.Errorf("bench: measuring the round trip to %s: %w", r.target, err)
	}
	r.linkRTTUS = rtt
	fmt.Fprintf(r.opts.Progress, "sockbench: server host %s (%s/%s, %d CPUs, %s), load from %s, round trip %.0f µs\n",
		hello.Host, hello.OS, hello.Arch, hello.Cores, e.CPUModel, r.clientHost, rtt)
	return nil
}

// measureLink returns the median round trip in µs of 16-byte echoes over
// one TCP connection to a threaded server on the server host: the link's
// latency plus a few µs of the two kernels and the server.
func (r *Runner) measureLink(ctx context.Context) (float64, error) {
	probe := Cell{Model: "threaded", Net: "tcp", Mode: "echo", Conns: 1, Pipeline: 1, Size: 16}
	args := []string{"serve", "--model", "threaded", "--net", "tcp", "--addr", r.host.addr(probe),
		"--mode", "echo", "--workers", "1", "--grace", "2s"}
	srv, err := r.host.start(ctx, args, r.opts.ServerCPUs, r.opts.ReadyTimeout)
	if err != nil {
		return 0, err
	}
	rep, err := r.runLoad(ctx, probe, srv.address(), linkProbeTime)
	stopErr := srv.stop(4 * time.Second)
	switch {
	case err != nil:
		return 0, err
	case rep.Failure != "":
		return 0, errors.New(rep.Failure)
	case stopErr != nil:
		return 0, stopErr
	}
	return rep.Latency.P50, nil
}
