package models

import (
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// failingListener fails its first fails accepts with EMFILE, then hands
// out one end of a pipe; once closed it returns net.ErrClosed.
type failingListener struct {
	fails  int
	calls  []time.Time
	closed atomic.Bool
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.calls = append(l.calls, time.Now())
	if l.closed.Load() {
		return nil, net.ErrClosed
	}
	if len(l.calls) <= l.fails {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	c, _ := net.Pipe()
	return c, nil
}
func (l *failingListener) Close() error   { l.closed.Store(true); return nil }
func (l *failingListener) Addr() net.Addr { return &net.TCPAddr{} }

// TestAcceptor: failed accepts are counted and tried again after 5, 10,
// 20 ms..., never at once; a closed listener ends Accept with
// net.ErrClosed, and Stop ends a backoff early with ErrServerClosed.
func TestAcceptor(t *testing.T) {
	ln := &failingListener{fails: 4}
	var failed atomic.Uint64
	var logs RateLog
	a := Acceptor{Listener: ln, Failed: &failed, Logs: &logs, Log: slog.New(slog.DiscardHandler)}
	c, err := a.Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	c.Close()
	if failed.Load() != 4 || len(ln.calls) != 5 {
		t.Fatalf("%d failures counted in %d calls, want 4 in 5", failed.Load(), len(ln.calls))
	}
	for i := 1; i < len(ln.calls); i++ {
		want := MinBackoff << (i - 1)
		if gap := ln.calls[i].Sub(ln.calls[i-1]); gap < want {
			t.Errorf("try %d came %v after the failure before it, want at least %v", i+1, gap, want)
		}
	}
	if d := a.backoff.Next(); d != MinBackoff {
		t.Errorf("after a success the next backoff is %v, want %v", d, MinBackoff)
	}

	ln.Close()
	if _, err := a.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on a closed listener: %v, want net.ErrClosed", err)
	}

	stop := make(chan struct{})
	slow := &failingListener{fails: 1 << 30}
	b := Acceptor{Listener: slow, Stop: stop, Failed: &failed, Logs: &logs, Log: slog.New(slog.DiscardHandler)}
	b.backoff = Backoff{Min: time.Hour, Max: time.Hour}
	done := make(chan error, 1)
	go func() { _, err := b.Accept(); done <- err }()
	for failed.Load() < 5 {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	select {
	case err := <-done:
		if !errors.Is(err, ErrServerClosed) {
			t.Errorf("Accept stopped in a backoff: %v, want ErrServerClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept still in its backoff 10s after Stop was closed")
	}
}
