package prefork

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/models/modeltest"
	"github.com/sockbench/sockbench/protocol"
)

func TestMain(m *testing.M) {
	models.MaybeRunChild()
	os.Exit(m.Run())
}

// envTestCrash, set in a test's environment, makes the pool workers this
// test binary re-executes crash before serving (testCrashWorker), to drive
// the crash-loop limit. The test binary's init reads it; a production
// binary has neither.
const envTestCrash = "SOCKBENCH_PREFORK_TEST_CRASH"

func init() { testCrashWorker = os.Getenv(envTestCrash) != "" }

// start builds and starts a prefork server (two workers unless cfg says);
// it is shut down at the end of the test, after which no child process
// may remain.
func start(t *testing.T, cfg models.Config) *Server {
	t.Helper()
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	t.Cleanup(func() { checkNoChildren(t) }) // after modeltest.Start's shutdown: cleanups run last first
	return modeltest.Start(t, "prefork", cfg).(*Server)
}

// openFDs counts this process's open descriptors (-1 where unknown).
func openFDs() int {
	n, err := modeltest.OpenFDs()
	if err != nil {
		return -1
	}
	return n
}

// waitStats waits until cond holds on s's Stats (modeltest.WaitStats).
func waitStats(t *testing.T, s *Server, what string, cond func(models.Stats) bool) models.Stats {
	t.Helper()
	return modeltest.WaitStats(t, s, what, cond)
}

func shutdown(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// checkNoChildren fails when this process still has child processes.
func checkNoChildren(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return
	}
	if kids := children(os.Getpid()); len(kids) > 0 {
		t.Errorf("child processes left: %v", kids)
	}
}

// children lists the live (not zombie) processes whose parent is ppid,
// from /proc.
func children(ppid int) []int {
	ents, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, parent, ok := procStat(pid)
		if ok && parent == ppid && state != "Z" {
			kids = append(kids, pid)
		}
	}
	return kids
}

// procStat reads a process's state and parent pid; ok is false when the
// process is gone.
func procStat(pid int) (state string, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	return f[0], ppid, true
}

// alive reports whether pid is a live process (zombies count as dead).
func alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != "Z"
}

// workerPids lists the pids of the live children, for tests.
func (s *Server) workerPids() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pids []int
	for p := range s.procs {
		pids = append(pids, p.pid)
	}
	return pids
}

func TestServesEveryNet(t *testing.T) {
	for _, network := range []string{"tcp", "unix", "udp"} {
		t.Run(network, func(t *testing.T) {
			s := start(t, models.Config{Net: network, Mode: protocol.Upper, Workers: 2})
			if runtime.GOOS == "linux" {
				if n := len(children(os.Getpid())); n != 2 {
					t.Errorf("%d worker processes, want 2", n)
				}
			}
			const conns, reqs = 8, 25
			errs := make(chan error, conns)
			for i := range conns {
				go func() {
					c, err := net.Dial(network, s.Addr())
					if err != nil {
						errs <- err
						return
					}
					defer c.Close()
					br := bufio.NewReader(c)
					for j := range reqs {
						if err := modeltest.RoundTrip(c, br, protocol.Upper, fmt.Sprintf("conn %d req %d\n", i, j)); err != nil {
							errs <- err
							return
						}
					}
					errs <- nil
				}()
			}
			for range conns {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			// Live stats come from every worker, asked on demand. A
			// worker counts a reply once its write returns, which may be
			// just after the client read it: poll briefly.
			waitStats(t, s, fmt.Sprintf("requests=%d", conns*reqs), func(st models.Stats) bool { return st.Requests == conns*reqs })
			shutdown(t, s)
			if st := s.Stats(); st.Requests != conns*reqs || st.Active != 0 {
				t.Errorf("final Stats = %s, want requests=%d active=0", st, conns*reqs)
			}
			if network == "unix" {
				if _, err := os.Lstat(s.cfg.Addr); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("socket file left behind: %v", err)
				}
			}
			checkNoChildren(t)
		})
	}
}

func TestBadOptions(t *testing.T) {
	for _, tc := range []struct {
		net, spawn, want string
	}{
		{"udp", SpawnPerConn, "only tcp and unix"},
		{"tcp", "threads", `unknown spawn mode "threads"`},
	} {
		_, err := models.New("prefork", models.Config{Net: tc.net, Addr: "127.0.0.1:0", Extra: map[string]string{"spawn": tc.spawn}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s spawn=%s: err = %v, want it to say %q", tc.net, tc.spawn, err, tc.want)
		}
	}
	_, err := models.New("prefork", models.Config{Net: "tcp", Addr: "127.0.0.1:0", Extra: map[string]string{"spwan": "pool"}})
	if err == nil || !strings.Contains(err.Error(), `unknown option "spwan"`) {
		t.Errorf("misspelt option: err = %v", err)
	}
	_, err = models.New("prefork", models.Config{Net: "tcp", Addr: "127.0.0.1:0", MaxBuffered: 1 << 20, Extra: map[string]string{"spawn": SpawnPerConn}})
	if err == nil || !strings.Contains(err.Error(), "--max-buffered does not apply") {
		t.Errorf("per-conn with max-buffered: err = %v", err)
	}
}

// logRecords collects a server's log records as JSON lines, for tests
// that check what it said.
type logRecords struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logRecords) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// with returns the records whose msg is msg.
func (l *logRecords) with(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if r["msg"] == msg {
			recs = append(recs, r)
		}
	}
	return recs
}

// TestCrashLoopEndsServer: workers that die as soon as they start are
// respawned with a growing delay (0, then 100ms doubling), and after
// crashLimit deaths in a row the server gives up, once, with ErrCrashLoop.
func TestCrashLoopEndsServer(t *testing.T) {
	t.Setenv(envTestCrash, "1")
	var logs logRecords
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := models.New("prefork", models.Config{Net: "tcp", Addr: "127.0.0.1:0", Workers: 2, Grace: time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	err = srv.Start()
	took := time.Since(begin)
	if !errors.Is(err, ErrCrashLoop) {
		t.Fatalf("Start: %v, want ErrCrashLoop", err)
	}
	t.Logf("gave up after %v: %v", took, err)
	select {
	case <-srv.(*Server).Done():
	default:
		t.Error("Done not closed after a crash loop")
	}
	if err := srv.Shutdown(context.Background()); !errors.Is(err, ErrCrashLoop) {
		t.Errorf("Shutdown after crash loop: %v, want ErrCrashLoop", err)
	}
	checkNoChildren(t)

	// Each slot's respawn delays, in order, as the supervisor logged them.
	var want []string
	var least time.Duration
	for crashes := 1; crashes < crashLimit; crashes++ {
		d := time.Duration(0)
		if crashes > 1 {
			d = min(100*time.Millisecond<<(crashes-2), maxRespawnDelay)
		}
		want = append(want, d.String())
		least += d
	}
	delays := map[float64][]string{}
	for _, r := range logs.with(t, "worker died; respawning") {
		slot, _ := r["slot"].(float64)
		d, _ := r["delay"].(float64) // slog's JSON handler writes a Duration as nanoseconds
		delays[slot] = append(delays[slot], time.Duration(d).String())
	}
	// The slot that gave up first logged every delay; the other may have
	// been stopped before its last.
	full := false
	for slot, got := range delays {
		if len(got) > len(want) || !slices.Equal(got, want[:len(got)]) {
			t.Errorf("slot %v respawn delays %v, want %v", slot, got, want)
		}
		full = full || len(got) == len(want)
	}
	if !full {
		t.Errorf("no slot logged all %d respawn delays %v: %v", len(want), want, delays)
	}
	if took < least {
		t.Errorf("gave up after %v, before the backoff delays (%v in all) could have passed", took, least)
	}
	if n := len(logs.with(t, "giving up")); n != 1 {
		t.Errorf("%d \"giving up\" records, want 1", n)
	}
}

// TestNoLeaks runs servers of both spawn modes through many connections
// and checks goroutines, descriptors and child processes come back to
// their baseline, and the socket file is gone.
func TestNoLeaks(t *testing.T) {
	for _, spawn := range []string{SpawnPool, SpawnPerConn} {
		for _, network := range []string{"tcp", "unix"} {
			t.Run(spawn+"/"+network, func(t *testing.T) {
				g0, fd0 := runtime.NumGoroutine(), openFDs()
				addr := modeltest.Addr(t, network)
				srv, err := models.New("prefork", models.Config{Net: network, Addr: addr, Mode: protocol.Echo, Workers: 2,
					Extra: map[string]string{"spawn": spawn}})
				if err != nil {
					t.Fatal(err)
				}
				if err := srv.Start(); err != nil {
					t.Fatal(err)
				}
				// A per-conn cycle is a process start (slow under -race);
				// a leak per connection shows after a few dozen anyway.
				cycles := 100
				if spawn == SpawnPerConn {
					cycles = 40
				}
				for i := range cycles {
					c, err := net.Dial(network, srv.Addr())
					if err != nil {
						t.Fatal(err)
					}
					if err := modeltest.RoundTrip(c, bufio.NewReader(c), protocol.Echo, fmt.Sprintf("cycle %d\n", i)); err != nil {
						t.Fatal(err)
					}
					c.Close()
				}
				shutdown(t, srv.(*Server))
				if st := srv.Stats(); st.Requests != uint64(cycles) || st.Accepted != uint64(cycles) || st.Active != 0 {
					t.Errorf("Stats = %s, want %d requests and accepts, active=0", st, cycles)
				}
				checkNoChildren(t)
				if network == "unix" {
					if _, err := os.Lstat(addr); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("socket file left behind: %v", err)
					}
				}
				deadline := time.Now().Add(5 * time.Second)
				for {
					g, fd := runtime.NumGoroutine(), openFDs()
					if g <= g0 && fd <= fd0 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("goroutines %d → %d, fds %d → %d", g0, g, fd0, fd)
					}
					time.Sleep(10 * time.Millisecond)
				}
			})
		}
	}
}

// TestPerConnSpawnFailure: when a child cannot be started for a reason
// that is not a shortage (here the executable is gone), the parent tries
// otherSpawnTries times, drops that client, counts it, and keeps serving
// the next ones the same way rather than failing or stalling.
func TestPerConnSpawnFailure(t *testing.T) {
	srv, err := models.New("prefork", models.Config{Net: "tcp", Addr: "127.0.0.1:0", Grace: time.Second,
		Extra: map[string]string{"spawn": SpawnPerConn}})
	if err != nil {
		t.Fatal(err)
	}
	s := srv.(*Server)
	s.exe = filepath.Join(t.TempDir(), "gone")
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer checkNoChildren(t)
	defer shutdown(t, s)
	const clients = 2
	for i := range clients {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if err := modeltest.RoundTrip(c, bufio.NewReader(c), protocol.Echo, "hi\n"); err == nil || modeltest.IsTimeout(err) {
			t.Fatalf("client %d: %v, want the connection dropped", i, err)
		}
		c.Close()
	}
	st := waitStats(t, s, "accept errors", func(st models.Stats) bool { return st.AcceptErrors >= clients*otherSpawnTries })
	if st.AcceptErrors != clients*otherSpawnTries || st.Accepted != 0 || st.Active != 0 {
		t.Errorf("stats %v, want %d accept errors and nothing accepted", st, clients*otherSpawnTries)
	}
	select {
	case <-s.Done():
		t.Fatalf("server ended: %v", s.Err())
	default:
	}
}

// TestClosedOnArrival: per-conn starts no process for a connection the
// client closed or reset before sending anything.
func TestClosedOnArrival(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range []struct {
		name        string
		client      func(c *net.TCPConn)
		gone, reset bool
	}{
		{"closed", func(c *net.TCPConn) { c.Close() }, true, false},
		{"reset", func(c *net.TCPConn) { c.SetLinger(0); c.Close() }, true, true},
		{"data then close", func(c *net.TCPConn) { c.Write([]byte("x")); c.Close() }, false, false},
		{"open and quiet", func(c *net.TCPConn) {}, false, false},
	} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		tc.client(c.(*net.TCPConn))
		time.Sleep(20 * time.Millisecond)
		gone, reset := closedOnArrival(sc)
		for deadline := time.Now().Add(2 * time.Second); tc.gone && !gone && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond) // the FIN or RST is late
			gone, reset = closedOnArrival(sc)
		}
		if gone != tc.gone || reset != tc.reset {
			t.Errorf("%s: closedOnArrival = %v, %v; want %v, %v", tc.name, gone, reset, tc.gone, tc.reset)
		}
		sc.Close()
		c.Close()
	}
}
