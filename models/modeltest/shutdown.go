package modeltest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sockbench/sockbench/models"
)

// load is traffic kept flowing at a server while it shuts down. It tallies
// what clients received so the test can compare it with what the server
// says it answered.
type load struct {
	e        *env
	replies  atomic.Uint64 // whole, correct replies received
	bytes    atomic.Uint64 // their bytes
	flowing  sync.WaitGroup
	done     sync.WaitGroup
	stop     chan struct{} // datagram clients: stop sending
	stopOnce sync.Once
	conns    int // stream connections

	mu   sync.Mutex
	errs []error
}

func (l *load) fail(err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

// startLoad starts clients against addr: busy stream clients that pipeline
// requests until the server closes, plus idle ones and one stalled
// mid-line; or closed-loop datagram clients. It returns once every busy
// client has had some replies and every quiet one its one exchange (and
// the stalled one has sent its half line): a quiet client still waiting
// for its first reply when the server stops is not idle but in a request.
// (Under arm64 emulation prefork's process per connection had not yet
// answered one when the check stopped it, and the client saw a reset.)
func (e *env) startLoad(addr string) *load {
	e.t.Helper()
	l := &load{e: e, stop: make(chan struct{})}
	if e.stream() {
		for i := range 12 {
			l.flowing.Add(1)
			l.done.Add(1)
			go l.streamClient(addr, i)
		}
		for i := range 3 {
			l.flowing.Add(1)
			l.done.Add(1)
			go l.quietClient(addr, i == 2)
		}
		l.conns = 15
	} else {
		for i := range 12 {
			l.flowing.Add(1)
			l.done.Add(1)
			go l.dgramClient(addr, i)
		}
	}
	ch := make(chan struct{})
	go func() { l.flowing.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(e.d(opTimeout)):
		e.t.Fatalf("load never got flowing: %v", l.errs)
	}
	return l
}

// finish waits for every client to end (the server closed on them) and
// reports what went wrong.
func (l *load) finish(what string) {
	l.e.t.Helper()
	l.stopOnce.Do(func() { close(l.stop) })
	ch := make(chan struct{})
	go func() { l.done.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(l.e.d(opTimeout + testGrace)):
		l.e.t.Errorf("%s: clients still running %v after the server stopped", what, l.e.d(opTimeout+testGrace))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.e.reportErrs(what, l.errs)
}

// loadMaxRequest bounds a load request, '\n' included.
const loadMaxRequest = 302

// streamClient pipelines requests (up to 256 in flight) and reads replies
// until EOF. Every reply must be whole and correct, the stream must end on
// a reply boundary, and end with EOF, not a reset.
func (l *load) streamClient(addr string, id int) {
	defer l.done.Done()
	e := l.e
	var flowOnce sync.Once
	flowed := func() { flowOnce.Do(l.flowing.Done) }
	defer flowed()
	c, err := e.dial(addr)
	if err != nil {
		l.fail(fmt.Errorf("client %d: dial: %w", id, err))
		return
	}
	defer c.Close()
	expect := make(chan []byte, 256)
	readerDone := make(chan struct{})
	go func() {
		defer close(expect)
		for {
			req := e.line(1 + e.intn(loadMaxRequest-2))
			select {
			case expect <- e.reply(req):
			case <-readerDone:
				return
			}
			c.SetWriteDeadline(time.Now().Add(e.d(opTimeout)))
			if _, err := c.Write(req); err != nil {
				return // the server closed; the reader tells EOF from a reset
			}
		}
	}()
	defer close(readerDone)
	r := newLineReader(c, 512)
	n := 0
	for {
		c.SetReadDeadline(time.Now().Add(e.d(opTimeout + testGrace)))
		line, err := r.ReadSlice('\n')
		if err != nil {
			switch {
			case len(line) > 0:
				l.fail(fmt.Errorf("client %d: a partial reply of %d bytes (%q) then %v, after %d whole replies", id, len(line), excerpt(line, 0), err, n))
			case err == io.EOF:
			case isReset(err):
				l.fail(fmt.Errorf("client %d: connection reset after %d replies: the server must close with FIN (lingering close), replies may have been lost: %w", id, n, err))
			default:
				l.fail(fmt.Errorf("client %d: after %d replies: %w", id, n, err))
			}
			return
		}
		want, ok := <-expect
		if !ok || !bytes.Equal(line, want) {
			l.fail(fmt.Errorf("client %d reply %d: %w", id, n, diff(line, want)))
			return
		}
		n++
		l.replies.Add(1)
		l.bytes.Add(uint64(len(line)))
		if n == 20 {
			flowed()
		}
	}
}

// quietClient is an idle connection (one exchange, then silence), or one
// stalled in the middle of a line. Shutdown must close it promptly, not
// wait for it, and it sees a clean EOF.
func (l *load) quietClient(addr string, midLine bool) {
	defer l.done.Done()
	var flowOnce sync.Once
	flowed := func() { flowOnce.Do(l.flowing.Done) }
	defer flowed()
	e := l.e
	c, err := e.dial(addr)
	if err != nil {
		l.fail(fmt.Errorf("quiet client: dial: %w", err))
		return
	}
	defer c.Close()
	req := e.line(16)
	if err := e.exchange(c, req); err != nil {
		l.fail(fmt.Errorf("quiet client: %w", err))
		return
	}
	l.replies.Add(1)
	l.bytes.Add(uint64(len(req)))
	if midLine {
		if err := e.writeAll(c, e.payload(20)); err != nil {
			l.fail(fmt.Errorf("client stalled mid-line: write: %w", err))
			return
		}
	}
	flowed()
	if err := e.expectEOF(c, e.d(opTimeout+testGrace)); err != nil {
		name := "idle client"
		if midLine {
			name = "client stalled mid-line"
		}
		l.fail(fmt.Errorf("%s at shutdown: %w", name, err))
	}
}

// dgramClient sends one datagram at a time until told to stop, counting
// every correct reply, late ones included; a wrong reply fails.
func (l *load) dgramClient(addr string, id int) {
	defer l.done.Done()
	e := l.e
	var flowOnce sync.Once
	flowed := func() { flowOnce.Do(l.flowing.Done) }
	defer flowed()
	var retries atomic.Int64
	dc, err := e.openDgram(addr, &retries)
	if err != nil {
		l.fail(fmt.Errorf("client %d: dial: %w", id, err))
		return
	}
	defer dc.close()
	var outstanding [][]byte // replies due, in any order
	receive := func(wait time.Duration) bool {
		dc.c.SetReadDeadline(time.Now().Add(wait))
		n, err := dc.c.Read(dc.buf)
		if err != nil {
			if !IsTimeout(err) && !errors.Is(err, syscall.ECONNREFUSED) {
				l.fail(fmt.Errorf("client %d: read: %w", id, err))
			}
			return false
		}
		got := dc.buf[:n]
		for i, w := range outstanding {
			if bytes.Equal(got, w) {
				outstanding = append(outstanding[:i], outstanding[i+1:]...)
				l.replies.Add(1)
				l.bytes.Add(uint64(n))
				return true
			}
		}
		l.fail(fmt.Errorf("client %d: a reply (%d bytes, %q) that matches no request sent", id, n, excerpt(got, 0)))
		return false
	}
	for k := 0; ; k++ {
		select {
		case <-l.stop:
			// Late replies to requests the server took before it stopped.
			for len(outstanding) > 0 && receive(e.d(300*time.Millisecond)) {
			}
			return
		default:
		}
		req := e.payloadAny(1 + e.intn(1000))
		if len(outstanding) < 64 {
			outstanding = append(outstanding, e.reply(req))
			if err := e.writeAll(dc.c, req); err != nil {
				outstanding = outstanding[:len(outstanding)-1]
				time.Sleep(10 * time.Millisecond) // the server is gone; wait to be told to stop
				continue
			}
		}
		if receive(e.d(200*time.Millisecond)) && k >= 20 {
			flowed()
		}
	}
}

// checkShutdown: graceful shutdown under load, in process through
// Server.Shutdown and in a subprocess through SIGTERM. It must end within
// the grace period without error; every reply a client gets is whole and
// correct; streams end with EOF, never a reset or a partial reply; idle and
// half-sent connections are closed rather than waited for; and the server
// answered exactly the requests it counted (Stats.Requests and BytesOut
// equal what the clients received). Afterwards nothing listens and a Unix
// socket file is gone.
//
// The handler blocks for shutdownBlock per request, so clients run ahead of
// the server and it always has unread requests in its socket buffer when it
// stops: closing such a socket without a lingering close sends a reset.
func checkShutdown(e *env) {
	grace := e.d(testGrace)
	slack := e.d(graceSlack)

	// In process.
	s := e.start(func(c *models.Config) {
		c.Grace = grace
		c.Cost.Block = shutdownBlock
	})
	l := e.startLoad(s.addr)
	time.Sleep(e.d(50 * time.Millisecond))
	took, err := s.shutdown()
	if err != nil {
		e.t.Errorf("Shutdown under load: %v (after %v, grace %v)", err, took, grace)
	}
	e.expectGone(s.addr)
	l.finish("in-process shutdown")
	st := s.srv.Stats()
	e.compareTally("in-process shutdown", st, l)
	if err := s.srv.Start(); !errors.Is(err, models.ErrServerClosed) {
		e.t.Errorf("Start after Shutdown: %v, want models.ErrServerClosed", err)
	}

	// In a subprocess, stopped with SIGTERM.
	cfg := e.config()
	cfg.Grace = grace
	cfg.Cost.Block = shutdownBlock
	p := e.startProc(cfg, 0)
	l = e.startLoad(p.addr)
	time.Sleep(e.d(50 * time.Millisecond))
	took, err = p.terminate(grace + slack)
	if err != nil {
		e.t.Errorf("subprocess server after SIGTERM under load: %v (after %v, grace %v); stderr:\n%s", err, took, grace, p.stderr)
	} else if took > grace+slack {
		e.t.Errorf("subprocess server took %v to exit after SIGTERM, grace %v", took, grace)
	}
	e.expectGone(p.addr)
	l.finish("SIGTERM shutdown")
	if st, err := p.finalStats(); err != nil {
		e.t.Errorf("%v; stderr:\n%s", err, p.stderr)
	} else {
		e.compareTally("SIGTERM shutdown", st, l)
	}
	if transport(cfg.Net).IsUnix() {
		if _, err := os.Lstat(cfg.Addr); !errors.Is(err, os.ErrNotExist) {
			e.t.Errorf("socket file %s still there after the server exited (lstat: %v)", cfg.Addr, err)
		}
	}
}

// shutdownBlock is the handler cost of the servers checkShutdown stops.
const shutdownBlock = time.Millisecond

// compareTally checks the server answered exactly what clients received.
func (e *env) compareTally(what string, st models.Stats, l *load) {
	e.t.Helper()
	got, gotBytes := l.replies.Load(), l.bytes.Load()
	if st.Requests != got || st.BytesOut != gotBytes {
		e.t.Errorf("%s: the server counted %d requests answered (%d bytes out), its clients received %d replies (%d bytes)",
			what, st.Requests, st.BytesOut, got, gotBytes)
	} else {
		e.t.Logf("%s: %d requests answered, all received", what, got)
	}
	// What the server read but did not answer can only be the partial
	// line each connection was cut off in (a datagram is always whole): a
	// server that drops requests it has read and never counts them shows
	// here, though its Requests still match what clients received.
	var unanswered uint64
	if e.stream() {
		unanswered = uint64(l.conns) * loadMaxRequest
	}
	if st.BytesIn > st.BytesOut+unanswered {
		e.t.Errorf("%s: the server read %d bytes and answered %d: %d bytes of requests it read were never answered (at most %d may be partial lines)",
			what, st.BytesIn, st.BytesOut, st.BytesIn-st.BytesOut, unanswered)
	}
	if st.Active != 0 {
		e.t.Errorf("%s: Stats.Active=%d after shutdown", what, st.Active)
	}
}

// expectGone checks nothing answers at addr any more. It runs right after
// the server stopped: a port freed for long could be handed to another
// check's new server.
func (e *env) expectGone(addr string) {
	e.t.Helper()
	if !e.stream() {
		return // nothing to connect to; a lost datagram proves nothing
	}
	c, err := net.DialTimeout(e.net, addr, e.d(opTimeout))
	if err != nil {
		return
	}
	defer c.Close()
	// Something accepted: it must at least not serve.
	if err := e.exchange(c, e.line(5)); err == nil {
		e.t.Errorf("%s still answers after shutdown", addr)
	}
}
