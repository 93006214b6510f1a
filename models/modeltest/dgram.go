package modeltest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/protocol"
)

// dgramClient is one client datagram socket talking to the server in a
// closed loop (one request outstanding). Loopback UDP may still drop a
// datagram under load, so a request without a reply is sent again a few
// times; a reply that arrives late for an earlier try is recognised and
// skipped. A reply with wrong bytes or length fails at once.
type dgramClient struct {
	e       *env
	c       net.Conn
	buf     []byte
	stale   [][]byte // replies we gave up waiting for, which may still come
	retries *atomic.Int64
	wait    time.Duration // for the first reply; doubles at each try
}

// dgramClient opens a client socket that is closed when the test ends.
func (e *env) dgramClient(addr string, retries *atomic.Int64) (*dgramClient, error) {
	dc, err := e.openDgram(addr, retries)
	if err != nil {
		return nil, err
	}
	e.t.Cleanup(dc.close)
	return dc, nil
}

// openDgram opens a client socket the caller closes.
func (e *env) openDgram(addr string, retries *atomic.Int64) (*dgramClient, error) {
	c, err := e.dial(addr)
	if err != nil {
		return nil, err
	}
	dc := &dgramClient{e: e, c: c, buf: make([]byte, protocol.MaxDatagram+2), retries: retries, wait: e.d(500 * time.Millisecond)}
	if e.net == "unixgram" {
		// Unix datagrams are not lost but flow-controlled: a sender blocks
		// while the receiver's queue is full. Resending would only add to
		// the queues, so wait as long as for any reply.
		dc.wait = e.d(opTimeout)
	}
	return dc, nil
}

// close closes the socket and removes its path (unixgram).
func (dc *dgramClient) close() {
	if a, ok := dc.c.LocalAddr().(*net.UnixAddr); ok && a.Name != "" {
		os.Remove(a.Name)
	}
	dc.c.Close()
}

// dgramTries is how often a request is sent before it counts as lost.
const dgramTries = 5

// roundTrip sends req and waits for its reply.
func (dc *dgramClient) roundTrip(req []byte) error {
	want := dc.e.reply(req)
	wait := dc.wait
	for try := range dgramTries {
		if try > 0 {
			dc.retries.Add(1)
		}
		if err := dc.e.writeAll(dc.c, req); err != nil {
			return fmt.Errorf("send a %d-byte datagram: %w", len(req), err)
		}
		deadline := time.Now().Add(wait)
		wait *= 2
		for {
			dc.c.SetReadDeadline(deadline)
			n, err := dc.c.Read(dc.buf)
			if err != nil {
				if IsTimeout(err) {
					break
				}
				return fmt.Errorf("read the reply to a %d-byte datagram: %w", len(req), err)
			}
			got := dc.buf[:n]
			if bytes.Equal(got, want) {
				if try > 0 {
					dc.remember(want)
				}
				return nil
			}
			if dc.isStale(got) {
				continue
			}
			return fmt.Errorf("reply to a %d-byte datagram: %w", len(req), diff(got, want))
		}
		dc.remember(want)
	}
	return fmt.Errorf("no reply to a %d-byte datagram after %d tries", len(req), dgramTries)
}

func (dc *dgramClient) remember(reply []byte) {
	if len(dc.stale) == 16 {
		dc.stale = dc.stale[1:]
	}
	dc.stale = append(dc.stale, reply)
}

func (dc *dgramClient) isStale(got []byte) bool {
	for _, s := range dc.stale {
		if bytes.Equal(got, s) {
			return true
		}
	}
	return false
}

func (e *env) logRetries(r *atomic.Int64) {
	if n := r.Load(); n > 0 {
		e.t.Logf("%d datagrams were sent again after a timeout (loopback loss or a slow server)", n)
	}
}

func checkDgramSingle(e *env) {
	s := e.start(nil)
	var retries atomic.Int64
	dc, err := e.dgramClient(s.addr, &retries)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	for _, r := range [][]byte{[]byte("hello, World! 123 zz"), []byte("x"), []byte("two\nlines\n")} {
		if err := dc.roundTrip(r); err != nil {
			e.t.Fatalf("datagram %q: %v", r, err)
		}
	}
	e.logRetries(&retries)
	s.waitStats("requests>=3", func(st models.Stats) bool { return st.Requests >= 3 && st.BytesOut >= 31 })
}

func checkDgramBinary(e *env) {
	s := e.start(nil)
	var retries atomic.Int64
	dc, err := e.dgramClient(s.addr, &retries)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	for range 4 {
		b := make([]byte, 0, 256)
		for _, v := range e.perm(256) {
			b = append(b, byte(v))
		}
		if err := dc.roundTrip(b); err != nil {
			e.t.Fatalf("datagram of every byte value: %v", err)
		}
	}
	for _, r := range []string{"\n", "\n\n\n", "\x00", "a\r\n", "\xff"} {
		if err := dc.roundTrip([]byte(r)); err != nil {
			e.t.Fatalf("datagram %q: %v", r, err)
		}
	}
	e.logRetries(&retries)
}

// checkDgramConcurrent: 200 client sockets (200 source ports) at once,
// each in a closed loop of random datagrams.
func checkDgramConcurrent(e *env) {
	s := e.start(nil)
	const clients, rounds = 200, 8
	var retries atomic.Int64
	dcs := make([]*dgramClient, clients)
	for i := range dcs {
		dc, err := e.dgramClient(s.addr, &retries)
		if err != nil {
			e.t.Fatalf("dial: %v", err)
		}
		dcs[i] = dc
	}
	errs := goAll(clients, func(i int) error {
		for r := range rounds {
			n := 1 + e.intn(1400)
			if e.intn(10) == 0 {
				n = 1 + e.intn(protocol.MaxDatagram)
			}
			if err := dcs[i].roundTrip(e.payloadAny(n)); err != nil {
				return fmt.Errorf("client %d request %d: %w", i, r, err)
			}
		}
		return nil
	})
	e.reportErrs("concurrent datagram clients", errs)
	e.logRetries(&retries)
	s.waitStats(fmt.Sprintf("requests>=%d", clients*rounds), func(st models.Stats) bool {
		return st.Requests >= clients*rounds
	})
}

// checkDatagramSizes: every interesting size from 1 byte to the largest
// UDP payload, spread over many client sockets (source ports).
func checkDatagramSizes(e *env) {
	s := e.start(nil)
	maxSize := protocol.MaxDatagram
	sizes := []int{1, 2, 3, 7, 64, 100, 255, 256, 512, 1023, 1024, 1400, 1450, 1472, 1473, 1500,
		4095, 4096, 8192, 9000, 16384, 32767, 32768, 65000, maxSize - 1, maxSize}
	for range 24 {
		sizes = append(sizes, 1+e.intn(maxSize))
	}
	const sockets = 16
	var retries atomic.Int64
	dcs := make([]*dgramClient, sockets)
	for i := range dcs {
		dc, err := e.dgramClient(s.addr, &retries)
		if err != nil {
			e.t.Fatalf("dial: %v", err)
		}
		dcs[i] = dc
	}
	errs := goAll(sockets, func(i int) error {
		// Every socket sends the smallest and the largest; the rest are
		// shared out.
		mine := []int{1, maxSize}
		for j := i; j < len(sizes); j += sockets {
			mine = append(mine, sizes[j])
		}
		for _, n := range mine {
			if err := dcs[i].roundTrip(e.payloadAny(n)); err != nil {
				if errors.Is(err, syscall.EMSGSIZE) {
					return fmt.Errorf("socket %d: the client could not send %d bytes (%w): raise net.core.wmem_max?", i, n, err)
				}
				return fmt.Errorf("socket %d, %d bytes: %w", i, n, err)
			}
		}
		return nil
	})
	e.reportErrs("datagram sizes", errs)
	e.logRetries(&retries)
	st := s.srv.Stats()
	if st.BadDatagrams != 0 {
		e.t.Errorf("BadDatagrams=%d for datagrams within the limit", st.BadDatagrams)
	}
}

// payloadAny is n random bytes of any value, '\n' included.
func (e *env) payloadAny(n int) []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(e.rng.Uint32())
	}
	// Keep some letters so upper mode is checked on large datagrams too.
	for i := 0; i < n; i += 3 {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

// perm is a goroutine-safe rand.Perm.
func (e *env) perm(n int) []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rng.Perm(n)
}
