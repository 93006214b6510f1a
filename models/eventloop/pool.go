package eventloop

import (
	"context"
	"sync"
	"time"
)

// job is one piece of work handed from an event loop to the pool.
type job interface{ run() }

// pool is a bounded set of goroutines running jobs that may block (the
// --block cost). Submit never blocks, so an event loop can call it: jobs
// wait in a FIFO when every worker is busy. The queue needs no bound of its
// own for streams, where a connection has at most one job at a time;
// datagram callers check queued() and drop instead.
//
// gnet ships an ants pool (pkg/pool/goroutine), but its workers outlive
// their jobs by up to ten seconds and its non-blocking Submit fails when
// the pool is full; this pool's workers all exit in close, which the leak
// checks rely on.
type pool struct {
	mu      sync.Mutex
	cond    sync.Cond
	queue   []job
	head    int
	workers int // goroutines started and not exited
	idle    int // workers waiting and not yet signalled
	max     int
	closed  bool
	pending int            // jobs submitted and not finished
	exited  sync.WaitGroup // workers
}

func newPool(max int) *pool {
	p := &pool{max: max}
	p.cond.L = &p.mu
	return p
}

// submit queues j and wakes or starts a worker for it. It returns false
// once the pool is closed.
func (p *pool) submit(j job) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.pending++
	p.queue = append(p.queue, j)
	switch {
	case p.idle > 0:
		p.idle--
		p.cond.Signal()
	case p.workers < p.max:
		p.workers++
		p.exited.Add(1)
		go p.work()
	}
	return true
}

// queued returns how many jobs wait for a worker.
func (p *pool) queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue) - p.head
}

func (p *pool) work() {
	defer p.exited.Done()
	p.mu.Lock()
	for {
		for p.head == len(p.queue) {
			if p.closed {
				p.workers--
				p.mu.Unlock()
				return
			}
			p.idle++
			p.cond.Wait()
		}
		j := p.queue[p.head]
		p.queue[p.head] = nil
		p.head++
		if p.head == len(p.queue) {
			p.queue, p.head = p.queue[:0], 0
		}
		p.mu.Unlock()
		j.run()
		p.mu.Lock()
		p.pending--
	}
}

// wait returns once no job is pending, or ctx is done. It polls: it runs
// once per shutdown, and jobs may still be submitted while it waits (a
// datagram read just before draining began).
func (p *pool) wait(ctx context.Context) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		p.mu.Lock()
		n := p.pending
		p.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// close refuses new jobs, lets the workers finish what is queued, and
// waits for all of them to exit.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
	p.exited.Wait()
}
