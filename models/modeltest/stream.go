package modeltest

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/protocol"
)

// checkSingle: one request, then a second on the same connection; the
// counters match the traffic exactly.
func checkSingle(e *env) {
	if !e.stream() {
		checkDgramSingle(e)
		return
	}
	s := e.start(nil)
	c := e.mustDial(s.addr)
	reqs := [][]byte{[]byte("hello, World! 123 zz\n"), e.line(40)}
	var n uint64
	for _, r := range reqs {
		if err := e.exchange(c, r); err != nil {
			e.t.Fatalf("request %q: %v", r, err)
		}
		n += uint64(len(r))
	}
	s.waitStats(fmt.Sprintf("requests=2 bytes_in=%d bytes_out=%d accepted=1", n, n), func(st models.Stats) bool {
		return st.Requests == 2 && st.BytesIn == n && st.BytesOut == n && st.Accepted == 1
	})
	c.Close()
	s.waitStats("active=0 after the client closed", func(st models.Stats) bool { return st.Active == 0 })
}

// checkPipelined: 1000 requests in one write; replies come back whole and
// in order.
func checkPipelined(e *env) {
	s := e.start(nil)
	c := e.mustDial(s.addr)
	reqs := make([][]byte, 1000)
	for i := range reqs {
		n := e.intn(120)
		if i%100 == 7 {
			n = 2000 + e.intn(3000)
		}
		reqs[i] = e.line(n)
	}
	if err := e.exchange(c, reqs...); err != nil {
		e.t.Fatalf("1000 pipelined requests: %v", err)
	}
	s.waitStats("requests=1000", func(st models.Stats) bool { return st.Requests == 1000 })
}

// checkBytewise: requests written one byte per write, then in random
// small pieces that cut lines anywhere. After each write it waits (briefly)
// until the server has read what was sent, so the server really sees the
// line in pieces: without the wait a socket may hand it all the bytes in
// one read, and a server that takes each read for whole lines would pass.
func checkBytewise(e *env) {
	s := e.start(nil)
	c := e.mustDial(s.addr)
	waitRead := s.readSync()
	req := e.line(50)
	for i := range req {
		if err := e.writeAll(c, req[i:i+1]); err != nil {
			e.t.Fatalf("write byte %d: %v", i, err)
		}
		waitRead(1)
	}
	if err := e.readExpect(c, e.reply(req)); err != nil {
		e.t.Fatalf("request written a byte at a time: %v", err)
	}
	var all, want []byte
	for range 20 {
		r := e.line(e.intn(30))
		all = append(all, r...)
		want = e.mode.AppendReply(want, r)
	}
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < len(all); {
			n := min(len(all)-i, 1+e.intn(7))
			if err := e.writeAll(c, all[i:i+n]); err != nil {
				errc <- err
				return
			}
			waitRead(n)
			i += n
		}
		errc <- nil
	}()
	if err := e.readExpect(c, want); err != nil {
		e.t.Fatalf("20 requests written in pieces of 1-7 bytes: %v", err)
	}
	if err := <-errc; err != nil {
		e.t.Fatalf("write: %v", err)
	}
}

// readSync returns a func that, told how many more bytes a check has
// written to the server's only connection, waits until Stats.BytesIn shows
// the server has read them all. A model whose BytesIn lags its reads (one
// that counts a line's bytes when the line is complete) makes it wait in
// vain: the first such wait gives up after 100ms (scaled), and from then
// on it pauses 1ms per write instead, which lets a server read each piece
// on its own nearly always, though it cannot make sure of it.
func (s *server) readSync() func(n int) {
	var sent uint64
	base := s.srv.Stats().BytesIn
	off := false
	return func(n int) {
		sent += uint64(n)
		if off {
			time.Sleep(time.Millisecond)
			return
		}
		deadline := time.Now().Add(s.e.d(100 * time.Millisecond))
		for s.srv.Stats().BytesIn-base < sent {
			if time.Now().After(deadline) {
				off = true
				s.e.t.Logf("Stats.BytesIn lags the bytes written (%d of %d): pausing 1ms per write instead of waiting for the server's reads", s.srv.Stats().BytesIn-base, sent)
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
}

// checkBinary: every byte value but '\n' in a request (datagrams carry
// every value, '\n' included, and are never split at it).
func checkBinary(e *env) {
	if !e.stream() {
		checkDgramBinary(e)
		return
	}
	s := e.start(nil)
	c := e.mustDial(s.addr)
	var reqs [][]byte
	for range 4 {
		b := make([]byte, 0, 256)
		for _, v := range e.perm(256) {
			if v != '\n' {
				b = append(b, byte(v))
			}
		}
		reqs = append(reqs, append(b, '\n'))
	}
	reqs = append(reqs, []byte("crlf line\r\n"), []byte("\x00\n"), []byte("\r\n"), []byte("\xff\xfeZz\x80\n"))
	for i, r := range reqs {
		if err := e.exchange(c, r); err != nil {
			e.t.Fatalf("binary request %d: %v", i, err)
		}
	}
	if err := e.exchange(c, reqs...); err != nil {
		e.t.Fatalf("binary requests pipelined: %v", err)
	}
}

// checkLineSizes: lines of 0 and 1 bytes and just under max-line (the
// longest accepted: max-line bytes with its '\n'), at the default limit and
// a small configured one.
func checkLineSizes(e *env) {
	for _, maxLine := range []int{protocol.DefaultMaxLine, 100} {
		s := e.start(func(c *models.Config) {
			if maxLine != protocol.DefaultMaxLine {
				c.MaxLine = maxLine
			}
		})
		c := e.mustDial(s.addr)
		sizes := []int{0, 1, 2, maxLine - 2, maxLine - 1, 0, 1}
		for _, n := range sizes {
			if err := e.exchange(c, e.line(n)); err != nil {
				e.t.Fatalf("max-line %d: line of %d bytes (+newline): %v", maxLine, n, err)
			}
		}
		var reqs [][]byte
		for _, n := range sizes {
			reqs = append(reqs, e.line(n))
		}
		if err := e.exchange(c, reqs...); err != nil {
			e.t.Fatalf("max-line %d: lines of %v bytes pipelined: %v", maxLine, sizes, err)
		}
		if st := s.srv.Stats(); st.LineTooLong != 0 {
			e.t.Errorf("max-line %d: LineTooLong=%d for lines within the limit", maxLine, st.LineTooLong)
		}
	}
}

// checkOverLimit: a line over max-line closes that connection (with no
// partial reply) and is counted; other connections keep being served. A
// client that keeps streaming bytes without a newline is closed too, so a
// server neither buffers nor reads forever.
func checkOverLimit(e *env) {
	const maxLine = 1000
	s := e.start(func(c *models.Config) { c.MaxLine = maxLine })
	good := e.mustDial(s.addr)
	if err := e.exchange(good, e.line(10)); err != nil {
		e.t.Fatalf("good connection: %v", err)
	}
	timeout := e.d(opTimeout)

	// maxLine bytes and no newline: can never become a request.
	b := e.mustDial(s.addr)
	if err := e.exchange(b, e.line(maxLine-1)); err != nil {
		e.t.Fatalf("line of exactly max-line bytes: %v", err)
	}
	if err := e.writeAll(b, bytes.Repeat([]byte("x"), maxLine)); err != nil {
		e.t.Fatalf("write: %v", err)
	}
	if err := e.expectClosed(b, timeout); err != nil {
		e.t.Errorf("after %d bytes without a newline (max-line %d): %v", maxLine, maxLine, err)
	}

	// One byte over, with its newline, after a good request in the same write.
	c := e.mustDial(s.addr)
	ok := e.line(5)
	if err := e.writeAll(c, append(append(ok, e.payload(maxLine)...), '\n')); err != nil {
		e.t.Fatalf("write: %v", err)
	}
	if err := e.readExpect(c, e.reply(ok)); err != nil {
		e.t.Errorf("the good request before an over-long line lost its reply: %v", err)
	}
	if err := e.expectClosed(c, timeout); err != nil {
		e.t.Errorf("after a line of %d bytes (max-line %d): %v", maxLine+1, maxLine, err)
	}

	// A client streaming megabytes without a newline.
	d := e.mustDial(s.addr)
	go func() {
		chunk := bytes.Repeat([]byte("y"), 64<<10)
		d.SetWriteDeadline(time.Now().Add(timeout))
		for range 1024 { // 64 MiB at most
			if _, err := d.Write(chunk); err != nil {
				return
			}
		}
	}()
	if err := e.expectClosed(d, timeout); err != nil {
		e.t.Errorf("a client streaming bytes without a newline: %v", err)
	}

	if err := e.exchange(good, e.line(20), e.line(maxLine-1)); err != nil {
		e.t.Errorf("good connection after others were closed for long lines: %v", err)
	}
	s.waitStats("line_too_long>=3", func(st models.Stats) bool { return st.LineTooLong >= 3 })
}

// checkConcurrent: 200 clients at once, each sending random batches of
// random sizes and checking every reply. Every client has its first reply
// before any client sends its second batch or closes, so all 200 are
// served at the same time: a server that serves one connection at a time
// cannot pass by working through them in turn.
func checkConcurrent(e *env) {
	if !e.stream() {
		checkDgramConcurrent(e)
		return
	}
	s := e.start(func(c *models.Config) { c.MaxLine = 16 << 10 })
	const clients, rounds = 200, 5
	conns := make([]net.Conn, clients)
	for i := range conns {
		conns[i] = e.mustDial(s.addr)
	}
	var total uint64
	counts := make([]uint64, clients)
	var firstRound sync.WaitGroup
	firstRound.Add(clients)
	errs := goAll(clients, func(i int) error {
		c := conns[i]
		for r := range rounds {
			if r == 1 {
				firstRound.Done()
				firstRound.Wait()
			}
			reqs := make([][]byte, 1+e.intn(6))
			for j := range reqs {
				n := e.intn(600)
				if e.intn(20) == 0 {
					n = 16<<10 - 1
				}
				reqs[j] = e.line(n)
			}
			if err := e.exchange(c, reqs...); err != nil {
				if r == 0 {
					firstRound.Done()
				}
				return fmt.Errorf("client %d round %d (%d requests; every client holds its connection open until all have a first reply): %w", i, r, len(reqs), err)
			}
			counts[i] += uint64(len(reqs))
		}
		return c.Close()
	})
	e.reportErrs("concurrent clients", errs)
	for _, n := range counts {
		total += n
	}
	s.waitStats(fmt.Sprintf("requests=%d accepted=%d active=0", total, clients), func(st models.Stats) bool {
		return st.Requests == total && st.Accepted == clients && st.Active == 0
	})
}
