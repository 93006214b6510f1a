package modeltest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/protocol"
)

// The reference server is a small, deliberately plain, correct model: a
// goroutine per connection, lingering close, backoff on accept errors. The
// suite runs against it to show it can pass; its broken variants (the bug
// fields) show each check can fail.

// bugs are the ways a broken variant misbehaves.
type bugs struct {
	upperInEcho      bool // echo mode upper-cases
	dropOnShutdown   bool // Shutdown closes at once, losing replies counted but not yet written
	noLinger         bool // closes with unread bytes pending (the peer may see RST)
	halfCloseDrops   bool // a client's FIN makes it drop the replies not yet written
	noMaxLine        bool // never closes a connection for a long line (and buffers nothing)
	noIdleTimeout    bool // ignores Config.IdleTimeout
	noMaxConns       bool // ignores Config.MaxConns
	spinOnAcceptErr  bool // retries a failed accept at once, forever
	leakPerConn      bool // leaves a goroutine behind per connection until Shutdown
	keepSocketFile   bool // leaves the Unix socket file behind
	stealSocket      bool // removes any existing socket file, live or not
	slowIdleShutdown bool // Shutdown waits for idle connections instead of closing them
	activeOnReset    bool // forgets to decrement Active when a read fails
	maxLineOffByOne  bool // rejects a line of exactly max-line bytes
	smallDgramBuf    bool // reads datagrams into an 8 KiB buffer
	ignoreCost       bool // never pays Config.Cost
	serialCost       bool // pays Config.Cost under one server-wide lock
	reusePort        bool // binds IP sockets with SO_REUSEPORT
	orphan           bool // starts a helper process and never stops it
	unicodeUpper     bool // upper mode uses bytes.ToUpper (Unicode, not ASCII only)
	readIsLine       bool // takes each read for whole lines: a fragment is answered as a line
	serial           bool // serves one connection at a time
	closeAllOnLong   bool // a line over max-line closes every connection
	replyFirstPeer   bool // sends every datagram reply to the first sender it saw
	stopOnAcceptErr  bool // a failed accept ends the accept loop for good
	leakFDPerConn    bool // keeps a duplicate fd of every connection until Shutdown
	idleFromAccept   bool // arms the idle timeout once, at accept: busy clients are cut off too
	forgetOnShutdown bool // at shutdown, drops the requests it has read but not answered (uncounted)
}

var refVariants = map[string]bugs{
	"modeltest-reference":                  {},
	"modeltest-broken-upper-in-echo":       {upperInEcho: true},
	"modeltest-broken-drop-on-shutdown":    {dropOnShutdown: true},
	"modeltest-broken-no-linger":           {noLinger: true},
	"modeltest-broken-half-close":          {halfCloseDrops: true},
	"modeltest-broken-no-max-line":         {noMaxLine: true},
	"modeltest-broken-no-idle-timeout":     {noIdleTimeout: true},
	"modeltest-broken-no-max-conns":        {noMaxConns: true},
	"modeltest-broken-spin-on-emfile":      {spinOnAcceptErr: true},
	"modeltest-broken-leak-per-conn":       {leakPerConn: true},
	"modeltest-broken-keep-socket-file":    {keepSocketFile: true},
	"modeltest-broken-steal-socket":        {stealSocket: true},
	"modeltest-broken-slow-idle-shutdown":  {slowIdleShutdown: true},
	"modeltest-broken-active-on-reset":     {activeOnReset: true},
	"modeltest-broken-max-line-off-by-one": {maxLineOffByOne: true},
	"modeltest-broken-small-dgram-buf":     {smallDgramBuf: true},
	"modeltest-broken-ignore-cost":         {ignoreCost: true},
	"modeltest-broken-serial-cost":         {serialCost: true},
	"modeltest-broken-reuse-port":          {reusePort: true},
	"modeltest-broken-orphan":              {orphan: true},
	"modeltest-broken-unicode-upper":       {unicodeUpper: true},
	"modeltest-broken-read-is-line":        {readIsLine: true},
	"modeltest-broken-serial":              {serial: true},
	"modeltest-broken-close-all-on-long":   {closeAllOnLong: true},
	"modeltest-broken-reply-first-peer":    {replyFirstPeer: true},
	"modeltest-broken-stop-on-accept-err":  {stopOnAcceptErr: true},
	"modeltest-broken-leak-fd-per-conn":    {leakFDPerConn: true},
	"modeltest-broken-idle-from-accept":    {idleFromAccept: true},
	"modeltest-broken-forget-on-shutdown":  {forgetOnShutdown: true},
}

func init() {
	for name, b := range refVariants {
		models.Register(name, func(cfg models.Config) (models.Server, error) {
			return &refServer{cfg: cfg, bugs: b, conns: map[net.Conn]bool{}, stop: make(chan struct{})}, nil
		})
	}
}

type refServer struct {
	cfg  models.Config
	bugs bugs
	cnt  models.Counters

	ln   net.Listener
	pc   net.PacketConn
	sf   *models.SocketFile
	addr string

	mu      sync.Mutex
	conns   map[net.Conn]bool // true once the connection is lingering
	closing atomic.Bool
	costMu  sync.Mutex
	stop    chan struct{} // closed by Shutdown
	wg      sync.WaitGroup
	leaks   sync.WaitGroup
	leaked  []*os.File // leakFDPerConn
	peer    net.Addr   // replyFirstPeer, under mu
}

func (s *refServer) Addr() string        { return s.addr }
func (s *refServer) Stats() models.Stats { return s.cnt.Snapshot() }

func (s *refServer) Start() error {
	if s.closing.Load() {
		return models.ErrServerClosed
	}
	if s.bugs.orphan && os.Getenv(models.ChildEnv) == ChildRole {
		// A "worker" that outlives the server (sleep stands in for one);
		// only in a subprocess server, whose process group the suite kills.
		cmd := exec.Command("sleep", "30")
		if err := cmd.Start(); err != nil {
			return err
		}
		go cmd.Wait()
	}
	if s.bugs.stealSocket && s.cfg.IsUnix() {
		removeAny(s.cfg.Addr)
	}
	if s.bugs.reusePort && !s.cfg.IsUnix() {
		return s.startReusePort()
	}
	if s.cfg.IsStream() {
		ln, sf, err := models.ListenStream(&s.cfg)
		if err != nil {
			return err
		}
		s.ln, s.sf, s.addr = ln, sf, ln.Addr().String()
		s.wg.Add(1)
		go s.acceptLoop()
		return nil
	}
	pc, sf, err := models.ListenPacket(&s.cfg)
	if err != nil {
		return err
	}
	s.pc, s.sf, s.addr = pc, sf, pc.LocalAddr().String()
	for range s.cfg.Workers {
		s.wg.Add(1)
		go s.packetLoop()
	}
	return nil
}

// startReusePort binds the way a careless server would: SO_REUSEPORT lets
// a second server share the port of a live one.
func (s *refServer) startReusePort() error {
	lc := net.ListenConfig{Control: func(network, address string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	if s.cfg.IsStream() {
		ln, err := lc.Listen(context.Background(), s.cfg.Net, s.cfg.Addr)
		if err != nil {
			return err
		}
		s.ln, s.addr = ln, ln.Addr().String()
		s.wg.Add(1)
		go s.acceptLoop()
		return nil
	}
	pc, err := lc.ListenPacket(context.Background(), s.cfg.Net, s.cfg.Addr)
	if err != nil {
		return err
	}
	s.pc, s.addr = pc, pc.LocalAddr().String()
	for range s.cfg.Workers {
		s.wg.Add(1)
		go s.packetLoop()
	}
	return nil
}

func (s *refServer) acceptLoop() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return
			}
			s.cnt.AcceptErrors.Add(1)
			if s.bugs.spinOnAcceptErr {
				continue
			}
			if s.bugs.stopOnAcceptErr {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), 200*time.Millisecond)
			select {
			case <-time.After(backoff):
			case <-s.stop:
				return
			}
			continue
		}
		backoff = 0
		s.cnt.Accepted.Add(1)
		if s.cfg.MaxConns > 0 && !s.bugs.noMaxConns && s.cnt.Active.Load() >= int64(s.cfg.MaxConns) {
			s.cnt.Rejected.Add(1)
			c.Close()
			continue
		}
		s.cnt.Active.Add(1)
		s.mu.Lock()
		s.conns[c] = false
		s.mu.Unlock()
		if s.bugs.leakPerConn {
			s.leaks.Add(1)
			go func() { defer s.leaks.Done(); <-s.stop }()
		}
		if s.bugs.leakFDPerConn {
			if fc, ok := c.(interface{ File() (*os.File, error) }); ok {
				if f, err := fc.File(); err == nil {
					s.mu.Lock()
					s.leaked = append(s.leaked, f)
					s.mu.Unlock()
				}
			}
		}
		s.wg.Add(1)
		if s.bugs.serial {
			s.serveConn(c)
			continue
		}
		go s.serveConn(c)
	}
}

// countReader counts the bytes read and arms the read deadline before
// every read: LineReader.Next may read several times for one line, and a
// client that sends a line in pieces is not idle between them.
type countReader struct {
	s     *refServer
	c     net.Conn
	n     *atomic.Uint64
	armed bool
}

func (r *countReader) Read(p []byte) (int, error) {
	if !r.s.bugs.idleFromAccept || !r.armed {
		r.s.armRead(r.c)
		r.armed = true
	}
	n, err := r.c.Read(p)
	r.n.Add(uint64(n))
	return n, err
}

// armRead sets the read deadline for the next read: the idle timeout, or
// now when shutting down. Shutdown sets closing before it pokes every
// connection's deadline, so checking closing after setting ours means one
// of the two always wins.
func (s *refServer) armRead(c net.Conn) {
	if s.cfg.IdleTimeout > 0 && !s.bugs.noIdleTimeout {
		c.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
	} else {
		c.SetReadDeadline(time.Time{})
	}
	if s.closing.Load() && !s.bugs.slowIdleShutdown {
		c.SetReadDeadline(time.Now())
	}
}

func (s *refServer) serveConn(c net.Conn) {
	defer s.wg.Done()
	forgetActive := false
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		if !forgetActive {
			s.cnt.Active.Add(-1)
		}
	}()
	if s.bugs.readIsLine {
		s.serveReads(c)
		return
	}
	maxLine := s.cfg.MaxLine
	if s.bugs.noMaxLine {
		maxLine = 1 << 30
	}
	if s.bugs.maxLineOffByOne {
		maxLine--
	}
	lr := protocol.NewLineReader(&countReader{s: s, c: c, n: &s.cnt.BytesIn}, maxLine)
	var out []byte
	var pending uint64
	flush := func() bool {
		if len(out) == 0 {
			return true
		}
		if s.bugs.dropOnShutdown && s.closing.Load() {
			return false
		}
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Write(out)
		s.cnt.BytesOut.Add(uint64(n))
		if err != nil {
			s.cnt.WriteErrors.Add(1)
			return false
		}
		if !s.bugs.dropOnShutdown {
			s.cnt.Requests.Add(pending)
		}
		out, pending = out[:0], 0
		return true
	}
	for {
		if s.bugs.forgetOnShutdown && s.closing.Load() {
			s.closeConn(c)
			return
		}
		if !lr.HasLine() {
			if !s.bugs.halfCloseDrops && !flush() {
				c.Close()
				return
			}
		}
		line, err := lr.Next()
		if err != nil {
			switch {
			case errors.Is(err, protocol.ErrLineTooLong):
				s.cnt.LineTooLong.Add(1)
				if s.bugs.closeAllOnLong {
					s.mu.Lock()
					for o := range s.conns {
						o.Close()
					}
					s.mu.Unlock()
				}
				s.closeConn(c)
			case isTimeout(err) && !s.closing.Load():
				s.cnt.IdleTimeouts.Add(1)
				s.closeConn(c)
			case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) || isTimeout(err):
				if s.bugs.halfCloseDrops {
					c.Close()
					return
				}
				if flush() {
					s.closeConn(c)
				} else {
					c.Close()
				}
			default:
				s.cnt.ReadErrors.Add(1)
				forgetActive = s.bugs.activeOnReset
				c.Close()
			}
			return
		}
		s.pay()
		out = s.appendReply(out, line)
		pending++
		if s.bugs.dropOnShutdown {
			s.cnt.Requests.Add(1)
		}
		if len(out) >= 64<<10 && !flush() {
			c.Close()
			return
		}
	}
}

// appendReply appends the reply to req, as the variant's bugs make it.
func (s *refServer) appendReply(out, req []byte) []byte {
	switch {
	case s.bugs.upperInEcho:
		return protocol.Upper.AppendReply(out, req)
	case s.bugs.unicodeUpper && s.cfg.Mode == protocol.Upper:
		return append(out, bytes.ToUpper(req)...)
	}
	return s.cfg.Mode.AppendReply(out, req)
}

// serveReads is the readIsLine bug: a server that takes every read for
// whole requests, as if the client's writes arrived one by one, and
// answers a piece of a line as a line of its own.
func (s *refServer) serveReads(c net.Conn) {
	buf := make([]byte, 64<<10)
	var out []byte
	for {
		s.armRead(c)
		n, err := c.Read(buf)
		s.cnt.BytesIn.Add(uint64(n))
		out = out[:0]
		for _, part := range bytes.SplitAfter(buf[:n], []byte("\n")) {
			if len(part) == 0 {
				continue
			}
			if part[len(part)-1] != '\n' {
				part = append(part, '\n')
			}
			out = s.appendReply(out, part)
			s.cnt.Requests.Add(1)
		}
		if len(out) > 0 {
			w, _ := c.Write(out)
			s.cnt.BytesOut.Add(uint64(w))
		}
		if err != nil {
			s.closeConn(c)
			return
		}
	}
}

// pay spends the handler cost.
func (s *refServer) pay() {
	switch {
	case s.bugs.ignoreCost:
	case s.bugs.serialCost:
		s.costMu.Lock()
		s.cfg.Cost.Pay(context.Background())
		s.costMu.Unlock()
	default:
		s.cfg.Cost.Pay(context.Background())
	}
}

// closeConn is the lingering close: FIN first, then read and discard what
// the peer still sends (bounded), then close, so that unread bytes do not
// turn the close into a reset that destroys replies in flight.
func (s *refServer) closeConn(c net.Conn) {
	if s.bugs.noLinger {
		c.Close()
		return
	}
	type closeWriter interface{ CloseWrite() error }
	// Marked under mu, so Shutdown's poke (a read deadline of now) cannot
	// land after the linger deadline below and cut the drain short.
	s.mu.Lock()
	s.conns[c] = true
	s.mu.Unlock()
	if cw, ok := c.(closeWriter); ok {
		cw.CloseWrite()
	}
	// 1.5 s, as the models: under -race on a loaded 2-core machine a
	// client can take more than 0.5 s to read its last replies and close.
	c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
	io.CopyN(io.Discard, c, 256<<10)
	c.Close()
}

func (s *refServer) packetLoop() {
	defer s.wg.Done()
	buf := make([]byte, protocol.MaxDatagram+1)
	out := make([]byte, 0, protocol.MaxDatagram)
	if s.bugs.smallDgramBuf {
		buf = buf[:8<<10]
	}
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			if s.closing.Load() {
				return
			}
			s.cnt.ReadErrors.Add(1)
			continue
		}
		s.cnt.BytesIn.Add(uint64(n))
		if n > protocol.MaxDatagram {
			s.cnt.BadDgrams.Add(1)
			continue
		}
		s.pay()
		reply := s.appendReply(out[:0], buf[:n])
		if s.bugs.replyFirstPeer {
			s.mu.Lock()
			if s.peer == nil {
				s.peer = from
			}
			from = s.peer
			s.mu.Unlock()
		}
		if _, err := s.pc.WriteTo(reply, from); err != nil {
			s.cnt.WriteErrors.Add(1)
			continue
		}
		s.cnt.Requests.Add(1)
		s.cnt.BytesOut.Add(uint64(len(reply)))
	}
}

func (s *refServer) Shutdown(ctx context.Context) error {
	if s.closing.Swap(true) {
		return nil
	}
	close(s.stop)
	if s.ln != nil {
		s.ln.Close()
	}
	if s.pc != nil {
		s.pc.SetReadDeadline(time.Now())
	}
	s.mu.Lock()
	for c, lingering := range s.conns {
		if s.bugs.dropOnShutdown {
			c.Close()
		} else if !s.bugs.slowIdleShutdown && !lingering {
			c.SetReadDeadline(time.Now())
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); s.leaks.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		<-done
		err = ctx.Err()
	}
	if s.pc != nil {
		s.pc.Close()
	}
	if !s.bugs.keepSocketFile {
		s.sf.Remove()
	}
	s.mu.Lock()
	for _, f := range s.leaked {
		f.Close()
	}
	s.leaked = nil
	s.mu.Unlock()
	return err
}

func removeAny(path string) { os.Remove(path) }
