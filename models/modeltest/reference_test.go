package modeltest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
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
	noLineTimeout    bool // ignores Config.LineTimeout
	lineTimerOnce    bool // arms the line timeout at the first partial line and never again
	blockingReply    bool // datagram replies wait while the socket cannot take them
	logEveryEvent    bool // logs every per-connection event, with no RateLog
	exitZeroForced   bool // Shutdown returns nil even when its grace ran out
	chmodAfterBind   bool // binds the Unix socket in place, then chmods it
	noMaxBuffered    bool // accounts Config.MaxBuffered but never closes anyone
	noWriteTimeout   bool // ignores Config.WriteTimeout: a write waits as long as the client does not read
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
	"modeltest-broken-no-line-timeout":     {noLineTimeout: true},
	"modeltest-broken-line-timer-once":     {lineTimerOnce: true},
	"modeltest-broken-blocking-reply":      {blockingReply: true},
	"modeltest-broken-log-every-event":     {logEveryEvent: true},
	"modeltest-broken-exit-zero-forced":    {exitZeroForced: true},
	"modeltest-broken-chmod-after-bind":    {chmodAfterBind: true},
	"modeltest-broken-no-max-buffered":     {noMaxBuffered: true},
	"modeltest-broken-no-write-timeout":    {noWriteTimeout: true},
}

func init() {
	for name, b := range refVariants {
		models.Register(name, func(cfg models.Config) (models.Server, error) {
			s := &refServer{cfg: cfg, bugs: b, conns: map[net.Conn]*refConn{}, stop: make(chan struct{}),
				bufs: models.NewBuffers(cfg.MaxBuffered)}
			s.hard, s.cut = context.WithCancel(context.Background())
			return s, nil
		})
	}
}

type refServer struct {
	cfg  models.Config
	bugs bugs
	cnt  models.Counters
	logs models.RateLog
	bufs *models.Buffers

	ln   net.Listener
	pc   net.PacketConn
	raw  syscall.RawConn // unixgram: for replies that never wait
	sf   *models.SocketFile
	addr string

	mu      sync.Mutex
	conns   map[net.Conn]*refConn
	closing atomic.Bool
	costMu  sync.Mutex
	stop    chan struct{}   // closed by Shutdown
	hard    context.Context // ended when Shutdown's grace ran out: cuts handler costs short
	cut     context.CancelFunc
	wg      sync.WaitGroup
	leaks   sync.WaitGroup
	leaked  []*os.File // leakFDPerConn
	peer    net.Addr   // replyFirstPeer, under mu
}

// refConn is what the reference server keeps per connection.
type refConn struct {
	c         net.Conn
	lingering bool // closing: Shutdown leaves its deadline alone
	hold      models.Hold
}

func (rc *refConn) Hold() *models.Hold { return &rc.hold }
func (rc *refConn) Remote() string     { return rc.c.RemoteAddr().String() }

func (s *refServer) Addr() string { return s.addr }
func (s *refServer) Stats() models.Stats {
	st := s.cnt.Snapshot()
	st.Buffered = s.bufs.Mine()
	return st
}

// warn logs a line a client caused, through the server's RateLog unless
// the variant logs every one.
func (s *refServer) warn(msg string, args ...any) {
	if s.bugs.logEveryEvent {
		s.cfg.Logger.Warn(msg, args...)
		return
	}
	s.logs.Warn(s.cfg.Logger, msg, args...)
}

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
	if s.bugs.chmodAfterBind && s.cfg.IsUnix() {
		return s.startChmodAfterBind()
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
	s.startPacket(pc, sf)
	return nil
}

func (s *refServer) startPacket(pc net.PacketConn, sf *models.SocketFile) {
	s.pc, s.sf, s.addr = pc, sf, pc.LocalAddr().String()
	if sc, ok := pc.(interface {
		syscall.Conn
		SetWriteBuffer(int) error
	}); ok && s.cfg.Net == "unixgram" {
		sc.SetWriteBuffer(models.DgramSocketBuffer)
		s.raw, _ = sc.SyscallConn()
	}
	for range s.cfg.Workers {
		s.wg.Add(1)
		go s.packetLoop()
	}
}

// startChmodAfterBind binds the Unix socket at its path and chmods it
// afterwards, as servers commonly do: between the two the file has the
// umask's mode. Between the two it waits for the umask check to look at
// the path once (see umaskPolls): a window of microseconds was missed in
// all 20 starts once, in CI, under -race beside other tests.
func (s *refServer) startChmodAfterBind() error {
	if err := models.PrepareUnixPath(s.cfg.Addr, s.cfg.Net); err != nil {
		return err
	}
	if s.cfg.IsStream() {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.cfg.Addr, Net: "unix"})
		if err != nil {
			return err
		}
		ln.SetUnlinkOnClose(false)
		awaitUmaskPoll()
		sf, err := models.ClaimSocketFile(s.cfg.Addr, s.cfg.SocketMode)
		if err != nil {
			ln.Close()
			return err
		}
		s.ln, s.sf, s.addr = ln, sf, s.cfg.Addr
		s.wg.Add(1)
		go s.acceptLoop()
		return nil
	}
	pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: s.cfg.Addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	awaitUmaskPoll()
	sf, err := models.ClaimSocketFile(s.cfg.Addr, s.cfg.SocketMode)
	if err != nil {
		pc.Close()
		return err
	}
	s.startPacket(pc, sf)
	return nil
}

// awaitUmaskPoll returns once a look of the umask check at the socket path
// has begun and ended since it was called (two more counted), or after 5 s
// when no check is looking.
func awaitUmaskPoll() {
	from := umaskPolls.Load()
	deadline := time.Now().Add(5 * time.Second)
	for umaskPolls.Load() < from+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Microsecond)
	}
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
	s.startPacket(pc, nil)
	return nil
}

func (s *refServer) acceptLoop() {
	defer s.wg.Done()
	backoff := models.Backoff{Max: 200 * time.Millisecond}
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
			if !models.Sleep(backoff.Next(), s.stop) {
				return
			}
			continue
		}
		backoff.Reset()
		s.cnt.Accepted.Add(1)
		if s.cfg.MaxConns > 0 && !s.bugs.noMaxConns && s.cnt.Active.Load() >= int64(s.cfg.MaxConns) {
			s.cnt.Rejected.Add(1)
			c.Close()
			continue
		}
		s.cnt.Active.Add(1)
		s.mu.Lock()
		s.conns[c] = &refConn{c: c}
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
// client that sends a line in pieces is not idle between them, but it
// must complete the line within the line timeout. Read is called only
// when the LineReader holds no complete line, so what it holds is a
// partial line; it reports that to the server's Buffers too.
type countReader struct {
	s     *refServer
	c     net.Conn
	rc    *refConn
	n     *atomic.Uint64
	lr    *protocol.LineReader
	armed bool

	lines     uint64    // lines taken
	lineSeq   uint64    // lines taken when the partial line began
	lineDL    time.Time // its deadline; zero: none
	lineFired bool      // the deadline set is the line's
}

// errShed is what Read returns when the connection was closed for
// holding the most past max-buffered.
var errShed = errors.New("reference: closed for max-buffered")

func (r *countReader) Read(p []byte) (int, error) {
	s := r.s
	partial := r.lr.Buffered()
	if s.bufs != nil && s.bufs.Set(&r.rc.hold, partial) && s.shed(r.rc) {
		return 0, errShed
	}
	if !s.bugs.idleFromAccept || !r.armed {
		r.arm(partial > 0)
		r.armed = true
	}
	n, err := r.c.Read(p)
	r.n.Add(uint64(n))
	return n, err
}

// arm sets the read deadline for the next read: the idle timeout or the
// partial line's deadline, whichever comes first, or now when shutting
// down. Shutdown sets closing before it pokes every connection's
// deadline, so checking closing after setting ours means one of the two
// always wins.
func (r *countReader) arm(partial bool) {
	s := r.s
	var dl time.Time
	if s.cfg.IdleTimeout > 0 && !s.bugs.noIdleTimeout {
		dl = time.Now().Add(s.cfg.IdleTimeout)
	}
	r.lineFired = false
	if lt := s.cfg.LineBound(); partial && lt > 0 && !s.bugs.noLineTimeout {
		if r.lineDL.IsZero() || (r.lineSeq != r.lines && !s.bugs.lineTimerOnce) {
			r.lineDL, r.lineSeq = time.Now().Add(lt), r.lines
		}
		if dl.IsZero() || r.lineDL.Before(dl) {
			dl, r.lineFired = r.lineDL, true
		}
	} else if !s.bugs.lineTimerOnce {
		r.lineDL = time.Time{}
	}
	r.c.SetReadDeadline(dl)
	if s.closing.Load() && !s.bugs.slowIdleShutdown {
		r.c.SetReadDeadline(time.Now())
	}
}

// shed closes the connections holding the most until the server is within
// max-buffered, and reports whether self was one.
func (s *refServer) shed(self *refConn) (closed bool) {
	if s.bugs.noMaxBuffered {
		return false
	}
	largest := func() (*refConn, bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return models.Largest(maps.Values(s.conns))
	}
	return models.Shed(s.bufs, self, largest, func(rc *refConn) { rc.c.Close() }, &s.cnt, &s.logs, s.cfg.Logger)
}

func (s *refServer) serveConn(c net.Conn) {
	defer s.wg.Done()
	forgetActive := false
	s.mu.Lock()
	rc := s.conns[c]
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		if s.bufs != nil {
			s.bufs.Release(&rc.hold)
		}
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
	cr := &countReader{s: s, c: c, rc: rc, n: &s.cnt.BytesIn}
	lr := protocol.NewLineReader(cr, maxLine)
	cr.lr = lr
	var out []byte
	var pending uint64
	flush := func() bool {
		if len(out) == 0 {
			return true
		}
		if s.bugs.dropOnShutdown && s.closing.Load() {
			return false
		}
		if s.bufs != nil {
			if s.bufs.Set(&rc.hold, lr.Buffered()+len(out)) && s.shed(rc) {
				return false
			}
			defer s.bufs.Set(&rc.hold, lr.Buffered())
		}
		if wt := s.cfg.WriteBound(); wt > 0 && !s.bugs.noWriteTimeout {
			c.SetWriteDeadline(time.Now().Add(wt))
		}
		n, err := c.Write(out)
		s.cnt.BytesOut.Add(uint64(n))
		if err != nil {
			if IsTimeout(err) {
				s.cnt.WriteTimeouts.Add(1)
				s.warn("replies not taken within write-timeout; closing")
			} else {
				s.cnt.WriteErrors.Add(1)
			}
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
			case errors.Is(err, errShed) || errors.Is(err, net.ErrClosed):
				c.Close()
			case errors.Is(err, protocol.ErrLineTooLong):
				s.cnt.LineTooLong.Add(1)
				s.warn("line over max-line; closing")
				if s.bugs.closeAllOnLong {
					s.mu.Lock()
					for o := range s.conns {
						o.Close()
					}
					s.mu.Unlock()
				}
				s.closeConn(c)
			case IsTimeout(err) && !s.closing.Load() && cr.lineFired:
				s.cnt.LineTimeouts.Add(1)
				s.warn("line not complete within line-timeout; closing")
				s.closeConn(c)
			case IsTimeout(err) && !s.closing.Load():
				s.cnt.IdleTimeouts.Add(1)
				s.closeConn(c)
			case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) || IsTimeout(err):
				if errors.Is(err, io.ErrUnexpectedEOF) {
					s.debug("client closed inside a line")
				}
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
				s.debug("read failed", "err", err)
				forgetActive = s.bugs.activeOnReset
				c.Close()
			}
			return
		}
		cr.lines++
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
	cr := &countReader{s: s, c: c}
	for {
		cr.arm(false)
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
		s.cfg.Cost.Pay(s.hard)
		s.costMu.Unlock()
	default:
		s.cfg.Cost.Pay(s.hard)
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
	if rc := s.conns[c]; rc != nil {
		rc.lingering = true
	}
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
			s.warn("datagram too large")
			continue
		}
		if ua, ok := from.(*net.UnixAddr); ok && (ua == nil || ua.Name == "") || from == nil {
			s.cnt.BadDgrams.Add(1)
			s.warn("datagram from an unbound socket; cannot reply")
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
		if s.raw != nil && !s.bugs.blockingReply {
			err = models.SendUnixgram(s.raw, reply, from.(*net.UnixAddr))
		} else {
			_, err = s.pc.WriteTo(reply, from)
		}
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.cnt.WriteErrors.Add(1)
				s.warn("datagram reply dropped", "err", err)
			}
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
	for c, rc := range s.conns {
		if s.bugs.dropOnShutdown {
			c.Close()
		} else if !s.bugs.slowIdleShutdown && !rc.lingering {
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
		s.cut()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		if s.pc != nil {
			s.pc.Close() // a reader stuck in a reply (blockingReply)
		}
		<-done
		if !s.bugs.exitZeroForced {
			err = ctx.Err()
		}
	}
	if s.pc != nil {
		s.pc.Close()
	}
	s.cut()
	s.logs.Flush()
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

// debug logs a per-connection line at debug level, through the RateLog.
func (s *refServer) debug(msg string, args ...any) {
	if s.bugs.logEveryEvent {
		s.cfg.Logger.Debug(msg, args...)
		return
	}
	s.logs.Debug(s.cfg.Logger, msg, args...)
}
