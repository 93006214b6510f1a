//go:build linux

package bare

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockbench/sockbench/models"
)

// TestLoopFailure: when waiting for events fails, the loop closes
// everything and says so through models.Failer, instead of leaving a
// server that accepts nothing. The failure is made by putting a pipe in
// place of the loop's epoll descriptor.
func TestLoopFailure(t *testing.T) {
	srv, err := models.New(Name, models.Config{Net: "tcp", Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	s := srv.(*server)
	var f models.Failer = s
	if f.Err() != nil {
		t.Fatalf("Err before any failure: %v", f.Err())
	}
	var pp [2]int
	if err := unix.Pipe2(pp[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pp[1])
	if err := unix.Dup3(pp[0], s.l.p.fd, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	unix.Close(pp[0])
	s.l.wake() // the wait in progress returns; the next one fails
	select {
	case <-f.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the loop did not report its failure")
	}
	if f.Err() == nil {
		t.Error("Done closed, but Err is nil")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown after the failure: %v", err)
	}
}
