//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package bare

import (
	"bytes"
	"context"
	"sync"

	"github.com/sockbench/sockbench/protocol"
)

// A --block handler must never run on the loop. The loop hands the
// complete lines of one read (or one datagram) to the pool as a job, and
// the pool's goroutines pay the cost, transform each line and post it
// back; the loop, woken through the poller, writes every reply itself, in
// order, so a socket has one writer and the pool never touches one. A
// connection takes no new lines while its job runs. Without a handler
// cost none of this is used: the common path has no goroutine, lock or
// wake-up in it.

// job is a batch of work for the pool.
type job struct {
	c    *conn    // the stream connection, or nil for a datagram
	buf  []byte   // the lines, or the datagram
	sent int      // stream: bytes of buf the loop has written (loop only)
	from sockaddr // datagram: the sender
}

// done reports a reply ready: buf[:end] is answered; last is the job's
// final report, after which the worker no longer touches it.
type done struct {
	j    *job
	end  int
	last bool
}

// keepJobs bounds the jobs kept for reuse (their buffers: keepBuf).
const keepJobs = 64

// pool runs jobs on up to max goroutines, started as needed; they all
// exit in close. Fields without a comment are the loop's.
type pool struct {
	cost     protocol.Cost
	mode     protocol.Mode
	ctx      context.Context
	wake     func()
	max      int
	jobs     chan *job // never full: at most max jobs are in it or running
	workers  int
	inflight int    // jobs given to workers and not yet done
	backlog  []*job // stream jobs waiting for a worker
	free     []*job
	closed   bool
	wg       sync.WaitGroup

	mu    sync.Mutex // guards ready
	ready []done
	spare []done
}

func newPool(max int, cost protocol.Cost, mode protocol.Mode, ctx context.Context, wake func()) *pool {
	return &pool{cost: cost, mode: mode, ctx: ctx, wake: wake, max: max}
}

// hasRoom reports whether a job submitted now would start at once.
func (p *pool) hasRoom() bool { return p.inflight < p.max }

// idle reports whether no job is running or waiting.
func (p *pool) idle() bool { return p.inflight == 0 && len(p.backlog) == 0 }

func (p *pool) get() *job {
	if n := len(p.free); n > 0 {
		j := p.free[n-1]
		p.free = p.free[:n-1]
		return j
	}
	return &job{}
}

// submit starts j, or queues it until a worker is free.
func (p *pool) submit(j *job) {
	if !p.hasRoom() {
		p.backlog = append(p.backlog, j)
		return
	}
	if p.jobs == nil {
		p.jobs = make(chan *job, p.max)
	}
	p.inflight++
	if p.workers < p.inflight {
		p.workers++
		p.wg.Add(1)
		go p.work()
	}
	p.jobs <- j
}

// release takes back a job whose last reply the loop has, and starts a
// waiting one.
func (p *pool) release(j *job) {
	p.inflight--
	j.c = nil
	if cap(j.buf) > keepBuf {
		j.buf = nil
	}
	if len(p.free) < keepJobs {
		p.free = append(p.free, j)
	}
	if len(p.backlog) > 0 && p.hasRoom() {
		next := p.backlog[0]
		p.backlog[0] = nil
		p.backlog = p.backlog[1:]
		p.submit(next)
	}
}

// work runs jobs until close.
func (p *pool) work() {
	defer p.wg.Done()
	for j := range p.jobs {
		if j.c == nil {
			p.cost.Pay(p.ctx)
			p.mode.Apply(j.buf)
			p.post(done{j: j, end: len(j.buf), last: true})
			continue
		}
		// After the last post the job is the loop's again: b is read
		// before it, never j.
		b := j.buf
		for off := 0; off < len(b); {
			n := bytes.IndexByte(b[off:], '\n') + 1
			p.cost.Pay(p.ctx)
			p.mode.Apply(b[off : off+n])
			off += n
			p.post(done{j: j, end: off, last: off == len(b)})
		}
	}
}

// post hands a finished reply to the loop, waking it when it may be
// asleep (nothing was waiting for it yet).
func (p *pool) post(d done) {
	p.mu.Lock()
	first := len(p.ready) == 0
	p.ready = append(p.ready, d)
	p.mu.Unlock()
	if first {
		p.wake()
	}
}

// finished returns the replies posted since the last call. The slice is
// valid until the next call.
func (p *pool) finished() []done {
	p.mu.Lock()
	out := p.ready
	p.ready = p.spare[:0]
	p.mu.Unlock()
	p.spare = out
	return out
}

// close stops the workers once they have run what they hold (quickly
// after a forced stop: ctx is cancelled then) and waits for them.
func (p *pool) close() {
	if !p.closed && p.jobs != nil {
		close(p.jobs)
	}
	p.closed = true
	p.wg.Wait()
}
