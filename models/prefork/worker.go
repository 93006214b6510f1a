package prefork

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/models/threaded"
)

// Child roles (values of models.ChildEnv).
const (
	// WorkerRole is a pool worker: it serves the inherited listener or
	// datagram socket with the threaded model until SIGTERM.
	WorkerRole = "prefork-worker"
	// ConnRole is a fork-per-connection child: it serves the one inherited
	// connection and exits.
	ConnRole = "prefork-conn"
)

// statsPeriod is how often a child pushes changed stats on its own.
const statsPeriod = 500 * time.Millisecond

// testCrashWorker makes a pool worker exit with status 1 before it
// serves. It is a test hook: only this package's tests set it (the init
// of prefork_test.go, in the test binary and so in the workers it
// re-executes), to drive the crash-loop limit. A production binary has no
// way to set it.
var testCrashWorker bool

func init() {
	models.RegisterChild(WorkerRole, workerMain)
	models.RegisterChild(ConnRole, connMain)
}

// child is what both roles share: the spec, the pipes and the logger.
type child struct {
	sp   spec
	cfg  models.Config
	out  *msgWriter
	ctrl *os.File
	gone chan struct{} // closed when the parent is gone
	sigs chan os.Signal
}

// startChild reads the spec and opens the inherited pipes. Errors go to
// stderr (the parent's stderr): there may be no one else to tell.
func startChild(role string) (*child, error) {
	runtime.GOMAXPROCS(1)
	var sp spec
	if err := json.Unmarshal([]byte(os.Getenv(envSpec)), &sp); err != nil {
		return nil, fmt.Errorf("prefork %s: bad or missing %s: %w", role, envSpec, err)
	}
	c := &child{
		sp:   sp,
		cfg:  sp.Config,
		out:  &msgWriter{f: os.NewFile(fdMessages, "prefork-messages")},
		ctrl: os.NewFile(fdControl, "prefork-control"),
		gone: make(chan struct{}),
		sigs: make(chan os.Signal, 1),
	}
	// Before anything else, so a SIGTERM from an early shutdown drains
	// rather than kills.
	signal.Notify(c.sigs, syscall.SIGTERM, syscall.SIGINT)
	c.cfg.Logger = slog.New(slog.NewJSONHandler(c.out, &slog.HandlerOptions{Level: sp.LogLevel}))
	return c, nil
}

// watch answers stats requests from snap and pushes changes, until the
// parent goes away; then the child exits at once (on Linux the kernel's
// Pdeathsig usually got there first).
func (c *child) watch(snap func() models.Stats) {
	go readControl(c.ctrl, c.out, snap, c.gone)
	go pushStats(c.out, snap, statsPeriod, c.gone)
	go func() {
		<-c.gone
		os.Exit(3)
	}()
}

// drainCtx bounds the child's own graceful stop a little inside the grace
// the parent gives it before SIGKILL.
func (c *child) drainCtx() (context.Context, context.CancelFunc) {
	g := c.cfg.Grace
	return context.WithTimeout(context.Background(), g-g/10)
}

// workerMain is a pool worker's main: the threaded model's server on the
// inherited socket, with GOMAXPROCS=1.
func workerMain() int {
	c, err := startChild(WorkerRole)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if testCrashWorker {
		fmt.Fprintln(os.Stderr, "prefork worker: crashing on purpose for a test")
		return 1
	}
	cfg := c.cfg
	// One datagram reader: this process has one P, and the pool has a
	// process per core.
	cfg.Workers = 1
	f := os.NewFile(fdHandoff, "prefork-socket")
	var (
		srv      models.Server
		rejected atomic.Uint64
	)
	if cfg.IsStream() {
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "prefork worker: inherited listener: %v\n", err)
			return 2
		}
		var adm *admission
		if c.sp.Admit {
			af := os.NewFile(fdAdmit, "prefork-admit")
			adm, err = mapAdmission(af, c.sp.Config.Workers, cfg.MaxConns)
			af.Close()
			if err != nil {
				fmt.Fprintf(os.Stderr, "prefork worker: %v\n", err)
				return 2
			}
		}
		if adm != nil && cfg.MaxConns > 0 {
			ln = &admitListener{Listener: ln, adm: adm, slot: c.sp.Slot, rejected: &rejected}
			cfg.MaxConns = 0 // enforced by admitListener across the pool
		}
		ts, err := threaded.NewFromListener(cfg, ln)
		if err != nil {
			fmt.Fprintf(os.Stderr, "prefork worker: %v\n", err)
			return 2
		}
		if adm != nil && cfg.MaxBuffered > 0 {
			// The bound is the pool's, across every worker.
			ts.(*threaded.Server).SetBuffers(models.SharedBuffers(cfg.MaxBuffered, adm.held(), c.sp.Slot))
		}
		srv = ts
	} else {
		pc, err := net.FilePacketConn(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "prefork worker: inherited socket: %v\n", err)
			return 2
		}
		if srv, err = threaded.NewFromPacketConn(cfg, pc); err != nil {
			fmt.Fprintf(os.Stderr, "prefork worker: %v\n", err)
			return 2
		}
	}
	snap := func() models.Stats {
		st := srv.Stats()
		st.Rejected += rejected.Load()
		return st
	}
	c.watch(snap)
	if err := srv.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "prefork worker: %v\n", err)
		return 2
	}
	c.out.send(msg{T: "ready"})
	<-c.sigs
	ctx, cancel := c.drainCtx()
	defer cancel()
	err = srv.Shutdown(ctx)
	st := snap()
	c.out.send(msg{T: "stats", Final: true, Stats: &st})
	if err != nil {
		c.cfg.Logger.Warn("worker did not drain within grace", "err", err)
		return 1
	}
	return 0
}

// connMain is a fork-per-connection child's main: threaded.ServeConn on
// the inherited connection. SIGTERM makes it answer what it has read
// (paying the handler cost, as a pool worker does) and close gracefully;
// if that takes past its drain deadline the rest is cut short and it
// exits 1, so the parent knows the connection did not drain.
func connMain() int {
	c, err := startChild(ConnRole)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	f := os.NewFile(fdHandoff, "prefork-conn")
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "prefork conn child: inherited connection: %v\n", err)
		return 2
	}
	var ctr models.Counters
	c.watch(ctr.Snapshot)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hard, cut := context.WithCancel(context.Background())
	defer cut()
	served := make(chan struct{})
	var forced atomic.Bool
	go func() {
		select {
		case <-c.sigs:
		case <-served:
			return
		}
		cancel()
		dctx, dcancel := c.drainCtx()
		defer dcancel()
		select {
		case <-dctx.Done():
			forced.Store(true)
			cut()
		case <-served:
		}
	}()
	c.out.send(msg{T: "ready"})
	threaded.ServeConn(ctx, hard, &c.cfg, conn, &ctr)
	close(served)
	st := ctr.Snapshot()
	c.out.send(msg{T: "stats", Final: true, Stats: &st})
	if forced.Load() {
		c.cfg.Logger.Warn("connection did not drain within grace")
		return 1
	}
	return 0
}
