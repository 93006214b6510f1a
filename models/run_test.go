package models

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// failingServer stops by itself shortly after Start, as a prefork server
// does when its workers crash in a loop.
type failingServer struct {
	done     chan struct{}
	shutdown bool
}

var errCrashed = errors.New("workers crashed")

func (f *failingServer) Start() error {
	go func() { time.Sleep(10 * time.Millisecond); close(f.done) }()
	return nil
}
func (f *failingServer) Addr() string                       { return "127.0.0.1:1" }
func (f *failingServer) Shutdown(ctx context.Context) error { f.shutdown = true; return nil }
func (f *failingServer) Stats() Stats                       { return Stats{} }
func (f *failingServer) Done() <-chan struct{}              { return f.done }
func (f *failingServer) Err() error                         { return errCrashed }

func TestRunEndsWhenServerFails(t *testing.T) {
	cfg := Config{Net: "tcp", Addr: "127.0.0.1:0"}
	if err := cfg.Normalize(); err != nil {
		t.Fatal(err)
	}
	srv := &failingServer{done: make(chan struct{})}
	var ready strings.Builder
	errc := make(chan error, 1)
	go func() { errc <- Run(context.Background(), srv, cfg, &ready) }()
	select {
	case err := <-errc:
		if !errors.Is(err, errCrashed) {
			t.Fatalf("Run = %v, want the server's own error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the server failed")
	}
	if !srv.shutdown {
		t.Error("Run did not release the failed server with Shutdown")
	}
	if !strings.HasPrefix(ready.String(), "ready tcp 127.0.0.1:1 pid=") {
		t.Errorf("ready line = %q", ready.String())
	}
}

func TestRunStopsOnContext(t *testing.T) {
	cfg := Config{Net: "tcp", Addr: "127.0.0.1:0"}
	if err := cfg.Normalize(); err != nil {
		t.Fatal(err)
	}
	srv := &failingServer{done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := struct{ Server }{srv} // hide Failer: a plain server
	if err := Run(ctx, s, cfg, io.Discard); err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
}

// TestNormalizeBounds: a config a server could not run with, or that would
// let a typo exhaust the machine, is refused with an error naming the field.
func TestNormalizeBounds(t *testing.T) {
	base := Config{Net: "tcp", Addr: "127.0.0.1:0"}
	cases := []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Net = "" }, "net must not be empty"},
		{func(c *Config) { c.Net = "sctp" }, `net "sctp" is not a transport`},
		{func(c *Config) { c.Addr = "" }, "addr must not be empty"},
		{func(c *Config) { c.Mode = 7 }, "mode Mode(7) is not a mode"},
		{func(c *Config) { c.Workers = -1 }, "workers must not be negative (got -1)"},
		{func(c *Config) { c.MaxConns = -1 }, "max-conns must not be negative"},
		{func(c *Config) { c.IdleTimeout = -1 }, "idle-timeout must not be negative"},
		{func(c *Config) { c.Grace = -1 }, "grace must not be negative"},
		{func(c *Config) { c.Cost.Work = -1 }, "work must not be negative"},
		{func(c *Config) { c.Cost.Block = -time.Second }, "block must not be negative (got -1s)"},
		{func(c *Config) { c.MaxLine = 1 }, "max-line must be at least 2"},
		{func(c *Config) { c.Workers = MaxWorkers + 1 }, "workers must be at most 1024"},
		{func(c *Config) { c.MaxLine = MaxMaxLine + 1 }, "max-line must be at most"},
		{func(c *Config) { c.MaxBuffered = -1 }, "max-buffered must not be negative"},
		{func(c *Config) { c.MaxBuffered = 1000 }, "max-buffered must be 0 (no bound) or at least max-line"},
	}
	for _, tc := range cases {
		cfg := base
		tc.mod(&cfg)
		err := cfg.Normalize()
		var ce *ConfigError
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ce) || !strings.HasPrefix(tc.want, ce.Field+" ") {
			t.Errorf("Normalize(%+v) = %v, want a ConfigError saying %q", cfg, err, tc.want)
		}
	}
	for _, n := range []string{"", "sctp"} {
		cfg := base
		cfg.Net = n
		if err := cfg.Normalize(); !errors.Is(err, ErrUnsupportedNet) {
			t.Errorf("net %q: %v does not wrap ErrUnsupportedNet", n, err)
		}
	}
	cfg := base
	cfg.Workers, cfg.MaxLine = MaxWorkers, MaxMaxLine
	if err := cfg.Normalize(); err != nil {
		t.Errorf("the largest allowed workers and max-line: %v", err)
	}
}

// TestNormalizeLineTimeout: 0 is the default bound, a negative one none,
// and LineBound says which.
func TestNormalizeLineTimeout(t *testing.T) {
	for _, tc := range []struct{ in, bound time.Duration }{
		{0, DefaultLineTimeout},
		{time.Second, time.Second},
		{-1, 0},
	} {
		cfg := Config{Net: "tcp", Addr: "127.0.0.1:0", LineTimeout: tc.in}
		if err := cfg.Normalize(); err != nil {
			t.Fatal(err)
		}
		if got := cfg.LineBound(); got != tc.bound {
			t.Errorf("LineTimeout %v: LineBound %v, want %v", tc.in, got, tc.bound)
		}
	}
}
