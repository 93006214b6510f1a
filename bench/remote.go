package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sockbench/sockbench/protocol"
)

// SSHCommandEnv names the environment variable that replaces the ssh
// command, as GIT_SSH_COMMAND does for git: a shell command line, run by
// /bin/sh with ssh's arguments appended, so it may carry -F, -i or -o.
const SSHCommandEnv = "SOCKBENCH_SSH_COMMAND"

// Timeouts of the remote host.
const (
	// sshConnectTimeout bounds the wait for the first ssh connection
	// (keys, agent and ProxyJump included).
	sshConnectTimeout = 60 * time.Second
	// agentIdle is how long the remote agent waits for a request before
	// it stops its server and exits: it outlives a connection that died
	// without a sound (a cable pulled) by at most this long. The
	// orchestrator pings it every agentIdle/5 while it has nothing to ask.
	agentIdle = 20 * time.Second
	// agentCallSlack is how long past its own timeout a request may take
	// before the link is declared broken.
	agentCallSlack = 30 * time.Second
)

// SSHTarget is a parsed --server-host: ssh://[user@]host[:port].
type SSHTarget struct {
	User, Host string
	Port       int // 0: ssh's default (or ~/.ssh/config's)
}

// ParseServerHost parses ssh://[user@]host[:port]. host may be a name from
// ~/.ssh/config: ssh resolves it, with its keys, agent and ProxyJump.
func ParseServerHost(s string) (SSHTarget, error) {
	bad := func(why string) (SSHTarget, error) {
		return SSHTarget{}, fmt.Errorf("server host %q: %s (want ssh://[user@]host[:port], e.g. ssh://pi@raspberrypi)", s, why)
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad(err.Error())
	}
	if u.Scheme != "ssh" {
		return bad("not an ssh:// URL")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return bad("a path, query or fragment means nothing here")
	}
	if _, hasPass := u.User.Password(); hasPass {
		return bad("passwords are not taken; use a key or ssh-agent")
	}
	t := SSHTarget{User: u.User.Username(), Host: u.Hostname()}
	if t.Host == "" || strings.HasPrefix(t.Host, "-") || strings.HasPrefix(t.User, "-") {
		return bad("no host")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return bad("port " + p + " is not in 1..65535")
		}
		t.Port = n
	}
	return t, nil
}

// String is the target as an ssh:// URL.
func (t SSHTarget) String() string {
	s := "ssh://"
	if t.User != "" {
		s += t.User + "@"
	}
	if t.Port != 0 {
		return s + net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
	}
	return s + t.Host
}

func (t SSHTarget) destination() string {
	if t.User != "" {
		return t.User + "@" + t.Host
	}
	return t.Host
}

// sshCommand returns the ssh client command with args: ssh itself, or
// $SOCKBENCH_SSH_COMMAND run by the shell with args appended.
func sshCommand(args []string) *exec.Cmd {
	if c := strings.TrimSpace(os.Getenv(SSHCommandEnv)); c != "" {
		return exec.Command("/bin/sh", append([]string{"-c", c + ` "$@"`, "ssh"}, args...)...)
	}
	return exec.Command("ssh", args...)
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// keeperScript runs as the ssh master's own session on the server host. It
// makes the run directory, says where it is and what the host is, then
// waits for its stdin to close, which happens when the orchestrator ends
// the run or dies, or the connection drops; then it removes the directory.
// It is plain sh because it runs before any sockbench binary is there.
const keeperScript = `umask 077
d=$(mktemp -d "${TMPDIR:-/tmp}/sockbench.XXXXXX") || exit 1
trap 'rm -rf "$d"' EXIT
trap 'exit 1' HUP INT TERM PIPE
echo "sockbench-remote $d $(uname -s) $(uname -m) ${SSH_CONNECTION:-}"
cat >/dev/null`

// remoteHost runs servers on another machine over one ssh connection
// (a ControlMaster that every later session shares, so a cell costs no
// new connection). On it run two sessions for the whole bench run: the
// keeper (keeperScript), owner of the remote run directory, and the agent
// (`sockbench agent`, RunAgent), which starts, samples and stops the
// servers. Both end, and clean up, when their stdin closes.
type remoteHost struct {
	r      *Runner
	target SSHTarget
	ctlDir string // local; holds the ControlMaster socket

	master     *exec.Cmd
	masterIn   io.WriteCloser
	masterErr  *tailBuffer
	masterDone chan struct{}

	dir    string // the remote run directory
	bindIP string // the server host's address on the link ssh came over
	os     string // uname -s, -m
	mach   string
	hello  agentHello

	agent     *exec.Cmd
	agentIn   io.WriteCloser
	agentErr  *tailBuffer
	agentDone chan struct{}
	replies   chan agentReply

	mu       sync.Mutex // one request at a time; guards lastCall
	lastCall time.Time

	failMu sync.Mutex
	fail   error // why the host can no longer be used

	stopPing chan struct{}
	pingDone chan struct{}
}

// connectRemote opens the ssh connection, copies a sockbench binary for the
// host's OS and CPU there and starts the agent.
func connectRemote(ctx context.Context, r *Runner, target SSHTarget) (_ *remoteHost, err error) {
	ctlDir, err := os.MkdirTemp("", "sbssh")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	h := &remoteHost{r: r, target: target, ctlDir: ctlDir, masterErr: newTail(4096), agentErr: newTail(4096),
		stopPing: make(chan struct{}), pingDone: make(chan struct{})}
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	if err := h.startMaster(ctx); err != nil {
		return nil, err
	}
	bin, cleanup, err := r.remoteBinary(ctx, h.os, h.mach)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	if err := h.copyBinary(ctx, bin); err != nil {
		return nil, err
	}
	if err := h.startAgent(); err != nil {
		return nil, err
	}
	rep, err := h.call(agentRequest{Op: "hello"}, 0)
	if err != nil {
		return nil, err
	}
	if rep.Hello == nil {
		return nil, fmt.Errorf("bench: %s: the agent sent no hello", target)
	}
	h.hello = *rep.Hello
	go h.pinger()
	return h, nil
}

// ssh returns an ssh command running remote (a shell command line) on the
// host, through the ControlMaster (or as the master).
func (h *remoteHost) ssh(master bool, remote string) *exec.Cmd {
	args := []string{"-T", "-o", "BatchMode=yes", "-o", "ControlPath=" + path.Join(h.ctlDir, "c")}
	if master {
		args = append(args, "-o", "ControlMaster=yes", "-o", "ControlPersist=no",
			"-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3")
	} else {
		args = append(args, "-o", "ControlMaster=no")
	}
	if h.target.Port != 0 {
		args = append(args, "-p", strconv.Itoa(h.target.Port))
	}
	args = append(args, "--", h.target.destination(), "exec /bin/sh -c "+shellQuote(remote))
	cmd := sshCommand(args)
	cmd.SysProcAttr = childAttr()
	return cmd
}

// session starts an ssh session running remote, with pipes to its stdin
// and stdout and its stderr into stderr.
func (h *remoteHost) session(master bool, remote string, stderr io.Writer) (*exec.Cmd, io.WriteCloser, io.ReadCloser, error) {
	cmd := h.ssh(master, remote)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, fmt.Errorf("bench: starting ssh (set %s if it is not 'ssh'): %w", SSHCommandEnv, err)
	}
	return cmd, in, out, nil
}

// startMaster connects and reads the keeper's first line.
func (h *remoteHost) startMaster(ctx context.Context) error {
	cmd, in, out, err := h.session(true, keeperScript, h.masterErr)
	if err != nil {
		return err
	}
	h.master, h.masterIn, h.masterDone = cmd, in, make(chan struct{})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		io.Copy(io.Discard, out)
	}()
	go func() {
		err := cmd.Wait()
		h.setFailed(fmt.Errorf("bench: the ssh connection to %s ended (%v): %s", h.target, err, h.masterErr.String()))
		close(h.masterDone)
	}()
	timer := time.NewTimer(sshConnectTimeout)
	defer timer.Stop()
	var l string
	select {
	case s, ok := <-line:
		if !ok {
			<-h.masterDone
			return fmt.Errorf("bench: cannot run commands on %s over ssh: %s", h.target, h.masterErr.String())
		}
		l = s
	case <-timer.C:
		return fmt.Errorf("bench: no answer from %s over ssh within %v: %s", h.target, sshConnectTimeout, h.masterErr.String())
	case <-ctx.Done():
		return ctx.Err()
	}
	f := strings.Fields(l)
	if len(f) < 4 || f[0] != "sockbench-remote" {
		return fmt.Errorf("bench: %s: unexpected first line %q (does the login print to stdout?)", h.target, l)
	}
	h.dir, h.os, h.mach = f[1], f[2], f[3]
	h.bindIP = h.target.Host
	if len(f) >= 8 { // SSH_CONNECTION: client ip, client port, server ip, server port
		h.bindIP = f[6]
	}
	return nil
}

// copyBinary copies bin into the remote run directory.
func (h *remoteHost) copyBinary(ctx context.Context, bin string) error {
	f, err := os.Open(bin)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer f.Close()
	st, _ := f.Stat()
	fmt.Fprintf(h.r.opts.Progress, "sockbench: copying %s (%.1f MB) to %s:%s\n", bin, float64(st.Size())/1e6, h.target, h.dir)
	dst := shellQuote(h.dir + "/sockbench")
	cmd := h.ssh(false, "cat > "+dst+" && chmod 0700 "+dst)
	cmd.Stdin = f
	stderr := newTail(4096)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		killGroup(cmd)
		<-done
		return ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("bench: copying sockbench to %s failed (%v): %s", h.target, err, stderr.String())
	}
	return nil
}

// startAgent starts `sockbench agent` in the remote run directory.
func (h *remoteHost) startAgent() error {
	bin := h.dir + "/sockbench"
	cmd, in, out, err := h.session(false, "exec "+shellQuote(bin)+" agent --dir "+shellQuote(h.dir)+" --idle "+agentIdle.String(), h.agentErr)
	if err != nil {
		return err
	}
	h.agent, h.agentIn, h.agentDone, h.replies = cmd, in, make(chan struct{}), make(chan agentReply)
	go func() {
		dec := json.NewDecoder(bufio.NewReader(out))
		for {
			var rep agentReply
			if err := dec.Decode(&rep); err != nil {
				break
			}
			h.replies <- rep
		}
		close(h.replies)
		io.Copy(io.Discard, out)
	}()
	go func() {
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 255 {
			// ssh's own failure status: the session's connection is gone.
			h.setFailed(fmt.Errorf("bench: lost the ssh connection to %s (%v): %s", h.target, err, h.agentErr.String()))
		} else {
			h.setFailed(fmt.Errorf("bench: the sockbench agent on %s ended (%v): %s", h.target, err, h.agentErr.String()))
		}
		close(h.agentDone)
	}()
	return nil
}

func (h *remoteHost) setFailed(err error) {
	h.failMu.Lock()
	if h.fail == nil {
		h.fail = err
	}
	h.failMu.Unlock()
}

func (h *remoteHost) broken() error {
	h.failMu.Lock()
	defer h.failMu.Unlock()
	return h.fail
}

// call sends one request to the agent and waits for its reply, at most
// wait plus agentCallSlack. A request that gets no reply breaks the host:
// the agent or the connection is gone.
func (h *remoteHost) call(req agentRequest, wait time.Duration) (agentReply, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastCall = time.Now()
	if err := h.broken(); err != nil {
		return agentReply{}, err
	}
	b, err := json.Marshal(req)
	if err != nil {
		return agentReply{}, err
	}
	if _, err := h.agentIn.Write(append(b, '\n')); err != nil {
		h.setFailed(fmt.Errorf("bench: lost the agent on %s: %v: %s", h.target, err, h.agentErr.String()))
		return agentReply{}, h.broken()
	}
	timer := time.NewTimer(wait + agentCallSlack)
	defer timer.Stop()
	select {
	case rep, ok := <-h.replies:
		if !ok {
			<-h.agentDone
			return agentReply{}, h.broken()
		}
		if rep.Err != "" {
			return rep, errors.New(rep.Err)
		}
		return rep, nil
	case <-timer.C:
		h.setFailed(fmt.Errorf("bench: the agent on %s did not answer %q within %v: %s", h.target, req.Op, wait+agentCallSlack, h.agentErr.String()))
		return agentReply{}, h.broken()
	}
}

// pinger keeps the agent's idle timer from firing while the run has
// nothing to ask (a long measured window).
func (h *remoteHost) pinger() {
	defer close(h.pingDone)
	tick := time.NewTicker(agentIdle / 5)
	defer tick.Stop()
	for {
		select {
		case <-h.stopPing:
			return
		case <-tick.C:
			h.mu.Lock()
			idle := time.Since(h.lastCall)
			h.mu.Unlock()
			if idle >= agentIdle/5 && h.broken() == nil {
				h.call(agentRequest{Op: "ping"}, 0)
			}
		}
	}
}

func (h *remoteHost) addr(cell Cell) string {
	return net.JoinHostPort(h.bindIP, "0")
}

func (h *remoteHost) start(ctx context.Context, args []string, cpus []int, readyTimeout time.Duration) (serverProc, error) {
	rep, err := h.call(agentRequest{Op: "serve", Args: args, CPUs: cpus, Timeout: readyTimeout}, readyTimeout)
	if err != nil {
		return nil, fmt.Errorf("on %s: %w", h.target, err)
	}
	return &remoteServer{h: h, pid: rep.Pid, addr: rep.Addr}, nil
}

// wontFit checks the cell against the server host's fd limit and memory
// (read from its /proc/meminfo) and against this machine, which runs the
// load generator.
func (h *remoteHost) wontFit(cell Cell, workers int) string {
	if tr, _ := protocol.ParseTransport(cell.Net); tr.IsUnix() {
		return "a Unix socket cannot be reached from another machine (server on " + h.target.String() + ")"
	}
	remoteFD := func() (uint64, error) { return h.hello.FDLimit, nil }
	remoteMem := func() (int64, error) {
		files, err := h.read("/proc/meminfo")
		if err != nil {
			return 0, err
		}
		return parseMemAvailable(files["/proc/meminfo"])
	}
	why := fitCheck(cell, workers, remoteFD, remoteMem)
	if why != "" {
		why = "on " + h.hello.Host + ": " + why
	}
	if local := h.r.wontFit(cell); local != "" {
		why = joinNote(why, "here (load generator): "+local)
	}
	return why
}

// read returns the contents of the remote files matching globs.
func (h *remoteHost) read(globs ...string) (map[string][]byte, error) {
	rep, err := h.call(agentRequest{Op: "read", Globs: globs}, 0)
	if err != nil {
		return nil, err
	}
	return rep.Files, nil
}

// sampleTree is sampleTree of proc_linux.go on the server host: the agent
// reads the /proc files, and they are parsed here by the same code, in two
// requests: every process's stat (to find the server's tree), then the
// tree's threads and status.
func (h *remoteHost) sampleTree(pid int) (cpuS float64, rssKB int64, procs int, err error) {
	stats, err := h.read("/proc/[0-9]*/stat")
	if err != nil {
		return 0, 0, 0, err
	}
	var all []procStat
	for _, b := range stats {
		if st, err := parseStat(b); err == nil {
			all = append(all, st)
		}
	}
	tree := descendants(pid, all)
	if len(tree) == 0 {
		return 0, 0, 0, fmt.Errorf("bench: process %d on %s is gone", pid, h.hello.Host)
	}
	var globs []string
	for _, p := range tree {
		d := "/proc/" + strconv.Itoa(p.pid)
		globs = append(globs, d+"/status", d+"/task/*/sched", d+"/task/*/schedstat")
	}
	files, err := h.read(globs...)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, p := range tree {
		ns, ok := remoteThreadsCPU(files, p.pid)
		cpuS += cpuSeconds(p, ns, ok)
		rssKB += parseVmHWM(files["/proc/"+strconv.Itoa(p.pid)+"/status"])
	}
	return cpuS, rssKB, len(tree), nil
}

// remoteThreadsCPU is threadsCPU over files read remotely.
func remoteThreadsCPU(files map[string][]byte, pid int) (uint64, bool) {
	prefix := "/proc/" + strconv.Itoa(pid) + "/task/"
	threads := map[string]bool{}
	for p := range files {
		if rest, ok := strings.CutPrefix(p, prefix); ok {
			tid, _, _ := strings.Cut(rest, "/")
			threads[tid] = true
		}
	}
	var sum uint64
	for tid := range threads {
		dir := prefix + tid
		if b, ok := files[dir+"/sched"]; ok {
			if ns, found, err := parseSched(b); found {
				if err != nil {
					return 0, false
				}
				sum += ns
				continue
			}
		}
		b, ok := files[dir+"/schedstat"]
		if !ok {
			continue // the thread exited meanwhile
		}
		ns, err := parseSchedstat(b)
		if err != nil {
			return 0, false
		}
		sum += ns
	}
	return sum, sum > 0
}

// close ends the agent (which stops any server and removes the run
// directory) and the connection (whose keeper removes the directory too,
// should the agent not have), then the local control directory.
func (h *remoteHost) close() error {
	h.setFailed(errors.New("bench: remote host closed"))
	if h.pingDone != nil && h.agent != nil {
		close(h.stopPing)
		<-h.pingDone
	}
	var err error
	if h.agent != nil {
		h.agentIn.Close()
		if !waitOrKill(h.agent, h.agentDone, DefaultGrace+5*time.Second) {
			err = fmt.Errorf("bench: the agent on %s did not exit; its ssh session was killed", h.target)
		}
	}
	if h.master != nil {
		h.masterIn.Close()
		if !waitOrKill(h.master, h.masterDone, 10*time.Second) {
			err = errors.Join(err, fmt.Errorf("bench: the ssh connection to %s did not close; killed", h.target))
		}
	}
	os.RemoveAll(h.ctlDir)
	return err
}

// waitOrKill waits up to d for done, then kills cmd's process group and
// waits for it; it reports whether the process ended by itself.
func waitOrKill(cmd *exec.Cmd, done chan struct{}, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-done:
		return true
	case <-timer.C:
		killGroup(cmd)
		<-done
		return false
	}
}

// remoteServer is a server the agent runs.
type remoteServer struct {
	h    *remoteHost
	pid  int
	addr string
}

func (s *remoteServer) address() string { return s.addr }

func (s *remoteServer) sample() (float64, int64, int, error) { return s.h.sampleTree(s.pid) }

func (s *remoteServer) stop(grace time.Duration) error {
	_, err := s.h.call(agentRequest{Op: "stop", Timeout: grace}, grace)
	return err
}

// killGroup SIGKILLs cmd's process group (ssh and, with
// SOCKBENCH_SSH_COMMAND, the shell that runs it).
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
