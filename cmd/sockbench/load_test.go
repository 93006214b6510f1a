package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockbench/sockbench/protocol"
)

// The load and merge tests run the real binary (sockbenchBin, shared with
// the serve tests) against small servers on loopback.

// runBin runs the binary with args and a time limit, returning its exit
// status and output.
func runBin(t *testing.T, limit time.Duration, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(sockbenchBin(t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		t.Fatalf("sockbench %s: still running after %v", strings.Join(args, " "), limit)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// upperServer is a minimal upper-casing line server for the CLI tests.
func upperServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadBytes('\n')
					if err != nil {
						return
					}
					// Not bytes.ToUpper: that one is Unicode-aware and
					// rewrites invalid UTF-8, which the protocol forbids.
					protocol.UpperInPlace(line)
					if _, err := c.Write(line); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "tcp://" + ln.Addr().String()
}

func TestLoadBadFlags(t *testing.T) {
	target := "--target=tcp://127.0.0.1:9"
	for _, args := range [][]string{
		{"load"},
		{"load", "tcp://127.0.0.1:9"},
		{"load", "--target", "127.0.0.1:9"},
		{"load", "--target", "ftp://127.0.0.1:9"},
		{"load", "--target", "tcp://127.0.0.1:x"},
		{"load", "--target", "unix://relative"},
		{"load", target, "-c", "0"},
		{"load", target, "-c", "many"},
		{"load", target, "-p", "-1"},
		{"load", target, "-s", "0"},
		{"load", target, "-s", "9:3"},
		{"load", target, "-s", "100000"},
		{"load", "--target=udp://127.0.0.1:9", "-s", "4"},
		{"load", target, "-d", "1s", "-n", "10"},
		{"load", target, "-d", "-1s"},
		{"load", target, "-n", "0"},
		{"load", target, "--rate", "-5"},
		{"load", target, "--rate", "NaN"},
		{"load", target, "--warmup", "-1s"},
		{"load", target, "--timeout", "0s"},
		{"load", target, "--mode", "shout"},
		{"load", target, "--format", "xml"},
		{"load", target, "--seed", "0"},
		{"load", target, "--bogus"},
		{"load", "--calibrate", "http"},
		{"load", "--calibrate", "tcp", target},
		{"load", "--calibrate", "tcp", "--rate", "1000"},
		{"load", target, "--sink-cpus", "0"},
		{"load", "--calibrate", "tcp", "--sink-cpus", "x"},
		{"load", "--calibrate", "tcp", "--sink-cpus", "4095", "-n", "10"},
		{"merge"},
		{"merge", "--format", "yaml", "x.hlog"},
	} {
		code, stdout, stderr := runBin(t, 10*time.Second, args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 2 || stdout != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], "sockbench: ") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and one line", args, code, stdout, stderr)
		}
	}
}

// TestLoadCalibrate: --calibrate measures against its own sink, with no
// server, and says what the generator's ceiling is, in every format.
func TestLoadCalibrate(t *testing.T) {
	code, stdout, stderr := runBin(t, 20*time.Second, "load", "--calibrate", "udp", "-c", "2", "-d", "200ms", "--warmup", "50ms", "--format", "json")
	var rep struct {
		Requests    int64 `json:"requests"`
		Calibration *struct {
			CeilingRPS float64 `json:"ceiling_rps"`
			Net        string  `json:"net"`
		} `json:"calibration"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); code != 0 || err != nil {
		t.Fatalf("exit %d, %v, stderr %q", code, err, stderr)
	}
	if rep.Requests == 0 || rep.Calibration == nil || rep.Calibration.Net != "udp" || !(rep.Calibration.CeilingRPS > 0) {
		t.Fatalf("report %s", stdout)
	}
	code, stdout, stderr = runBin(t, 20*time.Second, "load", "--calibrate", "unix", "-c", "2", "-n", "500")
	if code != 0 || !strings.Contains(stdout, "Ceiling") || !strings.Contains(stdout, "the most this generator drives") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestLoadUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	start := time.Now()
	code, _, stderr := runBin(t, 10*time.Second, "load", "--target", "tcp://"+addr, "--timeout", "2s")
	if code != 1 || !strings.Contains(stderr, "refused") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %v", took)
	}
	// A report file asked for gets the failure too, not an empty file.
	out := filepath.Join(shortTempDir(t), "r.txt")
	code, _, stderr = runBin(t, 10*time.Second, "load", "--target", "tcp://"+addr, "-o", out)
	if b, err := os.ReadFile(out); code != 1 || err != nil || !strings.Contains(string(b), "FAILED") {
		t.Fatalf("-o: exit %d, stderr %q, file %q (%v)", code, stderr, b, err)
	}
}

// TestLoadFileLimit: too many connections for RLIMIT_NOFILE is said before
// anything starts, in one line, and leaves no empty output files.
func TestLoadFileLimit(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Max > 1<<24 {
		t.Skip("no finite hard RLIMIT_NOFILE")
	}
	dir := shortTempDir(t)
	out, hlog := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.hlog")
	code, stdout, stderr := runBin(t, 10*time.Second, "load", "--target", upperServer(t), "-c", fmt.Sprint(lim.Max),
		"-o", out, "--hdr-out", hlog)
	if code != 1 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "open files") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for _, f := range []string{out, hlog} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s left behind", f)
		}
	}
}

func TestLoadJSONHdrOutAndMerge(t *testing.T) {
	target := upperServer(t)
	dir := shortTempDir(t)
	var logs []string
	// The two runs measure the same window (--start-at), as merge needs.
	startAt := time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano)
	var cmds []*exec.Cmd
	var outs, errs []*bytes.Buffer
	for i, loop := range [][]string{{}, {"--rate", "2000"}} {
		hlog := filepath.Join(dir, "run"+string(rune('a'+i))+".hlog")
		logs = append(logs, hlog)
		args := append([]string{"load", "--target", target, "--mode", "upper", "-c", "2", "-s", "8:200",
			"-d", "300ms", "--warmup", "50ms", "--format", "json", "--hdr-out", hlog, "--start-at", startAt}, loop...)
		cmd := exec.Command(sockbenchBin(t), args...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		cmds, outs, errs = append(cmds, cmd), append(outs, &out), append(errs, &errb)
	}
	for i, cmd := range cmds {
		err := cmd.Wait()
		if err != nil || errs[i].Len() > 0 {
			t.Fatalf("%v, stderr %q", err, errs[i])
		}
		var rep map[string]any
		if err := json.Unmarshal(outs[i].Bytes(), &rep); err != nil {
			t.Fatalf("%v in %q", err, outs[i])
		}
		if rep["requests"].(float64) < 50 || rep["errors"].(float64) != 0 || rep["mode"] != "upper" || rep["conns"].(float64) != 2 {
			t.Fatalf("report %v", rep)
		}
	}
	code, stdout, stderr := runBin(t, 10*time.Second, append([]string{"merge"}, logs...)...)
	if code != 0 || stderr != "" || !strings.Contains(stdout, "Merged     2 runs") || !strings.Contains(stdout, "p99.9") {
		t.Fatalf("merge: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, _, stderr = runBin(t, 10*time.Second, "merge", filepath.Join(dir, "missing.hlog"))
	if code != 1 || !strings.Contains(stderr, "missing.hlog") {
		t.Fatalf("merge of a missing file: exit %d, stderr %q", code, stderr)
	}
}

// TestLoadAgainstServe drives the real `sockbench serve` over every
// transport, as a user would.
func TestLoadAgainstServe(t *testing.T) {
	dir := shortTempDir(t)
	for _, c := range []struct{ net, addr, scheme string }{
		{"tcp", "127.0.0.1:0", "tcp://"},
		{"udp", "127.0.0.1:0", "udp://"},
		{"unix", filepath.Join(dir, "s.sock"), "unix://"},
		{"unixgram", filepath.Join(dir, "g.sock"), "unixgram://"},
		// serve --net tcp6 and load --target tcp6:// speak the same transports.
		{"tcp6", "[::1]:0", "tcp6://"},
		{"udp6", "[::1]:0", "udp6://"},
	} {
		t.Run(c.net, func(t *testing.T) {
			if strings.HasSuffix(c.net, "6") {
				ln, err := net.Listen("tcp6", "[::1]:0")
				if err != nil {
					t.Skipf("no IPv6 loopback here: %v", err)
				}
				ln.Close()
			}
			srv := exec.Command(sockbenchBin(t), "serve", "--net", c.net, "--addr", c.addr, "--mode", "upper")
			stdout, err := srv.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			srv.Stderr = os.Stderr
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				srv.Process.Signal(syscall.SIGTERM)
				srv.Wait()
			}()
			ready, err := bufio.NewReader(stdout).ReadString('\n')
			f := strings.Fields(ready)
			if err != nil || len(f) < 3 || f[0] != "ready" {
				t.Fatalf("serve printed %q (%v)", ready, err)
			}
			code, out, stderr := runBin(t, 20*time.Second, "load", "--target", c.scheme+f[2], "--mode", "upper",
				"-c", "4", "-p", "2", "-s", "16:512", "-d", "300ms", "--warmup", "50ms")
			if code != 0 || stderr != "" || !strings.Contains(out, "Errors     none") {
				t.Fatalf("exit %d\n%s%s", code, out, stderr)
			}
			if dgram := strings.HasPrefix(c.net, "udp") || c.net == "unixgram"; dgram != strings.Contains(out, "Datagrams ") {
				t.Errorf("%s: datagram counts shown %v, want %v\n%s", c.net, !dgram, dgram, out)
			}
		})
	}
}

// TestLoadSizeUnits: -s reads the size grammar bench profiles use (4KiB
// was refused by load while a profile took it).
func TestLoadSizeUnits(t *testing.T) {
	target := upperServer(t)
	code, stdout, stderr := runBin(t, 20*time.Second, "load", "--target", target, "--mode", "upper", "-c", "1",
		"-s", "1KiB:2KiB", "-n", "20", "--warmup", "0", "--format", "json")
	var rep struct {
		SizeMin  int `json:"size_min"`
		SizeMax  int `json:"size_max"`
		Requests int `json:"requests"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); code != 0 || err != nil || rep.SizeMin != 1024 || rep.SizeMax != 2048 || rep.Requests != 20 {
		t.Fatalf("exit %d (%v), report %+v, stderr %q", code, err, rep, stderr)
	}
}
