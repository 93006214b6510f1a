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
	// shrinkAbove: with Config.MaxBuffered set, a connection's line and
	// reply buffers larger than this are let go once empty, so a client
	// that sent one long line does not keep a max-line buffer (64 KiB by
	// default) for the rest of its life outside the account. Without the
	// bound they are kept, which is cheaper for clients that keep sending
	// long lines.
	shrinkAbove = 16 << 10
)

// Errors conn.Read returns for reasons of the server's own.
var (
	errStopping     = errors.New("threaded: shutting down")
	errOverBuffered = errors.New("threaded: closed for holding the most past max-buffered")
)

// conn is one stream connection and the io.Reader its LineReader reads
// through: Read applies the idle and line timeouts, accounts the bytes the
// connection holds, and notices shutdown.
type conn struct {
	c    net.Conn
	cfg  *models.Config
	ctr  *models.Counters
	log  *slog.Logger
	logs *models.RateLog
	idle time.Duration

	// Owned by the connection's goroutine.
	lr        *protocol.LineReader
	lineTO    time.Duration // Config.LineBound
	lines     uint64        // lines taken so far
	lineSeq   uint64        // lines taken when the partial line now held began
	lineDL    time.Time     // when that line must be complete; zero: no partial line
	dl        time.Time     // the read deadline last set
	lineBound bool          // dl is lineDL (not the idle timeout)
	writeTO   time.Duration // Config.WriteBound
	wdl       time.Time     // the write deadline last set

	// Config.MaxBuffered: nil without a bound.
	bufs *models.Buffers
	hold models.Hold
	shed func(*conn) bool // the server's; true: this connection was closed

	stopping atomic.Bool
	mu       sync.Mutex // orders stop against the start of linger
	draining bool
}

func newConn(c net.Conn, cfg *models.Config, ctr *models.Counters, log *slog.Logger, logs *models.RateLog) *conn {
	return &conn{c: c, cfg: cfg, ctr: ctr, log: log, logs: logs, idle: cfg.IdleTimeout, lineTO: cfg.LineBound(), writeTO: cfg.WriteBound()}
}

// Hold and Remote make a conn a models.Holder.
func (cn *conn) Hold() *models.Hold { return &cn.hold }
func (cn *conn) Remote() string     { return remoteAddr(cn.c) }

// Read reads from the socket, arming the idle and line timeouts first.
// It is called only when the LineReader holds no complete line, so what
// it holds (Buffered) is the start of a line not yet complete.
//
// The deadline is set only when it changes: with no idle timeout and no
// partial line (whole lines in each read, the usual case) Read makes no
// call but the read. A partial line gets its deadline when Read first sees
// it, and keeps it however many reads it takes to complete: one timer per
// connection, moved per line, never per byte.
//
// Subtleness ahead: stop stores the flag and then sets a past read
// deadline. Read sets its deadline and then checks the flag, so whichever
// order the two goroutines run in, a Read that starts after stop either
// sees the flag or inherits the past deadline: it never blocks.
func (cn *conn) Read(p []byte) (int, error) {
	if cn.stopping.Load() {
		return 0, errStopping
	}
	partial := cn.lr.Buffered()
	if cn.bufs != nil && cn.bufs.Set(&cn.hold, partial) && cn.shed(cn) {
		return 0, errOverBuffered
	}
	if dl := cn.deadline(partial > 0); !dl.Equal(cn.dl) {
		cn.dl = dl
		cn.c.SetReadDeadline(dl)
		if cn.stopping.Load() {
			return 0, errStopping
		}
	}
	n, err := cn.c.Read(p)
	cn.ctr.BytesIn.Add(uint64(n))
	return n, err
}

// deadline is the read deadline for the next read: the idle timeout from
// now, or the partial line's deadline if that comes first.
func (cn *conn) deadline(partial bool) time.Time {
	var now, dl time.Time
	if cn.idle > 0 {
		now = time.Now()
		dl = now.Add(cn.idle)
	}
	cn.lineBound = false
	if !partial || cn.lineTO <= 0 {
		cn.lineDL = time.Time{}
		return dl
	}
	if cn.lineDL.IsZero() || cn.lineSeq != cn.lines {
		// A new line: it began in the read that just returned.
		if now.IsZero() {
			now = time.Now()
		}
		cn.lineDL, cn.lineSeq = now.Add(cn.lineTO), cn.lines
	}
	if dl.IsZero() || cn.lineDL.Before(dl) {
		dl, cn.lineBound = cn.lineDL, true
	}
	return dl
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
	cn.lr = lr
	flushEach := !cfg.Cost.Zero()
	var out []byte
	pending := 0 // replies in out
	for {
		if cn.bufs != nil && lr.Buffered() == 0 {
			if lr.Cap() > shrinkAbove {
				lr = protocol.NewLineReader(cn, cfg.MaxLine)
				cn.lr = lr
			}
			if cap(out) > shrinkAbove {
				out = nil
			}
		}
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
		cn.lines++
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
// when the connection is broken, or closed for holding the most past
// Config.MaxBuffered: while a write waits for a client that does not read,
// its bytes, and the lines read and not answered yet, are held.
func (cn *conn) write(b []byte, n int) bool {
	if len(b) == 0 {
		return true
	}
	if cn.bufs != nil {
		if cn.bufs.Set(&cn.hold, cn.lr.Buffered()+len(b)) && cn.shed(cn) {
			return false
		}
		defer cn.bufs.Set(&cn.hold, cn.lr.Buffered())
	}
	cn.armWrite()
	w, err := cn.c.Write(b)
	cn.ctr.BytesOut.Add(uint64(w))
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			cn.ctr.WriteTimeouts.Add(1)
			cn.logs.Warn(cn.log, "client left its replies untaken past write-timeout; closing connection",
				"remote", remoteAddr(cn.c), "write_timeout", cn.writeTO, "unsent", len(b)-w)
			return false
		}
		if !errors.Is(err, net.ErrClosed) {
			cn.ctr.WriteErrors.Add(1)
			cn.logs.Debug(cn.log, "write failed; closing connection", "remote", remoteAddr(cn.c), "err", err)
		}
		return false
	}
	cn.ctr.Requests.Add(uint64(n))
	return true
}

// armWrite keeps a write deadline Config.WriteBound ahead of a write
// about to start, so a client that takes none of its replies cannot hold
// the connection (and its place under MaxConns) for ever. The deadline is
// renewed lazily, once an eighth of the bound has gone by since it was
// set: a write that blocks is cut between 7/8 of the bound and the bound
// after it began, and a connection writing all the time moves its
// deadline (a timer) a few times a minute, not once per write.
func (cn *conn) armWrite() {
	if cn.writeTO <= 0 {
		return
	}
	if now := time.Now(); cn.wdl.Sub(now) < cn.writeTO-cn.writeTO/8 {
		cn.wdl = now.Add(cn.writeTO)
		cn.c.SetWriteDeadline(cn.wdl)
	}
}

// finish counts why reading stopped and closes the connection; every reply
// has been written already.
func (cn *conn) finish(err error, partial int, buf []byte) {
	switch {
	case err == io.EOF:
	case err == io.ErrUnexpectedEOF:
		cn.logs.Debug(cn.log, "client closed inside a line; partial line dropped", "remote", remoteAddr(cn.c), "bytes", partial)
	case errors.Is(err, protocol.ErrLineTooLong):
		cn.ctr.LineTooLong.Add(1)
		cn.logs.Warn(cn.log, "request line longer than max-line; closing connection",
			"remote", remoteAddr(cn.c), "max_line", cn.cfg.MaxLine)
	case err == errStopping || (errors.Is(err, os.ErrDeadlineExceeded) && cn.stopping.Load()):
		// Shutdown: the requests read so far are answered.
	case err == errOverBuffered:
		// Counted and logged by shed; a client holding that much gets no
		// lingering close.
		cn.c.Close()
		return
	case errors.Is(err, os.ErrDeadlineExceeded) && cn.lineBound:
		cn.ctr.LineTimeouts.Add(1)
		cn.logs.Warn(cn.log, "request line not complete within line-timeout; closing connection",
			"remote", remoteAddr(cn.c), "line_timeout", cn.lineTO, "bytes", partial)
	case errors.Is(err, os.ErrDeadlineExceeded):
		cn.ctr.IdleTimeouts.Add(1)
		cn.logs.Debug(cn.log, "idle timeout; closing connection", "remote", remoteAddr(cn.c), "idle_timeout", cn.idle)
	case errors.Is(err, net.ErrClosed):
		// Forced shutdown, or shed for another connection's growth,
		// closed the socket under us.
		return
	default:
		cn.ctr.ReadErrors.Add(1)
		cn.logs.Debug(cn.log, "read failed; closing connection", "remote", remoteAddr(cn.c), "err", err)
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
