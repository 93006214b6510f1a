package threaded

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/protocol"
)

const (
	// writeBatch bounds the replies gathered before one write. With
	// MaxLine it bounds a connection's memory: the line reader holds at
	// most MaxLine bytes and the reply buffer at most about writeBatch.
	writeBatch = 32 << 10
	// lingerTime bounds how long a closing connection reads and discards
	// what the client still sends after the server's FIN (see linger).
	lingerTime = 1500 * time.Millisecond
	// lingerBuf is the size of the discard buffer when the reply buffer
	// is too small to reuse.
	lingerBuf = 4 << 10
)

// errStopping is what conn.Read returns once the server is shutting down.
var errStopping = errors.New("threaded: shutting down")

// conn is one stream connection and the io.Reader its LineReader reads
// through: Read applies the idle timeout and notices shutdown.
type conn struct {
	c    net.Conn
	cfg  *models.Config
	ctr  *models.Counters
	log  *slog.Logger
	idle time.Duration

	stopping atomic.Bool
	mu       sync.Mutex // orders stop against the start of linger
	draining bool
}

func newConn(c net.Conn, cfg *models.Config, ctr *models.Counters, log *slog.Logger) *conn {
	return &conn{c: c, cfg: cfg, ctr: ctr, log: log, idle: cfg.IdleTimeout}
}

// Read reads from the socket, arming the idle timeout before each read.
//
// Subtleness ahead: stop stores the flag and then sets a past read
// deadline. Read sets its idle deadline and then checks the flag, so
// whichever order the two goroutines run in, a Read that starts after stop
// either sees the flag or inherits the past deadline: it never blocks.
func (cn *conn) Read(p []byte) (int, error) {
	if cn.stopping.Load() {
		return 0, errStopping
	}
	if cn.idle > 0 {
		cn.c.SetReadDeadline(time.Now().Add(cn.idle))
		if cn.stopping.Load() {
			return 0, errStopping
		}
	}
	n, err := cn.c.Read(p)
	cn.ctr.BytesIn.Add(uint64(n))
	return n, err
}

// stop asks the connection to finish: a blocked Read returns, the replies
// to lines already read are sent, and the connection closes gracefully.
// Once the connection is lingering it is left alone, so the drain keeps
// its own deadline.
func (cn *conn) stop() {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.draining {
		return
	}
	cn.stopping.Store(true)
	cn.c.SetReadDeadline(aLongTimeAgo)
}

// serve reads request lines and writes replies until the stream ends, a
// line is too long, the idle timeout fires, or stop is called; then it
// closes the connection. ctx cuts short --block waits.
//
// Replies are batched: every complete line already buffered is answered
// into one reply buffer, which is written when no further complete line is
// buffered (LineReader.HasLine), so a pipelining client costs one read and
// one write per batch, not per request. With a handler cost each reply is
// written at once, so a slow handler does not hold earlier replies back.
// In steady state serve allocates nothing per request: the reader's buffer
// and the reply buffer are reused.
func (cn *conn) serve(ctx context.Context) {
	cfg := cn.cfg
	lr := protocol.NewLineReader(cn, cfg.MaxLine)
	flushEach := !cfg.Cost.Zero()
	var out []byte
	pending := 0 // replies in out
	for {
		line, err := lr.Next()
		if err != nil {
			if !cn.write(out, pending) {
				cn.c.Close()
				return
			}
			out = out[:0]
			cn.finish(err, lr.Buffered(), out)
			return
		}
		cfg.Cost.Pay(ctx)
		cfg.Mode.Apply(line) // line aliases the reader's buffer; it is ours until the next Next
		if len(out)+len(line) > writeBatch {
			if !cn.write(out, pending) {
				cn.c.Close()
				return
			}
			out, pending = out[:0], 0
		}
		if len(line) > writeBatch {
			// A long line goes out straight from the reader's buffer.
			if !cn.write(line, 1) {
				cn.c.Close()
				return
			}
		} else {
			out = append(out, line...)
			pending++
		}
		if flushEach || !lr.HasLine() {
			if !cn.write(out, pending) {
				cn.c.Close()
				return
			}
			out, pending = out[:0], 0
		}
	}
}

// write sends b, which holds n replies, and counts them. It reports false
// when the connection is broken.
func (cn *conn) write(b []byte, n int) bool {
	if len(b) == 0 {
		return true
	}
	w, err := cn.c.Write(b)
	cn.ctr.BytesOut.Add(uint64(w))
	if err != nil {
		if !errors.Is(err, net.ErrClosed) {
			cn.ctr.WriteErrors.Add(1)
			cn.log.Debug("write failed; closing connection", "remote", remoteAddr(cn.c), "err", err)
		}
		return false
	}
	cn.ctr.Requests.Add(uint64(n))
	return true
}

// finish counts why reading stopped and closes the connection; every reply
// has been written already.
func (cn *conn) finish(err error, partial int, buf []byte) {
	switch {
	case err == io.EOF:
	case err == io.ErrUnexpectedEOF:
		cn.log.Debug("client closed inside a line; partial line dropped", "remote", remoteAddr(cn.c), "bytes", partial)
	case errors.Is(err, protocol.ErrLineTooLong):
		cn.ctr.LineTooLong.Add(1)
		cn.log.Warn("request line longer than max-line; closing connection",
			"remote", remoteAddr(cn.c), "max_line", cn.cfg.MaxLine)
	case err == errStopping || (errors.Is(err, os.ErrDeadlineExceeded) && cn.stopping.Load()):
		// Shutdown: the requests read so far are answered.
	case errors.Is(err, os.ErrDeadlineExceeded):
		cn.ctr.IdleTimeouts.Add(1)
		cn.log.Debug("idle timeout; closing connection", "remote", remoteAddr(cn.c), "idle_timeout", cn.idle)
	case errors.Is(err, net.ErrClosed):
		// Forced shutdown closed the socket under us.
		return
	default:
		cn.ctr.ReadErrors.Add(1)
		cn.log.Debug("read failed; closing connection", "remote", remoteAddr(cn.c), "err", err)
		cn.c.Close()
		return
	}
	cn.linger(buf)
}

// linger closes the connection without losing replies. Closing a socket
// that still has unread bytes in its receive buffer makes the kernel send
// RST, and a RST can destroy replies the client has not read yet. So:
// send FIN (CloseWrite), read and discard whatever the client still sends
// until it closes too or lingerTime passes, then Close.
func (cn *conn) linger(buf []byte) {
	cn.mu.Lock()
	cn.draining = true
	cn.mu.Unlock()
	defer cn.c.Close()
	cw, ok := cn.c.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	if cap(buf) < lingerBuf {
		buf = make([]byte, lingerBuf)
	}
	buf = buf[:cap(buf)]
	cn.c.SetReadDeadline(time.Now().Add(lingerTime))
	for {
		if _, err := cn.c.Read(buf); err != nil {
			return
		}
	}
}

// remoteAddr names the peer for a log line; Unix clients are usually
// unnamed.
func remoteAddr(c net.Conn) string {
	if a := c.RemoteAddr(); a != nil && a.String() != "" {
		return a.String()
	}
	return "unix"
}
