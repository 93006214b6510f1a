package prefork

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/sockbench/sockbench/models"
)

// Starting a child process: a pool worker or a per-conn child, with the
// socket, the pipes and the shared counters it inherits as descriptors,
// and its spec in its environment (wire.go); and watching it until it is
// reaped. What to do when a worker dies is supervise.go's.

// errClosing is returned by spawnProc once the server is stopping.
var errClosing = errors.New("prefork: server stopping")

// spawner starts every child of a server from one goroutine locked to its
// OS thread.
//
// Subtleness ahead: Linux's Pdeathsig fires when the *thread* that forked
// the child exits, not when the process does. The Go runtime moves
// goroutines between threads and retires threads, so a child started from
// an ordinary goroutine could be SIGKILLed while the parent is alive and
// well. Every child is therefore started from this goroutine, locked to
// its thread for the life of the server and never unlocked; when it
// returns, the runtime terminates the thread, which is why stop is called
// only after every child has exited.
//
// A start that hangs is cut short. syscall.StartProcess returns once the
// forked child has exec'd; a child that hangs between fork and exec
// (qemu-user 7.2 does this now and then to a multithreaded guest) would
// block it, and with it the server's lock, Start and Shutdown, forever.
// After stuck (stuckStart for a server's) the spawner SIGKILLs whichever
// child of its thread it has not handed out yet (the one still starting),
// reaps it, and reports errStartStuck; callers treat that as a failed
// start and try again.
type spawner struct {
	reqs    chan spawnReq
	stopped chan struct{}
	tid     int           // the locked thread (Linux), whose children the watchdog reads
	stuck   time.Duration // how long a start may take

	mu    sync.Mutex
	known map[int]bool // children started and not reaped yet
}

type spawnReq struct {
	fn  func() (int, error) // starts one child and returns its pid
	res chan spawnRes
}

type spawnRes struct {
	pid int
	err error
}

// stuckStart bounds one process start of a server's spawner: fork and
// exec take milliseconds natively and well under a second under
// emulation.
const stuckStart = 10 * time.Second

// errStartStuck: a child hung between fork and exec and was killed.
var errStartStuck = errors.New("prefork: a child hung between fork and exec; killed it")

// startSpawner starts a spawner whose starts may take stuck at most.
func startSpawner(stuck time.Duration) *spawner {
	sp := &spawner{reqs: make(chan spawnReq), stopped: make(chan struct{}), known: map[int]bool{}, stuck: stuck}
	started := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: see spawner
		sp.tid = gettid()
		close(started)
		defer close(sp.stopped)
		for r := range sp.reqs {
			r.res <- sp.guarded(r.fn)
		}
	}()
	<-started
	return sp
}

// guarded runs fn with the stuck-start watchdog.
func (sp *spawner) guarded(fn func() (int, error)) spawnRes {
	var (
		wdMu     sync.Mutex
		returned bool // fn is back: a late watchdog does nothing
		killed   int
	)
	wd := time.AfterFunc(sp.stuck, func() {
		wdMu.Lock()
		defer wdMu.Unlock()
		if returned {
			return
		}
		sp.mu.Lock()
		defer sp.mu.Unlock()
		killed = killUnknownChildren(sp.tid, sp.known)
	})
	pid, err := fn()
	wd.Stop()
	wdMu.Lock() // a watchdog already running finishes first
	defer wdMu.Unlock()
	returned = true
	if killed > 0 {
		if err == nil {
			// It read as started (the kill closed its status pipe), but
			// it is dead: reap it here, as nobody else will know it.
			var ws syscall.WaitStatus
			for {
				if _, werr := syscall.Wait4(pid, &ws, 0, nil); werr != syscall.EINTR {
					break
				}
			}
		}
		return spawnRes{0, errStartStuck}
	}
	if err == nil {
		sp.mu.Lock()
		sp.known[pid] = true
		sp.mu.Unlock()
	}
	return spawnRes{pid, err}
}

// run calls fn, which forks, on the spawner's thread.
func (sp *spawner) run(fn func() (int, error)) (int, error) {
	res := make(chan spawnRes, 1)
	sp.reqs <- spawnReq{fn, res}
	r := <-res
	return r.pid, r.err
}

// reaped forgets a child once it has been waited for.
func (sp *spawner) reaped(pid int) {
	sp.mu.Lock()
	delete(sp.known, pid)
	sp.mu.Unlock()
}

func (sp *spawner) stop() {
	close(sp.reqs)
	<-sp.stopped
}

// startProcess starts exe with stdin and the parent's stderr as the
// child's descriptors 0-2, the socket behind sock as 3, and files as 4,
// 5, ... The socket is read inside sock's Control callback, so it stays
// open during the fork.
//
// Subtleness ahead: os/exec (and os.StartProcess) take *os.File and call
// Fd on each, and Fd switches a non-blocking descriptor to blocking mode.
// O_NONBLOCK belongs to the open file description, which the parent's
// listener shares with every worker's: each respawn would turn every
// running worker's listener blocking until the new worker set it back, and
// a worker caught in a blocking accept cannot close its listener to shut
// down. syscall.StartProcess takes raw descriptors and changes nothing.
// (net.FileListener in the worker has the same switch for a few
// microseconds, between its Fd and SetNonblock; that window is Go's.)
//
// The child's stdout is the parent's stderr: the parent's stdout carries
// the ready line.
func startProcess(exe string, argv, env []string, stdin *os.File, sock syscall.RawConn, files []*os.File) (int, error) {
	fds := make([]uintptr, 0, 3+1+len(files))
	for _, f := range []*os.File{stdin, os.Stderr, os.Stderr} {
		fds = append(fds, rawFd(f))
	}
	fds = append(fds, 0) // the socket, filled in below
	for _, f := range files {
		fds = append(fds, rawFd(f))
	}
	var (
		pid  int
		serr error
	)
	cerr := sock.Control(func(fd uintptr) {
		fds[3] = fd
		pid, _, serr = syscall.StartProcess(exe, argv, &syscall.ProcAttr{Env: env, Files: fds, Sys: sysProcAttr()})
	})
	if cerr != nil {
		return 0, cerr
	}
	if serr != nil {
		return 0, &os.PathError{Op: "fork/exec", Path: exe, Err: serr}
	}
	return pid, nil
}

// rawFd returns f's descriptor without changing its mode (unlike Fd).
func rawFd(f *os.File) uintptr {
	fd := ^uintptr(0)
	if sc, err := f.SyscallConn(); err == nil {
		sc.Control(func(d uintptr) { fd = d })
	}
	return fd
}

// proc is one child process: a pool worker or a per-conn child.
type proc struct {
	slot    int // pool slot, or -1 for a per-conn child
	process *os.Process
	pid     int
	ctrl    *os.File // write end of the control pipe
	started time.Time
	ready   chan struct{} // closed on its "ready" message
	done    chan struct{} // closed once it has exited and been accounted

	// Guarded by Server.mu.
	last    models.Stats
	seq     uint64
	exitErr error
}

// contrib is what the child adds to the server's Stats. Connections of a
// child that is gone are not open any more; a per-conn child's connection
// is counted (Accepted, Active) by the parent.
func (p *proc) contrib() models.Stats {
	st := p.last
	if p.slot < 0 {
		st.Accepted, st.Active = 0, 0
	}
	return st
}

// spawnProc starts a child of role with the socket behind handoff as its
// fd 3.
func (s *Server) spawnProc(role string, slot int, handoff syscall.RawConn) (*proc, error) {
	sp := spec{Config: s.cfg, Slot: slot, LogLevel: s.level, Admit: s.adm != nil}
	sp.Config.Logger = nil
	env, err := childEnv(role, sp)
	if err != nil {
		return nil, err
	}
	ctrlR, ctrlW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("prefork: control pipe: %w", err)
	}
	msgR, msgW, err := os.Pipe()
	if err != nil {
		ctrlR.Close()
		ctrlW.Close()
		return nil, fmt.Errorf("prefork: message pipe: %w", err)
	}
	files := []*os.File{ctrlR, msgW}
	if s.adm != nil {
		files = append(files, s.admF)
	}
	name := role
	if slot >= 0 {
		name += " slot=" + strconv.Itoa(slot)
	}
	argv := []string{os.Args[0], name}

	s.mu.Lock()
	if s.state != stateRunning {
		s.mu.Unlock()
		ctrlR.Close()
		ctrlW.Close()
		msgR.Close()
		msgW.Close()
		return nil, errClosing
	}
	// Under s.mu, so Shutdown either sees the child or stops the spawn.
	var process *os.Process
	pid, err := s.sp.run(func() (int, error) {
		return startProcess(s.exe, argv, env, s.devnull, handoff, files)
	})
	if err == nil {
		process, err = os.FindProcess(pid) // cannot fail on Unix
	}
	ctrlR.Close()
	msgW.Close()
	if err != nil {
		s.mu.Unlock()
		ctrlW.Close()
		msgR.Close()
		return nil, fmt.Errorf("prefork: starting %s: %w", role, err)
	}
	p := &proc{
		slot: slot, process: process, pid: process.Pid, ctrl: ctrlW, started: time.Now(),
		ready: make(chan struct{}), done: make(chan struct{}),
	}
	s.procs[p] = struct{}{}
	s.spawned++
	s.procWG.Add(1)
	s.mu.Unlock()
	go s.watch(p, msgR)
	return p, nil
}

// watch reads a child's messages until it exits, then reaps it and moves
// its stats to the retired total.
func (s *Server) watch(p *proc, msgR *os.File) {
	defer s.procWG.Done()
	s.readMessages(p, msgR)
	msgR.Close()
	var err error
	sigterm := false // ended by the SIGTERM of a shutdown before it could catch it
	if st, werr := p.process.Wait(); werr != nil {
		err = werr
	} else if !st.Success() {
		err = errors.New(st.String())
		ws, ok := st.Sys().(syscall.WaitStatus)
		sigterm = ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
	}
	p.process.Release()
	s.sp.reaped(p.pid)
	p.ctrl.Close()
	if s.adm != nil && p.slot >= 0 {
		s.adm.reset(p.slot)
	}
	if p.slot < 0 {
		s.parent.Active.Add(-1)
	}
	if p.slot < 0 && err != nil && !s.isClosing() {
		s.logs.Warn(s.log, "connection process failed", "pid", p.pid, "err", err)
	}
	s.mu.Lock()
	if err != nil && s.state != stateRunning && !sigterm {
		// Stopping, and it did not drain: it gave up within its grace
		// (exit 1) or was killed after the parent's. A child that a
		// SIGTERM ended before its handler was in place had read nothing.
		s.undrained++
		if s.undrainedErr == nil {
			s.undrainedErr = fmt.Errorf("pid %d: %w", p.pid, err)
		}
	}
	delete(s.procs, p)
	p.exitErr = err
	st := p.contrib()
	st.Active, st.Buffered = 0, 0
	s.retired = s.retired.Add(st)
	s.notifyLocked()
	s.mu.Unlock()
	close(p.done)
}
