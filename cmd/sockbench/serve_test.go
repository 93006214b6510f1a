package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockbench/sockbench/models"
)

// The serve tests run the real binary, as a user or the orchestrator
// would, and check what it prints and how it exits.

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

// sockbenchBin builds the sockbench binary once for the whole package.
func sockbenchBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "sbbin")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "sockbench")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// runServeFail runs `sockbench serve args...`, which must exit by itself.
func runServeFail(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(sockbenchBin(t), append([]string{"serve"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("serve %q did not exit (stderr %q)", args, errb.String())
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

func TestServeBadInput(t *testing.T) {
	t.Parallel()
	dir := shortTempDir(t)
	notDir := filepath.Join(dir, "file")
	os.WriteFile(notDir, nil, 0o600)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--addr", "127.0.0.1:99999"}, `port "99999" is not a number`},
		{[]string{"--addr", "nohost:x"}, `port "x" is not a number`},
		{[]string{"--addr", "nohost.invalid:7000"}, `cannot resolve host "nohost.invalid"`},
		{[]string{"--addr", "/tmp/x.sock"}, "is not host:port"},
		{[]string{"--net", "udp", "--addr", "127.0.0.1"}, "is not host:port"},
		{[]string{"--model", "nosuch"}, `unknown model "nosuch"`},
		{[]string{"--mode", "shout"}, `unknown mode "shout"`},
		{[]string{"--net", "sctp"}, `unknown --net "sctp"`},
		{[]string{"--net", "unix", "--addr", filepath.Join(dir, "missing", "s.sock")}, "does not exist"},
		{[]string{"--net", "unix", "--addr", filepath.Join(notDir, "s.sock")}, "not a directory"},
		{[]string{"--net", "unix", "--addr", "/tmp/" + strings.Repeat("p", 120)}, "longer than"},
		{[]string{"--block", "-1ms"}, "--block must not be negative"},
		{[]string{"--work=-1s"}, "--work must not be negative"},
		{[]string{"--idle-timeout", "-5s"}, "--idle-timeout must not be negative"},
		{[]string{"--line-timeout", "-1s"}, "--line-timeout must not be negative"},
		{[]string{"--write-timeout", "-1s"}, "--write-timeout must not be negative"},
		{[]string{"--line-timeout", "5"}, `"--line-timeout" flag: want a duration`},
		{[]string{"--max-buffered", "-1"}, "--max-buffered must not be negative"},
		{[]string{"--max-buffered", "1000"}, "--max-buffered must be 0 (no bound) or at least max-line"},
		{[]string{"--max-buffered", "lots"}, `"--max-buffered" flag: want a whole number`},
		{[]string{"--model", "prefork", "--spawn", "per-conn", "--max-buffered", "1000000"}, "--max-buffered does not apply to --spawn per-conn"},
		{[]string{"--grace", "-1s"}, "--grace must not be negative"},
		{[]string{"--work", "soon"}, `invalid argument "soon"`},
		{[]string{"--workers", "-2"}, "--workers must not be negative"},
		{[]string{"--max-conns", "-1"}, "--max-conns must not be negative"},
		{[]string{"--max-line", "1"}, "--max-line must be at least 2"},
		{[]string{"--max-line", "100000000000"}, "--max-line must be at most"},
		{[]string{"--workers", "1000000"}, "--workers must be at most 1024"},
		{[]string{"--model", "prefork", "--workers", "5000"}, "--workers must be at most 1024"},
		{[]string{"--socket-mode", "rw"}, "--socket-mode"},
		{[]string{"--socket-mode", "1777"}, "--socket-mode"},
		{[]string{"--spawn", "per-conn"}, "only to --model prefork"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--nosuchflag"}, "unknown flag"},
		{[]string{"extra", "args"}, "serve takes no arguments"},
		// Values the flag parser itself refuses, for every kind of flag.
		{[]string{"--workers", "abc"}, `"--workers" flag: want a whole number`},
		{[]string{"--max-conns", "1.5"}, `"--max-conns" flag: want a whole number`},
		{[]string{"--max-line", "lots"}, `"--max-line" flag: want a whole number`},
		{[]string{"--max-line", "99999999999999999999"}, `"--max-line" flag: out of range`},
		{[]string{"--idle-timeout", "5"}, `"--idle-timeout" flag: want a duration`},
		{[]string{"--block", "soon"}, `"--block" flag: want a duration`},
		{[]string{"--grace", "banana"}, `"--grace" flag: want a duration`},
		{[]string{"--grace", "0"}, "--grace must be more than 0"},
		{[]string{"--mode", ""}, `unknown mode ""`},
		{[]string{"--net", ""}, "--net must not be empty"},
		{[]string{"--model", ""}, `unknown model ""`},
		{[]string{"--socket-mode", "0"}, "--socket-mode"},
		{[]string{"--spawn", "weird", "--model", "prefork"}, "want pool or per-conn"},
		{[]string{"--model"}, "flag needs an argument"},
	}
	if ip := "203.0.113.77"; !localIPs()[ip] {
		// Not on this machine: one line, not a warning and then a bind error.
		cases = append(cases, struct {
			args []string
			want string
		}{[]string{"--addr", ip + ":7000"}, "no interface on this machine has the address"})
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, stdout, stderr := runServeFail(t, c.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			checkOneLine(t, stdout, stderr, c.want)
		})
	}
}

// checkOneLine wants nothing on stdout and exactly one line on stderr,
// naming the problem.
func checkOneLine(t *testing.T, stdout, stderr, want string) {
	t.Helper()
	if stdout != "" {
		t.Errorf("stdout %q, want nothing", stdout)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "sockbench: ") {
		t.Errorf("stderr %q, want one line starting with 'sockbench: '", stderr)
	}
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr %q does not say %q", stderr, want)
	}
	if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
		t.Errorf("stderr shows a panic: %q", stderr)
	}
}

// server is a running `sockbench serve`.
type server struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	exited chan struct{} // closed once Wait returned; err is then set
	err    error
}

func startServe(t *testing.T, args ...string) *server {
	t.Helper()
	cmd := exec.Command(sockbenchBin(t), append([]string{"serve"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	rest := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		l, _ := r.ReadString('\n')
		lines <- l
		more, _ := io.ReadAll(r)
		rest <- string(more)
		s.err = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			cmd.Process.Kill()
			<-s.exited
		}
		if r := <-rest; r != "" {
			t.Errorf("stdout after the ready line: %q", r)
		}
	})
	select {
	case l := <-lines:
		f := strings.Fields(l)
		if len(f) != 4 || f[0] != "ready" || f[3] != fmt.Sprintf("pid=%d", cmd.Process.Pid) {
			t.Fatalf("ready line %q (stderr %q)", l, s.stderr.String())
		}
		s.addr = f[2]
	case <-time.After(20 * time.Second):
		t.Fatalf("no ready line (stderr %q)", s.stderr.String())
	}
	return s
}

// stop sends SIGTERM and wants exit status 0.
func (s *server) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		if s.err != nil {
			t.Fatalf("serve exited with %v after SIGTERM (stderr %q)", s.err, s.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("serve did not exit after SIGTERM (stderr %q)", s.stderr.String())
	}
}

func TestServeRun(t *testing.T) {
	t.Parallel()
	for _, network := range []string{"tcp", "udp", "unix"} {
		for _, mode := range []string{"echo", "upper"} {
			t.Run(network+"/"+mode, func(t *testing.T) {
				t.Parallel()
				addr := "127.0.0.1:0"
				if network == "unix" {
					addr = filepath.Join(shortTempDir(t), "s.sock")
				}
				srv := startServe(t, "--net", network, "--addr", addr, "--mode", mode, "--socket-mode", "0640")
				if network == "unix" {
					if srv.addr != addr {
						t.Fatalf("ready addr %q, want %q", srv.addr, addr)
					}
					st, err := os.Stat(addr)
					if err != nil || st.Mode().Perm() != 0o640 {
						t.Fatalf("socket file: %v, %v", st, err)
					}
				}
				c, err := net.DialTimeout(network, srv.addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				req, want := "Hello, World! 123 xyz\n", "Hello, World! 123 xyz\n"
				if mode == "upper" {
					want = "HELLO, WORLD! 123 XYZ\n"
				}
				for range 3 {
					if _, err := c.Write([]byte(req)); err != nil {
						t.Fatal(err)
					}
					buf := make([]byte, 100)
					var got []byte
					for len(got) < len(want) {
						n, err := c.Read(buf)
						if err != nil {
							t.Fatalf("after %q: %v", got, err)
						}
						got = append(got, buf[:n]...)
					}
					if string(got) != want {
						t.Fatalf("reply %q, want %q", got, want)
					}
				}
				if network != "udp" {
					// A graceful stop ends the connection with EOF, not a reset.
					c.(interface{ CloseWrite() error }).CloseWrite()
				}
				srv.stop(t)
				if network != "udp" {
					if n, err := c.Read(make([]byte, 1)); err != io.EOF {
						t.Fatalf("after stop: %d, %v; want EOF", n, err)
					}
				}
				if network == "unix" {
					if _, err := os.Lstat(addr); !errors.Is(err, os.ErrNotExist) {
						t.Fatalf("socket file left behind: %v", err)
					}
				}
				if !strings.Contains(srv.stderr.String(), "requests=3 ") {
					t.Errorf("final stats on stderr do not count 3 requests: %q", srv.stderr.String())
				}
			})
		}
	}
}

func TestServeAddrInUse(t *testing.T) {
	t.Parallel()
	srv := startServe(t, "--addr", "127.0.0.1:0")
	code, stdout, stderr := runServeFail(t, "--addr", srv.addr)
	if code == 0 {
		t.Fatal("second server on the same port exited 0")
	}
	checkOneLine(t, stdout, stderr, "address already in use")

	path := filepath.Join(shortTempDir(t), "s.sock")
	usrv := startServe(t, "--net", "unix", "--addr", path)
	code, stdout, stderr = runServeFail(t, "--net", "unix", "--addr", path)
	if code == 0 {
		t.Fatal("second server on the same socket exited 0")
	}
	checkOneLine(t, stdout, stderr, "another server is listening")
	// A datagram server must not take the live stream socket for stale.
	code, stdout, stderr = runServeFail(t, "--net", "unixgram", "--addr", path)
	if code == 0 {
		t.Fatal("a unixgram server on a live unix socket exited 0")
	}
	checkOneLine(t, stdout, stderr, "another server is listening")
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("the live server's socket file is gone: %v", err)
	}

	dsrv := startServe(t, "--net", "udp", "--addr", "127.0.0.1:0")
	code, stdout, stderr = runServeFail(t, "--net", "udp", "--addr", dsrv.addr)
	if code == 0 {
		t.Fatal("second server on the same udp port exited 0")
	}
	checkOneLine(t, stdout, stderr, "address already in use")
	dsrv.stop(t)
	usrv.stop(t)
	srv.stop(t)
}

func TestServeWarnsOffLoopback(t *testing.T) {
	t.Parallel()
	srv := startServe(t, "--addr", "0.0.0.0:0", "--log-level", "warn")
	srv.stop(t)
	if s := srv.stderr.String(); !strings.Contains(s, "non-loopback") || strings.Count(s, "\n") != 1 {
		t.Fatalf("stderr %q, want one warning line", s)
	}
}

// TestServeBoundsFlags: --line-timeout, --write-timeout and --max-buffered
// reach the Config (a timeout of 0 is "never", as --idle-timeout's is), and a
// running server closes a client whose line is not complete in time and
// counts it in its final stats.
func TestServeBoundsFlags(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		line, want   time.Duration
		write, wantW time.Duration
		maxBuf       int64
	}{
		{models.DefaultLineTimeout, models.DefaultLineTimeout, models.DefaultWriteTimeout, models.DefaultWriteTimeout, 0},
		{0, -1, 0, -1, 0},
		{300 * time.Millisecond, 300 * time.Millisecond, 2 * time.Second, 2 * time.Second, 1 << 20},
	} {
		f := &serveFlags{model: "threaded", network: "tcp", maxLine: 64 << 10, grace: time.Second, socketMode: "0600",
			lineTimeout: tc.line, writeTimeout: tc.write, maxBuffered: tc.maxBuf}
		cfg, err := serveConfig(f, log)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.LineTimeout != tc.want || cfg.WriteTimeout != tc.wantW || cfg.MaxBuffered != tc.maxBuf {
			t.Errorf("--line-timeout %v --write-timeout %v --max-buffered %d: Config has %v, %v and %d, want %v, %v and %d",
				tc.line, tc.write, tc.maxBuf, cfg.LineTimeout, cfg.WriteTimeout, cfg.MaxBuffered, tc.want, tc.wantW, tc.maxBuf)
		}
	}

	srv := startServe(t, "--addr", "127.0.0.1:0", "--line-timeout", "300ms", "--max-buffered", "1048576")
	c, err := net.DialTimeout("tcp", srv.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := c.Write([]byte("a line that never ends")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 64)); err != io.EOF {
		t.Fatalf("a line left incomplete: read %d, %v; want EOF", n, err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("closed after %v, before --line-timeout 300ms", took)
	}
	c.Close()
	srv.stop(t)
	if !strings.Contains(srv.stderr.String(), "line_timeouts=1 ") {
		t.Errorf("final stats do not count the line timeout: %q", srv.stderr.String())
	}
}

// syncBuffer is a bytes.Buffer safe to write from exec's copier while the
// test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
