package bench

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

var (
	goos   = runtime.GOOS
	goarch = runtime.GOARCH
)

func numCPU() int { return runtime.NumCPU() }

func goVersion() string { return runtime.Version() }

// RepoCommit is the commit checked out in the current directory, with
// "-dirty" when tracked files changed, for builds that carry no VCS stamp
// (go build -buildvcs=false); "" outside a git work tree.
func RepoCommit() string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output()
	if err == nil && len(strings.TrimSpace(string(st))) > 0 {
		rev += "-dirty"
	}
	return rev
}

// Resource estimates, deliberately generous: a skipped cell costs a line
// in the results, a cell that runs the machine out of memory costs the
// machine. Per connection: the server's goroutine or event-loop state and
// buffers, the load generator's per-connection state, and the kernel's
// socket buffers on both ends (at least a page each, or two requests'
// worth). Measured on linux/amd64 at 1000 connections of 64 bytes (peak
// RSS, go1.26): load generator ~14 KiB and threaded server ~12 KiB per
// connection; the constants leave about 3x headroom. The bare server keeps
// a small record per connection and a buffer only while a line is partial
// (0.2 KiB per connection measured at 1000 and 2000 connections, against
// 8 KiB for threaded); its constant leaves 20x.
const (
	baseProcBytes    = 24 << 20 // one Go process at rest (runtime, heap, binary pages)
	clientConnBytes  = 48 << 10 // load generator per connection
	serverConnBytes  = 32 << 10 // server per connection, plus buffers
	bareConnBytes    = 4 << 10  // the bare server per connection
	memReserveBytes  = 64 << 20 // left for the system and the orchestrator
	fdsPerProcExtra  = 64       // stdio, listeners, epoll, pipes, runtime
	minKernelBufSize = 4 << 10
)

// NeedMemory estimates the memory a cell needs in bytes while it runs.
func NeedMemory(c Cell, workers int) int64 {
	procs := int64(2) // server and load generator
	if c.Model == "prefork" {
		procs += int64(workers)
	}
	kbuf := int64(2 * c.Size * c.Pipeline)
	if kbuf < minKernelBufSize {
		kbuf = minKernelBufSize
	}
	server := int64(serverConnBytes)
	if c.Model == "bare" {
		server = bareConnBytes
	}
	perConn := clientConnBytes + server + int64(2*c.Size*c.Pipeline) + 2*kbuf
	return procs*baseProcBytes + int64(c.Conns)*perConn
}

// NeedFDs estimates the file descriptors the busier of the two processes
// needs: one per connection plus its fixed ones.
func NeedFDs(c Cell) int { return c.Conns + fdsPerProcExtra }

// wontFit says why a cell would not fit this machine now, or "".
func (r *Runner) wontFit(c Cell) string {
	return fitCheck(c, r.workers, fdLimit, memAvailable)
}

// fitCheck compares a cell's needs with the fd limit and the memory
// available, both read fresh before every cell (memory shrinks as the
// machine gets busy).
func fitCheck(c Cell, workers int, fdLimit func() (uint64, error), mem func() (int64, error)) string {
	var why []string
	if lim, err := fdLimit(); err == nil && lim > 0 && uint64(NeedFDs(c)) > lim {
		why = append(why, fmt.Sprintf("needs about %d file descriptors per process, the limit is %d (raise ulimit -n)", NeedFDs(c), lim))
	}
	if avail, err := mem(); err == nil {
		need := NeedMemory(c, workers)
		if need > avail-memReserveBytes {
			why = append(why, fmt.Sprintf("needs about %d MiB of memory, %d MiB available (keeping %d MiB in reserve)",
				need>>20, avail>>20, memReserveBytes>>20))
		}
	}
	return strings.Join(why, "; ")
}
