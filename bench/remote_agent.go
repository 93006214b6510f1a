package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// The remote agent is `sockbench agent`, started over ssh on a server host
// by `bench --server-host` (remote.go). It runs the cell's servers there
// and answers a few requests on stdin, one JSON object a line, each with
// one JSON line on stdout:
//
//	hello                  what this host is (OS, CPUs, limits, version)
//	serve args cpus        start `sockbench serve args` pinned to cpus, wait for its ready line
//	read globs             the contents of the files matching globs (the /proc files
//	                       bench samples; the orchestrator parses them itself)
//	stop grace             SIGTERM the server, wait grace, check it exited 0 and alone
//	ping                   nothing: keeps the agent's idle timer from firing
//
// Its life is tied to the ssh session's: when stdin closes (the
// orchestrator finished, was killed, or the connection dropped) or no
// request came for the idle timeout (a link that died silently), it stops
// its server (SIGTERM, then SIGKILL to the process group after the grace),
// removes its run directory and exits. Nothing of a run outlives it.

// agentRequest is one request to the agent.
type agentRequest struct {
	Op      string        `json:"op"`
	Args    []string      `json:"args,omitempty"`
	CPUs    []int         `json:"cpus,omitempty"`
	Globs   []string      `json:"globs,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"` // serve: ready timeout; stop: grace
}

// agentReply is the agent's answer to one request; Err is "" on success.
type agentReply struct {
	Err   string            `json:"err,omitempty"`
	Hello *agentHello       `json:"hello,omitempty"`
	Pid   int               `json:"pid,omitempty"`
	Addr  string            `json:"addr,omitempty"`
	Files map[string][]byte `json:"files,omitempty"`
}

// agentHello describes the agent's host.
type agentHello struct {
	Host      string `json:"host"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	Cores     int    `json:"cores"`
	CPUs      []int  `json:"cpus"`     // CPUs the agent may run on
	FDLimit   uint64 `json:"fd_limit"` // what a server started here gets
	GoVersion string `json:"go_version"`
	Version   string `json:"version"`
	Commit    string `json:"commit"`
}

// maxAgentRead bounds the bytes one read request returns, so a glob that
// matches more than bench ever asks for cannot blow up either side.
const maxAgentRead = 32 << 20

// AgentOptions configures RunAgent.
type AgentOptions struct {
	// Dir is the run directory the orchestrator created for this run (it
	// holds the copied binary); removed when the agent exits. It must be
	// named sockbench.* so that a wrong argument cannot remove anything
	// else.
	Dir string
	// Idle is how long the agent waits for a request before it assumes
	// the orchestrator is gone (0: forever).
	Idle time.Duration
	// Version and Commit are reported by hello.
	Version, Commit string
}

// RunAgent serves requests from in until it closes, the idle timeout
// passes or ctx ends; then it stops any server it started and removes
// opts.Dir.
func RunAgent(ctx context.Context, in io.Reader, out io.Writer, opts AgentOptions) error {
	if opts.Dir != "" && !strings.HasPrefix(filepath.Base(opts.Dir), "sockbench.") {
		return fmt.Errorf("agent: refusing run directory %q: not named sockbench.*", opts.Dir)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a := &agent{opts: opts, binary: self, out: json.NewEncoder(out)}
	defer a.shutdown()
	reqs := make(chan agentRequest)
	readErr := make(chan error, 1)
	go func() {
		dec := json.NewDecoder(bufio.NewReader(in))
		for {
			var req agentRequest
			if err := dec.Decode(&req); err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				readErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	var idle <-chan time.Time
	var timer *time.Timer
	if opts.Idle > 0 {
		timer = time.NewTimer(opts.Idle)
		defer timer.Stop()
		idle = timer.C
	}
	for {
		select {
		case req := <-reqs:
			rep := a.handle(ctx, req)
			if err := a.out.Encode(rep); err != nil {
				return fmt.Errorf("agent: writing reply: %w", err)
			}
			if timer != nil {
				timer.Reset(opts.Idle)
			}
		case err := <-readErr:
			return err // stdin closed: the orchestrator is gone
		case <-idle:
			return fmt.Errorf("agent: no request for %v; the orchestrator is gone, stopping", opts.Idle)
		case <-ctx.Done():
			return nil
		}
	}
}

type agent struct {
	opts   AgentOptions
	binary string
	out    *json.Encoder
	srv    *server
}

func (a *agent) handle(ctx context.Context, req agentRequest) agentReply {
	switch req.Op {
	case "ping":
		return agentReply{}
	case "hello":
		h := &agentHello{OS: runtime.GOOS, Arch: runtime.GOARCH, Cores: numCPU(), CPUs: allowedCPUs(),
			GoVersion: runtime.Version(), Version: a.opts.Version, Commit: a.opts.Commit}
		h.Host, _ = os.Hostname()
		h.FDLimit, _ = fdLimit()
		return agentReply{Hello: h}
	case "serve":
		if a.srv != nil {
			return agentReply{Err: "a server is already running"}
		}
		if len(req.CPUs) > 0 {
			if err := CheckCPUs(req.CPUs); err != nil {
				return agentReply{Err: err.Error()}
			}
		}
		srv, err := startServe(ctx, a.binary, req.Args, req.CPUs, req.Timeout)
		if err != nil {
			return agentReply{Err: err.Error()}
		}
		a.srv = srv
		return agentReply{Pid: srv.pid, Addr: srv.addr}
	case "stop":
		if a.srv == nil {
			return agentReply{Err: "no server is running"}
		}
		err := a.srv.stop(req.Timeout)
		a.srv = nil
		if err != nil {
			return agentReply{Err: err.Error()}
		}
		return agentReply{}
	case "read":
		files, err := readGlobs(req.Globs)
		if err != nil {
			return agentReply{Err: err.Error()}
		}
		return agentReply{Files: files}
	}
	return agentReply{Err: fmt.Sprintf("unknown request %q (is the remote sockbench older than this one?)", req.Op)}
}

// shutdown stops a server still running and removes the run directory.
func (a *agent) shutdown() {
	if a.srv != nil {
		a.srv.stop(DefaultGrace + 2*time.Second)
		a.srv = nil
	}
	if a.opts.Dir != "" {
		os.RemoveAll(a.opts.Dir)
	}
}

// readGlobs returns the contents of every file matching globs. Files that
// vanish between the glob and the read (a process or thread that exited)
// are left out, as the local sampler skips them.
func readGlobs(globs []string) (map[string][]byte, error) {
	files := map[string][]byte{}
	total := 0
	for _, g := range globs {
		paths, err := filepath.Glob(g)
		if err != nil {
			return nil, fmt.Errorf("bad pattern %q: %v", g, err)
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			total += len(b)
			if total > maxAgentRead {
				return nil, fmt.Errorf("read: more than %d bytes asked", maxAgentRead)
			}
			files[p] = b
		}
	}
	return files, nil
}
