package models

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// TestSocketFileNeverWider: under umask 000 a socket file, watched by a
// goroutine polling its mode from before the bind, is never seen wider
// than the configured mode, for either type, whichever way it is bound:
// ListenStream and ListenPacket (fchmod before bind on Linux), and the
// portable way, in a private directory then linked into place, or under a
// narrowed umask for a path too long for that. Bound in place and chmod'ed
// after, it was seen at 0777 in most starts.
func TestSocketFileNeverWider(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	short := shortDir(t)
	long := filepath.Join(short, strings.Repeat("d", protocol.MaxUnixPath-len(short)-12))
	if err := os.Mkdir(long, 0o700); err != nil {
		t.Fatal(err)
	}
	mode := os.FileMode(0o640)
	listen := func(network, path string) (io.Closer, *SocketFile, error) {
		cfg := Config{Net: network, Addr: path, SocketMode: mode}
		if network == "unix" {
			return ListenStream(&cfg)
		}
		return ListenPacket(&cfg)
	}
	private := func(network, path string) (io.Closer, *SocketFile, error) {
		return bindUnixPrivately(path, network, mode)
	}
	for _, tc := range []struct {
		name string
		dir  string
		bind func(network, path string) (io.Closer, *SocketFile, error)
	}{
		{"listen", short, listen},
		{"private", short, private},
		{"private, long path", long, private},
	} {
		for _, network := range []string{"unix", "unixgram"} {
			path := filepath.Join(tc.dir, "s.sock")
			widest := os.FileMode(0)
			for range 30 {
				stop := make(chan struct{})
				polling := make(chan struct{})
				seen := make(chan os.FileMode)
				go func() {
					var w os.FileMode
					for n := 0; ; n++ {
						select {
						case <-stop:
							seen <- w
							return
						default:
						}
						if st, err := os.Lstat(path); err == nil {
							w |= st.Mode().Perm()
						}
						if n == 0 {
							close(polling)
						}
					}
				}()
				<-polling
				c, sf, err := tc.bind(network, path)
				close(stop)
				widest |= <-seen
				if err != nil {
					t.Fatalf("%s %s at %s: %v", tc.name, network, path, err)
				}
				if st, err := os.Lstat(path); err != nil || st.Mode().Perm() != mode || st.Mode()&os.ModeSocket == 0 {
					t.Fatalf("%s %s: socket file after bind: %v, %v", tc.name, network, st, err)
				}
				c.Close()
				sf.Remove()
			}
			if widest&^mode != 0 {
				t.Errorf("%s %s, path of %d bytes: socket file seen with mode %v under umask 000, wider than %v", tc.name, network, len(path), widest, mode)
			}
			if ents, _ := os.ReadDir(tc.dir); len(ents) > 1 {
				t.Errorf("%s %s: left in the directory: %v", tc.name, network, ents)
			}
		}
	}
}

// TestListenAddr: a Unix listener or datagram socket reports the path it
// was asked for, whichever way it was bound.
func TestListenAddr(t *testing.T) {
	path := filepath.Join(shortDir(t), "s.sock")
	cfg := Config{Net: "unix", Addr: path, SocketMode: 0o600}
	ln, sf, err := ListenStream(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ln.Addr().String() != path {
		t.Errorf("listener Addr %q, want %q", ln.Addr(), path)
	}
	ln.Close()
	sf.Remove()
	c, sf, err := bindUnixPrivately(path, "unixgram", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Remove()
	defer c.Close()
	if got := (&unixPacketConn{c.(*net.UnixConn), &net.UnixAddr{Name: path, Net: "unixgram"}}).LocalAddr().String(); got != path {
		t.Errorf("LocalAddr %q, want %q", got, path)
	}
}

// TestBindDoesNotReplace: a file that appears at the path while the
// server binds privately is not replaced; the bind reports the path in use.
func TestBindDoesNotReplace(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "s.sock")
	// bindUnixPrivately runs once PrepareUnixPath has found the path
	// free: a file there now is one that appeared in between.
	if err := os.WriteFile(path, []byte("someone else's"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := bindUnixPrivately(path, "unix", 0o600)
	if !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("err = %v, want ErrSocketInUse", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "someone else's" {
		t.Fatalf("the file at the path was replaced: %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left in the directory: %v", ents)
	}
}
