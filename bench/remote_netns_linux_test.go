package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The namespace lab: two network namespaces joined by a veth pair, a
// server host (sshd on a private config, a throwaway host key, its own
// host name) and a client host, on this one machine. Addresses come from
// 198.18.0.0/15, the range set aside for benchmarking network devices
// (RFC 2544), and exist only inside the two namespaces.
const (
	labServerIP = "198.18.0.1"
	labClientIP = "198.18.0.2"
	// labSSHPort is fixed, which is safe: nothing else listens inside a
	// namespace the test has just made.
	labSSHPort = 22022
)

type netnsLab struct {
	srvNS, cliNS string
	dir          string // keys, sshd config and the server host's TMPDIR
	remoteTmp    string // TMPDIR of sessions on the server host
	sshCommand   string // SOCKBENCH_SSH_COMMAND for the client host
	serverURL    string
	sshd         *exec.Cmd
}

// newNetnsLab builds the lab, or skips the test with one line saying why
// it cannot be built here. Everything is torn down when the test ends,
// also when it fails.
func newNetnsLab(t *testing.T) *netnsLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespace tests need root (ip netns add)")
	}
	for _, tool := range []string{"ip", "ssh", "ssh-keygen", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("network namespace tests need %s (Debian iproute2, openssh-client, util-linux)", tool)
		}
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		t.Skip("network namespace tests need /usr/sbin/sshd (Debian openssh-server)")
	}
	pid := os.Getpid()
	lab := &netnsLab{srvNS: fmt.Sprintf("sbt-%d-srv", pid), cliNS: fmt.Sprintf("sbt-%d-cli", pid)}
	run := func(args ...string) error {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return nil
	}
	if err := run("ip", "netns", "add", lab.srvNS); err != nil {
		t.Skipf("cannot make network namespaces here: %v", err)
	}
	t.Cleanup(func() { lab.teardown(t) })
	if err := run("ip", "netns", "add", lab.cliNS); err != nil {
		t.Fatal(err)
	}
	vs, vc := fmt.Sprintf("sbt%ds", pid), fmt.Sprintf("sbt%dc", pid)
	for _, args := range [][]string{
		{"ip", "link", "add", vs, "netns", lab.srvNS, "type", "veth", "peer", "name", vc, "netns", lab.cliNS},
		{"ip", "-n", lab.srvNS, "addr", "add", labServerIP + "/30", "dev", vs},
		{"ip", "-n", lab.cliNS, "addr", "add", labClientIP + "/30", "dev", vc},
		{"ip", "-n", lab.srvNS, "link", "set", vs, "up"},
		{"ip", "-n", lab.cliNS, "link", "set", vc, "up"},
		{"ip", "-n", lab.srvNS, "link", "set", "lo", "up"},
		{"ip", "-n", lab.cliNS, "link", "set", "lo", "up"},
	} {
		if err := run(args...); err != nil {
			t.Fatal(err)
		}
	}
	lab.dir = t.TempDir()
	lab.remoteTmp = filepath.Join(lab.dir, "remote-tmp")
	os.Mkdir(lab.remoteTmp, 0o755)
	for _, k := range []string{"host", "user"} {
		if err := run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sockbench-test", "-f", filepath.Join(lab.dir, k)); err != nil {
			t.Fatal(err)
		}
	}
	userPub, _ := os.ReadFile(filepath.Join(lab.dir, "user.pub"))
	hostPub, _ := os.ReadFile(filepath.Join(lab.dir, "host.pub"))
	os.WriteFile(filepath.Join(lab.dir, "authorized_keys"), userPub, 0o600)
	known := fmt.Sprintf("[%s]:%d %s", labServerIP, labSSHPort, hostPub)
	os.WriteFile(filepath.Join(lab.dir, "known_hosts"), []byte(known), 0o600)
	cfg := fmt.Sprintf(`ListenAddress %s:%d
HostKey %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
LogLevel ERROR
MaxSessions 20
SetEnv TMPDIR=%s
`, labServerIP, labSSHPort, filepath.Join(lab.dir, "host"), filepath.Join(lab.dir, "authorized_keys"), lab.remoteTmp)
	os.WriteFile(filepath.Join(lab.dir, "sshd_config"), []byte(cfg), 0o600)
	if _, err := os.Stat("/run/sshd"); os.IsNotExist(err) {
		// sshd's privilege separation directory, made by its init script
		// on a machine that runs it as a service.
		os.MkdirAll("/run/sshd", 0o755)
		t.Cleanup(func() { os.Remove("/run/sshd") })
	}
	// The server host gets a host name of its own (a UTS namespace), so
	// the CSV's server_host and client_host differ as on two machines.
	lab.sshd = exec.Command("ip", "netns", "exec", lab.srvNS, "unshare", "--uts", "sh", "-c",
		"hostname sbt-server && exec /usr/sbin/sshd -D -e -f "+filepath.Join(lab.dir, "sshd_config"))
	lab.sshd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var sshdErr bytes.Buffer
	lab.sshd.Stderr = &sshdErr
	if err := lab.sshd.Start(); err != nil {
		t.Fatal(err)
	}
	lab.sshCommand = fmt.Sprintf("ssh -F /dev/null -i %s -o IdentitiesOnly=yes -o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o LogLevel=ERROR",
		filepath.Join(lab.dir, "user"), filepath.Join(lab.dir, "known_hosts"))
	lab.serverURL = fmt.Sprintf("ssh://root@%s:%d", labServerIP, labSSHPort)
	// Wait until sshd answers (it binds within milliseconds; the bound is
	// for a loaded machine).
	deadline := time.Now().Add(20 * time.Second)
	for {
		cmd := lab.client("sh", "-c", lab.sshCommand+fmt.Sprintf(" -p %d root@%s true", labSSHPort, labServerIP))
		out, err := cmd.CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd in %s never answered: %v: %s; sshd: %s", lab.srvNS, err, out, sshdErr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return lab
}

// client returns a command to run on the client host (its own host name).
func (lab *netnsLab) client(name string, args ...string) *exec.Cmd {
	script := `hostname sbt-client && exec "$@"`
	return exec.Command("ip", append([]string{"netns", "exec", lab.cliNS, "unshare", "--uts", "sh", "-c", script, "sh", name}, args...)...)
}

func (lab *netnsLab) teardown(t *testing.T) {
	for _, ns := range []string{lab.cliNS, lab.srvNS} {
		// Anything still running in a namespace is a leak the test has
		// already reported; kill it so the namespace can go.
		for _, pid := range nsPids(ns) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if lab.sshd != nil && lab.sshd.Process != nil {
		syscall.Kill(-lab.sshd.Process.Pid, syscall.SIGKILL)
		lab.sshd.Wait()
	}
	for _, ns := range []string{lab.cliNS, lab.srvNS} {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	}
}

// nsPids lists the processes in network namespace ns.
func nsPids(ns string) []int {
	want, err := os.Stat("/run/netns/" + ns)
	if err != nil {
		return nil
	}
	wst := want.Sys().(*syscall.Stat_t)
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.Stat("/proc/" + e.Name() + "/ns/net")
		if err != nil {
			continue
		}
		if s := st.Sys().(*syscall.Stat_t); s.Ino == wst.Ino && s.Dev == wst.Dev {
			pids = append(pids, pid)
		}
	}
	return pids
}

// sockbenchIn lists the sockbench processes in ns as "pid args".
func sockbenchIn(ns string) []string {
	var out []string
	for _, pid := range nsPids(ns) {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) != "sockbench" {
			continue
		}
		args, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, fmt.Sprintf("%d %s", pid, bytes.ReplaceAll(args, []byte{0}, []byte{' '})))
	}
	return out
}

// waitClean waits until neither namespace runs a sockbench process and the
// server host's temporary directory is empty, and fails the test otherwise;
// then it checks that bench left nothing in its own TMPDIR, localTmp.
// Cleaning up on the server host after a dropped connection takes a
// moment (sshd notices, the agent stops its server), hence the wait.
func (lab *netnsLab) waitClean(t *testing.T, within time.Duration, localTmp string) {
	t.Helper()
	defer func() {
		if ents, _ := os.ReadDir(localTmp); len(ents) != 0 {
			t.Errorf("bench left %d entries in its TMPDIR (the ssh control directory?)", len(ents))
		}
	}()
	deadline := time.Now().Add(within)
	for {
		left := append(sockbenchIn(lab.srvNS), sockbenchIn(lab.cliNS)...)
		ents, _ := os.ReadDir(lab.remoteTmp)
		if len(left) == 0 && len(ents) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var files []string
			for _, e := range ents {
				files = append(files, e.Name())
			}
			t.Fatalf("%v after the run: sockbench processes left %q; files left in the server host's TMPDIR %q", within, left, files)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// benchCmd returns `sockbench bench` on the client host against the lab's
// server host, with its own TMPDIR (checked empty afterwards).
func (lab *netnsLab) benchCmd(t *testing.T, bin, profile, out string) (*exec.Cmd, string) {
	tmp := filepath.Join(t.TempDir(), "tmp")
	os.Mkdir(tmp, 0o755)
	cmd := lab.client(bin, "bench", "--profile", profile, "--server-host", lab.serverURL, "-o", out)
	cmd.Env = append(os.Environ(), SSHCommandEnv+"="+lab.sshCommand, "TMPDIR="+tmp)
	cmd.Dir = t.TempDir() // no dist/ here: the same binary is copied
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd, tmp
}

func readRows(t *testing.T, dir string) [][]string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.csv"))
	if len(files) != 1 {
		t.Fatalf("want one CSV in %s, found %v", dir, files)
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestRemoteBenchNetns runs bench --server-host for real: sshd in one
// namespace, bench in another, a prefork server (several processes to
// sample) over tcp and udp, and a unix cell, which cannot cross machines.
func TestRemoteBenchNetns(t *testing.T) {
	bin := sockbenchBinary(t)
	lab := newNetnsLab(t)
	dir := t.TempDir()
	prof := filepath.Join(dir, "p.yaml")
	os.WriteFile(prof, []byte(`
count: 1
duration: 300ms
warmup: 100ms
matrix:
  - models: [prefork]
    nets: [tcp, udp, unix]
    conns: [2]
`), 0o644)
	out := filepath.Join(dir, "out")
	cmd, tmp := lab.benchCmd(t, bin, prof, out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() { <-ctx.Done(); syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }()
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench --server-host: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	recs := readRows(t, out)
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	if len(recs) != 4 {
		t.Fatalf("%d rows, want 3\n%s", len(recs)-1, stderr.String())
	}
	for _, rec := range recs[1:] {
		get := func(c string) string { return rec[col[c]] }
		num := func(c string) float64 { v, _ := strconv.ParseFloat(get(c), 64); return v }
		if get("server_host") != "sbt-server" || get("client_host") != "sbt-client" || get("host") != "sbt-server" {
			t.Errorf("%s: server_host %q client_host %q host %q", get("net"), get("server_host"), get("client_host"), get("host"))
		}
		if rtt := num("link_rtt_us"); !(rtt > 0 && rtt < 20000) {
			t.Errorf("%s: link_rtt_us %q", get("net"), get("link_rtt_us"))
		}
		if get("net") == "unix" {
			if get("status") != StatusSkipped || !strings.Contains(get("note"), "Unix socket") {
				t.Errorf("unix cell: status %q note %q, want skipped", get("status"), get("note"))
			}
			continue
		}
		if get("status") != StatusOK || num("requests") <= 0 || num("server_cpu_s") <= 0 || num("server_rss_kb") <= 1000 {
			t.Errorf("%s: %v", get("net"), rec)
		}
		if strings.Contains(get("note"), "server process seen") {
			t.Errorf("%s: prefork's workers were not sampled on the server host: %s", get("net"), get("note"))
		}
	}
	lab.waitClean(t, 10*time.Second, tmp)
}

// TestRemoteBenchInterrupted kills the ssh connection in the middle of a
// run, and in another run presses Ctrl-C (SIGINT to bench). The run must
// end saying why, and afterwards no sockbench process may be left on
// either host and no file in the server host's TMPDIR: the remote agent
// and keeper clean up when their session's stdin closes.
func TestRemoteBenchInterrupted(t *testing.T) {
	bin := sockbenchBinary(t)
	lab := newNetnsLab(t)
	t.Run("connection-dropped", func(t *testing.T) { remoteInterrupt(t, lab, bin, true) })
	t.Run("ctrl-c", func(t *testing.T) { remoteInterrupt(t, lab, bin, false) })
}

func remoteInterrupt(t *testing.T, lab *netnsLab, bin string, dropLink bool) {
	dir := t.TempDir()
	prof := filepath.Join(dir, "p.yaml")
	os.WriteFile(prof, []byte(`
count: 20
duration: 1s
warmup: 100ms
matrix:
  - models: [threaded]
    nets: [tcp]
    conns: [2]
`), 0o644)
	out := filepath.Join(dir, "out")
	cmd, tmp := lab.benchCmd(t, bin, prof, out)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Wait for a measured cell's server on the server host (not the
	// round-trip probe's, which runs with --workers 1 --grace 2s).
	deadline := time.Now().Add(30 * time.Second)
	for {
		serving := false
		for _, p := range sockbenchIn(lab.srvNS) {
			if strings.Contains(p, " serve ") && !strings.Contains(p, "--grace 2s") {
				serving = true
			}
		}
		if serving {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("bench ended before a server ran: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no server started on the server host within 30s\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !dropLink {
		cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-done:
			if code := cmd.ProcessState.ExitCode(); code != 130 {
				t.Errorf("bench exited with %v (%d) after SIGINT, want 130; stderr:\n%s", err, code, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("bench did not end within 30s of SIGINT\n%s", stderr.String())
		}
		lab.waitClean(t, 20*time.Second, tmp)
		return
	}
	// Drop the connection: kill the ssh ControlMaster on the client host.
	killed := 0
	for _, pid := range nsPids(lab.cliNS) {
		args, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == "ssh" && bytes.Contains(args, []byte("ControlMaster=yes")) {
			syscall.Kill(pid, syscall.SIGKILL)
			killed++
		}
	}
	if killed != 1 {
		t.Fatalf("killed %d ssh masters, want 1", killed)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("bench did not end within 30s of the dropped connection\n%s", stderr.String())
	}
	if err == nil || !strings.Contains(stderr.String(), "ssh connection") {
		t.Errorf("bench exited with %v after the connection dropped; stderr:\n%s", err, stderr.String())
	}
	lab.waitClean(t, 20*time.Second, tmp)
}

// TestShardedLoadNetns: a server on the server host, two sharded `load`
// processes on the client host measuring the same window (--start-at),
// and `merge` of their logs: the merged request count is the shards' sum
// and its p99 lies between theirs.
func TestShardedLoadNetns(t *testing.T) {
	bin := sockbenchBinary(t)
	lab := newNetnsLab(t)
	srv := exec.Command("ip", "netns", "exec", lab.srvNS, bin, "serve", "--model", "threaded", "--net", "tcp",
		"--addr", labServerIP+":0", "--mode", "upper")
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(srv.Process.Pid, syscall.SIGTERM)
		srv.Wait()
	}()
	line := make([]byte, 256)
	n, err := stdout.Read(line)
	f := strings.Fields(string(line[:n]))
	if err != nil || len(f) < 3 || f[0] != "ready" {
		t.Fatalf("server: %q %v", line[:n], err)
	}
	target := "tcp://" + f[2]
	dir := t.TempDir()
	start := time.Now().Add(1500 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	var cmds []*exec.Cmd
	var errs []*bytes.Buffer
	var logs []string
	for i := range 2 {
		hlog := filepath.Join(dir, fmt.Sprintf("shard%d.hlog", i))
		logs = append(logs, hlog)
		cmd := lab.client(bin, "load", "--target", target, "--mode", "upper", "-c", "4", "-d", "500ms", "--warmup", "100ms",
			"--shard", fmt.Sprintf("%d/2", i), "--start-at", start, "--hdr-out", hlog, "--format", "json",
			"-o", filepath.Join(dir, fmt.Sprintf("shard%d.json", i)))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		cmds, errs = append(cmds, cmd), append(errs, &stderr)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("shard %d: %v: %s", i, err, errs[i])
		}
	}
	var shards [2]struct {
		Requests int64
		Conns    int
		Shard    string
		Latency  struct{ P99 float64 }
	}
	for i := range shards {
		b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("shard%d.json", i)))
		if err := json.Unmarshal(b, &shards[i]); err != nil || shards[i].Requests == 0 || shards[i].Conns != 2 {
			t.Fatalf("shard %d report: %+v %v", i, shards[i], err)
		}
	}
	out, err := exec.Command(bin, append([]string{"merge", "--format", "json"}, logs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("merge: %v: %s", err, out)
	}
	var merged struct {
		Requests, Sources int64
		Conns             int
		Latency           struct{ P99 float64 }
		Warnings          []string
	}
	if err := json.Unmarshal(out, &merged); err != nil {
		t.Fatal(err)
	}
	if merged.Requests != shards[0].Requests+shards[1].Requests || merged.Conns != 4 || merged.Sources != 2 {
		t.Errorf("merged %d requests over %d conns from %d sources; shards had %d + %d", merged.Requests, merged.Conns,
			merged.Sources, shards[0].Requests, shards[1].Requests)
	}
	lo, hi := min(shards[0].Latency.P99, shards[1].Latency.P99), max(shards[0].Latency.P99, shards[1].Latency.P99)
	if merged.Latency.P99 < lo || merged.Latency.P99 > hi {
		t.Errorf("merged p99 %v µs not between the shards' %v and %v", merged.Latency.P99, lo, hi)
	}
	if len(merged.Warnings) > 0 {
		t.Errorf("warnings merging two whole shards: %q", merged.Warnings)
	}
}
