package modeltest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockbench/sockbench/protocol"
)

// Benchmark measures one model in process over loopback: b.N requests of
// size bytes (a stream request's size counts its '\n') spread over conns
// connections, each in a closed loop (one request outstanding). It reports
// req/s and, through b.ReportAllocs, allocations per request. The client
// side allocates nothing once connected (buffers are made up front,
// deadlines are set every few hundred requests), so the allocation figure
// is the server's (the client's buffers are made before the timer starts).
// Every reply is checked; a datagram that gets no reply
// within a second is sent again and counted in the "resent/op" metric.
func Benchmark(b *testing.B, model, network string, mode protocol.Mode, conns, size int, opts ...Option) {
	b.Helper()
	if conns < 1 {
		b.Fatalf("modeltest.Benchmark: conns = %d, want at least 1", conns)
	}
	stream := transport(network).IsStream()
	if size < 1 || (!stream && size > protocol.MaxDatagram) {
		b.Fatalf("modeltest.Benchmark: size = %d, want 1..%d", size, protocol.MaxDatagram)
	}
	o := newOptions(opts)
	e := newEnv(b, model, network, mode, o)
	s := e.start(nil)

	req := e.payload(size)
	if stream {
		req[size-1] = '\n'
	}
	want := e.reply(req)
	clients := make([]net.Conn, conns)
	for i := range clients {
		clients[i] = e.mustDial(s.addr)
		// Warm up: the connection is accepted and answers once.
		if err := e.exchange(clients[i], req); err != nil {
			b.Fatalf("warm-up request on connection %d: %v", i, err)
		}
	}

	var (
		resent   atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) { errOnce.Do(func() { firstErr = err }) }
	bufs := make([][]byte, conns)
	for i := range bufs {
		bufs[i] = make([]byte, protocol.MaxDatagram+1)
	}
	b.ReportAllocs()
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	for i, c := range clients {
		n := b.N / conns
		if i < b.N%conns {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if stream {
				err = benchStream(c, req, want, bufs[i], n, e.d(opTimeout))
			} else {
				err = benchDgram(c, req, want, bufs[i], n, e.d(time.Second), &resent)
			}
			if err != nil {
				fail(fmt.Errorf("connection %d: %w", i, err))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	if !stream {
		b.ReportMetric(float64(resent.Load())/float64(b.N), "resent/op")
	}
}

// deadlineEvery is how many requests share one deadline in the benchmark
// loops; refreshing it per request would cost a clock read each time.
const deadlineEvery = 256

// benchStream runs n closed-loop requests; buf holds at least one reply.
func benchStream(c net.Conn, req, want, buf []byte, n int, timeout time.Duration) error {
	buf = buf[:len(want)]
	for i := range n {
		if i%deadlineEvery == 0 {
			c.SetDeadline(time.Now().Add(timeout))
		}
		if _, err := c.Write(req); err != nil {
			return fmt.Errorf("request %d: write: %w", i, err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return fmt.Errorf("request %d: read: %w", i, err)
		}
		if !bytes.Equal(buf, want) {
			return fmt.Errorf("request %d: %w", i, diff(buf, want))
		}
	}
	return nil
}

// benchDgram runs n closed-loop datagram requests; buf holds a datagram
// one byte larger than the largest, so an oversized reply shows.
func benchDgram(c net.Conn, req, want, buf []byte, n int, wait time.Duration, resent *atomic.Int64) error {
	for i := range n {
		tries := 0
		for {
			if _, err := c.Write(req); err != nil {
				return fmt.Errorf("request %d: write: %w", i, err)
			}
			c.SetReadDeadline(time.Now().Add(wait))
			m, err := c.Read(buf)
			if err == nil {
				if !bytes.Equal(buf[:m], want) {
					return fmt.Errorf("request %d: %w", i, diff(buf[:m], want))
				}
				break
			}
			if !IsTimeout(err) {
				return fmt.Errorf("request %d: read: %w", i, err)
			}
			if tries++; tries == dgramTries {
				return fmt.Errorf("request %d: no reply after %d tries", i, tries)
			}
			resent.Add(1)
		}
	}
	return nil
}
