package prefork

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/sockbench/sockbench/models"
)

// Supervision: keeping every pool slot filled (respawn, backoff, the
// crash-loop limit), ending the server when that fails, and stopping the
// children. Starting a child is spawn.go's.

// supervise keeps one pool slot filled: it starts a worker, waits for it
// to exit, and starts another, at once the first time and then after a
// models.Backoff (100ms doubling, capped at maxRespawnDelay) while the
// worker keeps dying within stableRun of starting. After crashLimit such
// deaths in a row the server gives up with ErrCrashLoop. firstReady is
// called once, when the slot's first worker serves.
func (s *Server) supervise(slot int, firstReady func()) {
	defer s.wg.Done()
	var readyOnce sync.Once
	crashes := 0
	respawn := models.Backoff{Min: minRespawnDelay, Max: maxRespawnDelay}
	for {
		p, err := s.spawnProc(WorkerRole, slot, s.sock)
		if errors.Is(err, errClosing) {
			return
		}
		started := time.Now()
		if err == nil {
			s.log.Info("worker started", "slot", slot, "pid", p.pid)
			select {
			case <-p.ready:
				readyOnce.Do(firstReady)
			case <-p.done:
			case <-s.closing:
				return
			}
			select {
			case <-p.done:
			case <-s.closing:
				return
			}
			s.mu.Lock()
			err = p.exitErr
			s.mu.Unlock()
			if err == nil {
				err = errors.New("exited with status 0 though nobody asked it to stop")
			}
			err = fmt.Errorf("worker pid %d: %w", p.pid, err)
		}
		if s.isClosing() {
			return
		}
		if time.Since(started) < stableRun {
			crashes++
		} else {
			crashes = 1
		}
		if crashes >= crashLimit {
			s.fail(fmt.Errorf("%w: worker slot %d died %d times in a row within %v of starting; last: %v",
				ErrCrashLoop, slot, crashes, stableRun, err))
			return
		}
		delay := time.Duration(0)
		if crashes > 1 {
			delay = respawn.Next()
		} else {
			respawn.Reset()
		}
		s.log.Warn("worker died; respawning", "slot", slot, "err", err, "delay", delay)
		if delay > 0 && !models.Sleep(delay, s.closing) {
			return
		}
		s.mu.Lock()
		s.respawns++
		s.mu.Unlock()
	}
}

func (s *Server) isClosing() bool { return models.Closed(s.closing) }

// fail ends the server on its own: it logs err, records it for Err and
// Shutdown, and stops every worker within the grace period. Only the
// first failure counts: when several slots give up at once, the error
// logged and returned is the first one, once.
func (s *Server) fail(err error) {
	s.mu.Lock()
	if s.state != stateRunning || s.fatal != nil {
		s.mu.Unlock()
		return
	}
	s.fatal = err
	s.mu.Unlock()
	s.log.Error("giving up", "err", err)
	go func() {
		s.beginStop()
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Grace)
		defer cancel()
		s.waitChildren(ctx)
		s.finish()
	}()
}

// beginStop closes the parent's socket (no more connections for anyone)
// and sends SIGTERM to every child. Later calls do nothing.
func (s *Server) beginStop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateRunning {
		return
	}
	s.state = stateClosing
	close(s.closing)
	s.closeSockets()
	for p := range s.procs {
		p.process.Signal(syscall.SIGTERM)
	}
}

// waitChildren waits for every child to exit; when ctx ends first it
// SIGKILLs the rest, waits for them too, and returns ctx.Err().
func (s *Server) waitChildren(ctx context.Context) error {
	all := make(chan struct{})
	go func() { s.procWG.Wait(); close(all) }()
	select {
	case <-all:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	n := len(s.procs)
	for p := range s.procs {
		p.process.Kill()
	}
	s.mu.Unlock()
	s.log.Warn("children did not drain within grace; killed", "count", n)
	<-all
	return ctx.Err()
}

// finish runs once every child has exited: it stops the supervisors and
// the spawner thread, removes the socket file and logs the totals.
func (s *Server) finish() {
	s.stopOnce.Do(func() {
		s.wg.Wait()
		s.sp.stop()
		s.sf.Remove()
		s.adm.close()
		s.mu.Lock()
		s.state = stateClosed
		total := s.retired.Add(s.parent.Snapshot())
		spawned, respawns := s.spawned, s.respawns
		s.mu.Unlock()
		s.logs.Flush()
		s.log.Info("every child process stopped", "spawn", s.spawn, "processes_started", spawned, "respawns", respawns, "totals", total.String())
		close(s.done)
	})
	<-s.done
}
