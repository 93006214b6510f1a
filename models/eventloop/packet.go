package eventloop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/sockbench/sockbench/protocol"
)

// socketBuffer is the receive (and send) buffer each datagram socket asks
// for. The Linux default (about 208 KiB) holds only a few dozen 4 KiB
// datagrams, so a burst from many clients would be dropped by the kernel
// before the loop sees it. The kernel caps it at net.core.rmem_max (and
// wmem_max): best effort, as in the threaded model.
const socketBuffer = 4 << 20

// packetSide is the udp half of a server: a gnet engine with one
// SO_REUSEPORT socket per loop.
type packetSide struct {
	s         *server
	eng       gnet.Engine
	ready     chan struct{}
	readyOnce sync.Once
	runErr    chan error
}

// startPacket binds the datagram engine. gnet opens the socket of each
// loop after the first one with the address it was given, so ":0" would
// put every loop on a different port: the port is chosen first, by binding
// it exclusively (which also fails when any socket, SO_REUSEPORT or not,
// holds a port asked for explicitly), and handed to gnet. If another
// process takes a chosen port in between, the bind fails and, for ":0"
// only, is retried with a new port.
func (s *server) startPacket() error {
	_, port, err := net.SplitHostPort(s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("eventloop: listen %s %s: %w", s.cfg.Net, s.cfg.Addr, err)
	}
	auto := port == "0" || port == ""
	for attempt := 1; ; attempt++ {
		pc, err := net.ListenPacket(s.cfg.Net, s.cfg.Addr)
		if err != nil {
			return fmt.Errorf("eventloop: listen %s %s: %w", s.cfg.Net, s.cfg.Addr, err)
		}
		addr := pc.LocalAddr().String()
		pc.Close()
		err = s.runPacket(addr)
		if err == nil {
			return nil
		}
		if !auto || !errors.Is(err, syscall.EADDRINUSE) || attempt == 3 {
			return err
		}
	}
}

func (s *server) runPacket(addr string) error {
	ps := &packetSide{s: s, ready: make(chan struct{}), runErr: make(chan error, 1)}
	h := &packetHandler{ps: ps}
	go func() {
		ps.runErr <- gnet.Run(h, s.cfg.Net+"://"+addr, append(s.gnetOptions(),
			gnet.WithSocketRecvBuffer(socketBuffer), gnet.WithSocketSendBuffer(socketBuffer))...)
	}()
	select {
	case <-ps.ready:
		s.packet = ps
		s.addr = addr
		return nil
	case err := <-ps.runErr:
		if err == nil {
			err = errors.New("gnet stopped before serving")
		}
		return fmt.Errorf("eventloop: listen %s %s: %w", s.cfg.Net, addr, err)
	}
}

// shutdown is Server.Shutdown for datagrams: the pool finishes the
// requests it holds (new blocking requests are no longer taken once
// draining is set), then the engine stops.
func (ps *packetSide) shutdown(ctx context.Context) error {
	s := ps.s
	err := s.pool.wait(ctx)
	s.stop()
	// Engine.Stop polls for the end every 500 ms; Run returning is the
	// earlier signal, after which the poll is cancelled.
	stopCtx, cancel := context.WithCancel(context.Background())
	stopDone := make(chan struct{})
	go func() {
		defer close(stopDone)
		ps.eng.Stop(stopCtx)
	}()
	select {
	case runErr := <-ps.runErr:
		if runErr != nil {
			s.log.Warn("event loops stopped with an error", "err", runErr)
		}
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	cancel()
	<-stopDone
	s.pool.close()
	return err
}

// packetHandler is the gnet.EventHandler of the datagram engine.
type packetHandler struct {
	gnet.BuiltinEventEngine
	ps *packetSide
}

func (h *packetHandler) OnBoot(eng gnet.Engine) gnet.Action {
	h.ps.eng = eng
	return gnet.None
}

// OnTick first fires once every loop's socket is bound and the loops run:
// that is when Start may return.
func (h *packetHandler) OnTick() (time.Duration, gnet.Action) {
	h.ps.s.ticked()
	h.ps.readyOnce.Do(func() { close(h.ps.ready) })
	return time.Second, gnet.None
}

// OnTraffic answers one datagram. Its bytes are gnet's read buffer, which
// is the loop's to use until the callback returns, so the reply is made in
// place and sent from there.
func (h *packetHandler) OnTraffic(c gnet.Conn) gnet.Action {
	s := h.ps.s
	req, _ := c.Peek(-1)
	if s.blocks {
		if s.draining.Load() {
			return gnet.None
		}
		if s.pool.queued() >= 4*s.pool.max {
			s.ctr.BadDgrams.Add(1)
			return gnet.None
		}
		ua, _ := c.RemoteAddr().(*net.UDPAddr)
		if ua == nil {
			s.ctr.BadDgrams.Add(1)
			return gnet.None
		}
		j := &dgramJob{s: s, c: c, buf: bufs.Get(),
			addr: net.UDPAddr{IP: slices.Clone(ua.IP), Port: ua.Port, Zone: strings.Clone(ua.Zone)}}
		j.buf.B = append(j.buf.B[:0], req...)
		s.ctr.BytesIn.Add(uint64(len(req)))
		s.pool.submit(j)
		return gnet.None
	}
	protocol.Burn(s.cfg.Cost.Work)
	s.cfg.Mode.Apply(req)
	s.ctr.BytesIn.Add(uint64(len(req)))
	if _, err := c.Write(req); err != nil {
		s.ctr.WriteErrors.Add(1)
		return gnet.None
	}
	s.ctr.Requests.Add(1)
	s.ctr.BytesOut.Add(uint64(len(req)))
	return gnet.None
}

// dgramJob answers one datagram from the pool. It sends on the loop's
// socket with SendTo (a plain sendto, safe from any goroutine); gnet's
// Conn for a datagram is a throwaway, so the peer address is copied.
type dgramJob struct {
	s    *server
	c    gnet.Conn
	buf  *bytebufferpool.ByteBuffer
	addr net.UDPAddr
}

func (j *dgramJob) run() {
	s := j.s
	s.cfg.Cost.Pay(s.taskCtx)
	s.cfg.Mode.Apply(j.buf.B)
	s.stopMu.RLock()
	var err error = errStopped
	if !s.stopped {
		_, err = j.c.SendTo(j.buf.B, &j.addr)
	}
	s.stopMu.RUnlock()
	if err == nil {
		s.ctr.Requests.Add(1)
		s.ctr.BytesOut.Add(uint64(len(j.buf.B)))
	} else if err != errStopped {
		s.ctr.WriteErrors.Add(1)
	}
	bufs.Put(j.buf)
}

var errStopped = errors.New("eventloop: stopped")
