package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseServerHost(t *testing.T) {
	for in, want := range map[string]SSHTarget{
		"ssh://pi@raspberrypi":       {User: "pi", Host: "raspberrypi"},
		"ssh://bench-box":            {Host: "bench-box"},
		"ssh://root@198.18.0.1:2222": {User: "root", Host: "198.18.0.1", Port: 2222},
		"ssh://u@[fe80::1]:22":       {User: "u", Host: "fe80::1", Port: 22},
	} {
		got, err := ParseServerHost(in)
		if err != nil || got != want {
			t.Errorf("%s: %+v %v", in, got, err)
		}
		if err == nil && got.String() != in {
			t.Errorf("%s prints as %s", in, got)
		}
	}
	for _, bad := range []string{"pi@raspberrypi", "http://x", "ssh://", "ssh://u:pw@h", "ssh://h:0", "ssh://h:99999",
		"ssh://h/path", "ssh://-oProxyCommand=x", "ssh://h?x=1"} {
		if _, err := ParseServerHost(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRemotePlatform(t *testing.T) {
	for _, tc := range []struct{ sys, mach, dist string }{
		{"Linux", "x86_64", "sockbench-linux-amd64"},
		{"Linux", "aarch64", "sockbench-linux-arm64"},
		{"Linux", "armv7l", "sockbench-linux-armv7"},
		{"Linux", "armv6l", "sockbench-linux-armv6"},
		{"Darwin", "arm64", "sockbench-darwin-arm64"},
	} {
		if _, _, _, dist, err := remotePlatform(tc.sys, tc.mach); err != nil || dist != tc.dist {
			t.Errorf("%s %s: %s %v", tc.sys, tc.mach, dist, err)
		}
	}
	for _, bad := range [][2]string{{"Windows_NT", "x86_64"}, {"Linux", "mips"}} {
		if _, _, _, _, err := remotePlatform(bad[0], bad[1]); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// TestRemoteSampleParsing: the remote sampler's arithmetic over files read
// elsewhere is the local sampler's over the same files: sampling this
// process both ways agrees (the remote way reads the files a moment
// later, so it may only be a little larger).
func TestRemoteSampleParsing(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	local, rss, _, err := sampleTree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	pid := os.Getpid()
	d := "/proc/" + strconv.Itoa(pid)
	files, err := readGlobs([]string{d + "/stat", d + "/status", d + "/task/*/sched", d + "/task/*/schedstat"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseStat(files[d+"/stat"])
	if err != nil || st.pid != pid {
		t.Fatalf("parseStat: %+v %v", st, err)
	}
	ns, ok := remoteThreadsCPU(files, pid)
	remote := cpuSeconds(st, ns, ok)
	if remote < local || remote > local+0.5 {
		t.Errorf("remote way %.6fs, local way %.6fs", remote, local)
	}
	if r := parseVmHWM(files[d+"/status"]); r < rss || r > 2*rss {
		t.Errorf("VmHWM remote way %d, local %d", r, rss)
	}
}

// TestAgentLifecycle drives the agent in-process as bench does over ssh:
// hello, a server started, sampled and stopped; then another server, and
// stdin closed with it still running: the agent must stop it and remove
// its run directory before it returns.
func TestAgentLifecycle(t *testing.T) {
	bin := sockbenchBinary(t)
	dir, err := os.MkdirTemp("", "sockbench.")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// The agent runs servers from its own executable, so it runs as the
	// real binary here too, its stdin and stdout pipes as sshd's would be.
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- runAgentBinary(bin, dir, inR, outW)
		outW.Close()
	}()
	dec := json.NewDecoder(bufio.NewReader(outR))
	call := func(req agentRequest) agentReply {
		t.Helper()
		b, _ := json.Marshal(req)
		if _, err := inW.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
		var rep agentReply
		if err := dec.Decode(&rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}
	hello := call(agentRequest{Op: "hello"})
	if hello.Hello == nil || hello.Hello.OS != runtime.GOOS || hello.Hello.Cores < 1 || len(hello.Hello.CPUs) < 1 {
		t.Fatalf("hello: %+v", hello)
	}
	args := []string{"serve", "--model", "prefork", "--workers", "2", "--net", "tcp", "--addr", "127.0.0.1:0"}
	srv := call(agentRequest{Op: "serve", Args: args, Timeout: 15 * time.Second})
	if srv.Err != "" || srv.Pid == 0 || !strings.HasPrefix(srv.Addr, "127.0.0.1:") {
		t.Fatalf("serve: %+v", srv)
	}
	if rep := call(agentRequest{Op: "serve", Args: args, Timeout: time.Second}); rep.Err == "" {
		t.Error("a second server started while one runs")
	}
	if rep := call(agentRequest{Op: "bogus"}); !strings.Contains(rep.Err, "unknown request") {
		t.Errorf("bogus request: %+v", rep)
	}
	if rep := call(agentRequest{Op: "stop", Timeout: 5 * time.Second}); rep.Err != "" {
		t.Fatalf("stop: %s", rep.Err)
	}
	if processTree(srv.Pid) != nil {
		t.Fatalf("server %d still there after stop", srv.Pid)
	}
	srv = call(agentRequest{Op: "serve", Args: args, Timeout: 15 * time.Second})
	if srv.Err != "" {
		t.Fatal(srv.Err)
	}
	tree := processTree(srv.Pid)
	if len(tree) < 3 {
		t.Fatalf("prefork with 2 workers is %d processes", len(tree))
	}
	inW.Close() // the ssh session ends
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("agent still running 20s after its stdin closed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range tree {
		for {
			_, err := os.Stat("/proc/" + strconv.Itoa(p.pid))
			if os.IsNotExist(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("server process %d still there after the agent ended", p.pid)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("run directory %s not removed: %v", dir, err)
	}
}

// runAgentBinary runs `bin agent --dir dir` with in and out as its stdin
// and stdout, as sshd would.
func runAgentBinary(bin, dir string, in io.Reader, out io.Writer) error {
	cmd := exec.Command(bin, "agent", "--dir", dir, "--idle", "30s")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, out, os.Stderr
	return cmd.Run()
}

func TestAgentRefusesOtherDirs(t *testing.T) {
	err := RunAgent(context.Background(), strings.NewReader(""), io.Discard, AgentOptions{Dir: filepath.Join(t.TempDir(), "home")})
	if err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("agent took a run directory not named sockbench.*: %v", err)
	}
}
