package models

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
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
// and records its identity. A socket bound with nothing more than
// net.Listen is wider than mode between the bind and the chmod (the
// umask's mode, 0777 under umask 000); ListenStream and ListenPacket bind
// so that it never is (see bindUnixSocket).
func ClaimSocketFile(path string, mode os.FileMode) (*SocketFile, error) {
	if err := os.Chmod(path, mode); err != nil {
		return nil, fmt.Errorf("models: chmod %s: %w", path, err)
	}
	return socketFileAt(path), nil
}

// socketFileAt records the identity of the socket file at path.
func socketFileAt(path string) *SocketFile {
	sf := &SocketFile{Path: path}
	if st, err := os.Lstat(path); err == nil {
		sf.ino = inode(st)
	}
	return sf
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

// bindUnixSocket binds a Unix socket of network at path whose file is never
// wider than mode, not even for an instant, and returns it.
//
// Subtleness ahead: bind(2) creates the file with the socket's own mode
// (0777) less the umask, and a chmod after it comes too late: a server
// bound that way was seen at 0777 under umask 000 in 23 starts of 30 by a
// process watching the path, long enough for another user to connect. On
// Linux the socket's own mode is that of its inode, which fchmod(2) on the
// socket sets before the bind: the file is then created with mode less
// the umask, never wider, and the chmod after it only restores bits the
// umask took. The socket is bound at path itself, so tools (ss -x,
// /proc/net/unix, lsof) and getsockname know it by its name. Where fchmod
// on a socket is refused (the BSDs and macOS), bindUnixPrivately does it
// the portable way.
func bindUnixSocket(path, network string, mode os.FileMode) (io.Closer, *SocketFile, error) {
	fchmodRefused := false
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var ferr error
		if err := rc.Control(func(fd uintptr) { ferr = syscall.Fchmod(int(fd), uint32(mode.Perm())) }); err != nil {
			return err
		}
		fchmodRefused = ferr != nil
		return ferr
	}}
	c, err := listenUnix(lc, network, path)
	if fchmodRefused {
		return bindUnixPrivately(path, network, mode)
	}
	return claimBound(c, err, path, mode)
}

// claimBound ends a bind at path: the listen's error, or the socket file
// claimed with mode (ClaimSocketFile), the socket closed and the file
// removed if that fails.
func claimBound(c io.Closer, err error, path string, mode os.FileMode) (io.Closer, *SocketFile, error) {
	if err != nil {
		return nil, nil, fmt.Errorf("models: %w", err)
	}
	sf, err := ClaimSocketFile(path, mode)
	if err != nil {
		c.Close()
		os.Remove(path)
		return nil, nil, err
	}
	return c, sf, nil
}

// listenUnix binds a Unix socket of network at path with lc. A stream
// listener will not unlink its path on Close: removal goes through
// SocketFile, which checks the file is still ours.
func listenUnix(lc net.ListenConfig, network, path string) (io.Closer, error) {
	if network == "unix" {
		ln, err := lc.Listen(context.Background(), network, path)
		if err != nil {
			return nil, err
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		return ln, nil
	}
	return lc.ListenPacket(context.Background(), network, path)
}

// bindUnixPrivately is bindUnixSocket where fchmod on a socket is refused: the
// socket is bound inside a fresh directory of mode 0700 next to path (the
// same filesystem), chmod'ed there, where nobody else can reach it, then
// hard-linked to path, which fails if anything has appeared at path
// meanwhile (rename would replace it: a server that started in between
// would lose its socket), and the private name and directory removed. The
// socket keeps its private name as its own address (getsockname, the
// source of unixgram replies, what ss -x shows), which ListenStream and
// ListenPacket hide behind path.
//
// When the private name would be longer than sun_path allows (a path
// within about ten bytes of protocol.MaxUnixPath), it binds in place under a umask
// that leaves exactly mode, and restores the umask after. The umask is the
// process's, so a file another goroutine creates in that instant gets
// mode's bits too: a narrower file, never a wider socket.
func bindUnixPrivately(path, network string, mode os.FileMode) (io.Closer, *SocketFile, error) {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if len(path)-len(name)+len(".sb0123456789/s") > protocol.MaxUnixPath {
		return bindUnderUmask(path, network, mode)
	}
	private, err := os.MkdirTemp(dir, ".sb")
	if err != nil {
		return nil, nil, fmt.Errorf("models: private directory for binding %s: %w", path, err)
	}
	defer os.RemoveAll(private)
	tmp := filepath.Join(private, "s")
	c, err := listenUnix(net.ListenConfig{}, network, tmp)
	if err != nil {
		return nil, nil, fmt.Errorf("models: %w", err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("models: chmod %s: %w", tmp, err)
	}
	if err := os.Link(tmp, path); err != nil {
		c.Close()
		if errors.Is(err, os.ErrExist) {
			return nil, nil, fmt.Errorf("%w: %s (created while this server was binding)", ErrSocketInUse, path)
		}
		return nil, nil, fmt.Errorf("models: %w", err)
	}
	return c, socketFileAt(path), nil
}

// umaskMu serialises this package's umask changes.
var umaskMu sync.Mutex

func bindUnderUmask(path, network string, mode os.FileMode) (io.Closer, *SocketFile, error) {
	umaskMu.Lock()
	old := syscall.Umask(int(0o777 &^ mode.Perm()))
	c, err := listenUnix(net.ListenConfig{}, network, path)
	syscall.Umask(old)
	umaskMu.Unlock()
	// The umask only narrows: claimBound sets mode's bits exactly (0o7xxx
	// ones too).
	return claimBound(c, err, path, mode)
}

// unixListener is a Unix listener that reports the path it was asked for
// as its address, not the private name bindUnixPrivately bound it under.
type unixListener struct {
	*net.UnixListener
	addr *net.UnixAddr
}

func (l *unixListener) Addr() net.Addr { return l.addr }

// unixPacketConn is the same for a unixgram socket.
type unixPacketConn struct {
	*net.UnixConn
	addr *net.UnixAddr
}

func (c *unixPacketConn) LocalAddr() net.Addr { return c.addr }

// ListenStream binds a stream listener (tcp or unix) for cfg. For unix it
// clears a stale socket, creates the file never wider than cfg.SocketMode
// (see bindUnixSocket), and returns the SocketFile to remove on exit (nil for
// tcp); the listener's Addr is cfg.Addr. Go's UnixListener would unlink
// its path on Close by itself; we turn that off so removal goes through
// SocketFile.
func ListenStream(cfg *Config) (net.Listener, *SocketFile, error) {
	if cfg.Transport() == protocol.Unix {
		c, sf, err := listenUnixPath(cfg)
		if err != nil {
			return nil, nil, err
		}
		ln := c.(*net.UnixListener)
		if ln.Addr().String() != cfg.Addr {
			return &unixListener{ln, &net.UnixAddr{Name: cfg.Addr, Net: "unix"}}, sf, nil
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
		c, sf, err := listenUnixPath(cfg)
		if err != nil {
			return nil, nil, err
		}
		pc := c.(*net.UnixConn)
		if pc.LocalAddr().String() != cfg.Addr {
			return &unixPacketConn{pc, &net.UnixAddr{Name: cfg.Addr, Net: "unixgram"}}, sf, nil
		}
		return pc, sf, nil
	}
	pc, err := net.ListenPacket(cfg.Net, cfg.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("models: %w", err)
	}
	return pc, nil, nil
}

// listenUnixPath clears a stale socket at cfg.Addr (PrepareUnixPath) and
// binds a new one of cfg.Net there, never wider than cfg.SocketMode
// (bindUnixSocket): the Unix half of ListenStream and ListenPacket.
func listenUnixPath(cfg *Config) (io.Closer, *SocketFile, error) {
	if err := PrepareUnixPath(cfg.Addr, cfg.Net); err != nil {
		return nil, nil, err
	}
	return bindUnixSocket(cfg.Addr, cfg.Net, cfg.SocketMode)
}
