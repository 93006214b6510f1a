package models

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// ReadyLine is the one line a server prints on stdout once it accepts
// traffic; the orchestrator and the conformance suite wait for it.
func ReadyLine(network, addr string) string {
	return fmt.Sprintf("ready %s %s pid=%d", network, addr, os.Getpid())
}

// Failer is implemented by servers that can fail on their own while running
// (prefork ends itself when its workers crash in a loop). Done is closed
// when the server has stopped by itself; Err says why.
type Failer interface {
	Done() <-chan struct{}
	Err() error
}

// Run starts srv, prints the ready line to ready, and serves until SIGTERM
// or SIGINT arrives or ctx ends. It then shuts the server down within
// cfg.Grace and logs the final stats. A server that implements Failer and
// stops by itself ends Run with its error. It is the body of `sockbench serve`
// and of every server the conformance suite runs in a subprocess.
func Run(ctx context.Context, srv Server, cfg Config, ready io.Writer) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	if err := srv.Start(); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(ready, ReadyLine(cfg.Net, srv.Addr())); err != nil {
		cfg.Logger.Warn("could not print the ready line", "err", err)
	}
	if f, ok := ready.(*os.File); ok {
		f.Sync()
	}
	var failed <-chan struct{}
	f, canFail := srv.(Failer)
	if canFail {
		failed = f.Done()
	}
	select {
	case <-failed:
		err := f.Err()
		if err == nil {
			err = errors.New("models: server stopped by itself")
		}
		sctx, cancel := context.WithTimeout(context.Background(), cfg.Grace)
		defer cancel()
		srv.Shutdown(sctx) // release what is left; the failure is the error that counts
		cfg.Logger.Error("server failed", "err", err, "stats", srv.Stats().String())
		return err
	case s := <-sigs:
		cfg.Logger.Info("shutting down", "signal", s.String(), "grace", cfg.Grace)
	case <-ctx.Done():
		cfg.Logger.Info("shutting down", "reason", context.Cause(ctx))
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	cfg.Logger.Info("stopped", "stats", srv.Stats().String())
	if err != nil {
		return fmt.Errorf("models: shutdown did not finish within grace %v: %w", cfg.Grace, err)
	}
	return nil
}
