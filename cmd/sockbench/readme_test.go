//go:build linux

package main

// TestREADME runs the shell blocks of README.md that are marked runnable,
// exactly as written, against a freshly built binary, so the README's
// commands keep working.
//
// To mark a block, put a marker on the line right before its ```sh fence:
//
//	<!-- runnable -->          run the block (bash -e -o pipefail); it must
//	                           exit 0 within readmeBlockLimit
//	<!-- runnable: server -->  a command that serves until stopped, as when
//	                           a user starts it and goes on in another
//	                           terminal: started in the background; the test
//	                           waits for its `ready` line on stdout, runs the
//	                           blocks after it, then stops it with SIGINT
//	                           (Ctrl-C) and wants exit 0
//	<!-- output -->            on a ```text block right after a runnable
//	                           block: that block's stdout, exactly
//
// Leave unmarked what needs more than a built binary and the committed
// baseline (make, a bench run's results, another machine), or takes long.
//
// The blocks run in order, in one temporary directory holding
// bin/sockbench and a copy of results/baseline, in private network and
// mount namespaces: the README's fixed ports (127.0.0.1:7000) and paths
// (/tmp/sb.sock) are the namespace's own, so they clash with nothing on
// the machine, and /tmp there is an empty tmpfs. Where the kernel allows
// no such namespaces the test skips, saying so. A block that needs a
// command the machine lacks (nc, socat, benchstat) is skipped with a line
// naming it. Every process the blocks started is stopped at the end, and
// the test fails if one lingers or a file is left in /tmp.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	readmeNSEnv      = "SOCKBENCH_README_WORKDIR" // set in the child that runs in the namespaces
	readmeSkipPrefix = "readme-skip: "            // how the child says it cannot run here
	readmeBlockLimit = 45 * time.Second           // one block, or a server until ready
	readmeStopLimit  = 15 * time.Second           // a server after SIGINT (--grace is 5s)
	readmeLimit      = 3 * time.Minute            // the whole run, a hang's bound
)

// readmeBlock is one runnable block of README.md.
type readmeBlock struct {
	line   int    // line of the opening fence
	server bool   // <!-- runnable: server -->
	script string // the block's text
	output string // expected stdout when hasOut
	hasOut bool
}

func (b readmeBlock) name() string { return fmt.Sprintf("README.md:%d", b.line) }

var (
	readmeMarker = regexp.MustCompile(`^<!--\s*runnable(?::\s*(\S+))?\s*-->$`)
	outputMarker = regexp.MustCompile(`^<!--\s*output\s*-->$`)
)

// parseREADME returns the runnable blocks of a README, in order.
func parseREADME(text string) ([]readmeBlock, error) {
	lines := strings.Split(text, "\n")
	var blocks []readmeBlock
	// fence reads the fenced block whose opening line follows line i
	// (0-based), which must be "```"+lang.
	fence := func(i int, lang string) (body string, next int, err error) {
		if i+1 >= len(lines) || strings.TrimSpace(lines[i+1]) != "```"+lang {
			return "", 0, fmt.Errorf("README.md:%d: marker not followed by a ```%s block", i+1, lang)
		}
		for j := i + 2; j < len(lines); j++ {
			if strings.TrimSpace(lines[j]) == "```" {
				return strings.Join(lines[i+2:j], "\n"), j, nil
			}
		}
		return "", 0, fmt.Errorf("README.md:%d: block never closed", i+2)
	}
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if outputMarker.MatchString(l) {
			return nil, fmt.Errorf("README.md:%d: output marker not right after a runnable block", i+1)
		}
		m := readmeMarker.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if m[1] != "" && m[1] != "server" {
			return nil, fmt.Errorf("README.md:%d: unknown marker %q (want runnable or runnable: server)", i+1, l)
		}
		body, end, err := fence(i, "sh")
		if err != nil {
			return nil, err
		}
		b := readmeBlock{line: i + 2, server: m[1] == "server", script: body}
		i = end
		if i+1 < len(lines) && outputMarker.MatchString(strings.TrimSpace(lines[i+1])) {
			if b.server {
				return nil, fmt.Errorf("README.md:%d: a server block's output is its ready line; give no output block", i+2)
			}
			if b.output, end, err = fence(i+1, "text"); err != nil {
				return nil, err
			}
			b.hasOut, i = true, end
		}
		blocks = append(blocks, b)
	}
	return blocks, nil
}

func TestParseREADME(t *testing.T) {
	text := "x\n<!-- runnable: server -->\n```sh\nserve\n```\n\n<!-- runnable -->\n```sh\na | b\nc\n```\n<!-- output -->\n```text\nA\n```\n"
	got, err := parseREADME(text)
	want := []readmeBlock{{line: 3, server: true, script: "serve"}, {line: 8, script: "a | b\nc", output: "A", hasOut: true}}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("got %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{
		"<!-- runnable -->\n\n```sh\nx\n```\n",                                         // not right before the fence
		"<!-- runnable -->\n```sh\nx\n",                                                // never closed
		"<!-- runnable: daemon -->\n```sh\nx\n```\n",                                   // unknown kind
		"<!-- output -->\n```text\nx\n```\n",                                           // output of nothing
		"<!-- runnable: server -->\n```sh\nx\n```\n<!-- output -->\n```text\ny\n```\n", // server output
	} {
		if _, err := parseREADME(bad); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}

// blockNeeds returns a command the script runs that is missing here (or
// is the wrong one: nc must be OpenBSD netcat), with why, or "".
func blockNeeds(script string) (string, string) {
	quoted := regexp.MustCompile(`'[^']*'|"[^"]*"`)
	sep := regexp.MustCompile(`\|\|?|&&|;|\$\(|\(`)
	for _, line := range strings.Split(script, "\n") {
		line = quoted.ReplaceAllString(line, "q")
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		for _, part := range sep.Split(line, -1) {
			f := strings.Fields(part)
			for len(f) > 0 && strings.Contains(f[0], "=") {
				f = f[1:] // VAR=value before a command
			}
			if len(f) == 0 || strings.Contains(f[0], "/") {
				continue // bin/sockbench: the test put it there
			}
			name := f[0]
			if _, err := exec.LookPath(name); err != nil {
				if out, err := exec.Command("bash", "-c", "type -t "+name).Output(); err == nil && len(out) > 0 {
					continue // a shell builtin or keyword
				}
				return name, "not installed"
			}
			if name == "nc" {
				out, _ := exec.Command("nc", "-h").CombinedOutput()
				if !strings.Contains(string(out), "OpenBSD") {
					return name, "not OpenBSD netcat (Debian: netcat-openbsd), whose -N and -U the README uses"
				}
			}
		}
	}
	return "", ""
}

func TestREADME(t *testing.T) {
	if dir := os.Getenv(readmeNSEnv); dir != "" {
		runREADMEInNamespaces(t, dir)
		return
	}
	t.Parallel()
	text := readRepoFile(t, "README.md")
	blocks, err := parseREADME(text)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) == 0 {
		t.Fatal("README.md marks no block runnable")
	}

	// The directory the blocks run in: bin/sockbench and results/baseline,
	// copied (the child hides /tmp, where they may live, under a tmpfs).
	work, err := os.MkdirTemp("", "sbreadme")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	copyFile(t, sockbenchBin(t), filepath.Join(work, "bin", "sockbench"), 0o755)
	base := filepath.Join("..", "..", "results", "baseline")
	ents, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		copyFile(t, filepath.Join(base, e.Name()), filepath.Join(work, "results", "baseline", e.Name()), 0o644)
	}

	// The same test binary, run again in new network and mount namespaces
	// (and a user namespace where not root, so no privilege is needed
	// where the kernel allows them).
	cmd := exec.Command(os.Args[0], "-test.run=^TestREADME$", "-test.v", "-test.count=1",
		"-test.timeout="+readmeLimit.String())
	cmd.Env = append(os.Environ(), readmeNSEnv+"="+work)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if uid, gid := os.Getuid(), os.Getgid(); uid != 0 {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: uid, Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: gid, Size: 1}}
	}
	out, err := runLimited(cmd, readmeLimit+30*time.Second)
	if cmd.Process == nil && (errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) ||
		errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EUSERS) || errors.Is(err, syscall.EACCES)) {
		t.Skipf("skipped: the README's blocks run in private network and mount namespaces (their ports and /tmp paths are fixed), which this machine does not allow: %v", err)
	}
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, readmeSkipPrefix); i >= 0 && err == nil {
			t.Skipf("skipped: %s", l[i+len(readmeSkipPrefix):])
		}
	}
	t.Logf("the blocks, run in namespaces:\n%s", out)
	if err != nil {
		t.Fatalf("README blocks: %v", err)
	}
}

// runLimited runs cmd and returns its combined output, killing it after
// limit.
func runLimited(cmd *exec.Cmd, limit time.Duration) (string, error) {
	f, err := unlinkedTemp()
	if err != nil {
		return "", err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		err = fmt.Errorf("still running after %v; killed", limit)
	}
	out, _ := readAllFrom(f)
	return out, err
}

// unlinkedTemp is a temporary file already removed from /tmp, so it is
// read back through its descriptor and is never left behind.
func unlinkedTemp() (*os.File, error) {
	f, err := os.CreateTemp("", "sbout")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}

func readAllFrom(f *os.File) (string, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	b, err := io.ReadAll(f)
	return string(b), err
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// runREADMEInNamespaces is TestREADME in the child, inside its own
// network and mount namespaces.
func runREADMEInNamespaces(t *testing.T, work string) {
	blocks, err := parseREADME(readRepoFile(t, "README.md")) // before /tmp is covered: the checkout may be there
	if err != nil {
		t.Fatal(err)
	}
	if err := enterPrivateTmpAndLoopback(work); err != nil {
		fmt.Printf("%sthe README's blocks need a private /tmp and loopback: %v\n", readmeSkipPrefix, err)
		t.Skip(err)
	}
	// Orphans of the blocks (a server a block left in the background)
	// become this process's children, so it can reap them and tell
	// when they are gone.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	var running []*readmeProc
	defer func() {
		// Servers stop as a user stops them, in reverse order; whatever
		// else a block left running gets SIGTERM.
		for _, p := range slices.Backward(running) {
			p.stop(t)
		}
		ents, err := os.ReadDir("/tmp")
		if err != nil {
			t.Error(err)
		}
		for _, e := range ents {
			t.Errorf("left in /tmp after every server stopped: %s", e.Name())
		}
	}()
	for _, b := range blocks {
		t.Run(b.name(), func(t *testing.T) {
			if name, why := blockNeeds(b.script); name != "" {
				t.Skipf("skipped: the block needs %s: %s", name, why)
			}
			start := time.Now()
			p, err := startBlock(b)
			if err != nil {
				t.Fatal(err)
			}
			running = append(running, p)
			if b.server {
				p.waitReady(t)
				t.Logf("server up (%s)", strings.TrimSpace(p.ready))
				return
			}
			select {
			case <-p.exited:
			case <-time.After(readmeBlockLimit):
				t.Fatalf("still running after %v:\n%s", readmeBlockLimit, b.script)
			}
			stdout, _ := readAllFrom(p.stdout)
			stderr, _ := readAllFrom(p.stderr)
			if p.err != nil {
				t.Fatalf("%v:\n%s\nstdout:\n%s\nstderr:\n%s", p.err, b.script, stdout, stderr)
			}
			if b.hasOut && strings.TrimRight(stdout, "\n") != strings.TrimRight(b.output, "\n") {
				t.Fatalf("stdout:\n%s\nwant (the output block):\n%s\nstderr:\n%s", stdout, b.output, stderr)
			}
			t.Logf("ok in %v", time.Since(start).Round(100*time.Millisecond))
		})
	}
}

// enterPrivateTmpAndLoopback makes the mount namespace private, moves to
// work, covers /tmp with an empty tmpfs (work stays reachable as the
// current directory, which every block uses), and brings loopback up.
func enterPrivateTmpAndLoopback(work string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if err := unix.Chdir(work); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=64m"); err != nil {
		return fmt.Errorf("mounting a tmpfs on /tmp: %w", err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("reading lo's flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing lo up: %w", err)
	}
	return nil
}

// readmeProc is a running block: bash in a process group of its own.
type readmeProc struct {
	b              readmeBlock
	cmd            *exec.Cmd
	stdout, stderr *os.File      // run blocks: unlinked files
	ready          string        // server blocks: the ready line
	readyc         chan string   // server blocks: the first stdout line
	exited         chan struct{} // closed once bash was waited for; err is then set
	err            error
}

func startBlock(b readmeBlock) (*readmeProc, error) {
	p := &readmeProc{b: b, exited: make(chan struct{})}
	p.cmd = exec.Command("bash", "-e", "-o", "pipefail", "-c", b.script)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var err error
	if p.stderr, err = unlinkedTemp(); err != nil {
		return nil, err
	}
	p.cmd.Stderr = p.stderr
	var w *os.File
	if b.server {
		r, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		w, p.cmd.Stdout = pw, pw
		p.readyc = make(chan string, 1)
		go func() {
			br := bufio.NewReader(r)
			l, _ := br.ReadString('\n')
			p.readyc <- l
			io.Copy(io.Discard, br) // until every writer is gone
			r.Close()
		}()
	} else {
		if p.stdout, err = unlinkedTemp(); err != nil {
			return nil, err
		}
		p.cmd.Stdout = p.stdout
	}
	err = p.cmd.Start()
	if w != nil {
		w.Close()
	}
	if err != nil {
		return nil, err
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// waitReady waits for a server block's ready line.
func (p *readmeProc) waitReady(t *testing.T) {
	t.Helper()
	select {
	case l := <-p.readyc:
		if !strings.HasPrefix(l, "ready ") {
			stderr, _ := readAllFrom(p.stderr)
			t.Fatalf("first stdout line %q, want a ready line:\n%s\nstderr:\n%s", l, p.b.script, stderr)
		}
		p.ready = l
	case <-time.After(readmeBlockLimit):
		stderr, _ := readAllFrom(p.stderr)
		t.Fatalf("no ready line after %v:\n%s\nstderr:\n%s", readmeBlockLimit, p.b.script, stderr)
	}
}

// stop ends what the block started: SIGINT to a server (Ctrl-C), which
// must exit 0, SIGTERM to anything a run block left behind; then it waits
// until no process of the block's group is left, reaping orphans.
func (p *readmeProc) stop(t *testing.T) {
	pgid := p.cmd.Process.Pid
	sig := syscall.SIGTERM
	if p.b.server {
		sig = syscall.SIGINT
	}
	syscall.Kill(-pgid, sig)
	deadline := time.After(readmeStopLimit)
	select {
	case <-p.exited:
	case <-deadline:
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.exited
		t.Errorf("%s: still running %v after %v; killed", p.b.name(), readmeStopLimit, sig)
		return
	}
	if p.b.server && p.err != nil {
		stderr, _ := readAllFrom(p.stderr)
		t.Errorf("%s: the server exited with %v after SIGINT, want 0\nstderr:\n%s", p.b.name(), p.err, stderr)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var ws unix.WaitStatus
		for {
			pid, err := unix.Wait4(-pgid, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			syscall.Kill(-pgid, syscall.SIGKILL)
			t.Errorf("%s: processes of the block still running %v after %v; killed", p.b.name(), readmeStopLimit, sig)
			return
		}
	}
}
