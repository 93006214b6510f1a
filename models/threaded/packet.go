package threaded

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/protocol"
)

// blockHandlers is the number of handler goroutines a datagram server runs
// when requests block (--block > 0).
//
// Why a pool: a reader goroutine that sleeps Block for every datagram
// answers at most Workers/Block requests a second (8 readers, 1ms block:
// 8000/s), which would measure the reader count, not the model. A fixed
// pool of blockHandlers goroutines raises that ceiling to blockHandlers/Block
// while bounding memory: at most 2*blockHandlers datagrams are held (queued
// or in a handler); past that the readers wait and the kernel drops, as a
// real overloaded UDP server does. Without --block the readers answer
// inline: --work is CPU, and more goroutines than CPUs would not help.
const blockHandlers = 256

// dgram is a datagram handed from a reader to the handler pool.
type dgram struct {
	b    []byte
	ap   netip.AddrPort // sender, udp
	addr net.Addr       // sender, unixgram
}

var dgramPool = sync.Pool{New: func() any { return new(dgram) }}

// startPacket starts the readers (and, with --block, the handler pool).
// Called with s.mu held.
//
// The socket asks for models.DgramSocketBuffer both ways: to receive, so a
// burst from many clients is not dropped by the kernel before any reader
// sees it, as most UDP servers do; to send, because unixgram charges every
// reply a client has not read yet to the server's send buffer (see
// models.SendUnixgram).
func (s *Server) startPacket() {
	if b, ok := s.pc.(interface {
		SetReadBuffer(int) error
		SetWriteBuffer(int) error
	}); ok {
		if err := b.SetReadBuffer(models.DgramSocketBuffer); err != nil {
			s.log.Debug("could not enlarge the socket receive buffer", "err", err)
		}
		if err := b.SetWriteBuffer(models.DgramSocketBuffer); err != nil {
			s.log.Debug("could not enlarge the socket send buffer", "err", err)
		}
	}
	if _, udp := s.pc.(*net.UDPConn); !udp {
		if sc, ok := s.pc.(syscall.Conn); ok {
			s.raw, _ = sc.SyscallConn()
		}
	}
	var jobs chan *dgram
	var readers sync.WaitGroup
	if s.cfg.Cost.Blocks() {
		jobs = make(chan *dgram, blockHandlers)
		for range blockHandlers {
			s.wg.Add(1)
			go s.handleLoop(jobs)
		}
	}
	n := s.cfg.Workers
	if n <= 0 {
		n = 1
	}
	for range n {
		readers.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer readers.Done()
			s.readLoop(jobs)
		}()
	}
	if jobs != nil {
		// Handlers finish the queued datagrams and exit once the readers
		// have stopped.
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			readers.Wait()
			close(jobs)
		}()
	}
}

// readLoop reads datagrams until Shutdown. Each reader owns a buffer one
// byte larger than the largest datagram we answer, so a truncated read is
// detectable: such datagrams are dropped and counted as BadDatagrams, never
// answered with a wrong length. UDP uses the AddrPort calls, which do not
// allocate a sender address per datagram.
func (s *Server) readLoop(jobs chan<- *dgram) {
	buf := make([]byte, protocol.MaxDatagram+1)
	udp, _ := s.pc.(*net.UDPConn)
	var backoff models.Backoff
	for {
		var (
			n    int
			ap   netip.AddrPort
			addr net.Addr
			err  error
		)
		if udp != nil {
			n, ap, err = udp.ReadFromUDPAddrPort(buf)
		} else {
			n, addr, err = s.pc.ReadFrom(buf)
		}
		if err != nil {
			if s.isClosing() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Never spin on a persistent error.
			s.ctr.ReadErrors.Add(1)
			s.logs.Warn(s.log, "datagram read failed", "err", err)
			if !models.Sleep(backoff.Next(), s.closing) {
				return
			}
			continue
		}
		backoff.Reset()
		s.ctr.BytesIn.Add(uint64(n))
		if n > protocol.MaxDatagram {
			s.ctr.BadDgrams.Add(1)
			s.logs.Warn(s.log, "datagram larger than the largest request; dropped", "max", protocol.MaxDatagram)
			continue
		}
		if udp == nil && !replyable(addr) {
			// An unbound unixgram client has no address to answer.
			s.ctr.BadDgrams.Add(1)
			s.logs.Warn(s.log, "datagram from an unbound unix socket; cannot reply, dropped")
			continue
		}
		if jobs == nil {
			s.cfg.Cost.Pay(s.hardCtx)
			s.cfg.Mode.Apply(buf[:n])
			s.reply(udp, buf[:n], ap, addr)
			continue
		}
		d := dgramPool.Get().(*dgram)
		d.b = append(d.b[:0], buf[:n]...)
		d.ap, d.addr = ap, addr
		jobs <- d
	}
}

// handleLoop answers datagrams queued by the readers.
func (s *Server) handleLoop(jobs <-chan *dgram) {
	defer s.wg.Done()
	udp, _ := s.pc.(*net.UDPConn)
	for d := range jobs {
		s.cfg.Cost.Pay(s.hardCtx)
		s.cfg.Mode.Apply(d.b)
		s.reply(udp, d.b, d.ap, d.addr)
		d.addr = nil
		if cap(d.b) > 4<<10 {
			d.b = nil // keep pooled memory small; big datagrams are rare
		}
		dgramPool.Put(d)
	}
}

// reply sends one reply datagram, exactly as long as the request, and
// never waits for a client that does not read: unixgram goes through
// models.SendUnixgram, and a UDP send does not wait on its receiver (the
// kernel drops what a full receive queue cannot take). A reply that cannot
// be sent is counted in WriteErrors.
func (s *Server) reply(udp *net.UDPConn, b []byte, ap netip.AddrPort, addr net.Addr) {
	var (
		n   int
		err error
	)
	if udp != nil {
		n, err = udp.WriteToUDPAddrPort(b, ap)
	} else if s.raw != nil {
		if err = models.SendUnixgram(s.raw, b, addr.(*net.UnixAddr)); err == nil {
			n = len(b)
		}
	} else {
		n, err = s.pc.WriteTo(b, addr)
	}
	s.ctr.BytesOut.Add(uint64(n))
	if err != nil {
		if errors.Is(err, net.ErrClosed) {
			return
		}
		s.ctr.WriteErrors.Add(1)
		if errors.Is(err, models.ErrReplyDropped) {
			s.logs.Warn(s.log, "datagram reply dropped: the socket cannot take it (a client that does not read its replies holds the send buffer)",
				"peer", addr.String(), "err", err)
		} else {
			s.logs.Warn(s.log, "datagram reply failed", "err", err)
		}
		return
	}
	s.ctr.Requests.Add(1)
}

func replyable(a net.Addr) bool {
	if a == nil {
		return false
	}
	if ua, ok := a.(*net.UnixAddr); ok {
		return ua != nil && ua.Name != ""
	}
	return true
}
