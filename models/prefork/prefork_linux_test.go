package prefork

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/models/modeltest"
	"github.com/sockbench/sockbench/protocol"
)

// These tests read /proc, so they are Linux only.

const (
	testParentRole = "prefork-test-parent"
	testParentEnv  = "PREFORK_TEST_PARENT"
)

// testParentSpec is what the parent subprocess serves.
type testParentSpec struct {
	Config      models.Config `json:"config"`
	NoPdeathsig bool          `json:"no_pdeathsig"`
	NoFile      uint64        `json:"nofile"` // RLIMIT_NOFILE of the parent, when set
}

func init() { models.RegisterChild(testParentRole, testParentMain) }

// testParentMain runs a prefork server as `sockbench serve` does, so a test
// can SIGKILL the parent itself.
func testParentMain() int {
	var sp testParentSpec
	if err := json.Unmarshal([]byte(os.Getenv(testParentEnv)), &sp); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	testNoPdeathsig = sp.NoPdeathsig
	if sp.NoFile > 0 {
		lim := syscall.Rlimit{Cur: sp.NoFile, Max: sp.NoFile}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	cfg := sp.Config
	// Warnings show: when a test here fails they say what the parent saw.
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := cfg.Normalize(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	srv, err := models.New("prefork", cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := models.Run(context.Background(), srv, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// startParent runs a prefork parent in a subprocess and returns it with
// the address from its ready line. It is killed at the end of the test.
func startParent(t *testing.T, sp testParentSpec) (*exec.Cmd, string) {
	t.Helper()
	b, _ := json.Marshal(sp)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), models.ChildEnv+"="+testParentRole, testParentEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 4 || f[0] != "ready" {
		t.Fatalf("ready line %q: %v", line, err)
	}
	return cmd, f[2]
}

// TestPerConnOutOfFDs runs a per-conn parent with a low RLIMIT_NOFILE and
// more clients than it has descriptors for children: the parent neither
// dies nor drops them; the clients that cannot be handed off yet wait and
// are served once earlier ones close.
func TestPerConnOutOfFDs(t *testing.T) {
	cfg := models.Config{Net: "tcp", Addr: "127.0.0.1:0", Mode: protocol.Upper,
		Extra: map[string]string{"spawn": SpawnPerConn}}
	cmd, addr := startParent(t, testParentSpec{Config: cfg, NoFile: 40})
	const n = 30 // each child costs the parent 3 descriptors: far more than 40 allow
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	served := make(chan int, n)
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		go func() {
			if err := modeltest.RoundTrip(c, bufio.NewReader(c), protocol.Upper, fmt.Sprintf("client %d\n", i)); err != nil {
				t.Errorf("client %d: %v", i, err)
			}
			served <- i
		}()
	}
	// Close each client once served, which frees its child's descriptors
	// for the next.
	wait := modeltest.Scaled(60 * time.Second)
	deadline := time.After(wait)
	for range n {
		select {
		case i := <-served:
			conns[i].Close()
		case <-deadline:
			t.Fatalf("clients not all served within %v", wait)
		}
	}
	if kids := children(cmd.Process.Pid); len(kids) > n {
		t.Errorf("parent has %d children", len(kids))
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("parent exit after SIGTERM: %v, want status 0", err)
	}
}

// TestParentSIGKILL kills the parent with SIGKILL and checks that no
// worker (or per-conn child) outlives it by more than 2s, on every
// transport: through Pdeathsig, and through the control-pipe watch alone
// (what macOS has).
func TestParentSIGKILL(t *testing.T) {
	type variant struct {
		spawn, net string
	}
	var variants []variant
	for _, nw := range []string{"tcp", "udp", "unix"} {
		variants = append(variants, variant{SpawnPool, nw})
	}
	for _, nw := range []string{"tcp", "unix"} {
		variants = append(variants, variant{SpawnPerConn, nw})
	}
	for _, v := range variants {
		for _, noPdeathsig := range []bool{false, true} {
			name := v.spawn + "/" + v.net + "/pdeathsig"
			if noPdeathsig {
				name = v.spawn + "/" + v.net + "/pipe-only"
			}
			t.Run(name, func(t *testing.T) {
				parentSIGKILL(t, v.spawn, v.net, noPdeathsig)
			})
		}
	}
}

func parentSIGKILL(t *testing.T, spawn, network string, noPdeathsig bool) {
	cfg := models.Config{Net: network, Addr: modeltest.Addr(t, network), Mode: protocol.Echo, Workers: 2,
		Extra: map[string]string{"spawn": spawn}}
	cmd, addr := startParent(t, testParentSpec{Config: cfg, NoPdeathsig: noPdeathsig})
	if spawn == SpawnPerConn {
		// Two open connections, two children.
		for range 2 {
			c, err := net.Dial(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := modeltest.RoundTrip(c, bufio.NewReader(c), protocol.Echo, "hi\n"); err != nil {
				t.Fatal(err)
			}
		}
	}
	kids := children(cmd.Process.Pid)
	if len(kids) != 2 {
		t.Fatalf("parent %d has children %v, want 2", cmd.Process.Pid, kids)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	killed := time.Now()
	for {
		var left []int
		for _, pid := range kids {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			t.Logf("children %v gone %v after the parent's SIGKILL", kids, time.Since(killed))
			return
		}
		if time.Since(killed) > 2*time.Second {
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Fatalf("children %v still alive 2s after the parent was SIGKILLed", left)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// socketInodes lists the inodes of pid's open sockets.
func socketInodes(pid int) map[string]bool {
	inodes := map[string]bool{}
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, e := range ents {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	return inodes
}

// serverSideOwner maps each tcp client connection to the pid of the
// worker holding its server side, through /proc/net/tcp and
// /proc/<pid>/fd.
func serverSideOwner(t *testing.T, serverAddr string, clients []net.Conn, pids []int) map[net.Conn]int {
	t.Helper()
	_, sport, _ := net.SplitHostPort(serverAddr)
	sp, _ := strconv.Atoi(sport)
	byPort := map[int]net.Conn{}
	for _, c := range clients {
		byPort[c.LocalAddr().(*net.TCPAddr).Port] = c
	}
	inodeConn := map[string]net.Conn{}
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		lp := hexPort(f[1])
		rp := hexPort(f[2])
		if lp == sp {
			if c, ok := byPort[rp]; ok {
				inodeConn[f[9]] = c
			}
		}
	}
	owner := map[net.Conn]int{}
	for _, pid := range pids {
		for inode := range socketInodes(pid) {
			if c, ok := inodeConn[inode]; ok {
				owner[c] = pid
			}
		}
	}
	return owner
}

func hexPort(addr string) int {
	_, p, _ := strings.Cut(addr, ":")
	n, _ := strconv.ParseUint(p, 16, 16)
	return int(n)
}

// unixServerSides counts, for each of pids, the connected server-side
// Unix sockets of path it holds. /proc/net/unix names no peer, so which
// client is on which worker is not known, only how many each holds: an
// accepted socket carries its listener's path, and state 03 (connected)
// tells it from the listener (01).
func unixServerSides(t *testing.T, path string, pids []int) map[int]int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		t.Fatal(err)
	}
	conns := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		// Num RefCount Protocol Flags Type St Inode Path
		f := strings.Fields(line)
		if len(f) == 8 && f[5] == "03" && f[7] == path {
			conns[f[6]] = true
		}
	}
	per := map[int]int{}
	for _, pid := range pids {
		for inode := range socketInodes(pid) {
			if conns[inode] {
				per[pid]++
			}
		}
	}
	return per
}

// procByPid returns the live child with pid, or nil.
func (s *Server) procByPid(pid int) *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range s.procs {
		if p.pid == pid {
			return p
		}
	}
	return nil
}

// TestWorkerSIGKILLUnderLoad kills one of two workers while every client
// is busy, on each transport. A stream connection lives in the worker
// that accepted it: those on the victim end (on tcp exactly those, by
// /proc ownership; on unix as many as it held), and every other one keeps
// getting answers. Datagram clients belong to no worker: each keeps
// getting answers, losing at most the one request the victim had read.
// A new worker appears within a second and serves: with the surviving
// original worker stopped (SIGSTOP), a new client is answered.
func TestWorkerSIGKILLUnderLoad(t *testing.T) {
	for _, network := range []string{"tcp", "unix", "udp"} {
		t.Run(network, func(t *testing.T) { testWorkerSIGKILL(t, network) })
	}
}

func testWorkerSIGKILL(t *testing.T, network string) {
	s := start(t, models.Config{Net: network, Mode: protocol.Upper, Workers: 2})
	pids := s.workerPids()
	if len(pids) != 2 {
		t.Fatalf("workers %v, want 2", pids)
	}
	victim, survivor := pids[0], pids[1]
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial(network, s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if err := modeltest.RoundTrip(c, bufio.NewReader(c), protocol.Upper, "warm up\n"); err != nil {
			t.Fatal(err)
		}
		return c
	}

	// Stream: open connections until both workers hold some.
	var (
		owner    map[net.Conn]int // tcp
		onVictim int
	)
	if network == "udp" {
		for range 8 {
			clients = append(clients, dial())
		}
	} else {
		for len(clients) < 400 {
			for range 8 {
				clients = append(clients, dial())
			}
			per := map[int]int{}
			if network == "tcp" {
				owner = serverSideOwner(t, s.Addr(), clients, pids)
				for _, pid := range owner {
					per[pid]++
				}
			} else {
				per = unixServerSides(t, s.Addr(), pids)
			}
			if per[victim]+per[survivor] == len(clients) && per[victim] > 0 && per[survivor] > 0 {
				onVictim = per[victim]
				break
			}
		}
		if onVictim == 0 {
			t.Fatalf("could not get connections on both workers (%d clients)", len(clients))
		}
		t.Logf("%d connections on the victim %d, %d on the other worker", onVictim, victim, len(clients)-onVictim)
	}

	// Load: every client sends requests back to back until stopped.
	type result struct {
		err       error // stream: what ended the connection
		afterKill int   // replies to requests sent after the kill
		lost      int   // udp: requests never answered
	}
	var (
		stop    atomic.Bool
		killed  atomic.Bool
		wg      sync.WaitGroup
		mu      sync.Mutex
		results = make([]result, len(clients))
		// answered counts clients that have ended or been answered after
		// the kill.
		answered atomic.Int64
		// warm counts clients answered at least once before the kill.
		warm atomic.Int64
	)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := bufio.NewReader(c)
			var r result
			counted := false
			settle := func() {
				if !counted {
					counted = true
					answered.Add(1)
				}
			}
			defer func() {
				mu.Lock()
				results[i] = r
				mu.Unlock()
			}()
			for j := 0; !stop.Load(); j++ {
				after := killed.Load()
				line := fmt.Sprintf("client %d request %d\n", i, j)
				var err error
				if network == "udp" {
					err = dgramTrip(c, line, modeltest.Scaled(2*time.Second))
					if modeltest.IsTimeout(err) {
						r.lost++
						continue
					}
				} else {
					err = modeltest.RoundTrip(c, br, protocol.Upper, line)
				}
				if err != nil {
					r.err = err
					settle()
					return
				}
				if j == 0 {
					warm.Add(1)
				}
				if after {
					r.afterKill++
					settle()
				}
			}
		}()
	}
	// Kill with every client in its loop, each answered once.
	if !modeltest.WaitFor(modeltest.Scaled(10*time.Second), func() bool { return warm.Load() == int64(len(clients)) }) {
		t.Fatalf("only %d of %d clients answered before the kill", warm.Load(), len(clients))
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed.Store(true)
	killedAt := time.Now()
	var replacement *proc
	for replacement == nil {
		for _, pid := range s.workerPids() {
			if pid != victim && pid != survivor {
				replacement = s.procByPid(pid)
			}
		}
		if replacement == nil && time.Since(killedAt) > time.Second {
			t.Fatalf("no new worker within 1s of killing %d (workers %v)", victim, s.workerPids())
		}
		time.Sleep(time.Millisecond)
	}
	appeared := time.Since(killedAt)
	select {
	case <-replacement.ready:
	case <-time.After(modeltest.Scaled(10 * time.Second)):
	}
	if serving := time.Since(killedAt); serving > modeltest.Scaled(time.Second) {
		t.Fatalf("new worker %d not serving within 1s of the kill (%v)", replacement.pid, serving)
	}
	t.Logf("new worker %d appeared %v after the kill, serving after %v", replacement.pid, appeared, time.Since(killedAt))

	// Every client either ended or was answered after the kill.
	for deadline := time.Now().Add(modeltest.Scaled(10 * time.Second)); answered.Load() < int64(len(clients)); {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	ended, lost := 0, 0
	for i, r := range results {
		lost += r.lost
		switch {
		case r.err != nil:
			ended++
			if network == "udp" {
				t.Errorf("udp client %d: %v", i, r.err)
			} else if owner != nil && owner[clients[i]] != victim {
				t.Errorf("client %d on the surviving worker failed: %v", i, r.err)
			}
		case r.afterKill == 0:
			t.Errorf("client %d got no reply after the kill", i)
		}
	}
	switch network {
	case "udp":
		// A client has one request in flight, so the victim can have
		// taken at most one of each client's.
		if lost > len(clients) {
			t.Errorf("%d requests lost by %d clients, want at most one each", lost, len(clients))
		}
		t.Logf("%d requests lost in the kill (%d clients)", lost, len(clients))
	default:
		if ended != onVictim {
			t.Errorf("%d connections ended, want the %d on the killed worker", ended, onVictim)
		}
	}

	// The replacement serves new clients: with the other worker stopped,
	// nobody else can answer.
	if err := syscall.Kill(survivor, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(survivor, syscall.SIGCONT)
	// kill returns before every thread has stopped: a thread of the
	// survivor still running could take the new connection and then stop
	// holding it. Dial only once all of them show as stopped.
	if err := waitStopped(survivor, modeltest.Scaled(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial(network, s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	clients = append(clients, c)
	if network == "udp" {
		err = dgramTrip(c, "new client\n", modeltest.Scaled(10*time.Second))
	} else {
		err = modeltest.RoundTrip(c, bufio.NewReader(c), protocol.Upper, "new client\n")
	}
	if err != nil {
		t.Errorf("new client with only the new worker running: %v", err)
	}
	syscall.Kill(survivor, syscall.SIGCONT)
}

// waitStopped waits until every thread of pid is in the stopped state
// ('T' in /proc/PID/task/TID/stat).
func waitStopped(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
		if err != nil || len(tasks) == 0 {
			return fmt.Errorf("threads of %d: %v", pid, err)
		}
		running := ""
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			if err != nil {
				continue // the thread has ended
			}
			// The state follows the command name, which is in parentheses.
			if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] != 'T' && b[i+2] != 't' {
				running = f
			}
		}
		if running == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d not stopped within %v (%s)", pid, timeout, running)
		}
		time.Sleep(time.Millisecond)
	}
}

// dgramTrip sends one datagram on c and waits up to timeout for its reply
// (upper mode), skipping late replies to earlier requests.
func dgramTrip(c net.Conn, line string, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, line); err != nil {
		return err
	}
	want := string(protocol.Upper.AppendReply(nil, []byte(line)))
	buf := make([]byte, 256)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if got := string(buf[:n]); got == want {
			return nil
		} else if !strings.HasPrefix(got, "CLIENT ") && got != "WARM UP\n" {
			return fmt.Errorf("reply %q, want %q", got, want)
		}
	}
}

// TestPerConn checks fork-per-connection: one process per open
// connection, reaped when it closes; at most MaxConns at once.
func TestPerConn(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			s := start(t, models.Config{Net: network, Mode: protocol.Upper, MaxConns: 3,
				Extra: map[string]string{"spawn": SpawnPerConn}})
			var conns []net.Conn
			for i := range 3 {
				c, err := net.Dial(network, s.Addr())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				conns = append(conns, c)
				if err := modeltest.RoundTrip(c, bufio.NewReader(c), protocol.Upper, fmt.Sprintf("conn %d\n", i)); err != nil {
					t.Fatal(err)
				}
			}
			if n := len(children(os.Getpid())); n != 3 {
				t.Errorf("%d child processes for 3 connections", n)
			}
			c, err := net.Dial(network, s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			if err := modeltest.RoundTrip(c, bufio.NewReader(c), protocol.Upper, "one too many\n"); err == nil {
				t.Error("a fourth connection was served past max-conns 3")
			}
			c.Close()
			for _, c := range conns {
				c.Close()
			}
			st := waitStats(t, s, "active=0", func(st models.Stats) bool { return st.Active == 0 })
			if st.Accepted != 3 || st.Rejected != 1 || st.Requests != 3 {
				t.Errorf("Stats = %s, want accepted=3 rejected=1 requests=3", st)
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(children(os.Getpid())) > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("children of closed connections not reaped: %v", children(os.Getpid()))
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestCrashLoopWhileRunning: once replacements keep dying, the server
// gives up, stops the healthy workers too and says why through Done and
// Err (and Shutdown).
func TestCrashLoopWhileRunning(t *testing.T) {
	srv, err := models.New("prefork", models.Config{Net: "tcp", Addr: "127.0.0.1:0", Workers: 2, Grace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	s := srv.(*Server)
	t.Setenv(envTestCrash, "1") // every replacement (a re-executed test binary) exits at once
	syscall.Kill(s.workerPids()[0], syscall.SIGKILL)
	// Meanwhile the listener the healthy worker shares must stay
	// non-blocking: handing it to a child must not change its mode (see
	// startProcess), and these children die before they could set it back.
	rc, err := s.ln.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for stop := false; !stop; {
		select {
		case <-s.Done():
			stop = true
		case <-timeout:
			t.Fatal("server still running 10s after its workers began crash-looping")
		case <-time.After(time.Millisecond):
			rc.Control(func(fd uintptr) {
				if fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0); err == nil && fl&unix.O_NONBLOCK == 0 {
					t.Error("the shared listener became blocking while children were being started")
					stop = true
				}
			})
		}
	}
	if err := s.Err(); !errors.Is(err, ErrCrashLoop) {
		t.Errorf("Err() = %v, want ErrCrashLoop", err)
	}
	if err := s.Shutdown(context.Background()); !errors.Is(err, ErrCrashLoop) {
		t.Errorf("Shutdown() = %v, want ErrCrashLoop", err)
	}
	checkNoChildren(t)
	if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("still accepting connections after giving up")
	}
}

// TestStuckStartIsKilled: a start that does not return within its bound
// has its child (the one the spawner has not handed out) killed and
// reaped and fails with errStartStuck; children already started are left
// alone. The hang is simulated by a start function that waits after
// starting a process, as syscall.StartProcess waits for a child that
// never execs.
func TestStuckStartIsKilled(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	startSleep := func() (int, error) {
		pid, _, err := syscall.StartProcess(sleep, []string{"sleep", "30"}, &syscall.ProcAttr{Files: []uintptr{0, 1, 2}})
		return pid, err
	}
	sp := startSpawner(200 * time.Millisecond)
	defer sp.stop()

	live, err := sp.run(startSleep)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(live, syscall.SIGKILL)
		var ws syscall.WaitStatus
		syscall.Wait4(live, &ws, 0, nil)
	}()

	var stuck int
	_, err = sp.run(func() (int, error) {
		pid, err := startSleep()
		stuck = pid
		for deadline := time.Now().Add(modeltest.Scaled(5 * time.Second)); err == nil && time.Now().Before(deadline); {
			if state, _, ok := procStat(pid); !ok || state == "Z" {
				break // killed
			}
			time.Sleep(10 * time.Millisecond)
		}
		return pid, err
	})
	if !errors.Is(err, errStartStuck) {
		t.Fatalf("stuck start: %v, want errStartStuck", err)
	}
	if _, _, ok := procStat(stuck); ok {
		t.Errorf("the stuck child %d is still there (not killed, or not reaped)", stuck)
	}
	if state, _, ok := procStat(live); !ok || state == "Z" {
		t.Errorf("the child started earlier (%d) was killed too", live)
	}
}
