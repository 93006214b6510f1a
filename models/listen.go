package models

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sockbench/sockbench/protocol"
)

// CheckUnixPath checks, without changing anything, that path can be bound
// as a socket of the Unix transport network (unix or unixgram): the
// transport's own rules (protocol.Transport.CheckPath: not empty, at most
// protocol.MaxUnixPath bytes), and a directory that exists. serve calls it
// to refuse a bad --addr before it starts anything, which is why its
// errors carry no package prefix: the caller puts its flag in front.
// PrepareUnixPath calls it before it clears a stale socket.
func CheckUnixPath(path, network string) error {
	tr, err := protocol.ParseTransport(network)
	if err != nil {
		return err
	}
	if err := tr.CheckPath(path); err != nil {
		return err
	}
	dir := filepath.Dir(path)
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s: directory %s does not exist", path, dir)
	case err != nil:
		return fmt.Errorf("%s: %w", path, err)
	case !st.IsDir():
		return fmt.Errorf("%s: %s is not a directory", path, dir)
	}
	return nil
}

// PrepareUnixPath checks that path can be bound as a Unix socket of the
// given network (CheckUnixPath) and clears a stale socket file left by a
// server that died: the file is removed only when it is a socket and
// nothing answers on it. A live server's socket gives ErrSocketInUse;
// anything that is not a socket is never removed.
func PrepareUnixPath(path, network string) error {
	if err := CheckUnixPath(path, network); err != nil {
		return fmt.Errorf("models: %w", err)
	}
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("models: %w", err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("models: %s exists and is not a socket; not removing it", path)
	}
	// Probe with a socket of the server's own type. Whatever the file's
	// type, a connect to a socket nobody is bound to fails with
	// ECONNREFUSED: that, and only that, makes it stale. A connect that
	// succeeds finds a live server; EPROTOTYPE finds a live server of the
	// other type (a stream listener probed with a datagram socket, or the
	// reverse), which is just as much in use.
	c, err := net.DialTimeout(network, path, time.Second)
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("%w: %s", ErrSocketInUse, path)
	case errors.Is(err, syscall.EPROTOTYPE):
		return fmt.Errorf("%w: %s (by a socket of another type)", ErrSocketInUse, path)
	case !errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("models: probing existing socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("models: removing stale socket %s: %w", path, err)
	}
	return nil
}

// SocketFile remembers the socket file a server created so it removes only
// that file on exit, not one a later server put at the same path.
type SocketFile struct {
	Path string
	ino  uint64
}

// ClaimSocketFile sets the permission of the freshly bound socket at path
// and records its identity.
func ClaimSocketFile(path string, mode os.FileMode) (*SocketFile, error) {
	if err := os.Chmod(path, mode); err != nil {
		return nil, fmt.Errorf("models: chmod %s: %w", path, err)
	}
	sf := &SocketFile{Path: path}
	if st, err := os.Lstat(path); err == nil {
		sf.ino = inode(st)
	}
	return sf, nil
}

// Remove deletes the socket file if it is still the one we created.
func (sf *SocketFile) Remove() {
	if sf == nil || sf.Path == "" {
		return
	}
	st, err := os.Lstat(sf.Path)
	if err != nil || st.Mode()&os.ModeSocket == 0 || (sf.ino != 0 && inode(st) != sf.ino) {
		return
	}
	os.Remove(sf.Path)
}

func inode(st os.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return uint64(s.Ino)
	}
	return 0
}

// ListenStream binds a stream listener (tcp or unix) for cfg. For unix it
// clears a stale socket, sets the file mode, and returns the SocketFile to
// remove on exit (nil for tcp). Go's UnixListener would unlink the path on
// Close by itself; we turn that off so removal goes through SocketFile.
func ListenStream(cfg *Config) (net.Listener, *SocketFile, error) {
	if cfg.Transport() == protocol.Unix {
		if err := PrepareUnixPath(cfg.Addr, cfg.Net); err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("unix", cfg.Addr)
		if err != nil {
			return nil, nil, fmt.Errorf("models: %w", err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		sf, err := ClaimSocketFile(cfg.Addr, cfg.SocketMode)
		if err != nil {
			ln.Close()
			os.Remove(cfg.Addr)
			return nil, nil, err
		}
		return ln, sf, nil
	}
	ln, err := net.Listen(cfg.Net, cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("models: %w", err)
	}
	return ln, nil, nil
}

// ListenPacket binds a datagram socket (udp or unixgram) for cfg, with the
// same Unix socket handling as ListenStream.
func ListenPacket(cfg *Config) (net.PacketConn, *SocketFile, error) {
	if cfg.Transport() == protocol.Unixgram {
		if err := PrepareUnixPath(cfg.Addr, cfg.Net); err != nil {
			return nil, nil, err
		}
		pc, err := net.ListenPacket("unixgram", cfg.Addr)
		if err != nil {
			return nil, nil, fmt.Errorf("models: %w", err)
		}
		sf, err := ClaimSocketFile(cfg.Addr, cfg.SocketMode)
		if err != nil {
			pc.Close()
			os.Remove(cfg.Addr)
			return nil, nil, err
		}
		return pc, sf, nil
	}
	pc, err := net.ListenPacket(cfg.Net, cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("models: %w", err)
	}
	return pc, nil, nil
}
