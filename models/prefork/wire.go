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
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sockbench/sockbench/models"
)

// The parent and each child talk over two pipes handed over as inherited
// descriptors (see spawnProc):
//
//   - control, parent → child (fd 4): lines "stats <seq>", asking for a
//     fresh Stats snapshot. The child also reads it to notice the parent's
//     death: EOF means the parent is gone, and the child exits at once.
//   - messages, child → parent (fd 5): one JSON object per line, a msg.
//
// Shutdown itself is a plain SIGTERM, so a worker behaves the same whether
// its parent or an operator asked.
const (
	fdHandoff  = 3 // the listener, datagram socket or connection
	fdControl  = 4
	fdMessages = 5
	fdAdmit    = 6 // shared counters (pool with MaxConns or MaxBuffered only)
)

// envSpec carries the child's spec (JSON) in its environment.
const envSpec = "SOCKBENCH_PREFORK"

// spec is what a child needs to know besides its inherited descriptors.
type spec struct {
	Config   models.Config `json:"config"`
	Slot     int           `json:"slot"`      // pool: worker slot; per-conn: -1
	LogLevel slog.Level    `json:"log_level"` // lowest level the parent's logger shows
	Admit    bool          `json:"admit"`     // fdAdmit holds the shared counters (admission)
}

// msg is one line from a child.
type msg struct {
	// T is "ready" (serving), "stats" (a snapshot: periodic, asked for, or
	// Final just before a clean exit) or "log" (a record of the child's
	// slog.Logger, re-logged by the parent's).
	T     string          `json:"t"`
	Seq   uint64          `json:"seq,omitempty"`
	Final bool            `json:"final,omitempty"`
	Stats *models.Stats   `json:"stats,omitempty"`
	Log   json.RawMessage `json:"log,omitempty"`
}

// msgWriter writes msgs from a child; safe for concurrent use.
type msgWriter struct {
	mu sync.Mutex
	f  *os.File
}

func (w *msgWriter) send(m msg) {
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.f.Write(append(b, '\n'))
}

// Write implements io.Writer for the child's slog JSON handler, which
// writes each record in one call: the record is wrapped in a "log" msg.
func (w *msgWriter) Write(p []byte) (int, error) {
	w.send(msg{T: "log", Log: json.RawMessage(bytes.TrimSpace(p))})
	return len(p), nil
}

// readControl serves the parent's stats requests from snap until the
// control pipe ends, then closes gone: the parent has died (or is gone
// for good), and the child should exit.
func readControl(ctrl *os.File, w *msgWriter, snap func() models.Stats, gone chan<- struct{}) {
	defer close(gone)
	sc := bufio.NewScanner(ctrl)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "stats" {
			seq, _ := strconv.ParseUint(f[1], 10, 64)
			st := snap()
			w.send(msg{T: "stats", Seq: seq, Stats: &st})
		}
	}
}

// pushStats sends a snapshot every period when it changed, so the parent
// has recent figures even for a worker that is later SIGKILLed.
func pushStats(w *msgWriter, snap func() models.Stats, period time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(period)
	defer t.Stop()
	var last models.Stats
	for {
		select {
		case <-t.C:
			if st := snap(); st != last {
				last = st
				w.send(msg{T: "stats", Stats: &st})
			}
		case <-stop:
			return
		}
	}
}

// relog re-emits a child's slog JSON record on the parent's logger, with
// the child's pid, through limit (nil: every record).
func relog(log *slog.Logger, limit *models.RateLog, pid int, raw json.RawMessage) {
	var rec map[string]any
	if err := json.Unmarshal(raw, &rec); err != nil {
		limit.Warn(log, "unreadable log line from child", "pid", pid, "line", string(raw))
		return
	}
	var lvl slog.Level
	if s, ok := rec["level"].(string); ok {
		lvl.UnmarshalText([]byte(s))
	}
	text, _ := rec["msg"].(string)
	delete(rec, "time")
	delete(rec, "level")
	delete(rec, "msg")
	args := []any{"pid", pid}
	keys := make([]string, 0, len(rec))
	for k := range rec {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		args = append(args, k, rec[k])
	}
	limit.Log(log, lvl, text, args...)
}

// minLevel is the lowest level log shows, so children do not send records
// the parent would drop.
func minLevel(log *slog.Logger) slog.Level {
	for _, l := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError} {
		if log.Enabled(context.Background(), l) {
			return l
		}
	}
	return slog.LevelError + 4
}

// childEnv is the parent's environment with the child role and spec set,
// and GOMAXPROCS=1 so the child's runtime starts with one P.
//
// It also sets the race detector's atexit_sleep_ms to 0 unless GORACE
// already sets it: a -race binary otherwise sleeps a full second on exit,
// which would make every worker's shutdown, and every per-conn child, last
// at least a second in race-enabled tests. Other binaries ignore GORACE.
func childEnv(role string, sp spec) ([]string, error) {
	b, err := json.Marshal(sp)
	if err != nil {
		return nil, fmt.Errorf("prefork: encoding worker config: %w", err)
	}
	env := make([]string, 0, len(os.Environ())+4)
	gorace := ""
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case models.ChildEnv, envSpec, "GOMAXPROCS":
			continue
		case "GORACE":
			gorace = v
			continue
		}
		env = append(env, kv)
	}
	if !strings.Contains(gorace, "atexit_sleep_ms") {
		gorace = strings.TrimSpace(gorace + " atexit_sleep_ms=0")
	}
	return append(env, models.ChildEnv+"="+role, envSpec+"="+string(b), "GOMAXPROCS=1", "GORACE="+gorace), nil
}

// readMessages handles a child's messages until EOF: the child has exited
// (or handed its pipe on, which children never do).
func (s *Server) readMessages(p *proc, r io.Reader) {
	br := bufio.NewReaderSize(r, 64<<10)
	readyOnce := sync.Once{}
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			s.logs.Warn(s.log, "overlong message from child; dropped", "pid", p.pid)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			continue
		}
		if err != nil {
			return
		}
		var m msg
		if err := json.Unmarshal(line, &m); err != nil {
			s.logs.Warn(s.log, "unreadable message from child", "pid", p.pid, "err", err)
			continue
		}
		switch m.T {
		case "ready":
			readyOnce.Do(func() { close(p.ready) })
		case "stats":
			if m.Stats != nil {
				s.mu.Lock()
				p.last = *m.Stats
				if m.Seq > p.seq {
					p.seq = m.Seq
				}
				s.notifyLocked()
				s.mu.Unlock()
			}
		case "log":
			// The child's records carry their own model attribute. A
			// pool worker limits its own lines; a per-conn child lives
			// for one connection, so the parent limits them all together.
			var limit *models.RateLog
			if p.slot < 0 {
				limit = &s.logs
			}
			relog(s.cfg.Logger, limit, p.pid, m.Log)
		}
	}
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// refresh asks every live child for a snapshot and waits, at most
// statsWait, until each has answered or exited.
func (s *Server) refresh() {
	s.mu.Lock()
	if s.state != stateRunning || len(s.procs) == 0 {
		s.mu.Unlock()
		return
	}
	s.statsSeq++
	seq := s.statsSeq
	asked := make([]*proc, 0, len(s.procs))
	for p := range s.procs {
		asked = append(asked, p)
	}
	s.mu.Unlock()
	req := []byte("stats " + strconv.FormatUint(seq, 10) + "\n")
	deadline := time.Now().Add(statsWait)
	for _, p := range asked {
		// A child that stopped reading must not block Stats.
		p.ctrl.SetWriteDeadline(deadline)
		p.ctrl.Write(req)
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		s.mu.Lock()
		pending := false
		for _, p := range asked {
			if _, live := s.procs[p]; live && p.seq < seq {
				pending = true
				break
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if !pending {
			return
		}
		select {
		case <-ch:
		case <-t.C:
			return
		}
	}
}
