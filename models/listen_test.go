package models

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockbench/sockbench/protocol"
)

// shortDir is a temp directory with a path short enough for sun_path.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sbm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestPrepareUnixPath: a stale socket of either type is cleared for a
// server of either type; a live socket of either type is left alone and
// reported as in use, whatever type the new server wants; a file that is
// not a socket, a missing directory and an over-long path are errors.
func TestPrepareUnixPath(t *testing.T) {
	for _, existing := range []string{"unix", "unixgram"} {
		for _, network := range []string{"unix", "unixgram"} {
			t.Run(existing+"-then-"+network, func(t *testing.T) {
				path := filepath.Join(shortDir(t), "s.sock")
				closeIt := bindUnix(t, existing, path)

				err := PrepareUnixPath(path, network)
				if !errors.Is(err, ErrSocketInUse) {
					t.Errorf("live %s socket, new %s server: err = %v, want ErrSocketInUse", existing, network, err)
				}
				if _, err := os.Lstat(path); err != nil {
					t.Fatalf("the live %s socket's file was removed: %v", existing, err)
				}

				closeIt() // its file stays: now stale
				if err := PrepareUnixPath(path, network); err != nil {
					t.Errorf("stale %s socket, new %s server: %v", existing, network, err)
				}
				if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("stale socket file not removed (lstat: %v)", err)
				}
			})
		}
	}

	dir := shortDir(t)
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := PrepareUnixPath(plain, "unix"); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file: err = %v, want 'not a socket'", err)
	}
	if b, err := os.ReadFile(plain); err != nil || string(b) != "keep" {
		t.Errorf("regular file changed: %q, %v", b, err)
	}
	if err := PrepareUnixPath(filepath.Join(dir, "missing", "s.sock"), "unix"); err == nil {
		t.Error("missing directory: no error")
	}
	if err := PrepareUnixPath("/tmp/"+strings.Repeat("x", protocol.MaxUnixPath), "unix"); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("over-long path: err = %v", err)
	}
	if err := PrepareUnixPath(filepath.Join(dir, "s.sock"), "tcp"); err == nil {
		t.Error("a tcp address taken for a socket path")
	}
	// CheckUnixPath changes nothing: a stale socket is still there after it.
	stale := filepath.Join(dir, "stale.sock")
	bindUnix(t, "unix", stale)()
	if err := CheckUnixPath(stale, "unix"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(stale); err != nil {
		t.Errorf("CheckUnixPath removed the stale socket: %v", err)
	}
	if err := CheckUnixPath(filepath.Join(plain, "s.sock"), "unixgram"); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file as directory: err = %v", err)
	}
}

// bindUnix binds a socket of network at path and returns a func that
// closes it and leaves its file behind, as a crashed server would.
func bindUnix(t *testing.T, network, path string) func() {
	t.Helper()
	if network == "unix" {
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		t.Cleanup(func() { ln.Close() })
		return func() { ln.Close() }
	}
	pc, err := net.ListenPacket("unixgram", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return func() { pc.Close() }
}
